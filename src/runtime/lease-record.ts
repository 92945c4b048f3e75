/**
 * The pure part of leader election: what a candidate may do with the lease record it just read.
 * client-go's `tryAcquireOrRenew` decisions, apart from I/O so they can be tested with numbers.
 *
 * Expiry is judged the way client-go judges it: not by comparing the record's `renewTime` with our
 * wall clock (clocks across nodes disagree), but by when WE last saw the record change. A holder
 * that keeps renewing keeps changing `renewTime`; once it stops, the record stops changing, and
 * `leaseDurationSeconds` after we first saw that final version it is free to take.
 */

/** The fields of a `coordination.k8s.io/v1` Lease spec that leader election uses. */
export interface LeaseRecord {
  /** Empty when nobody holds it (after a graceful release). */
  holderIdentity: string;
  leaseDurationSeconds: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions: number;
}

/** A record as we saw it, and when (monotonic milliseconds) we first saw this exact version. */
export interface ObservedLease {
  record: LeaseRecord;
  observedAtMs: number;
}

export type LeaseDecision =
  /** Someone else holds a lease that has not expired by our clock. */
  | { kind: 'held'; holder: string; expiresAtMs: number }
  /** Write this record (acquire, or renew if we already hold it). */
  | { kind: 'write'; record: LeaseRecord; takeover: boolean };

/** Updates what we know: the observation time moves only when the record changed. */
export function observeLease(previous: ObservedLease | undefined, current: LeaseRecord, nowMs: number): ObservedLease {
  if (previous && sameRecord(previous.record, current)) return previous;
  return { record: current, observedAtMs: nowMs };
}

export interface DecideLeaseInput {
  identity: string;
  observed: ObservedLease;
  nowMs: number;
  /** Wall-clock time to write into `renewTime`/`acquireTime` (RFC 3339 with microseconds). */
  wallTime: string;
  leaseDurationSeconds: number;
}

export function decideLease({ identity, observed, nowMs, wallTime, leaseDurationSeconds }: DecideLeaseInput): LeaseDecision {
  const current = observed.record;
  const ours = current.holderIdentity === identity;
  const expiresAtMs = observed.observedAtMs + current.leaseDurationSeconds * 1000;
  if (current.holderIdentity !== '' && !ours && nowMs < expiresAtMs) {
    return { kind: 'held', holder: current.holderIdentity, expiresAtMs };
  }
  return {
    kind: 'write',
    takeover: !ours,
    record: {
      holderIdentity: identity,
      leaseDurationSeconds,
      // A renewal keeps the acquisition time and the transition count; a takeover starts anew.
      acquireTime: ours && current.acquireTime ? current.acquireTime : wallTime,
      renewTime: wallTime,
      leaseTransitions: ours ? current.leaseTransitions : current.leaseTransitions + 1,
    },
  };
}

/** The record a graceful release writes: nobody holds it, and it expires after 1 s for anyone still waiting on the old one. */
export function releasedRecord(current: LeaseRecord, wallTime: string): LeaseRecord {
  return { holderIdentity: '', leaseDurationSeconds: 1, acquireTime: wallTime, renewTime: wallTime, leaseTransitions: current.leaseTransitions };
}

/** The record for a Lease that does not exist yet. */
export function initialRecord(identity: string, leaseDurationSeconds: number, wallTime: string): LeaseRecord {
  return { holderIdentity: identity, leaseDurationSeconds, acquireTime: wallTime, renewTime: wallTime, leaseTransitions: 0 };
}

/** Kubernetes `MicroTime`: RFC 3339 with exactly six fractional digits. */
export function formatMicroTime(epochMs: number): string {
  const whole = Math.floor(epochMs);
  // Sub-millisecond fractions (performance.timeOrigin + performance.now()) become the microseconds.
  const micros = String(Math.min(999, Math.floor((epochMs - whole) * 1000))).padStart(3, '0');
  return new Date(whole).toISOString().replace(/\.(\d{3})Z$/, `.$1${micros}Z`);
}

function sameRecord(a: LeaseRecord, b: LeaseRecord): boolean {
  return (
    a.holderIdentity === b.holderIdentity &&
    a.leaseDurationSeconds === b.leaseDurationSeconds &&
    a.acquireTime === b.acquireTime &&
    a.renewTime === b.renewTime &&
    a.leaseTransitions === b.leaseTransitions
  );
}
