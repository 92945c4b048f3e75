import { findCondition, markReady, markReconciling, markStalled, READY, RECONCILING, STALLED } from '../../src/reconciler/published-realm/conditions.js';

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
