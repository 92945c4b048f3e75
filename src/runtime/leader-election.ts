/**
 * Leader election on a `coordination.k8s.io/v1` Lease, with client-go's semantics.
 *
 * Expected flow: `run(signal, callbacks)` tries to acquire the lease every `retryPeriodMs`
 * (jittered) until it can: the lease does not exist, nobody holds it, we hold it, or the holder's
 * record has not changed for `leaseDurationSeconds` by our own clock (see lease-record.ts). Once
 * leading it calls `onStartedLeading(leaderSignal)` and renews every `retryPeriodMs`. Every write
 * carries the resourceVersion it read, so two candidates cannot both win (a 409 is a lost race,
 * retried next period).
 *
 * Guarantees:
 * - Leadership is lost when no renewal succeeded for `renewDeadlineMs`; `leaderSignal` aborts
 *   and `onStoppedLeading` is called at once, without waiting for the leader's work. Because the
 *   renew deadline is shorter than the lease duration, we stop before anyone may take over.
 *   `isLeader()` turns false by itself at the deadline, even if the renew loop is stuck.
 * - On abort of `signal` (graceful shutdown), `leaderSignal` aborts but the lease is still renewed
 *   until `onStartedLeading`'s promise settles (so no successor starts while we drain); then the
 *   lease is released (holder cleared, duration 1 s) so a successor takes over on its next try.
 * - `leaseTransitions` increases by one on every change of holder.
 *
 * - A leader renews with one request: a PUT of the Lease as its last write returned it (that
 *   resourceVersion makes it a compare-and-swap), client-go's optimistic fast path. Any failure
 *   (a 409 when someone else wrote the Lease meanwhile) falls back to reading it and deciding anew.
 *
 * Errors: `run` rejects only for invalid options. API errors are retried (and logged); a rejected
 * `onStartedLeading` is logged and does not end leadership.
 */
import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import { KubeApiError, kubeRequest, statusCodeOf, type KubeConnection } from './kube-client.js';
import {
  decideLease,
  formatMicroTime,
  initialRecord,
  observeLease,
  releasedRecord,
  type LeaseRecord,
  type ObservedLease,
} from './lease-record.js';
import { runtimeMetrics, type RuntimeMetrics } from './metrics.js';
import { sleep } from './sleep.js';

export interface LeaderElectorOptions {
  /** A client-node `KubeConfig`, or `loadKubeconfig(file)` / `inClusterConnection()`. */
  kubeConfig: KubeConnection;
  /** The Lease's namespace and name. */
  namespace: string;
  name: string;
  /** Unique per process (e.g. pod name + random suffix): two processes with one identity would both lead. */
  identity: string;
  /** How long others wait after the last change they saw before taking over. Default 15 s (whole seconds on the wire). */
  leaseDurationMs?: number;
  /** The leader gives up if it could not renew for this long. Default 10 s. */
  renewDeadlineMs?: number;
  /** Between attempts to acquire or renew. Default 2 s. */
  retryPeriodMs?: number;
  /** Release the lease when `signal` aborts. Default true. */
  releaseOnCancel?: boolean;
  logger?: Logger;
  metricsRegistry?: Registry;
  /** Monotonic milliseconds, for expiry and deadlines. Default `performance.now`. */
  now?: () => number;
  /** Epoch milliseconds, written into the lease. Default `Date.now`. */
  wallClock?: () => number;
  random?: () => number;
}

export interface LeaderCallbacks {
  /** Runs the leader's work; `leaderSignal` aborts on shutdown or when leadership is lost. */
  onStartedLeading(leaderSignal: AbortSignal): Promise<void>;
  /** Called once when leading ends, for whatever reason (also after a graceful release). */
  onStoppedLeading(): void;
  /** Called when we see a new holder (including ourselves). */
  onNewLeader?(identity: string): void;
}

/** How `run` ended: never led, lost the lease, or stepped down on shutdown. */
export type LeaderElectionOutcome = 'stopped' | 'lost' | 'released';

/** The reason `leaderSignal` carries when the lease could not be renewed in time. */
export class LeadershipLostError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LeadershipLostError';
  }
}

interface LeaseObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; [field: string]: unknown };
  spec?: Partial<LeaseRecord> & { holderIdentity?: string | null };
}

/** client-go's wait.JitterUntil factor for acquire retries: wait in [period, 2.2 · period). */
const JITTER_FACTOR = 1.2;

export class LeaderElector {
  readonly identity: string;
  private readonly options: LeaderElectorOptions;
  private readonly leaseDurationMs: number;
  private readonly leaseDurationSeconds: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly logger: Logger;
  private readonly metrics: RuntimeMetrics;
  private readonly now: () => number;
  private readonly wallClock: () => number;
  private readonly random: () => number;
  private observed: ObservedLease | undefined;
  /** The Lease as our last successful create or update returned it; cleared whenever we read it instead. */
  private lastWritten: LeaseObject | undefined;
  private leading = false;
  private lastRenewAt = 0;
  private running = false;

  constructor(options: LeaderElectorOptions) {
    this.options = options;
    this.identity = options.identity;
    this.leaseDurationMs = options.leaseDurationMs ?? 15_000;
    this.leaseDurationSeconds = Math.max(1, Math.ceil(this.leaseDurationMs / 1000));
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = options.retryPeriodMs ?? 2_000;
    if (!options.identity) throw new Error('leader election needs a non-empty identity');
    if (this.leaseDurationMs <= this.renewDeadlineMs) throw new Error('leaseDurationMs must be greater than renewDeadlineMs');
    if (this.renewDeadlineMs <= JITTER_FACTOR * this.retryPeriodMs) throw new Error('renewDeadlineMs must be greater than 1.2 × retryPeriodMs');
    this.logger = (options.logger ?? pino({ name: 'leader-election' })).child({ lease: `${options.namespace}/${options.name}`, identity: options.identity });
    this.metrics = runtimeMetrics(options.metricsRegistry ?? new Registry());
    this.now = options.now ?? (() => performance.now());
    this.wallClock = options.wallClock ?? Date.now;
    this.random = options.random ?? Math.random;
    this.metrics.leaderStatus.set({ name: options.name }, 0);
  }

  /** Whether we hold the lease and renewed it within the renew deadline. */
  isLeader(): boolean {
    return this.leading && this.now() - this.lastRenewAt < this.renewDeadlineMs;
  }

  /** The holder we last saw ('' if free, undefined before the first read). */
  observedLeader(): string | undefined {
    return this.observed?.record.holderIdentity;
  }

  /** Campaigns, leads, and steps down; see the module comment. */
  async run(signal: AbortSignal, callbacks: LeaderCallbacks): Promise<LeaderElectionOutcome> {
    if (this.running) throw new Error('this leader elector is already running');
    this.running = true;
    try {
      if (!(await this.acquire(signal, callbacks))) return 'stopped';
      return await this.lead(signal, callbacks);
    } finally {
      this.setLeading(false);
      this.running = false;
    }
  }

  private async acquire(signal: AbortSignal, callbacks: LeaderCallbacks): Promise<boolean> {
    this.logger.info('attempting to acquire the leader lease');
    while (!signal.aborted) {
      const requestSignal = AbortSignal.any([signal, AbortSignal.timeout(this.renewDeadlineMs)]);
      if (await this.tryAcquireOrRenew(requestSignal, callbacks)) {
        this.lastRenewAt = this.now();
        this.setLeading(true);
        this.logger.info('acquired the leader lease');
        return true;
      }
      await sleep(this.retryPeriodMs * (1 + JITTER_FACTOR * this.random()), signal);
    }
    return false;
  }

  private async lead(signal: AbortSignal, callbacks: LeaderCallbacks): Promise<LeaderElectionOutcome> {
    const leaderAbort = new AbortController();
    // Wakes the renew loop early once the work has drained after shutdown, so release is prompt.
    const wake = new AbortController();
    let workDone = false;
    const onAbort = () => {
      leaderAbort.abort(signal.reason);
      if (workDone) wake.abort();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) onAbort();
    const work = Promise.resolve()
      .then(() => callbacks.onStartedLeading(leaderAbort.signal))
      .catch((error: unknown) => this.logger.error({ err: error }, 'onStartedLeading failed'))
      .finally(() => {
        workDone = true;
        if (signal.aborted) wake.abort();
      });
    try {
      for (;;) {
        if (signal.aborted && workDone) break;
        await sleep(this.retryPeriodMs, wake.signal);
        if (signal.aborted && workDone) break;
        const remaining = this.lastRenewAt + this.renewDeadlineMs - this.now();
        const renewed = remaining > 0 && (await this.tryAcquireOrRenew(AbortSignal.timeout(Math.ceil(remaining)), callbacks));
        if (renewed) {
          this.lastRenewAt = this.now();
          continue;
        }
        if (this.now() - this.lastRenewAt >= this.renewDeadlineMs) {
          const lost = new LeadershipLostError(`could not renew lease ${this.options.namespace}/${this.options.name} within ${this.renewDeadlineMs} ms`);
          this.logger.error({ err: lost }, 'leader election lost');
          this.setLeading(false);
          leaderAbort.abort(lost);
          this.callStopped(callbacks);
          await work;
          return 'lost';
        }
      }
      const released = (this.options.releaseOnCancel ?? true) ? await this.release() : false;
      this.setLeading(false);
      this.callStopped(callbacks);
      return released ? 'released' : 'stopped';
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  /**
   * One acquire-or-renew round: the leader's optimistic renewal, else read-decide-write.
   * Resolves whether we hold the lease afterwards; never rejects.
   */
  private async tryAcquireOrRenew(signal: AbortSignal, callbacks: LeaderCallbacks): Promise<boolean> {
    const wallTime = formatMicroTime(this.wallClock());
    if (this.isLeader() && this.lastWritten && this.observed) {
      // client-go's fast path: the Lease is most likely as we last wrote it, so skip the read. Our
      // last write's resourceVersion makes the PUT a compare-and-swap: if anyone else wrote since,
      // it fails (409) and the read below decides with what they wrote, as a round without this would.
      const decision = decideLease({ identity: this.identity, observed: this.observed, nowMs: this.now(), wallTime, leaseDurationSeconds: this.leaseDurationSeconds });
      if (decision.kind === 'write' && !decision.takeover) {
        try {
          await this.writeLease({ ...this.lastWritten, spec: { ...this.lastWritten.spec, ...decision.record } }, signal);
          this.remember(decision.record, callbacks);
          return true;
        } catch (error) {
          this.lastWritten = undefined;
          if (signal.aborted) return false;
          this.logger.debug({ err: error }, 'optimistic lease renewal failed; reading the lease');
        }
      }
    }
    try {
      this.lastWritten = undefined;
      const lease = await this.readLease(signal);
      if (!lease) {
        const record = initialRecord(this.identity, this.leaseDurationSeconds, wallTime);
        this.lastWritten = await kubeRequest<LeaseObject>(this.options.kubeConfig, {
          method: 'POST',
          path: this.collectionPath(),
          body: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: this.options.name, namespace: this.options.namespace }, spec: record },
          signal,
        });
        this.remember(record, callbacks);
        return true;
      }
      const now = this.now();
      const current = recordOf(lease);
      this.remember(current, callbacks, now);
      const decision = decideLease({ identity: this.identity, observed: this.observed!, nowMs: now, wallTime, leaseDurationSeconds: this.leaseDurationSeconds });
      if (decision.kind === 'held') return false;
      // The resourceVersion we read makes this a compare-and-swap: a 409 means someone else wrote first.
      await this.writeLease({ ...lease, spec: { ...lease.spec, ...decision.record } }, signal);
      if (decision.takeover) this.logger.info({ previous: current.holderIdentity || undefined, transitions: decision.record.leaseTransitions }, 'took over the lease');
      this.remember(decision.record, callbacks);
      return true;
    } catch (error) {
      const code = statusCodeOf(error);
      if (code === 409) this.logger.debug('lost a race for the lease (409); retrying');
      else this.logger.warn({ err: error }, 'could not acquire or renew the lease');
      return false;
    }
  }

  /** Gives the lease up if we still hold it; resolves whether it did. */
  private async release(): Promise<boolean> {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const signal = AbortSignal.timeout(this.renewDeadlineMs);
        const lease = await this.readLease(signal);
        if (!lease || recordOf(lease).holderIdentity !== this.identity) return false;
        const record = releasedRecord(recordOf(lease), formatMicroTime(this.wallClock()));
        await kubeRequest(this.options.kubeConfig, { method: 'PUT', path: this.leasePath(), body: { ...lease, spec: { ...lease.spec, ...record } }, signal });
        this.logger.info('released the leader lease');
        return true;
      } catch (error) {
        if (statusCodeOf(error) === 409) continue;
        this.logger.warn({ err: error }, 'could not release the lease; successors wait for it to expire');
        return false;
      }
    }
    return false;
  }

  /** PUTs `lease` (its resourceVersion guards the write) and keeps what the server returned for the next renewal. */
  private async writeLease(lease: LeaseObject, signal: AbortSignal): Promise<void> {
    this.lastWritten = await kubeRequest<LeaseObject>(this.options.kubeConfig, { method: 'PUT', path: this.leasePath(), body: lease, signal });
  }

  private async readLease(signal: AbortSignal): Promise<LeaseObject | undefined> {
    try {
      return await kubeRequest<LeaseObject>(this.options.kubeConfig, { path: this.leasePath(), signal });
    } catch (error) {
      if (error instanceof KubeApiError && error.statusCode === 404) return undefined;
      throw error;
    }
  }

  private remember(record: LeaseRecord, callbacks: LeaderCallbacks, now = this.now()): void {
    const previousHolder = this.observed?.record.holderIdentity;
    this.observed = observeLease(this.observed, record, now);
    const holder = record.holderIdentity;
    if (holder && holder !== previousHolder) {
      try {
        callbacks.onNewLeader?.(holder);
      } catch (error) {
        this.logger.error({ err: error }, 'onNewLeader threw');
      }
    }
  }

  private callStopped(callbacks: LeaderCallbacks): void {
    try {
      callbacks.onStoppedLeading();
    } catch (error) {
      this.logger.error({ err: error }, 'onStoppedLeading threw');
    }
  }

  private setLeading(leading: boolean): void {
    this.leading = leading;
    this.metrics.leaderStatus.set({ name: this.options.name }, leading ? 1 : 0);
  }

  private collectionPath(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.options.namespace)}/leases`;
  }

  private leasePath(): string {
    return `${this.collectionPath()}/${encodeURIComponent(this.options.name)}`;
  }
}

function recordOf(lease: LeaseObject): LeaseRecord {
  const spec = lease.spec ?? {};
  return {
    holderIdentity: spec.holderIdentity ?? '',
    leaseDurationSeconds: spec.leaseDurationSeconds ?? 0,
    ...(spec.acquireTime ? { acquireTime: spec.acquireTime } : {}),
    ...(spec.renewTime ? { renewTime: spec.renewTime } : {}),
    leaseTransitions: spec.leaseTransitions ?? 0,
  };
}

