/**
 * The listener a realm-server replica runs: LISTENs on Boxel's channels, drops the right caches,
 * acknowledges wildcard invalidations, and never silently dies.
 *
 * Expected flow: `start()` connects, LISTENs, registers the replica with a lease, reads the epoch
 * sequence, drops every cache, records that, and only then reports ready. Each notification is
 * handled in arrival order. A heartbeat renews the lease; a heartbeat that fails or times out, or
 * any connection error, tears the connection down and the loop reconnects with capped, jittered
 * backoff, forever, resyncing again before it reports ready.
 *
 * Guarantees: while `cacheTrusted` is true, the replica has been told of (and has applied) every
 * invalidation committed since its last resync. It is false from the moment the connection is in
 * doubt, and it turns false by itself when the lease could not be renewed in time (fencing), even
 * if the event loop never notices a broken socket.
 *
 * Events: `state` (each state change), `ready`, `not-ready`, `acknowledged` ({ realmURL, epoch, seconds }).
 *
 * Ordering: a `realm_registry` notification's hooks (`onRegistryNotification` for every payload,
 * then `onRegistryChange` for one that parses) and a wildcard's
 * `onRealmInvalidated` run to completion before the next notification is handled and before the
 * wildcard is acknowledged, so a realm server that forgets its registry view there can never
 * acknowledge a publish while it still maps the realm's paths to another realm.
 *
 * Errors: nothing thrown by a payload or a cache callback escapes; malformed payloads, realms
 * without a cache and per-path changes whose path is not canonical are counted
 * (`realm_listener_notifications_ignored_total`, `realm_listener_unmatched_paths_total`) and
 * logged at most once per 10 s per kind. A wildcard whose cache drop throws is not acknowledged.
 */
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import pg from 'pg';
import { pino, type Logger } from 'pino';
import type { Registry } from 'prom-client';
import {
  LISTENED_CHANNELS,
  MODULE_CACHE_INVALIDATED_CHANNEL,
  REALM_FILE_CHANGES_CHANNEL,
  REALM_REGISTRY_CHANNEL,
} from '../wire/channels.js';
import {
  isWildcardChange,
  localPathMismatch,
  parseModuleCacheInvalidation,
  parseRealmFileChangePayload,
  parseRealmRegistryPayload,
  type RealmRegistryChange,
} from '../wire/payloads.js';
import { parseRealmEpochHint, REALM_EPOCH_HINT_CHANNEL, type RealmEpochHint } from '../wire/epoch-hint.js';
import { backoffDelay, DEFAULT_BACKOFF, type BackoffPolicy } from './backoff.js';
import { defaultFenceMarginMs, fenceDeadline, leaseTimingProblems } from './fence.js';
import { LogLimiter } from './log-limiter.js';
import { listenerMetrics, type ListenerMetrics } from './metrics.js';
import {
  announceIfAllAcked,
  deregisterReplica,
  prepareAckThenAnnounceStatements,
  readEpochPosition,
  readRealmEpoch,
  recordCacheStarted,
  registerReplica,
  renewLease,
  writeAck,
  writeAckThenAnnounce,
} from './replica-registry.js';

/** What a cache may report back from {@link RealmCache.dropPath}. */
export interface DropPathResult {
  /** Cached paths that differ from the notified one only in letter case, dropped too. */
  caseVariantsDropped?: number;
}

/** One realm's in-process caches, as the realm server exposes them to the listener. */
export interface RealmCache {
  /** Drop one cached path (and its aliases). */
  dropPath(localPath: string): void | DropPathResult | Promise<void | DropPathResult>;
  /**
   * Drop every cached path of the realm. `epoch` is the realm's epoch read just before, when the
   * drop answers a wildcard invalidation (the content on disk is at least that new).
   */
  dropAll(epoch?: number): void | Promise<void>;
  /** Bump the realm's definitions generation; `moduleURLs` when only some modules changed. */
  bumpDefinitionsGeneration(moduleURLs?: readonly string[]): void | Promise<void>;
}

/** How the listener finds a realm's caches. Lookup is by exact realm URL, as in Boxel. */
export interface RealmCaches {
  find(realmURL: string): RealmCache | undefined;
  /** Every realm currently cached; a resync drops them all. */
  all(): Iterable<RealmCache>;
  /**
   * Every cached realm published from `sourceURL` (its registry row's `source_url`). Boxel's
   * delete-realm handler removes a source realm and all of its published realms in one
   * transaction and sends ONE `delete:<source URL>` for all of them, so a `delete:` drops these
   * too. Omit it only if the server caches no published realms.
   */
  publishedFrom?(sourceURL: string): Iterable<RealmCache>;
}

export interface RealmListenerOptions {
  /** A connection string or pg client config for the listener's dedicated connection. */
  connection: string | pg.ClientConfig;
  replicaId: string;
  caches: RealmCaches;
  /** Take part in acknowledged invalidation (register, lease, acks). Default true. */
  acknowledge?: boolean;
  /** Lease length. Default 15 s. */
  leaseDurationMs?: number;
  /**
   * How long before the lease would end (by the local clock, counted from when the renewal was
   * sent) the replica stops trusting its cache: room for a database clock that steps forward, a
   * failover to a host whose clock is ahead, a slow local clock, and a pause between checking
   * `cacheTrusted` and answering. Default max(500 ms, 10 % of the lease); must be shorter than the
   * lease, and lease − margin longer than the heartbeat interval. See src/listener/fence.ts.
   */
  fenceMarginMs?: number;
  /** Heartbeat (and lease renewal) period. Default 2 s. */
  heartbeatIntervalMs?: number;
  /** A heartbeat slower than this counts as a dead connection. Default 5 s. */
  heartbeatTimeoutMs?: number;
  /** Default 5 s. */
  connectTimeoutMs?: number;
  backoff?: BackoffPolicy;
  /**
   * Called for each `realm_registry` hint, after the listener's own handling and before the next
   * notification is handled. (Boxel replicas re-read the registry on any such hint.)
   */
  onRegistryChange?: (change: RealmRegistryChange) => void | Promise<void>;
  /**
   * Called first for every `realm_registry` notification, whatever its payload (valid, unknown
   * op, empty or garbage), before anything else is done with it: re-read the registry here.
   */
  onRegistryNotification?: (payload: string) => void | Promise<void>;
  /**
   * Called for each wildcard `realm_file_changes` (a publish, unpublish or recovery), whether or
   * not the realm has a cache, before its caches are dropped and before it is acknowledged.
   */
  onRealmInvalidated?: (realmURL: string) => void | Promise<void>;
  /** Extra data stored with the replica's registration (pod name, version). */
  metadata?: Record<string, unknown>;
  logger?: Logger;
  metricsRegistry?: Registry;
}

/** `stopping`: {@link RealmListener.stop} was called; the cache is no longer trusted, deregistration follows. */
export type ListenerState = 'stopped' | 'connecting' | 'resyncing' | 'ready' | 'backoff' | 'stopping';

export interface ListenerStatus {
  replicaId: string;
  state: ListenerState;
  ready: boolean;
  cacheTrusted: boolean;
  reconnects: number;
  lastError?: string;
  /** Milliseconds of lease left by the local clock (conservative), when acknowledging. */
  leaseRemainingMs?: number;
}

interface Connection {
  client: pg.Client;
  /** Rejects when the connection is lost or must be abandoned. */
  lost: Promise<never>;
  fail(error: Error): void;
  readonly closed: boolean;
  /** Lets queued notifications through once the resync has finished. */
  resynced(): void;
}

export class RealmListener extends EventEmitter {
  readonly replicaId: string;
  private readonly options: Required<
    Pick<RealmListenerOptions, 'acknowledge' | 'leaseDurationMs' | 'fenceMarginMs' | 'heartbeatIntervalMs' | 'heartbeatTimeoutMs' | 'connectTimeoutMs' | 'backoff'>
  > &
    RealmListenerOptions;
  private readonly logger: Logger;
  private readonly metrics: ListenerMetrics;
  private state: ListenerState = 'stopped';
  private stopping = false;
  /** The stop in progress, if any. */
  private stopInProgress: Promise<void> | undefined;
  private loop: Promise<void> | undefined;
  private connection: Connection | undefined;
  /** performance.now() after which the lease may have expired in the database. */
  private leaseValidUntil = 0;
  private fenceTimer: NodeJS.Timeout | undefined;
  private reconnects = 0;
  private lastError: string | undefined;
  private wakeBackoff: (() => void) | undefined;
  private readonly warnings = new LogLimiter();
  /**
   * The epoch hint handled as the immediately preceding notification (wire/epoch-hint.ts), with
   * the backend that sent it: the wildcard right after it, from the same backend, is the same
   * transaction's and was already handled with it.
   */
  private handledHint: (RealmEpochHint & { processId: number }) | undefined;
  /** The last ack found no other replica registered (writeAck's `written-alone`). */
  private ackedAlone = false;

  constructor(options: RealmListenerOptions) {
    super();
    this.options = {
      acknowledge: true,
      leaseDurationMs: 15_000,
      heartbeatIntervalMs: 2_000,
      heartbeatTimeoutMs: 5_000,
      connectTimeoutMs: 5_000,
      backoff: DEFAULT_BACKOFF,
      ...options,
      fenceMarginMs: options.fenceMarginMs ?? defaultFenceMarginMs(options.leaseDurationMs ?? 15_000),
    };
    if (this.options.acknowledge) {
      const problems = leaseTimingProblems(this.options);
      if (problems.length > 0) throw new Error(`RealmListener: ${problems.join('; ')}`);
    }
    this.replicaId = options.replicaId;
    this.logger = (options.logger ?? pino({ name: 'realm-listener' })).child({ replica: options.replicaId });
    this.metrics = listenerMetrics(options.metricsRegistry);
    this.metrics.ready.set({ replica: this.replicaId }, 0);
  }

  /** Connected, LISTENing and resynced. */
  get ready(): boolean {
    return this.state === 'ready';
  }

  /** Whether the realm server may serve from (and fill) its caches right now. */
  get cacheTrusted(): boolean {
    if (this.state !== 'ready' || this.stopping) return false;
    return !this.options.acknowledge || performance.now() < this.leaseValidUntil;
  }

  status(): ListenerStatus {
    return {
      replicaId: this.replicaId,
      state: this.state,
      ready: this.ready,
      cacheTrusted: this.cacheTrusted,
      reconnects: this.reconnects,
      ...(this.lastError ? { lastError: this.lastError } : {}),
      ...(this.options.acknowledge ? { leaseRemainingMs: Math.max(0, Math.round(this.leaseValidUntil - performance.now())) } : {}),
    };
  }

  /** A readiness-probe handler: 200 with the status while the cache can be trusted, 503 otherwise. */
  readinessHandler(): (req: IncomingMessage, res: ServerResponse) => void {
    return (_req, res) => {
      const status = this.status();
      res.writeHead(status.cacheTrusted ? 200 : 503, { 'content-type': 'application/json' });
      res.end(JSON.stringify(status));
    };
  }

  /** Starts the connection loop; resolves at once. Use {@link waitUntilReady} to wait for readiness. */
  start(): void {
    if (this.loop) return;
    this.stopping = false;
    this.loop = this.run().catch((error: Error) => {
      // run() handles its own errors; reaching here is a bug, and a dead listener must be loud.
      this.logger.fatal({ err: error }, 'listener loop crashed');
      this.setState('stopped');
    });
  }

  /** Resolves when ready; rejects after `timeoutMs`. */
  async waitUntilReady(timeoutMs = 30_000): Promise<void> {
    if (this.ready) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('ready', onReady);
        reject(new Error(`listener ${this.replicaId} not ready after ${timeoutMs} ms (last error: ${this.lastError ?? 'none'})`));
      }, timeoutMs);
      const onReady = () => {
        clearTimeout(timer);
        resolve();
      };
      this.once('ready', onReady);
    });
  }

  /**
   * Stops trusting the cache, then deregisters the replica (best effort), stops the loop and
   * closes the connection. The order matters: once the row is gone the operator stops waiting for
   * this replica, so an embedding server that still serves during shutdown must already see
   * `cacheTrusted` false (state `stopping`, `not-ready` emitted) by then, or it could serve stale
   * bytes after a Ready that no longer waited for it.
   */
  stop(): Promise<void> {
    // A second call while stopping waits for the first (failing the connection early would lose the deregistration).
    this.stopInProgress ??= this.stopOnce().finally(() => (this.stopInProgress = undefined));
    return this.stopInProgress;
  }

  private async stopOnce(): Promise<void> {
    if (!this.loop) return;
    const wasReady = this.state === 'ready';
    this.setState('stopping');
    this.stopping = true;
    clearTimeout(this.fenceTimer);
    this.leaseValidUntil = 0;
    this.wakeBackoff?.();
    const connection = this.connection;
    if (connection && this.options.acknowledge && wasReady) {
      await withTimeout(deregisterReplica(connection.client, this.replicaId), this.options.heartbeatTimeoutMs, 'deregister').catch(
        (error: Error) => this.logger.warn({ err: error }, 'could not deregister on stop; the lease will expire'),
      );
    }
    connection?.fail(new Error('listener stopped'));
    await this.loop;
    this.loop = undefined;
  }

  private async run(): Promise<void> {
    let attempt = 0;
    while (!this.stopping) {
      try {
        this.setState('connecting');
        const connection = this.openConnection();
        await untilLost(connection, this.listen(connection.client));
        this.setState('resyncing');
        await untilLost(connection, this.resync(connection.client));
        connection.resynced();
        attempt = 0;
        this.setState('ready');
        await untilLost(connection, this.heartbeat(connection));
      } catch (error) {
        if (!this.stopping) {
          this.lastError = (error as Error).message;
          this.logger.warn({ err: error, state: this.state }, 'listener connection lost; reconnecting');
        }
      } finally {
        this.teardown();
      }
      if (this.stopping) break;
      this.setState('backoff');
      const delay = backoffDelay(attempt++, this.options.backoff);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        this.wakeBackoff = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeBackoff = undefined;
      if (!this.stopping) {
        this.reconnects += 1;
        this.metrics.reconnects.inc();
      }
    }
    this.setState('stopped');
  }

  private openConnection(): Connection {
    const base = typeof this.options.connection === 'string' ? { connectionString: this.options.connection } : this.options.connection;
    const client = new pg.Client({
      ...base,
      keepAlive: true,
      keepAliveInitialDelayMillis: 5_000,
      connectionTimeoutMillis: this.options.connectTimeoutMs,
      application_name: `realm-listener:${this.replicaId}`.slice(0, 63),
    });
    let reject!: (error: Error) => void;
    const lost = new Promise<never>((_, r) => (reject = r));
    lost.catch(() => undefined); // observed through untilLost; never an unhandled rejection
    let resynced!: () => void;
    const gate = new Promise<void>((resolve) => (resynced = resolve));
    let closed = false;
    const connection: Connection = {
      client,
      lost,
      get closed() {
        return closed;
      },
      fail: (error) => {
        if (closed) return;
        closed = true;
        reject(error);
      },
      resynced,
    };
    client.on('error', (error) => connection.fail(error));
    client.on('end', () => connection.fail(new Error('connection ended')));
    // Handled strictly in arrival order, after the resync; a failure means the connection is suspect.
    let chain = gate;
    client.on('notification', (message) => {
      const received = performance.now();
      chain = chain
        .then(() => (connection.closed ? undefined : this.handleNotification(client, message, received)))
        .catch((error: Error) => connection.fail(error));
    });
    this.connection = connection;
    return connection;
  }

  private async listen(client: pg.Client): Promise<void> {
    await client.connect();
    this.handledHint = undefined;
    // One round trip for all the LISTENs (a simple-protocol multi-statement query).
    const channels = this.options.acknowledge ? [...LISTENED_CHANNELS, REALM_EPOCH_HINT_CHANNEL] : LISTENED_CHANNELS;
    const statements = channels.map((channel) => `LISTEN ${channel}`);
    // Generic plans for this connection's prepared statements (PostgreSQL ≥ 12; skipped before):
    // each looks rows up by key, so no plan depends on the values, and in the default `auto` mode
    // the ack's completion announcement (replica-registry.ts writeAckThenAnnounce) kept flipping to
    // a custom plan, re-planned at every ack: ~1.1 ms of backend CPU against ~0.14 ms generic
    // (bench/ack-statement-cost.ts). Session-wide is safe: the connection is the listener's own.
    if (this.options.acknowledge) statements.push(GENERIC_PLANS);
    await client.query(statements.join('; '));
  }

  /**
   * LISTEN is already active, so nothing committed from here on is missed. Read the sequence
   * position, then drop everything: every epoch at or below the position is covered.
   */
  private async resync(client: pg.Client): Promise<void> {
    const started = performance.now();
    if (this.options.acknowledge) {
      await registerReplica(client, this.replicaId, this.options.leaseDurationMs, this.options.metadata);
      this.extendLease(started);
      await prepareAckThenAnnounceStatements(client);
    }
    const position = this.options.acknowledge ? await readEpochPosition(client) : 0;
    for (const cache of this.options.caches.all()) await cache.dropAll();
    if (this.options.acknowledge && !(await recordCacheStarted(client, this.replicaId, position))) {
      throw new Error('lease expired during resync');
    }
    this.metrics.resyncs.inc();
    this.logger.info({ position, ms: Math.round(performance.now() - started) }, 'listener resynced; caches dropped');
  }

  /** Renews the lease (or pings) every interval; throws when a beat fails, times out or the lease was lost. */
  private async heartbeat(connection: Connection): Promise<void> {
    for (;;) {
      await sleep(this.options.heartbeatIntervalMs);
      if (connection.closed) return;
      const sent = performance.now();
      try {
        if (this.options.acknowledge) {
          const renewed = await withTimeout(renewLease(connection.client, this.replicaId, this.options.leaseDurationMs), this.options.heartbeatTimeoutMs, 'heartbeat');
          if (!renewed) throw new Error('lease had expired in the database; re-registering');
          this.extendLease(sent);
        } else {
          await withTimeout(connection.client.query('SELECT 1'), this.options.heartbeatTimeoutMs, 'heartbeat');
        }
      } catch (error) {
        this.metrics.heartbeatFailures.inc();
        throw error;
      }
    }
  }

  /**
   * The database computed its expiry from `now()` inside the renewal, which is no earlier than
   * `sentAt` here; fencing `fenceMarginMs` before `sentAt + lease` keeps us fenced before the
   * operator stops waiting for us even when the clocks disagree by less than the margin (plus the
   * operator's grace). See fence.ts.
   */
  private extendLease(sentAt: number): void {
    this.leaseValidUntil = fenceDeadline(sentAt, this.options.leaseDurationMs, this.options.fenceMarginMs);
    clearTimeout(this.fenceTimer);
    this.fenceTimer = setTimeout(() => this.onLeaseLapsed(), Math.max(0, this.leaseValidUntil - performance.now()) + 1);
    this.fenceTimer.unref();
  }

  private onLeaseLapsed(): void {
    if (this.state !== 'ready') return;
    // Timers run on a coarser clock than performance.now() and may fire a little early: re-arm
    // rather than drop the fence (it would otherwise never fail the connection or readiness).
    const remaining = this.leaseValidUntil - performance.now();
    if (remaining > 0) {
      this.fenceTimer = setTimeout(() => this.onLeaseLapsed(), Math.ceil(remaining) + 1);
      this.fenceTimer.unref();
      return;
    }
    this.metrics.fenced.inc();
    this.logger.error('lease could not be renewed in time; fencing (cache not trusted) and reconnecting');
    this.metrics.ready.set({ replica: this.replicaId }, 0);
    this.emit('not-ready');
    this.connection?.fail(new Error('lease lapsed'));
  }

  private async handleNotification(client: pg.Client, message: pg.Notification, received: number): Promise<void> {
    const payload = message.payload ?? '';
    const channel = message.channel;
    const previousHint = this.handledHint;
    this.handledHint = undefined;
    if (channel === REALM_EPOCH_HINT_CHANNEL) {
      // The hint is handled as its realm's wildcard, with the epoch it carries (no read): it was
      // delivered after that epoch committed, so clearing now covers it. A hint also arrives
      // alone when PostgreSQL folded its wildcard into an identical earlier one of the same
      // transaction (epoch bumped twice): handling the hint itself is what acks the final epoch.
      const hint = parseRealmEpochHint(payload);
      if (!hint) return this.malformed(REALM_EPOCH_HINT_CHANNEL, payload);
      if (await this.invalidateRealm(client, hint.realmURL, received, hint.epoch)) this.handledHint = { ...hint, processId: message.processId };
      return;
    }
    this.metrics.notifications.inc({ channel });
    switch (channel) {
      case REALM_FILE_CHANGES_CHANNEL:
        return this.handleFileChange(client, payload, received, previousHint, message.processId);
      case MODULE_CACHE_INVALIDATED_CHANNEL:
        return this.handleModuleInvalidation(payload);
      case REALM_REGISTRY_CHANNEL:
        return this.handleRegistryChange(payload);
      default:
        this.logger.debug({ channel }, 'notification on a channel the listener does not handle');
    }
  }

  private async handleFileChange(client: pg.Client, payload: string, received: number, previousHint: RealmEpochHint & { processId: number } | undefined, processId: number): Promise<void> {
    const change = parseRealmFileChangePayload(payload);
    if (!change) return this.malformed(REALM_FILE_CHANGES_CHANNEL, payload);
    const cache = this.options.caches.find(change.realmURL);
    if (!isWildcardChange(change)) {
      if (!cache) return this.unknownRealm(REALM_FILE_CHANGES_CHANNEL, change.realmURL);
      return this.dropOnePath(cache, change.realmURL, change.path);
    }
    // The hint just before it, from the same backend, is almost always this transaction's: already
    // acknowledged after the commit, so no second ack (no round trip). The caches are still dropped
    // again (in memory): when PostgreSQL folded that transaction's wildcard, this one is the next
    // transaction's from the same connection (a wildcard sent without a hint), and content it
    // announces is at least as new as the hinted epoch.
    if (previousHint && previousHint.realmURL === change.realmURL && previousHint.processId === processId) {
      await this.invalidateRealm(client, change.realmURL, received, previousHint.epoch, { acknowledge: false });
      return;
    }
    await this.invalidateRealm(client, change.realmURL, received);
  }

  /**
   * A whole realm: the hook, drop its caches, acknowledge. The epoch is known BEFORE clearing, so
   * the ack never claims more than what was cleared: the hint's (committed before it was
   * delivered), else read. True when everything succeeded.
   */
  private async invalidateRealm(client: pg.Client, realmURL: string, received: number, hintedEpoch?: number, { acknowledge = true } = {}): Promise<boolean> {
    const hook = this.options.onRealmInvalidated;
    if (hook && !(await this.guard(() => hook(realmURL), 'onRealmInvalidated', realmURL))) return false;
    const epoch = this.options.acknowledge ? (hintedEpoch ?? (await readRealmEpoch(client, realmURL))) : 0;
    const cache = this.options.caches.find(realmURL);
    if (cache && !(await this.guard(() => cache.dropAll(epoch || undefined), 'dropAll', realmURL))) return false;
    if (!cache) this.metrics.ignored.inc({ channel: REALM_FILE_CHANGES_CHANNEL, reason: 'unknown-realm' });
    // A realm we do not serve has nothing stale: acknowledge it too, or first publishes would wait.
    if (this.options.acknowledge && acknowledge && epoch > 0) {
      // Alone at the last ack: the leaner statement (replica-registry.ts writeAckAlone) while it
      // lasts. Otherwise the ack and, after its commit, the completion announcement (the last ack
      // to commit must tell the operator) in one round trip (writeAckThenAnnounce).
      const lone = this.ackedAlone;
      const written = lone
        ? await writeAck(client, this.replicaId, realmURL, epoch, { expectAlone: true })
        : await writeAckThenAnnounce(client, this.replicaId, realmURL, epoch);
      this.ackedAlone = written === 'written-alone';
      if (written === 'unregistered') throw new Error('replica registration vanished; re-registering');
      const seconds = (performance.now() - received) / 1000;
      this.metrics.ackSeconds.observe(seconds);
      this.emit('acknowledged', { realmURL, epoch, seconds });
      // The lean ack found another replica registered now: it was written without the check, so
      // announce after its commit as writeAckThenAnnounce would have (replica-registry.ts).
      if (lone && written === 'written') await announceIfAllAcked(client, this.replicaId, realmURL, epoch);
    }
    return true;
  }

  private async handleModuleInvalidation(payload: string): Promise<void> {
    const invalidation = parseModuleCacheInvalidation(payload);
    if (!invalidation) return this.malformed(MODULE_CACHE_INVALIDATED_CHANNEL, payload);
    if (invalidation.kind === 'global') {
      for (const cache of this.options.caches.all()) await this.guard(() => cache.bumpDefinitionsGeneration(), 'bumpDefinitionsGeneration', '*');
      return;
    }
    const cache = this.options.caches.find(invalidation.realmURL);
    if (!cache) return this.unknownRealm(MODULE_CACHE_INVALIDATED_CHANNEL, invalidation.realmURL);
    const modules = invalidation.kind === 'module' ? invalidation.moduleURLs : undefined;
    await this.guard(() => cache.bumpDefinitionsGeneration(modules), 'bumpDefinitionsGeneration', invalidation.realmURL);
  }

  private async handleRegistryChange(payload: string): Promise<void> {
    // Any registry notification means "re-read the registry", whatever its payload: Boxel's
    // RealmRegistryReconciler wakes its loop on the channel and never reads the payload.
    const any = this.options.onRegistryNotification;
    if (any) await this.guard(() => any(payload), 'onRegistryNotification', '*');
    const change = parseRealmRegistryPayload(payload);
    if (!change) return this.malformed(REALM_REGISTRY_CHANNEL, payload);
    if (change.op === 'delete') {
      // `delete:<X>` may stand for X and every realm published from X (a source realm's delete).
      const caches = this.options.caches;
      const dropped = new Set<RealmCache>([...(caches.publishedFrom?.(change.realmURL) ?? [])]);
      const own = caches.find(change.realmURL);
      if (own) dropped.add(own);
      for (const cache of dropped) await this.guard(() => cache.dropAll(), 'dropAll', change.realmURL);
    }
    const hook = this.options.onRegistryChange;
    if (hook) await this.guard(() => hook(change), 'onRegistryChange', change.realmURL);
  }

  /**
   * A canonical path is dropped exactly (as Boxel does). A path that is not canonical cannot be
   * matched as written, so the whole realm is dropped instead; both that and case variants the
   * cache also dropped are counted, so a sender with a bug shows up in the metrics.
   */
  private async dropOnePath(cache: RealmCache, realmURL: string, path: string): Promise<void> {
    const mismatch = localPathMismatch(path);
    if (mismatch) {
      this.metrics.unmatchedPaths.inc({ channel: REALM_FILE_CHANGES_CHANNEL, reason: mismatch });
      this.warn(`unmatched:${mismatch}`, { channel: REALM_FILE_CHANGES_CHANNEL, realm: realmURL, path: JSON.stringify(path.slice(0, 200)), reason: mismatch }, 'a per-path change names no canonical realm path; dropped the whole realm instead');
      await this.guard(() => cache.dropAll(), 'dropAll', realmURL);
      return;
    }
    let result: void | DropPathResult = undefined;
    await this.guard(async () => void (result = await cache.dropPath(path)), 'dropPath', realmURL);
    const variants = (result as DropPathResult | undefined)?.caseVariantsDropped ?? 0;
    if (variants > 0) {
      this.metrics.unmatchedPaths.inc({ channel: REALM_FILE_CHANGES_CHANNEL, reason: 'case-variant' }, variants);
      this.warn('unmatched:case-variant', { channel: REALM_FILE_CHANGES_CHANNEL, realm: realmURL, path: JSON.stringify(path.slice(0, 200)), variants }, 'a per-path change differs only in letter case from cached paths; dropped them too');
    }
  }

  private malformed(channel: string, payload: string): void {
    this.metrics.ignored.inc({ channel, reason: 'malformed' });
    this.warn(`malformed:${channel}`, { channel, payload: JSON.stringify(payload.slice(0, 200)) }, 'ignored a malformed NOTIFY payload');
  }

  private unknownRealm(channel: string, realmURL: string): void {
    this.metrics.ignored.inc({ channel, reason: 'unknown-realm' });
    this.logger.debug({ channel, realm: realmURL }, 'notification for a realm this replica has no cache for');
  }

  /** A warning at most once per 10 s per `key`, saying how many like it were suppressed. */
  private warn(key: string, fields: Record<string, unknown>, message: string): void {
    const admitted = this.warnings.admit(key);
    if (admitted) this.logger.warn({ ...fields, ...(admitted.suppressed > 0 ? { suppressedSinceLast: admitted.suppressed } : {}) }, message);
  }

  /** Runs a realm-server callback; a throw is logged and reported as `false`, never propagated. */
  private async guard(fn: () => void | Promise<void>, what: string, realmURL: string): Promise<boolean> {
    try {
      await fn();
      return true;
    } catch (error) {
      this.logger.error({ err: error, realm: realmURL, callback: what }, 'realm cache callback threw; not acknowledging');
      return false;
    }
  }

  private setState(state: ListenerState): void {
    if (this.state === state) return;
    // Once stopping, only `stopped` follows: a resync finishing meanwhile must not report ready.
    if (this.stopping && state !== 'stopped') return;
    const wasReady = this.state === 'ready';
    this.state = state;
    this.metrics.ready.set({ replica: this.replicaId }, state === 'ready' ? 1 : 0);
    if (state === 'ready') this.emit('ready');
    else if (wasReady) this.emit('not-ready');
    this.emit('state', state);
  }

  private teardown(): void {
    clearTimeout(this.fenceTimer);
    this.leaseValidUntil = 0;
    const connection = this.connection;
    this.connection = undefined;
    if (!connection) return;
    connection.fail(new Error('connection closed'));
    // end() can hang on a half-open socket; destroying the stream cannot.
    const stream = (connection.client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream;
    connection.client.end().catch(() => undefined);
    stream?.destroy();
  }
}

/** `plan_cache_mode = force_generic_plan` for the session, on servers that have the setting. */
const GENERIC_PLANS = `SELECT set_config('plan_cache_mode', 'force_generic_plan', false) WHERE current_setting('server_version_num')::int >= 120000`;

/** Awaits `work` unless the connection is lost first; a late rejection of `work` is swallowed. */
async function untilLost<T>(connection: Connection, work: Promise<T>): Promise<T> {
  work.catch(() => undefined);
  return Promise.race([work, connection.lost]);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
