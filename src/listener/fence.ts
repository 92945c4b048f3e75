/**
 * When a replica stops trusting its cache (fences itself) if its lease cannot be renewed.
 *
 * The database expires a lease at its own `now()` + lease, `now()` taken inside the renewal, so
 * no earlier than the moment the replica sent it. Fencing at (renewal sent) + lease would leave
 * only the one-way latency between the two — and nothing at all once the database's clock steps
 * forward, a failover lands on a host whose clock is ahead, the replica's clock runs slow, or the
 * replica is paused between checking `cacheTrusted` and answering. So the replica fences at
 * (renewal sent) + lease − margin. The operator adds its own grace past `lease_expires_at`
 * (src/dataplane/ack-status.ts); together they are the tolerance for those anomalies.
 * docs/protocol.md explains the defaults.
 */

/** The smallest default margin: a scheduling hiccup or a short stop-the-world pause. */
export const MIN_DEFAULT_FENCE_MARGIN_MS = 500;
/** The default margin's share of the lease: clock rate error and pauses grow with the interval. */
export const DEFAULT_FENCE_MARGIN_FRACTION = 0.1;

/** max(500 ms, 10 % of the lease). */
export function defaultFenceMarginMs(leaseDurationMs: number): number {
  return Math.max(MIN_DEFAULT_FENCE_MARGIN_MS, Math.ceil(leaseDurationMs * DEFAULT_FENCE_MARGIN_FRACTION));
}

export interface LeaseTiming {
  leaseDurationMs: number;
  heartbeatIntervalMs: number;
  fenceMarginMs: number;
}

/** How the caller names the three settings in messages (the CLI uses its flags). */
export type LeaseTimingNames = Record<keyof LeaseTiming, string>;

const OPTION_NAMES: LeaseTimingNames = { leaseDurationMs: 'leaseDurationMs', heartbeatIntervalMs: 'heartbeatIntervalMs', fenceMarginMs: 'fenceMarginMs' };

/**
 * What is wrong with a lease timing, as messages naming the setting and the fix; empty when it is
 * usable. The margin must leave the replica some trusted time, and renewals must come more often
 * than that, or the replica would fence itself between two successful renewals.
 */
export function leaseTimingProblems(timing: LeaseTiming, names: LeaseTimingNames = OPTION_NAMES): string[] {
  const { leaseDurationMs: lease, heartbeatIntervalMs: heartbeat, fenceMarginMs: margin } = timing;
  const problems: string[] = [];
  if (!Number.isFinite(lease) || lease <= 0) problems.push(`${names.leaseDurationMs} must be a positive number of milliseconds (got ${lease})`);
  if (!Number.isFinite(heartbeat) || heartbeat <= 0) problems.push(`${names.heartbeatIntervalMs} must be a positive number of milliseconds (got ${heartbeat})`);
  if (!Number.isFinite(margin) || margin < 0) problems.push(`${names.fenceMarginMs} must be zero or a positive number of milliseconds (got ${margin})`);
  if (problems.length > 0) return problems;
  if (margin >= lease) {
    problems.push(
      `${names.fenceMarginMs} (${margin} ms) must be shorter than ${names.leaseDurationMs} (${lease} ms), or the replica never trusts its cache; ` +
        `lower the margin (default for this lease: ${defaultFenceMarginMs(lease)} ms) or lengthen the lease`,
    );
  } else if (heartbeat >= lease - margin) {
    problems.push(
      `${names.heartbeatIntervalMs} (${heartbeat} ms) must be shorter than ${names.leaseDurationMs} − ${names.fenceMarginMs} (${lease} − ${margin} = ${lease - margin} ms), ` +
        'or the replica fences itself between two renewals; renew more often, lengthen the lease or lower the margin',
    );
  }
  return problems;
}

/** The local instant (same clock as `sentAt`) until which the cache may be trusted after a renewal sent at `sentAt`. */
export function fenceDeadline(sentAt: number, leaseDurationMs: number, fenceMarginMs: number): number {
  return sentAt + leaseDurationMs - fenceMarginMs;
}
