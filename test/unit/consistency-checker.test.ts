/**
 * The consistency checker's rules on synthetic reads (test/consistency/checker.ts, ready-time.ts):
 * each rule must fire on the read that breaks it and stay silent otherwise, including for reads
 * that completed before the back-dated Ready was known.
 */
import { ConsistencyChecker, type ReadRecord } from '../consistency/checker.js';
import { ACKNOWLEDGED_MESSAGE, ReadyDecisions, WAITING_MESSAGE } from '../consistency/ready-time.js';

const read = (fields: Partial<ReadRecord> & { start: number }): ReadRecord => ({ replica: 'r1', file: 'a.json', end: fields.start + 1, status: 200, revision: 0, ...fields });

describe('ConsistencyChecker', () => {
  test('a stale read that started after the back-dated Ready is a violation, even when it completed before the Ready was marked', () => {
    const checker = new ConsistencyChecker();
    checker.markReady(0, 100);
    // Publish 1 is PATCHed at 200; its Ready is decided at 300 but the driver sees it at 400.
    checker.settle(200);
    checker.record(read({ start: 250, revision: 0 })); // before Ready: allowed
    checker.record(read({ start: 300, revision: 0 })); // same millisecond as the decision: not after it
    checker.record(read({ start: 301, revision: 0 })); // after the decision, before the poll saw it
    checker.record(read({ start: 350, revision: 1, replica: 'r2' }));
    expect(checker.counts.violations).toBe(0); // not judged yet: a Ready earlier than their start may come
    checker.markReady(1, 300, { seenAt: 400 });
    checker.settle(500); // the next publish's PATCH: no Ready can come earlier
    expect(checker.counts.violations).toBe(1);
    expect(checker.violations[0]).toMatchObject({ read: { start: 301, revision: 0 }, requiredRevision: 1, startAfterReadyMs: 1 });
    expect(checker.counts.checkedBeforeSeen).toBe(2);
  });

  test('errors after Ready are counted per replica; before Ready and while absent they are not', () => {
    const checker = new ConsistencyChecker();
    checker.record(read({ start: 10, status: 503 })); // before any Ready
    checker.markReady(0, 100);
    checker.record(read({ start: 150, status: undefined, error: 'ECONNREFUSED', revision: undefined }));
    checker.record(read({ start: 160, status: 404, replica: 'r2', revision: undefined }));
    checker.markAbsent(200);
    checker.record(read({ start: 250, status: 404, revision: undefined }));
    checker.finish();
    expect(checker.counts.errorsAfterReady).toBe(2);
    expect(checker.counts.errorsAfterReadyByReplica).toEqual({ r1: 1, r2: 1 });
    expect(checker.errorsAfterReadyExcept(['r1'])).toEqual({ r2: 1 });
  });

  test('a replica answering an older revision of a file than before is a regression; other files and replicas are not', () => {
    const checker = new ConsistencyChecker();
    checker.record(read({ start: 1, revision: 2 }));
    checker.record(read({ start: 2, revision: 1, file: 'b.json' }));
    checker.record(read({ start: 3, revision: 1, replica: 'r2' }));
    checker.record(read({ start: 4, revision: 1 }));
    checker.record(read({ start: 5, revision: 3, end: 10 }));
    checker.record(read({ start: 9, revision: 2, end: 12 })); // overlapped the read of 3: either answer is fine
    checker.finish();
    expect(checker.counts.regressions).toBe(1);
    expect(checker.counts.regressionsByReplica).toEqual({ r1: 1 });
    expect(checker.regressionSamples[0]).toMatchObject({ read: { start: 4, revision: 1 }, previous: { start: 1, revision: 2 } });
  });

  test('a Ready that names a realm requires reads to be served by it', () => {
    const checker = new ConsistencyChecker();
    checker.markReady(1, 100, { realm: 'http://h/inner/' });
    checker.record(read({ start: 101, revision: 1, realm: 'http://h/' }));
    checker.record(read({ start: 102, revision: 1, realm: 'http://h/inner/' }));
    checker.finish();
    expect(checker.counts.violations).toBe(1);
  });

  test('a Ready earlier than what was settled is refused (the checker would have judged reads against too little)', () => {
    const checker = new ConsistencyChecker();
    checker.settle(500);
    expect(() => checker.markReady(1, 400)).toThrow(/earlier than 500/);
  });
});

describe('ReadyDecisions', () => {
  const line = (msg: string, time: number, fields: Record<string, unknown> = {}) => ({ msg, time, publishedRealm: 'ns/realm', ...fields });

  test('the acknowledged line after a wait for the epoch, earliest over every operator and not before the request', () => {
    const decisions = new ReadyDecisions();
    const first = [line(WAITING_MESSAGE, 10, { epoch: '3' }), line(ACKNOWLEDGED_MESSAGE, 20), line(WAITING_MESSAGE, 30, { epoch: 4 }), line(ACKNOWLEDGED_MESSAGE, 45)];
    const second = [line(WAITING_MESSAGE, 35, { epoch: 4 }), line(ACKNOWLEDGED_MESSAGE, 40), line(ACKNOWLEDGED_MESSAGE, 41, { publishedRealm: 'ns/other' })];
    decisions.scan(first, first.slice(0, 2));
    decisions.scan(first, first); // incremental: only the new lines are read
    decisions.scan(second, second);
    expect(decisions.decidedAt('ns/realm', 3)).toBe(20);
    expect(decisions.decidedAt('ns/realm', 4)).toBe(40);
    expect(decisions.decidedAt('ns/realm', 4, 42)).toBe(45);
    expect(decisions.decidedAt('ns/other', 4)).toBeUndefined(); // it never waited for an epoch
    expect(decisions.decidedAt('ns/realm', 5)).toBeUndefined();
  });
});
