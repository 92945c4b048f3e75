/**
 * A de-duplicating keyed work queue with per-key backoff: client-go's `workqueue` semantics
 * (controller-runtime's queue), which is what makes reconciliation level-based.
 *
 * Expected flow: producers `add(key)` whenever something about `key` may have changed; workers
 * loop `key = await get()` → process → `done(key)`, and after processing either `forget(key)`
 * (success) or `addRateLimited(key)` (failure, retried after a growing, jittered delay).
 *
 * Guarantees:
 * - A key waiting in the queue is there once, however often it is added (events coalesce).
 * - A key is handed to at most one worker at a time. A key added while it is being processed is
 *   marked dirty and queued again when `done(key)` is called, so the change that arrived during
 *   processing is never lost and never processed concurrently.
 * - Keys are handed out in the order they first became ready (FIFO).
 * - `addAfter(key, ms)` keeps only the earliest pending time per key.
 * - After `shutDown()`, `get()` returns `undefined` at once (queued keys are not handed out),
 *   adds are ignored, and the returned promise resolves once every key being processed is `done`.
 *
 * Errors: none thrown; `done(key)` for a key not being processed is ignored.
 */
import { backoffDelay, type BackoffPolicy } from '../common/backoff.js';

/** Per-key retry delays. controller-runtime's default starts at 5 ms; ours caps at 5 minutes, not 16. */
export const DEFAULT_RETRY_BACKOFF: BackoffPolicy = { initialMs: 5, maxMs: 5 * 60_000 };

/** Hooks the queue calls so metrics (or tests) can observe it without the queue knowing about them. */
export interface WorkQueueObserver {
  /** A key entered the queue (not counted when it was already queued). */
  added?(): void;
  /** A key was handed to a worker after waiting `waitedMs`. */
  started?(waitedMs: number): void;
  /** A worker finished a key after `workedMs`. */
  finished?(workedMs: number): void;
  /** `addRateLimited` was called. */
  retried?(): void;
}

export interface WorkQueueOptions {
  /** Per-key retry backoff for `addRateLimited`. */
  backoff?: BackoffPolicy;
  /** Milliseconds, monotonic; for durations. Default `performance.now`. */
  now?: () => number;
  /** For the backoff jitter. Default `Math.random`. */
  random?: () => number;
  observer?: WorkQueueObserver;
}

export class WorkQueue<K extends string = string> {
  /** Keys ready to be handed out, in order; each also in `dirty`. */
  private readonly queue: K[] = [];
  /** Keys that need processing: queued, or re-added while being processed. */
  private readonly dirty = new Set<K>();
  /** Keys handed to a worker and not yet `done`, with when that happened. */
  private readonly processing = new Map<K, number>();
  /** When each dirty key was first added (for the queue-duration metric). */
  private readonly addedAt = new Map<K, number>();
  private readonly waiting = new Map<K, { readyAt: number; timer: NodeJS.Timeout }>();
  private readonly failures = new Map<K, number>();
  private readonly getters: Array<(key: K | undefined) => void> = [];
  private readonly drainWaiters: Array<() => void> = [];
  private shuttingDown = false;
  private readonly backoff: BackoffPolicy;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly observer: WorkQueueObserver;

  constructor(options: WorkQueueOptions = {}) {
    this.backoff = options.backoff ?? DEFAULT_RETRY_BACKOFF;
    this.now = options.now ?? (() => performance.now());
    this.random = options.random ?? Math.random;
    this.observer = options.observer ?? {};
  }

  /** Marks `key` as needing processing. */
  add(key: K): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.dirty.add(key);
    this.addedAt.set(key, this.now());
    this.observer.added?.();
    // Re-queued by done(); queuing it now would hand it to a second worker.
    if (this.processing.has(key)) return;
    this.queue.push(key);
    this.handOut();
  }

  /** Adds `key` after `delayMs`; an earlier pending `addAfter` for the same key wins. */
  addAfter(key: K, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const readyAt = this.now() + delayMs;
    const pending = this.waiting.get(key);
    if (pending && pending.readyAt <= readyAt) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.waiting.delete(key);
      this.add(key);
    }, delayMs);
    this.waiting.set(key, { readyAt, timer });
  }

  /** Adds `key` after its backoff delay, which grows with each call until {@link forget}. */
  addRateLimited(key: K): void {
    if (this.shuttingDown) return;
    const failures = this.failures.get(key) ?? 0;
    this.failures.set(key, failures + 1);
    this.observer.retried?.();
    this.addAfter(key, backoffDelay(failures, this.backoff, this.random));
  }

  /** Resets `key`'s backoff (call after it was processed successfully). */
  forget(key: K): void {
    this.failures.delete(key);
  }

  /** How many times `key` was rate-limited since it was last forgotten. */
  numRequeues(key: K): number {
    return this.failures.get(key) ?? 0;
  }

  /**
   * The next key to process, waiting for one if needed; `undefined` once the queue is shut down.
   * The caller must call {@link done} with the key when it has finished with it.
   */
  get(): Promise<K | undefined> {
    if (this.shuttingDown) return Promise.resolve(undefined);
    const key = this.queue.shift();
    if (key !== undefined) return Promise.resolve(this.start(key));
    return new Promise((resolve) => this.getters.push(resolve));
  }

  /** Marks `key` as processed; if it was added meanwhile, queues it again. */
  done(key: K): void {
    const startedAt = this.processing.get(key);
    if (startedAt === undefined) return;
    this.processing.delete(key);
    this.observer.finished?.(this.now() - startedAt);
    if (this.dirty.has(key) && !this.shuttingDown) {
      this.queue.push(key);
      this.handOut();
    }
    if (this.processing.size === 0 && this.shuttingDown) this.resolveDrain();
  }

  /**
   * Stops handing out keys and ignores adds; resolves `true` once every key being processed is
   * done, or `false` if that has not happened within `drainTimeoutMs`.
   */
  async shutDown(drainTimeoutMs = Number.POSITIVE_INFINITY): Promise<boolean> {
    if (!this.shuttingDown) {
      this.shuttingDown = true;
      for (const { timer } of this.waiting.values()) clearTimeout(timer);
      this.waiting.clear();
      for (const resolve of this.getters.splice(0)) resolve(undefined);
    }
    if (this.processing.size === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const drained = new Promise<boolean>((resolve) => this.drainWaiters.push(() => resolve(true)));
    if (!Number.isFinite(drainTimeoutMs)) return drained;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), drainTimeoutMs);
    });
    return Promise.race([drained, timedOut]).finally(() => clearTimeout(timer));
  }

  get isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  /** Keys ready to be handed out (the `workqueue_depth` metric). */
  get length(): number {
    return this.queue.length;
  }

  /** Keys being processed right now. */
  get processingCount(): number {
    return this.processing.size;
  }

  /** Keys waiting for an `addAfter`/`addRateLimited` delay. */
  get delayedCount(): number {
    return this.waiting.size;
  }

  /** Whether `key` is queued, being processed, or waiting for a delay. */
  has(key: K): boolean {
    return this.dirty.has(key) || this.processing.has(key) || this.waiting.has(key);
  }

  /** Seconds of work done so far by every key still being processed (`workqueue_unfinished_work_seconds`). */
  unfinishedWorkSeconds(): number {
    const now = this.now();
    let total = 0;
    for (const startedAt of this.processing.values()) total += now - startedAt;
    return total / 1000;
  }

  /** Seconds the longest-running key has been processing (`workqueue_longest_running_processor_seconds`). */
  longestRunningProcessorSeconds(): number {
    const now = this.now();
    let longest = 0;
    for (const startedAt of this.processing.values()) longest = Math.max(longest, now - startedAt);
    return longest / 1000;
  }

  private handOut(): void {
    while (this.getters.length > 0 && this.queue.length > 0) {
      const resolve = this.getters.shift()!;
      resolve(this.start(this.queue.shift()!));
    }
  }

  private start(key: K): K {
    const now = this.now();
    this.dirty.delete(key);
    this.processing.set(key, now);
    this.observer.started?.(now - (this.addedAt.get(key) ?? now));
    this.addedAt.delete(key);
    return key;
  }

  private resolveDrain(): void {
    for (const resolve of this.drainWaiters.splice(0)) resolve();
  }
}
