import { describe, expect, test } from '@jest/globals';
import type { KubeObject } from '../../src/runtime/object-key.js';
import { accepts, anyOf, generationChanged, lifecycleChanged, metadataKeysChanged, notOwnWrite, OwnWrites, specOrLifecycleChanged } from '../../src/runtime/predicates.js';

function object(metadata: Record<string, unknown>, status?: unknown): KubeObject {
  return { apiVersion: 'x/v1', kind: 'Widget', metadata: { name: 'w', namespace: 'ns', generation: 1, resourceVersion: '1', ...metadata }, ...(status ? { status } : {}) } as KubeObject;
}

describe('predicates', () => {
  const base = object({});
  test('generationChanged: only a generation change passes an update; creates and deletes pass', () => {
    expect(generationChanged.update!(base, object({ resourceVersion: '2' }, { ready: true }))).toBe(false);
    expect(generationChanged.update!(base, object({ generation: 2 }))).toBe(true);
    expect(accepts([generationChanged], { type: 'create', object: base })).toBe(true);
    expect(accepts([generationChanged], { type: 'delete', object: base })).toBe(true);
  });

  test('lifecycleChanged: the deletion timestamp and the finalizers', () => {
    expect(lifecycleChanged.update!(base, object({ deletionTimestamp: '2026-01-01T00:00:00Z' }))).toBe(true);
    expect(lifecycleChanged.update!(base, object({ finalizers: ['a/b'] }))).toBe(true);
    expect(lifecycleChanged.update!(object({ finalizers: ['a/b'] }), object({ finalizers: ['a/b'], resourceVersion: '9' }))).toBe(false);
    expect(lifecycleChanged.update!(object({ finalizers: [] }), object({}))).toBe(false);
  });

  test('metadataKeysChanged: only the named labels and annotations', () => {
    const watched = metadataKeysChanged({ labels: ['tier'], annotations: ['example.com/reconcile'] });
    expect(watched.update!(base, object({ labels: { team: 'docs' } }))).toBe(false);
    expect(watched.update!(base, object({ labels: { tier: 'gold' } }))).toBe(true);
    expect(watched.update!(base, object({ annotations: { 'example.com/reconcile': 'now' } }))).toBe(true);
    expect(watched.update!(base, object({ annotations: { other: 'x' } }))).toBe(false);
  });

  test('specOrLifecycleChanged drops status and unwatched metadata updates, keeps the rest', () => {
    const p = specOrLifecycleChanged({ annotations: ['example.com/reconcile'] });
    const update = (next: KubeObject) => accepts([p], { type: 'update', oldObject: base, object: next });
    expect(update(object({ resourceVersion: '2' }, { conditions: [{ type: 'Stalled' }] }))).toBe(false);
    expect(update(object({ labels: { team: 'docs' }, managedFields: [{}] }))).toBe(false);
    expect(update(object({ generation: 2 }))).toBe(true);
    expect(update(object({ deletionTimestamp: '2026-01-01T00:00:00Z' }))).toBe(true);
    expect(update(object({ finalizers: ['x/y'] }))).toBe(true);
    expect(update(object({ annotations: { 'example.com/reconcile': '1' } }))).toBe(true);
  });

  test('accepts ANDs the predicates; anyOf ORs them', () => {
    const never = { update: () => false };
    const next = object({ generation: 2 });
    expect(accepts([generationChanged, never], { type: 'update', oldObject: base, object: next })).toBe(false);
    expect(accepts([anyOf(generationChanged, never)], { type: 'update', oldObject: base, object: next })).toBe(true);
    expect(accepts([], { type: 'update', oldObject: base, object: base })).toBe(true);
  });
});

describe('OwnWrites and notOwnWrite', () => {
  const at = (version: string, finalizers: string[] = []) => ({ metadata: { name: 'a', namespace: 'ns', resourceVersion: version, finalizers } });

  test('drops the update event of a version this process wrote, once; accepts everyone else\'s', () => {
    const writes = new OwnWrites();
    const predicate = notOwnWrite(writes);
    writes.record(at('12', ['f']));
    expect(predicate.update!(at('11'), at('12', ['f']))).toBe(false);
    // Consumed: the same version again (a re-list replaying it) is not ours to drop any more.
    expect(predicate.update!(at('11'), at('12', ['f']))).toBe(true);
    expect(predicate.update!(at('12'), at('13'))).toBe(true);
    expect(writes.size).toBe(0);
  });

  test('forgets a version whose event never came after the TTL', () => {
    let now = 0;
    const writes = new OwnWrites(1_000, () => now);
    writes.record(at('7'));
    now = 1_001;
    expect(writes.take(at('7'))).toBe(false);
    writes.record(undefined);
    writes.record({ metadata: { name: 'x' } });
    expect(writes.size).toBe(0);
  });

  test('as the first of a controller\'s predicates it consumes own status writes the others would drop anyway', () => {
    const writes = new OwnWrites();
    writes.record(at('20'));
    expect(accepts([notOwnWrite(writes), specOrLifecycleChanged()], { type: 'update', oldObject: at('19'), object: at('20') })).toBe(false);
    expect(writes.size).toBe(0);
  });

  describe('a finalizer write whose watch event arrives before its answer', () => {
    const obj = (version: string, finalizers: string[], extra: Record<string, unknown> = {}) => ({
      metadata: { name: 'a', namespace: 'ns', uid: 'u1', generation: 1, resourceVersion: version, finalizers, ...extra },
    });
    const predicates = (writes: OwnWrites) => [notOwnWrite(writes), specOrLifecycleChanged()];

    test('is dropped while the write is in flight, once', () => {
      const writes = new OwnWrites();
      writes.intendFinalizers(obj('5', []), ['x/unpublish']);
      expect(accepts(predicates(writes), { type: 'update', oldObject: obj('5', []), object: obj('6', ['x/unpublish']) })).toBe(false);
      // Consumed: a later finalizer change is someone else's.
      expect(accepts(predicates(writes), { type: 'update', oldObject: obj('6', ['x/unpublish']), object: obj('7', []) })).toBe(true);
    });

    test('anything more than the declared finalizers is accepted: a spec change, other finalizers, deletion, labels; another object', () => {
      const cases = [
        obj('6', ['x/unpublish'], { generation: 2 }),
        obj('6', ['x/unpublish', 'other/f']),
        obj('6', ['x/unpublish'], { deletionTimestamp: '2026-01-01T00:00:00Z' }),
        obj('6', ['x/unpublish'], { labels: { tier: 'gold' } }),
        obj('6', ['x/unpublish'], { uid: 'u2' }),
      ];
      for (const object of cases) {
        const writes = new OwnWrites();
        writes.intendFinalizers(obj('5', []), ['x/unpublish']);
        expect({ object, accepted: accepts(predicates(writes), { type: 'update', oldObject: obj('5', []), object }) }).toEqual({ object, accepted: true });
      }
    });

    test('after settle, only the recorded version counts', () => {
      const writes = new OwnWrites();
      writes.intendFinalizers(obj('5', []), ['x/unpublish']);
      writes.settle(obj('5', []));
      expect(accepts(predicates(writes), { type: 'update', oldObject: obj('5', []), object: obj('6', ['x/unpublish']) })).toBe(true);
      writes.intendFinalizers(obj('6', ['x/unpublish']), []);
      writes.record(obj('7', []));
      writes.settle(obj('6', []));
      expect(accepts(predicates(writes), { type: 'update', oldObject: obj('6', ['x/unpublish']), object: obj('7', []) })).toBe(false);
    });
  });
});
