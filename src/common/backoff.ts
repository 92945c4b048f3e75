/**
 * Capped exponential backoff, shared by the generic controller runtime and the listener library:
 * neutral ground, so neither depends on the other.
 */
export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 100, maxMs: 10_000 };

/** The un-jittered delay for `attempt` (0-based): min(max, initial·2^attempt). */
export function exponentialDelay(attempt: number, policy: BackoffPolicy): number {
  return Math.min(policy.maxMs, policy.initialMs * 2 ** Math.min(Math.max(attempt, 0), 30));
}

/** Full jitter: a random delay in [initial/2, min(max, initial·2^attempt)]. */
export function backoffDelay(attempt: number, policy: BackoffPolicy = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const ceiling = exponentialDelay(attempt, policy);
  // Never zero: a reconnect storm against a database that just restarted helps nobody.
  return Math.max(policy.initialMs / 2, Math.floor(random() * ceiling));
}
