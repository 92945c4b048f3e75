/**
 * A controller: informer events → keyed work queue → `Reconciler.reconcile(key)`, with
 * controller-runtime's semantics and metrics.
 *
 * Expected flow: `start(signal)` registers with its sources, waits for them to sync, then runs
 * `concurrency` workers. Every add/update/delete event that the source's predicates accept (all
 * events, without predicates) enqueues the affected key (the object's own for the primary source;
 * whatever `map` returns for secondary ones), and every `resyncPeriodMs`
 * every key in the primary cache is enqueued again. A worker takes a key and calls `reconcile`:
 * - resolves with nothing (or `{}`)          → `forget` (reset backoff); result `success`
 * - resolves with `{ requeueAfterMs: n > 0 }` → `forget`, `addAfter(n)`; result `requeue_after`
 * - resolves with `{ requeue: true }`         → `addRateLimited`; result `requeue`
 * - throws {@link TerminalError}              → logged, `forget`, not retried; result `error`
 * - throws anything else                      → logged, `addRateLimited`; result `error`
 *
 * Guarantees: level-based — a reconcile gets only the key and must re-read state; events that
 * arrive while a key is being reconciled coalesce into one more reconcile after it. One key is
 * never reconciled by two workers at once. On abort, no new reconcile starts; `start` resolves
 * once in-flight reconciles finished, or after `drainTimeoutMs`, when their signal is aborted and
 * they get `abortGraceMs` more before `start` returns without them (they are still awaited
 * internally and their outcome logged). If the signal's reason is a {@link LeadershipLostError},
 * another replica may already lead, so in-flight reconciles are aborted at once instead.
 *
 * Errors: `start` rejects only if the sources do not sync within `cacheSyncTimeoutMs`
 * (controller-runtime's CacheSyncTimeout; the manager then exits and Kubernetes restarts us).
 */
import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import type { BackoffPolicy } from '../common/backoff.js';
import type { InformerEventHandler, ObjectSource } from './informer.js';
import { LeadershipLostError } from './leader-election.js';
import { RECONCILE_RESULTS, runtimeMetrics, workQueueMetrics, type ReconcileResultLabel, type RuntimeMetrics } from './metrics.js';
import { formatKey, keyOfObject, parseKey, type KubeObject, type ObjectKey } from './object-key.js';
import { accepts, type Predicate } from './predicates.js';
import { WorkQueue } from './work-queue.js';

export type { ObjectKey } from './object-key.js';

/**
 * What a reconcile asks for next. `requeueAfterMs`: reconcile again after that long even if nothing
 * changes (polling external state). `requeue`: again soon, with the per-key backoff (not an error).
 */
export type ReconcileResult = { requeueAfterMs?: number; requeue?: boolean } | void;

export interface Reconciler {
  /**
   * Brings the world in line with the object `key` names (which may no longer exist). Must be
   * idempotent. `signal` aborts when the controller gives up waiting for it at shutdown, or after
   * `reconcileTimeoutMs` if set.
   */
  reconcile(key: ObjectKey, signal: AbortSignal): Promise<ReconcileResult>;
}

/** A failure retrying cannot fix (invalid spec, ...): logged and counted, not retried. */
export class TerminalError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TerminalError';
  }
}

/** A secondary source: events on its objects enqueue the keys `map` returns (e.g. the owner's). */
export interface WatchedSource<S extends KubeObject = KubeObject> {
  source: ObjectSource<S>;
  map(object: S): ObjectKey[];
  /** Events on this source enqueue only when every predicate accepts them. */
  predicates?: Array<Predicate<S>>;
}

export interface ControllerOptions<T extends KubeObject = KubeObject> {
  /** The `controller` label on metrics, and the queue's `name`. */
  name: string;
  reconciler: Reconciler;
  /** The primary source: its objects' keys are reconciled, and resynced. */
  source: ObjectSource<T>;
  watches?: WatchedSource[];
  /**
   * Events on the primary source enqueue only when every predicate accepts them, e.g.
   * `[specOrLifecycleChanged()]` so the controller's own status writes do not re-enqueue the key.
   * Resyncs are not filtered. Default: every event enqueues.
   */
  predicates?: Array<Predicate<T>>;
  /** Workers. Default 1. */
  concurrency?: number;
  /** Re-enqueue every cached key this often (jittered by up to 10%); 0 disables. Default 10 hours, as controller-runtime. */
  resyncPeriodMs?: number;
  /** How long `start` waits for in-flight reconciles after abort before aborting their signal. Default 30 s. */
  drainTimeoutMs?: number;
  /** After the drain timeout, how long aborted reconciles get to return before `start` resolves. Default 5 s. */
  abortGraceMs?: number;
  /** Abort each reconcile's signal after this long. Default none. */
  reconcileTimeoutMs?: number;
  /** Default 2 minutes. */
  cacheSyncTimeoutMs?: number;
  /** Per-key retry backoff. */
  backoff?: BackoffPolicy;
  logger?: Logger;
  metricsRegistry?: Registry;
  /** Monotonic milliseconds, for durations. Default `performance.now`. */
  now?: () => number;
  random?: () => number;
}

const DEFAULT_RESYNC_MS = 10 * 60 * 60_000;

export class Controller<T extends KubeObject = KubeObject> {
  readonly name: string;
  /** Controllers act on the world: only the leader runs them. */
  readonly needLeaderElection = true;
  readonly queue: WorkQueue<string>;
  private readonly options: ControllerOptions<T>;
  private readonly concurrency: number;
  private readonly logger: Logger;
  private readonly metrics: RuntimeMetrics;
  private readonly detachQueueMetrics: () => void;
  private readonly now: () => number;
  private running = false;

  constructor(options: ControllerOptions<T>) {
    this.options = options;
    this.name = options.name;
    this.concurrency = Math.max(1, Math.floor(options.concurrency ?? 1));
    this.now = options.now ?? (() => performance.now());
    this.logger = (options.logger ?? pino({ name: 'controller' })).child({ controller: options.name });
    this.metrics = runtimeMetrics(options.metricsRegistry ?? new Registry());
    const queueMetrics = workQueueMetrics(this.metrics, options.name);
    this.queue = new WorkQueue<string>({
      observer: queueMetrics.observer,
      now: this.now,
      ...(options.backoff ? { backoff: options.backoff } : {}),
      ...(options.random ? { random: options.random } : {}),
    });
    this.detachQueueMetrics = queueMetrics.attach(this.queue);
    const labels = { controller: this.name };
    // Zero every series up front, as controller-runtime does, so rates and alerts work from the start.
    for (const result of RECONCILE_RESULTS) this.metrics.reconcileTotal.inc({ ...labels, result }, 0);
    this.metrics.reconcileErrors.inc(labels, 0);
    this.metrics.terminalReconcileErrors.inc(labels, 0);
    this.metrics.activeWorkers.set(labels, 0);
    this.metrics.maxConcurrentReconciles.set(labels, this.concurrency);
  }

  /** Sources this controller reads, for readiness checks. */
  sources(): ObjectSource[] {
    return [this.options.source as unknown as ObjectSource, ...(this.options.watches ?? []).map((w) => w.source)];
  }

  /** Runs until `signal` aborts and in-flight reconciles have drained; see the module comment. */
  async start(signal: AbortSignal): Promise<void> {
    if (this.running) throw new Error(`controller ${this.name} is already running`);
    if (this.queue.isShuttingDown) throw new Error(`controller ${this.name} was stopped; create a new one`);
    this.running = true;
    const unsubscribe: Array<() => void> = [];
    let resyncTimer: NodeJS.Timeout | undefined;
    const stopWork = new AbortController();
    const workers: Array<Promise<void>> = [];
    try {
      unsubscribe.push(this.options.source.addEventHandler(this.enqueueOwn()));
      for (const watched of this.options.watches ?? []) unsubscribe.push(watched.source.addEventHandler(this.enqueueMapped(watched)));
      await this.waitForSources(signal);
      if (signal.aborted) return;
      this.logger.info({ concurrency: this.concurrency }, 'caches synced; starting workers');
      const scheduleResync = () => {
        const period = this.options.resyncPeriodMs ?? DEFAULT_RESYNC_MS;
        if (period <= 0) return;
        resyncTimer = setTimeout(() => {
          for (const key of this.options.source.keys()) this.queue.add(key);
          scheduleResync();
        }, period * (1 + 0.1 * (this.options.random ?? Math.random)()));
      };
      scheduleResync();
      for (let i = 0; i < this.concurrency; i++) workers.push(this.worker(stopWork.signal));
      await abortedPromise(signal);
    } finally {
      clearTimeout(resyncTimer);
      for (const off of unsubscribe) off();
      await this.drain(workers, stopWork, signal.reason instanceof LeadershipLostError);
      this.running = false;
    }
  }

  private async drain(workers: Array<Promise<void>>, stopWork: AbortController, leadershipLost: boolean): Promise<void> {
    // After losing the lease another replica may already be leading: stop now rather than drain.
    const drainTimeoutMs = leadershipLost ? 0 : (this.options.drainTimeoutMs ?? 30_000);
    const inFlight = this.queue.processingCount;
    if (inFlight > 0) this.logger.info({ inFlight, drainTimeoutMs }, 'stopping; waiting for in-flight reconciles');
    const drained = await this.queue.shutDown(drainTimeoutMs);
    if (!drained) {
      this.logger.warn({ inFlight: this.queue.processingCount }, 'drain timeout; aborting in-flight reconciles');
      stopWork.abort(new Error(`controller ${this.name} is stopping`));
      const settled = await withTimeout(Promise.allSettled(workers), this.options.abortGraceMs ?? 5_000);
      if (!settled) this.logger.error({ inFlight: this.queue.processingCount }, 'reconciles ignored their abort signal; returning without them');
    } else {
      await Promise.allSettled(workers);
    }
    this.metrics.activeWorkers.set({ controller: this.name }, 0);
    this.detachQueueMetrics();
  }

  private async waitForSources(signal: AbortSignal): Promise<void> {
    const timeoutMs = this.options.cacheSyncTimeoutMs ?? 120_000;
    const timeout = AbortSignal.timeout(timeoutMs);
    const waitSignal = AbortSignal.any([signal, timeout]);
    try {
      await Promise.all(this.sources().map((source) => source.waitForSync(waitSignal)));
    } catch (error) {
      if (signal.aborted) return;
      if (timeout.aborted) {
        const unsynced = this.sources().filter((s) => !s.hasSynced()).map((s) => s.name);
        throw new Error(`controller ${this.name}: caches did not sync within ${timeoutMs} ms (${unsynced.join(', ')})`, { cause: error });
      }
      throw error;
    }
  }

  private enqueueOwn(): InformerEventHandler<T> {
    const predicates = this.options.predicates ?? [];
    const add = (object: T) => this.enqueue(object, () => [keyOfObject(object)]);
    return {
      onAdd: (object) => accepts(predicates, { type: 'create', object }) && add(object),
      onUpdate: (oldObject, object) => accepts(predicates, { type: 'update', oldObject, object }) && add(object),
      onDelete: (object) => accepts(predicates, { type: 'delete', object }) && add(object),
    };
  }

  private enqueueMapped(watched: WatchedSource): InformerEventHandler<KubeObject> {
    const predicates = watched.predicates ?? [];
    const add = (object: KubeObject) => this.enqueue(object, () => watched.map(object).map(formatKey));
    // Both states for updates: an object that moved to another owner must reach the old one too.
    const update = (old: KubeObject, object: KubeObject) => {
      if (!accepts(predicates, { type: 'update', oldObject: old, object })) return;
      add(old);
      add(object);
    };
    return {
      onAdd: (object) => accepts(predicates, { type: 'create', object }) && add(object),
      onUpdate: update,
      onDelete: (object) => accepts(predicates, { type: 'delete', object }) && add(object),
    };
  }

  private enqueue(object: KubeObject, keys: () => string[]): boolean {
    try {
      for (const key of keys()) this.queue.add(key);
      return true;
    } catch (error) {
      this.logger.error({ err: error, object: object.metadata?.name }, 'could not work out which keys to enqueue');
      return false;
    }
  }

  private async worker(stopWork: AbortSignal): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      try {
        await this.reconcileOne(key, stopWork);
      } finally {
        this.queue.done(key);
      }
    }
  }

  private async reconcileOne(key: string, stopWork: AbortSignal): Promise<void> {
    const labels = { controller: this.name };
    const started = this.now();
    this.metrics.activeWorkers.inc(labels);
    const timeoutMs = this.options.reconcileTimeoutMs;
    const signal = timeoutMs ? AbortSignal.any([stopWork, AbortSignal.timeout(timeoutMs)]) : stopWork;
    let result: ReconcileResultLabel;
    try {
      const outcome = await this.options.reconciler.reconcile(parseKey(key), signal);
      result = this.afterSuccess(key, outcome);
    } catch (error) {
      result = 'error';
      this.metrics.reconcileErrors.inc(labels);
      if (error instanceof TerminalError) {
        this.metrics.terminalReconcileErrors.inc(labels);
        this.queue.forget(key);
        this.logger.error({ err: error, key }, 'reconcile failed terminally; not retrying until the object changes');
      } else {
        this.queue.addRateLimited(key);
        this.logger.warn({ err: error, key, retries: this.queue.numRequeues(key) }, 'reconcile failed; retrying with backoff');
      }
    } finally {
      this.metrics.activeWorkers.dec(labels);
      this.metrics.reconcileTime.observe(labels, (this.now() - started) / 1000);
    }
    this.metrics.reconcileTotal.inc({ ...labels, result });
  }

  private afterSuccess(key: string, outcome: ReconcileResult): ReconcileResultLabel {
    if (outcome?.requeueAfterMs !== undefined && outcome.requeueAfterMs > 0) {
      this.queue.forget(key);
      this.queue.addAfter(key, outcome.requeueAfterMs);
      return 'requeue_after';
    }
    if (outcome?.requeue) {
      this.queue.addRateLimited(key);
      return 'requeue';
    }
    this.queue.forget(key);
    return 'success';
  }
}

function abortedPromise(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}

async function withTimeout(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true as const), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}
