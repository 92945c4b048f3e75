import {
  findCondition,
  invalidSpecMessage,
  markReady,
  markReconciling,
  markStalled,
  markSuspended,
  plural,
  READY,
  Reasons,
  RECONCILING,
  STALLED,
  transitionEvent,
} from '../../src/reconciler/published-realm/conditions.js';
import { ClaimConflictError, PublishError, RealmTooLargeError, RealmURLOverlapError, UnsafeDatabaseValueError, URLTakenByRealmError } from '../../src/dataplane/realm-state.js';
import { refusalOf } from '../../src/reconciler/published-realm/reconciler.js';
import { StallBackoff } from '../../src/reconciler/published-realm/stall-backoff.js';

const t0 = new Date('2026-01-01T00:00:00Z');
const t1 = new Date('2026-01-01T00:01:00Z');

describe('kstatus conditions', () => {
  test('Ready is always present; Reconciling and Stalled only while True', () => {
    const reconciling = markReconciling({}, 3, 'Publishing', 'publishing', t0);
    expect(reconciling.conditions?.map((c) => [c.type, c.status])).toEqual([
      [READY, 'False'],
      [RECONCILING, 'True'],
    ]);
    expect(reconciling.observedGeneration).toBe(3);
    const stalled = markStalled(reconciling, 3, 'InvalidSpec', 'bad', t1);
    expect(stalled.conditions?.map((c) => [c.type, c.status])).toEqual([
      [READY, 'False'],
      [STALLED, 'True'],
    ]);
    const ready = markReady(stalled, 4, 'Published', 'ok', t1);
    expect(ready.conditions?.map((c) => [c.type, c.status, c.observedGeneration])).toEqual([[READY, 'True', 4]]);
    expect(ready.observedGeneration).toBe(4);
  });

  test('lastTransitionTime moves only when the status changes', () => {
    const a = markReconciling({}, 1, 'Publishing', 'one', t0);
    const b = markReconciling(a, 1, 'AwaitingAcknowledgement', 'two', t1);
    expect(findCondition(b, READY)).toMatchObject({ status: 'False', reason: 'AwaitingAcknowledgement', message: 'two', lastTransitionTime: t0.toISOString() });
    const c = markReady(b, 1, 'Published', 'done', t1);
    expect(findCondition(c, READY)?.lastTransitionTime).toBe(t1.toISOString());
  });

  test('does not mutate its input and keeps other status fields', () => {
    const input = { fileCount: 3, conditions: [] };
    const out = markReady(input, 1, 'Published', 'done', t0);
    expect(input.conditions).toEqual([]);
    expect(out.fileCount).toBe(3);
  });
});

describe('truthful status and Events', () => {
  test('suspend: Ready=False reason Suspended, and neither Reconciling nor Stalled', () => {
    const stalled = markStalled({}, 2, 'SourceRealmUnavailable', 'missing', t0);
    const suspended = markSuspended(stalled, 3, 'Suspended: spec.suspend is true', t1);
    expect(suspended.conditions).toEqual([
      { type: READY, status: 'False', reason: 'Suspended', message: 'Suspended: spec.suspend is true', observedGeneration: 3, lastTransitionTime: t0.toISOString() },
    ]);
    expect(suspended.observedGeneration).toBe(3);
    // Repeating it changes nothing, so the reconciler writes nothing.
    expect(markSuspended(suspended, 3, 'Suspended: spec.suspend is true', new Date('2027-01-01T00:00:00Z'))).toEqual(suspended);
  });

  test('a repeated stall is byte-for-byte the same status (no write, no Event)', () => {
    const once = markStalled(markReady({}, 1, 'Published', 'ok', t0), 2, 'URLAlreadyPublished', 'taken', t1);
    const again = markStalled(once, 2, 'URLAlreadyPublished', 'taken', new Date('2027-01-01T00:00:00Z'));
    expect(again).toEqual(once);
    expect(transitionEvent(once, again)).toBeUndefined();
  });

  test('one Event per transition, with the Ready reason; none for in-progress reasons', () => {
    const publishing = markReconciling({}, 1, Reasons.Publishing, 'publishing', t0);
    const awaiting = markReconciling(publishing, 1, Reasons.AwaitingAcknowledgement, 'waiting', t0);
    const ready = markReady(awaiting, 1, Reasons.Published, 'Published epoch 2 (1 file)', t1);
    const stalled = markStalled(ready, 2, Reasons.SourceRealmUnavailable, 'gone', t1);
    const failed = markReconciling(ready, 2, Reasons.PublishFailed, 'disk full', t1);
    expect(transitionEvent(undefined, publishing)).toBeUndefined();
    expect(transitionEvent(publishing, awaiting)).toBeUndefined();
    expect(transitionEvent(awaiting, ready)).toEqual({ type: 'Normal', reason: 'Published', message: 'Published epoch 2 (1 file)' });
    expect(transitionEvent(ready, stalled)).toEqual({ type: 'Warning', reason: 'SourceRealmUnavailable', message: 'gone' });
    expect(transitionEvent(ready, failed)).toEqual({ type: 'Warning', reason: 'PublishFailed', message: 'disk full' });
    expect(transitionEvent(ready, markSuspended(ready, 2, 'suspended', t1))).toEqual({ type: 'Normal', reason: 'Suspended', message: 'suspended' });
    expect(transitionEvent(ready, markReady(ready, 1, Reasons.Published, 'other message', t1))).toBeUndefined();
  });

  test('the per-publish Event reasons differ from every condition reason', () => {
    const conditionReasons = [Reasons.Published, Reasons.PublishedNotifyOnly, Reasons.Publishing, Reasons.AwaitingAcknowledgement, Reasons.Suspended];
    for (const reason of [Reasons.ContentPublished, Reasons.ContentRepublished, Reasons.ReindexEnqueued]) expect(conditionReasons).not.toContain(reason);
  });

  test('plurals', () => {
    expect(plural(1, 'file')).toBe('1 file');
    expect(plural(2, 'file')).toBe('2 files');
    expect(plural(0, 'file')).toBe('0 files');
    expect(plural(1, 'entry', 'entries')).toBe('1 entry');
    expect(plural(3, 'entry', 'entries')).toBe('3 entries');
  });

  test('InvalidSpec never tells the user to edit the immutable publishedRealmURL', () => {
    const url = invalidSpecMessage(['spec.publishedRealmURL: is not in canonical form; use "http://pub.localhost/x/"']);
    expect(url).toContain('delete this PublishedRealm and create it again with a valid publishedRealmURL');
    expect(url).not.toMatch(/edit/i);
    const source = invalidSpecMessage(['spec.sourceRealmURL: must end with "/"']);
    expect(source).toContain('edit the PublishedRealm');
    expect(source).not.toContain('delete');
    const both = invalidSpecMessage(['spec.sourceRealmURL: must end with "/"', 'spec.publishedRealmURL: must end with "/"']);
    expect(both).toContain('edit the PublishedRealm to fix the other fields');
    expect(both).toContain('delete this PublishedRealm and create it again');
  });
});

describe('StallBackoff', () => {
  test('30 s doubling to a 10 minute cap while the object stays the same; from the start when it changes or recovers', () => {
    const backoff = new StallBackoff();
    const delays = Array.from({ length: 7 }, () => backoff.next('ns/a', 'uid/1'));
    expect(delays).toEqual([30_000, 60_000, 120_000, 240_000, 480_000, 600_000, 600_000]);
    // Another object has its own.
    expect(backoff.next('ns/b', 'uid-b/1')).toBe(30_000);
    // A new generation starts over.
    expect(backoff.next('ns/a', 'uid/2')).toBe(30_000);
    expect(backoff.next('ns/a', 'uid/2')).toBe(60_000);
    backoff.reset('ns/a');
    expect(backoff.next('ns/a', 'uid/2')).toBe(30_000);
  });
});

describe('refusalOf: which publish failures are Stalled, and with which reason', () => {
  test('each refusal class has its own reason; anything else is retried, not Stalled', () => {
    expect(refusalOf(new ClaimConflictError('http://h/p/', 'ns/other/uid'))?.reason).toBe('URLAlreadyPublished');
    expect(refusalOf(new URLTakenByRealmError('http://h/p/', 'source'))?.reason).toBe('URLTakenByRealm');
    expect(refusalOf(new RealmURLOverlapError('http://h/p/', ['http://h/'])))?.toMatchObject({ reason: 'URLOverlapsRealm' });
    expect(refusalOf(new PublishError('source realm http://h/s/ is not in realm_registry'))?.reason).toBe('SourceRealmUnavailable');
    expect(refusalOf(new Error('connection terminated'))).toBeUndefined();
    expect(refusalOf(new RealmTooLargeError('http://h/s/', 4, 10, { kind: 'files', max: 3 }))?.reason).toBe('RealmTooLarge');
    const unsafe = new UnsafeDatabaseValueError('realm_operator.realm_epochs.content_version', 'http://h/p/', '../../etc', 'leaves its directory', 'Publish again.');
    expect(refusalOf(unsafe)?.reason).toBe('UnsafeDatabaseValue');
  });
});
