/** Capped exponential backoff with full jitter: a random delay in [0, min(max, initial·2^attempt)]. */
export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 100, maxMs: 10_000 };

export function backoffDelay(attempt: number, policy: BackoffPolicy = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.min(Math.max(attempt, 0), 30));
  // Never zero: a reconnect storm against a database that just restarted helps nobody.
  return Math.max(policy.initialMs / 2, Math.floor(random() * ceiling));
}
