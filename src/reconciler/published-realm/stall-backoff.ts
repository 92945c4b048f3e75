/**
 * How long a Stalled PublishedRealm waits before its causes are checked again: a stalled cause may
 * be fixed outside the spec (the source realm appears, the other object goes away), so it is
 * re-checked, but with growing delays — 30 s doubling to 10 minutes by default — and from the
 * start again once the object's spec changes (a new generation) or it stops being Stalled.
 * Pure: keyed state over the object's identity, no clock.
 */
import { exponentialDelay, type BackoffPolicy } from '../../common/backoff.js';

export const DEFAULT_STALL_BACKOFF: BackoffPolicy = { initialMs: 30_000, maxMs: 10 * 60_000 };

export class StallBackoff {
  private readonly attempts = new Map<string, { fingerprint: string; attempt: number }>();

  constructor(private readonly policy: BackoffPolicy = DEFAULT_STALL_BACKOFF) {}

  /**
   * The delay before re-checking `key`, stalled again with `fingerprint` (its uid and generation):
   * the initial delay the first time, doubling while the fingerprint stays the same.
   */
  next(key: string, fingerprint: string): number {
    const previous = this.attempts.get(key);
    const attempt = previous && previous.fingerprint === fingerprint ? previous.attempt + 1 : 0;
    this.attempts.set(key, { fingerprint, attempt });
    return exponentialDelay(attempt, this.policy);
  }

  /** The object is no longer Stalled (or is gone): the next stall starts from the initial delay. */
  reset(key: string): void {
    this.attempts.delete(key);
  }

  get size(): number {
    return this.attempts.size;
  }
}
