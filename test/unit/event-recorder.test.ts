import { describe, expect, test } from '@jest/globals';
import { isomorphismKey, MAX_CACHED_SERIES, SeriesTracker, TokenBucket, truncateUTF8, type EventInput } from '../../src/runtime/event-recorder.js';
import { formatMicroTime } from '../../src/runtime/lease-record.js';

const input: EventInput = {
  regarding: { apiVersion: 'v1', kind: 'ConfigMap', namespace: 'ns', name: 'cm', uid: 'u1' },
  type: 'Warning',
  reason: 'Stalled',
  action: 'Reconcile',
  note: 'source realm missing',
};

describe('TokenBucket (client-go spam filter semantics)', () => {
  test('allows a burst, then one per refill interval', () => {
    const bucket = new TokenBucket({ burst: 3, refillEveryMs: 1_000 }, 0);
    expect([bucket.take(0), bucket.take(0), bucket.take(0), bucket.take(0)]).toEqual([true, true, true, false]);
    expect(bucket.msUntilToken(250)).toBe(750);
    expect(bucket.take(999)).toBe(false);
    expect(bucket.take(1_000)).toBe(true);
    expect(bucket.take(1_000)).toBe(false);
    expect(bucket.isFull(1_000)).toBe(false);
    // Never more than the burst, however long it was idle.
    expect(bucket.isFull(60_000)).toBe(true);
    expect([bucket.take(60_000), bucket.take(60_000), bucket.take(60_000), bucket.take(60_000)]).toEqual([true, true, true, false]);
  });
});

describe('SeriesTracker (aggregation of isomorphic events)', () => {
  test('repeats within the window bump one series; after a quiet window a new one starts', () => {
    const tracker = new SeriesTracker(6 * 60_000);
    expect(tracker.observe('k', 0)).toEqual({ count: 1, isNew: true });
    expect(tracker.observe('k', 1_000)).toEqual({ count: 2, isNew: false });
    // The window counts from the LAST occurrence: a steady repeat stays one series.
    expect(tracker.observe('k', 5 * 60_000)).toEqual({ count: 3, isNew: false });
    expect(tracker.observe('k', 10 * 60_000)).toEqual({ count: 4, isNew: false });
    expect(tracker.observe('other', 10 * 60_000)).toEqual({ count: 1, isNew: true });
    expect(tracker.observe('k', 17 * 60_000)).toEqual({ count: 1, isNew: true });
  });

  test('keeps at most its bound of series, forgetting the least recently observed (client-go LRU)', () => {
    const tracker = new SeriesTracker(6 * 60_000, 2);
    expect(tracker.observe('a', 0)).toEqual({ count: 1, isNew: true });
    tracker.observe('b', 1);
    // 'a' observed again: now 'b' is the least recently used.
    expect(tracker.observe('a', 2)).toEqual({ count: 2, isNew: false });
    expect(tracker.observe('c', 3)).toEqual({ count: 1, isNew: true, evicted: 'b' });
    expect(tracker.size).toBe(2);
    expect(tracker.observe('a', 4)).toEqual({ count: 3, isNew: false });
    expect(tracker.observe('b', 5)).toEqual({ count: 1, isNew: true, evicted: 'c' });
    // The default bound is client-go's.
    const bounded = new SeriesTracker(6 * 60_000);
    for (let i = 0; i < MAX_CACHED_SERIES + 10; i++) bounded.observe(`k${i}`, i);
    expect(bounded.size).toBe(MAX_CACHED_SERIES);
  });

  test('sweep drops idle series; forget restarts one', () => {
    const tracker = new SeriesTracker(100);
    tracker.observe('a', 0);
    tracker.observe('b', 50);
    expect(tracker.sweep(120)).toEqual(['a']);
    expect(tracker.size).toBe(1);
    tracker.forget('b');
    expect(tracker.observe('b', 121)).toEqual({ count: 1, isNew: true });
  });
});

describe('isomorphismKey', () => {
  const key = (changes: Partial<EventInput>) => isomorphismKey({ ...input, ...changes }, 'example.com/ctl');
  test('differs in any of regarding, type, reason, action, note; equal otherwise', () => {
    const base = key({});
    expect(key({})).toBe(base);
    expect(key({ note: 'other' })).not.toBe(base);
    expect(key({ reason: 'Other' })).not.toBe(base);
    expect(key({ action: 'Publish' })).not.toBe(base);
    expect(key({ type: 'Normal' })).not.toBe(base);
    expect(key({ regarding: { ...input.regarding, name: 'cm2' } })).not.toBe(base);
    expect(key({ regarding: { ...input.regarding, uid: 'u2' } })).not.toBe(base);
    expect(isomorphismKey(input, 'example.com/other')).not.toBe(base);
    // The regarding object's resourceVersion changes on every write; it must not split a series.
    expect(key({ regarding: { ...input.regarding, resourceVersion: '42' } })).toBe(base);
  });
  test('is a fixed-size digest, never the note itself (the cache must not hold every note again)', () => {
    const long = key({ note: 'x'.repeat(1000) });
    expect(long).not.toContain('xxxx');
    expect(long.length).toBe(key({}).length);
    expect(long.length).toBeLessThanOrEqual(64);
  });
});

describe('wire formats', () => {
  test('MicroTime keeps the microseconds', () => {
    expect(formatMicroTime(Date.UTC(2026, 0, 2, 3, 4, 5, 678) + 0.9124)).toBe('2026-01-02T03:04:05.678912Z');
    expect(formatMicroTime(Date.UTC(2026, 0, 2, 3, 4, 5, 678))).toBe('2026-01-02T03:04:05.678000Z');
  });

  test('notes are cut to the byte limit without splitting a character', () => {
    expect(truncateUTF8('short', 1024)).toBe('short');
    const cut = truncateUTF8('é'.repeat(1000), 1024);
    expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(1024);
    expect(cut.endsWith('…')).toBe(true);
    expect(cut).not.toContain('\ufffd');
  });
});
