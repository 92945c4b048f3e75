import { describe, expect, test } from '@jest/globals';
import { decideLease, formatMicroTime, initialRecord, observeLease, releasedRecord, type LeaseRecord } from '../../src/runtime/lease-record.js';

const WALL = '2030-01-01T00:00:10.000000Z';

function record(overrides: Partial<LeaseRecord> = {}): LeaseRecord {
  return {
    holderIdentity: 'other',
    leaseDurationSeconds: 15,
    acquireTime: '2030-01-01T00:00:00.000000Z',
    renewTime: '2030-01-01T00:00:05.000000Z',
    leaseTransitions: 3,
    ...overrides,
  };
}

describe('observeLease', () => {
  test('keeps the first observation time while the record does not change', () => {
    const first = observeLease(undefined, record(), 1_000);
    expect(first.observedAtMs).toBe(1_000);
    expect(observeLease(first, record(), 9_000).observedAtMs).toBe(1_000);
  });

  test('restarts the clock when the holder renews (renewTime changes) or anything else changes', () => {
    const first = observeLease(undefined, record(), 1_000);
    expect(observeLease(first, record({ renewTime: '2030-01-01T00:00:07.000000Z' }), 3_000).observedAtMs).toBe(3_000);
    expect(observeLease(first, record({ holderIdentity: '' }), 4_000).observedAtMs).toBe(4_000);
    expect(observeLease(first, record({ leaseTransitions: 4 }), 5_000).observedAtMs).toBe(5_000);
  });
});

describe('decideLease', () => {
  const decide = (current: LeaseRecord, observedAtMs: number, nowMs: number, identity = 'me') =>
    decideLease({ identity, observed: observeLease(undefined, current, observedAtMs), nowMs, wallTime: WALL, leaseDurationSeconds: 15 });

  test('a lease held by someone else is respected until leaseDurationSeconds after we last saw it change', () => {
    expect(decide(record(), 1_000, 1_000)).toEqual({ kind: 'held', holder: 'other', expiresAtMs: 16_000 });
    expect(decide(record(), 1_000, 15_999)).toMatchObject({ kind: 'held' });
    const takeover = decide(record(), 1_000, 16_000);
    expect(takeover).toEqual({
      kind: 'write',
      takeover: true,
      record: { holderIdentity: 'me', leaseDurationSeconds: 15, acquireTime: WALL, renewTime: WALL, leaseTransitions: 4 },
    });
  });

  test("expiry uses the record's own leaseDurationSeconds, not ours", () => {
    expect(decide(record({ leaseDurationSeconds: 1 }), 1_000, 2_000)).toMatchObject({ kind: 'write', takeover: true });
    expect(decide(record({ leaseDurationSeconds: 60 }), 1_000, 30_000)).toMatchObject({ kind: 'held', expiresAtMs: 61_000 });
  });

  test('renewTime is not compared with our wall clock: a holder with a skewed clock keeps its lease while it renews', () => {
    const ancient = record({ renewTime: '1999-01-01T00:00:00.000000Z' });
    expect(decide(ancient, 50_000, 50_001)).toMatchObject({ kind: 'held' });
  });

  test('a released lease (no holder) is free at once, and taking it counts a transition', () => {
    const released = releasedRecord(record(), WALL);
    expect(released).toEqual({ holderIdentity: '', leaseDurationSeconds: 1, acquireTime: WALL, renewTime: WALL, leaseTransitions: 3 });
    expect(decide(released, 1_000, 1_000)).toMatchObject({ kind: 'write', takeover: true, record: { holderIdentity: 'me', leaseTransitions: 4 } });
  });

  test('our own lease is renewed: acquireTime and leaseTransitions are kept, renewTime moves', () => {
    const ours = record({ holderIdentity: 'me' });
    expect(decide(ours, 1_000, 2_000)).toEqual({
      kind: 'write',
      takeover: false,
      record: { holderIdentity: 'me', leaseDurationSeconds: 15, acquireTime: ours.acquireTime, renewTime: WALL, leaseTransitions: 3 },
    });
  });

  test('a new lease starts with no transitions', () => {
    expect(initialRecord('me', 15, WALL)).toEqual({ holderIdentity: 'me', leaseDurationSeconds: 15, acquireTime: WALL, renewTime: WALL, leaseTransitions: 0 });
  });
});

describe('formatMicroTime', () => {
  test('writes RFC 3339 with exactly six fractional digits, as MicroTime requires', () => {
    expect(formatMicroTime(Date.UTC(2030, 0, 2, 3, 4, 5, 67))).toBe('2030-01-02T03:04:05.067000Z');
    expect(formatMicroTime(Date.UTC(2030, 0, 2, 3, 4, 5, 0))).toBe('2030-01-02T03:04:05.000000Z');
  });
});
