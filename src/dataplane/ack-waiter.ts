/**
 * One LISTEN connection for every publish waiting on replica acknowledgements (DESIGN §4.3).
 *
 * Before: each waiting publish held a pooled connection of its own, LISTENed on it, and re-read
 * the ack table after every single ack. With 50 replicas and many realms in flight that is one
 * connection per publish and one query per ack per publish. Here every wait of a process shares:
 *
 * - one connection LISTENing on {@link REPLICA_ACKS_CHANNEL}, taken from the pool while at least
 *   one wait is active (kept a little longer so back-to-back publishes do not re-LISTEN);
 * - acks heard from their NOTIFY: a replica's ack notification says who acknowledged which
 *   epoch (replica-registry.ts writeAckThenAnnounce), and it is sent by the announcement that runs
 *   after the ack row's COMMIT (or by a lone replica's ack statement itself), so it follows a
 *   committed ack. Replicas send
 *   it only for the ack that completes the set as far as they can see (one NOTIFY per publish, not
 *   N: each NOTIFY wakes every LISTENing backend in the database). A wait subtracts the notifier
 *   from the `missing` of its last read; when none is left (one replica) it completes with no
 *   further query, otherwise the others acked silently since that read and it reads again.
 * - coalesced re-reads for everything else (a cache start '*', a deregistration '-', an older
 *   replica's bare realm URL, the poll): notifications only mark waits dirty; one query (through
 *   the pool, never the LISTEN connection) then reads the status of every dirty wait, however
 *   many arrived in the burst. One landing while that query runs marks its waits dirty again, so
 *   it is followed by one more query: nothing is lost between a read and the next wake.
 * - reconnect with resync: when the LISTEN connection dies, notifications may have been lost, so
 *   once LISTEN is active again every wait is re-read. Meanwhile the per-wait poll (lease expiry
 *   sends no notification anyway) keeps every wait progressing.
 *
 * Guarantee: `complete` means every replica live at a read made after the wait began (so after
 * the epoch committed) has acknowledged the epoch, emptied its cache since, or let its lease
 * lapse — by the table, or by an ack NOTIFY, which only follows a committed ack row (acks never
 * go backwards: GREATEST). A replica that registers after that read cannot hold older content:
 * it resyncs (drops everything after reading an epoch position at or past this epoch) before it
 * serves from its cache again. Lease lapses are only ever seen by reading the table.
 */
import type pg from 'pg';
import { REPLICA_ACKS_CHANNEL } from '../wire/channels.js';
import { readReplicaAckStatuses, replicaLeaseGraceOf, type ReplicaAckStatus } from './ack-status.js';
import { lastInvalidationSentAt } from './invalidation.js';

export interface WaitForAcksOptions {
  realmURL: string;
  epoch: number;
  timeoutMs: number;
  /** Re-check at least this often (lease expiry produces no notification). Default 500 ms. */
  pollIntervalMs?: number;
  signal?: AbortSignal;
}

export interface WaitForAcksResult extends ReplicaAckStatus {
  /** True when no live replica is missing. */
  complete: boolean;
  waitedMs: number;
}

export interface ReplicaAckWaiterOptions {
  /** Keep the LISTEN connection this long after the last wait ends. Default 1 s. */
  lingerMs?: number;
  /** First delay before re-opening a lost LISTEN connection; doubles up to 2 s. Default 50 ms. */
  reconnectDelayMs?: number;
  /** Told about a lost LISTEN connection (the waits carry on by polling until it is back). */
  onConnectionError?: (error: Error) => void;
}

/** Counters for tests and benchmarks. */
export interface ReplicaAckWaiterStats {
  /** Status queries run (one per burst of notifications, not one per ack). */
  reads: number;
  /** Status queries that have returned (or failed): `reads - readsDone` are in flight. */
  readsDone: number;
  /** Waits completed by an ack notification, with no status query after it (the notifier was the last one missing). */
  completedByNotification: number;
  /** Of those, completed by the announcement's completion proof (no status read needed at all). */
  completedByAnnouncement: number;
  /** Waits that started with no status read: LISTEN was active since before the epoch's commit. */
  firstReadsSkipped: number;
  /** Notifications received on the ack channel. */
  notifications: number;
  /** LISTEN connections opened (the first one included). */
  connections: number;
  /** LISTEN connections lost while waits were active. */
  lost: number;
}

interface Wait {
  options: WaitForAcksOptions;
  started: number;
  deadline: number;
  pollIntervalMs: number;
  /** Needs a fresh read. */
  dirty: boolean;
  /** Timed out or aborted: the next read settles it whatever it says. */
  final: boolean;
  /** Its poll timer fired: read it even while LISTEN is still being set up (a slow pool must not stall it). */
  polled: boolean;
  settled: boolean;
  /** The last status read, once there is one. */
  status: ReplicaAckStatus | undefined;
  /** Replicas whose ack NOTIFY covered this epoch (true for good: acks only move forward). */
  ackedByNotification: Set<string>;
  timer: NodeJS.Timeout | undefined;
  resolve(result: WaitForAcksResult): void;
  reject(error: Error): void;
  onAbort: () => void;
}

type ConnectionState = 'idle' | 'connecting' | 'listening' | 'backoff';

export class ReplicaAckWaiter {
  readonly stats: ReplicaAckWaiterStats = {
    reads: 0,
    readsDone: 0,
    completedByNotification: 0,
    completedByAnnouncement: 0,
    firstReadsSkipped: 0,
    notifications: 0,
    connections: 0,
    lost: 0,
  };
  /**
   * Completion proofs heard on the current LISTEN session, by realm: the newest complete one and
   * when it arrived. A wait starting later uses it only for exactly its own epoch and only if it
   * arrived after this process sent that realm's invalidation (see {@link wait}).
   */
  private readonly heardComplete = new Map<string, { status: ReplicaAckStatus; heardAt: number }>();
  /** When an ack notification that proved nothing (no proof, or one with a replica still missing) last arrived, by realm. */
  private readonly heardInconclusiveAt = new Map<string, number>();
  /** When a notification concerning every wait (a cache start, a deregistration) last arrived. */
  private heardForAllAt = -Infinity;
  /** When the current LISTEN became active (performance.now()); undefined while not listening. */
  private listeningSince: number | undefined;
  /** The last status read found a live replica (a wait can then expect an announcement). */
  private replicasSeen = false;
  private readonly waitsByRealm = new Map<string, Set<Wait>>();
  private readonly waits = new Set<Wait>();
  private state: ConnectionState = 'idle';
  private client: pg.PoolClient | undefined;
  private lingerTimer: NodeJS.Timeout | undefined;
  private reconnectAttempt = 0;
  private reading = false;
  private flushQueued = false;
  private closed = false;
  private readonly lingerMs: number;
  private readonly reconnectDelayMs: number;
  // Our listeners on the connection, removed when it goes back to the pool for others to use.
  private onClientError: ((error: Error) => void) | undefined;
  private onClientEnd: (() => void) | undefined;
  private onClientNotification: ((message: pg.Notification) => void) | undefined;

  constructor(
    private readonly pool: pg.Pool,
    private readonly options: ReplicaAckWaiterOptions = {},
  ) {
    this.lingerMs = options.lingerMs ?? 1000;
    this.reconnectDelayMs = options.reconnectDelayMs ?? 50;
  }

  /** Whether the shared LISTEN connection is up right now. */
  get listening(): boolean {
    return this.state === 'listening';
  }

  /** Waits until every live replica is done with `epoch`, or the timeout passes (then reports who is missing). */
  wait(options: WaitForAcksOptions): Promise<WaitForAcksResult> {
    if (this.closed) return Promise.reject(new Error('the replica ack waiter is closed'));
    const proven = this.heardComplete.get(options.realmURL);
    const sent = lastInvalidationSentAt(options.realmURL);
    if (proven && proven.status.epoch === options.epoch && sent !== undefined && proven.heardAt > sent && !options.signal?.aborted) {
      // A completion proof for this very epoch arrived before the wait began (a replica can
      // announce between the publisher's COMMIT and this call): it is a read made after the epoch
      // committed, which is all a completion needs. Only this epoch, and only one heard after we
      // sent the invalidation: a remembered proof for a later epoch (forged, or from before the
      // database was restored to an earlier epoch) must not complete waits nobody announced.
      this.stats.completedByAnnouncement += 1;
      return Promise.resolve({ ...proven.status, realmURL: options.realmURL, epoch: options.epoch, complete: true, waitedMs: 0 });
    }
    return new Promise<WaitForAcksResult>((resolve, reject) => {
      const started = performance.now();
      const wait: Wait = {
        options,
        started,
        deadline: started + options.timeoutMs,
        pollIntervalMs: options.pollIntervalMs ?? 500,
        dirty: !this.heardEverythingSince(options.realmURL),
        final: options.signal?.aborted ?? false,
        polled: false,
        settled: false,
        status: undefined,
        ackedByNotification: new Set(),
        timer: undefined,
        resolve,
        reject,
        onAbort: () => this.finish(wait),
      };
      options.signal?.addEventListener('abort', wait.onAbort, { once: true });
      this.waits.add(wait);
      let forRealm = this.waitsByRealm.get(options.realmURL);
      if (!forRealm) this.waitsByRealm.set(options.realmURL, (forRealm = new Set()));
      forRealm.add(wait);
      clearTimeout(this.lingerTimer);
      this.lingerTimer = undefined;
      // The first read waits for LISTEN (so no ack can fall between the read and the LISTEN);
      // the poll timer still runs, so a connection that cannot be opened delays nothing for long.
      this.arm(wait);
      if (!wait.dirty) this.stats.firstReadsSkipped += 1;
      if (this.state === 'idle') void this.connect();
      else this.scheduleFlush();
    });
  }

  /**
   * Whether a new wait for `realmURL` can do without its first status read: LISTEN has been active
   * since before this process sent the realm's invalidation (so before the epoch's COMMIT: every
   * announcement of the epoch's completion reaches us), the last read found replicas (so one will
   * announce), and nothing arrived since that only a read can interpret (an announcement without a
   * complete proof, a cache start, a deregistration). The poll still reads (lease lapses send
   * nothing). Only an optimisation: whatever this answers, a wait completes only on a read or a
   * completion proof; a wrong "yes" costs a poll interval.
   */
  private heardEverythingSince(realmURL: string): boolean {
    const sent = lastInvalidationSentAt(realmURL);
    if (this.state !== 'listening' || this.listeningSince === undefined || sent === undefined || !this.replicasSeen) return false;
    return this.listeningSince < sent && this.heardForAllAt < sent && (this.heardInconclusiveAt.get(realmURL) ?? -Infinity) < sent;
  }

  /** Settles every wait with a final read and releases the LISTEN connection. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.lingerTimer);
    for (const wait of this.waits) this.finish(wait);
    while (this.waits.size > 0) await new Promise((resolve) => setTimeout(resolve, 5));
    this.releaseClient();
  }

  private arm(wait: Wait): void {
    clearTimeout(wait.timer);
    const remaining = wait.deadline - performance.now();
    wait.timer = setTimeout(
      () => {
        if (performance.now() >= wait.deadline) wait.final = true;
        wait.polled = true;
        wait.dirty = true;
        this.scheduleFlush();
      },
      Math.max(0, Math.min(wait.pollIntervalMs, remaining)),
    );
  }

  /** Timed out, aborted or closing: one more read, then settle whatever it says. */
  private finish(wait: Wait): void {
    wait.final = true;
    wait.dirty = true;
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    // setImmediate, not a microtask: every notification already in the socket buffer is handled
    // first, so a burst of acks costs one query.
    setImmediate(() => {
      this.flushQueued = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.reading) return; // the running read reschedules when it ends
    // While LISTEN is being set up, a new wait's first read is left to the resync that follows it
    // (one read instead of two); a wait whose poll fired or that must settle is read regardless.
    const readable = this.state === 'listening' || this.state === 'backoff';
    const due = [...this.waits].filter((w) => w.dirty && !w.settled && (readable || w.final || w.polled));
    if (due.length === 0) return;
    for (const wait of due) wait.dirty = false; // a notification during the read marks it again
    this.reading = true;
    let statuses: ReplicaAckStatus[];
    try {
      this.stats.reads += 1;
      statuses = await readReplicaAckStatuses(
        this.pool,
        due.map((w) => ({ realmURL: w.options.realmURL, epoch: w.options.epoch })),
      );
    } catch (error) {
      for (const wait of due) this.settle(wait, error as Error);
      return;
    } finally {
      this.reading = false;
      this.stats.readsDone += 1;
      if ([...this.waits].some((w) => w.dirty)) this.scheduleFlush();
    }
    const now = performance.now();
    this.replicasSeen = statuses.some((status) => status.mode === 'acknowledged');
    for (const [i, wait] of due.entries()) {
      if (wait.settled) continue;
      wait.status = statuses[i]!;
      const result = this.resultOf(wait, now);
      if (result.complete || wait.final || now >= wait.deadline || wait.options.signal?.aborted) this.settle(wait, result);
      else if (!wait.dirty) this.arm(wait);
    }
  }

  /** The last read, less the replicas whose ack NOTIFY arrived since (or during) it. */
  private resultOf(wait: Wait, now: number): WaitForAcksResult {
    const status = wait.status!;
    const notified = status.missing.filter((id) => wait.ackedByNotification.has(id));
    const missing = status.missing.filter((id) => !wait.ackedByNotification.has(id));
    const acknowledged = notified.length === 0 ? status.acknowledged : [...status.acknowledged, ...notified].sort();
    return { ...status, acknowledged, missing, complete: missing.length === 0, waitedMs: now - wait.started };
  }

  private settle(wait: Wait, outcome: WaitForAcksResult | Error): void {
    if (wait.settled) return;
    wait.settled = true;
    clearTimeout(wait.timer);
    wait.options.signal?.removeEventListener('abort', wait.onAbort);
    this.waits.delete(wait);
    const forRealm = this.waitsByRealm.get(wait.options.realmURL);
    forRealm?.delete(wait);
    if (forRealm?.size === 0) this.waitsByRealm.delete(wait.options.realmURL);
    if (outcome instanceof Error) wait.reject(outcome);
    else wait.resolve(outcome);
    if (this.waits.size === 0) this.idleSoon();
  }

  private idleSoon(): void {
    clearTimeout(this.lingerTimer);
    if (this.closed || this.lingerMs <= 0) return this.releaseClient();
    this.lingerTimer = setTimeout(() => {
      if (this.waits.size === 0) this.releaseClient();
    }, this.lingerMs);
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    this.state = 'connecting';
    let client: pg.PoolClient | undefined;
    try {
      client = await this.pool.connect();
      this.stats.connections += 1;
      const connected = client;
      this.onClientError = (error: Error) => this.onLost(connected, error);
      this.onClientEnd = () => this.onLost(connected, new Error('LISTEN connection ended'));
      this.onClientNotification = (message: pg.Notification) => this.onNotification(message);
      client.on('error', this.onClientError);
      client.on('end', this.onClientEnd);
      client.on('notification', this.onClientNotification);
      await client.query(`LISTEN ${REPLICA_ACKS_CHANNEL}`);
    } catch (error) {
      if (this.state !== 'connecting') return; // the connection's error event got there first
      if (client) this.discard(client, error as Error);
      this.reportLost(error as Error);
      return this.backoff();
    }
    if (this.state !== 'connecting') return; // lost while LISTENing: onLost took over
    this.client = client;
    this.state = 'listening';
    this.listeningSince = performance.now();
    this.reconnectAttempt = 0;
    if (this.waits.size === 0 || this.closed) return this.idleSoon();
    // Resync: whatever was acknowledged before LISTEN was active is only visible in the table.
    for (const wait of this.waits) wait.dirty = true;
    this.scheduleFlush();
  }

  private onNotification(message: pg.Notification): void {
    if (message.channel !== REPLICA_ACKS_CHANNEL) return;
    this.stats.notifications += 1;
    const payload = message.payload ?? '';
    const ack = parseAckNotification(payload);
    if (ack) return this.onAck(ack);
    // An older replica's ack names only its realm: re-read that realm's waits. A cache start
    // ('*'), a deregistration ('-') or anything else concerns every wait.
    const isRealmURL = /^https?:\/\//.test(payload);
    if (isRealmURL) remember(this.heardInconclusiveAt, payload, performance.now());
    else this.heardForAllAt = performance.now();
    const woken = isRealmURL ? this.waitsByRealm.get(payload) : this.waits;
    if (!woken || woken.size === 0) return;
    for (const wait of woken) wait.dirty = true;
    this.scheduleFlush();
  }

  private onAck(ack: AckNotification): void {
    const now = performance.now();
    this.replicasSeen = true;
    const proof = ack.proof && completionOf(ack.realmURL, ack.epoch, ack.proof, replicaLeaseGraceOf(this.pool));
    if (proof?.missing.length === 0) {
      const newest = this.heardComplete.get(ack.realmURL);
      if (!newest || newest.status.epoch <= ack.epoch) remember(this.heardComplete, ack.realmURL, { status: proof, heardAt: now });
    } else {
      remember(this.heardInconclusiveAt, ack.realmURL, now);
    }
    let reread = false;
    for (const wait of this.waitsByRealm.get(ack.realmURL) ?? []) {
      if (wait.settled || ack.epoch < wait.options.epoch) continue;
      if (proof?.missing.length === 0 && ack.epoch !== wait.options.epoch) {
        // A proof for a later epoch than ours would do, if genuine; nothing ties it to our publish
        // (a forged far-future epoch would end every wait of the realm), so read instead.
        wait.dirty = true;
        reread = true;
        continue;
      }
      if (proof?.missing.length === 0) {
        // The announcer's snapshot followed its ack's commit, so the epoch's: a read made after the
        // epoch committed, which found every replica live by our grace done with an epoch >= ours.
        this.stats.completedByNotification += 1;
        this.stats.completedByAnnouncement += 1;
        this.settle(wait, { ...proof, realmURL: wait.options.realmURL, epoch: wait.options.epoch, complete: true, waitedMs: now - wait.started });
        continue;
      }
      wait.ackedByNotification.add(ack.replicaId);
      if (!wait.status) {
        // No read yet (skipped: see heardEverythingSince), and this proves nothing: read.
        wait.dirty = true;
        reread = true;
        continue;
      }
      const result = this.resultOf(wait, now);
      if (result.complete) {
        this.stats.completedByNotification += 1;
        this.settle(wait, result);
      } else {
        // Replicas NOTIFY only the ack that (as far as they could see) completes the set; the
        // others wrote their rows silently since our last read, so read again (coalesced).
        wait.dirty = true;
        reread = true;
      }
    }
    if (reread) this.scheduleFlush();
  }

  private onLost(client: pg.PoolClient, error: Error): void {
    if (this.client !== client && this.state !== 'connecting') return; // already released
    this.listeningSince = undefined;
    this.heardComplete.clear(); // proofs are trusted only from the session they arrived on
    this.discard(client, error);
    if (this.client === client) this.client = undefined;
    if (this.waits.size === 0 || this.closed) {
      this.state = 'idle';
      return;
    }
    this.stats.lost += 1;
    this.reportLost(error);
    this.backoff();
  }

  private backoff(): void {
    if (this.waits.size === 0 || this.closed) {
      this.state = 'idle';
      return;
    }
    // Polling goes on through the pool meanwhile; reads are allowed in backoff.
    this.state = 'backoff';
    const delay = Math.min(2000, this.reconnectDelayMs * 2 ** this.reconnectAttempt++);
    setTimeout(() => {
      if (this.state === 'backoff') void this.connect();
    }, delay);
    for (const wait of this.waits) wait.dirty = true;
    this.scheduleFlush();
  }

  private reportLost(error: Error): void {
    this.options.onConnectionError?.(error);
  }

  private releaseClient(): void {
    const client = this.client;
    this.client = undefined;
    this.listeningSince = undefined;
    this.heardComplete.clear();
    if (this.state === 'listening') this.state = 'idle';
    if (!client) return;
    this.detach(client);
    // Until UNLISTEN is done, an error on the connection must not reach the pool's other users.
    const swallow = () => undefined;
    client.on('error', swallow);
    client.query(`UNLISTEN ${REPLICA_ACKS_CHANNEL}`).then(
      () => {
        client.off('error', swallow);
        client.release();
      },
      (error: Error) => {
        client.off('error', swallow);
        this.discard(client, error);
      },
    );
  }

  private detach(client: pg.PoolClient): void {
    if (this.onClientNotification) client.off('notification', this.onClientNotification);
    if (this.onClientEnd) client.off('end', this.onClientEnd);
    if (this.onClientError) client.off('error', this.onClientError);
  }

  private discard(client: pg.PoolClient, error: Error): void {
    this.detach(client);
    try {
      client.release(error);
    } catch {
      // Already released (pg throws on a second release): nothing left to do.
    }
  }
}

/**
 * What a completion announcement saw (replica-registry.ts COMPLETION), in its snapshot after the
 * announcer's ack committed: the replicas live by lease and done, and every other replica whose
 * lease runs or lapsed within `windowMs`, with how long ago it lapsed (negative: still running).
 */
export interface CompletionProof {
  acknowledged: string[];
  others: Array<{ replicaId: string; lapsedMs: number; done: boolean }>;
  windowMs: number;
}

export interface AckNotification {
  realmURL: string;
  epoch: number;
  replicaId: string;
  proof?: CompletionProof;
}

/**
 * `{"r":realm,"e":epoch,"id":replica}` as the replicas send it, with `"c":{a,o,w}` when it is a
 * completion announcement carrying its proof; undefined for anything else. A malformed proof is
 * dropped (the notification then only names its notifier, and the waiter reads).
 */
export function parseAckNotification(payload: string): AckNotification | undefined {
  if (!payload.startsWith('{')) return undefined;
  let parsed: { r?: unknown; e?: unknown; id?: unknown; c?: unknown };
  try {
    parsed = JSON.parse(payload) as typeof parsed;
  } catch {
    return undefined;
  }
  const { r, e, id, c } = parsed;
  if (typeof r !== 'string' || typeof id !== 'string' || typeof e !== 'number' || !Number.isSafeInteger(e)) return undefined;
  const proof = parseCompletionProof(c);
  return proof ? { realmURL: r, epoch: e, replicaId: id, proof } : { realmURL: r, epoch: e, replicaId: id };
}

function parseCompletionProof(c: unknown): CompletionProof | undefined {
  if (typeof c !== 'object' || c === null) return undefined;
  const { a, o, w } = c as { a?: unknown; o?: unknown; w?: unknown };
  if (!Array.isArray(a) || !a.every((x) => typeof x === 'string') || !Array.isArray(o) || typeof w !== 'number' || !(w >= 0)) return undefined;
  const others: CompletionProof['others'] = [];
  for (const entry of o) {
    if (!Array.isArray(entry) || entry.length !== 3) return undefined;
    const [replicaId, lapsedMs, done] = entry as unknown[];
    if (typeof replicaId !== 'string' || typeof lapsedMs !== 'number' || !Number.isFinite(lapsedMs) || typeof done !== 'boolean') return undefined;
    others.push({ replicaId, lapsedMs, done });
  }
  return { acknowledged: a as string[], others, windowMs: w };
}

/**
 * The status a read at the announcement's instant would have returned for a waiter with lease
 * grace `graceMs` (ack-status.ts: live while `lease_expires_at + grace > now()`, i.e. lapsed less
 * than the grace ago); undefined when the proof cannot tell (the grace is longer than the window of
 * lapses it lists). A lapse exactly at the grace counts as live: at worst one spare read.
 */
export function completionOf(realmURL: string, epoch: number, proof: CompletionProof, graceMs: number): ReplicaAckStatus | undefined {
  if (graceMs > proof.windowMs) return undefined;
  const acknowledged = [...proof.acknowledged];
  const missing: string[] = [];
  for (const other of proof.others) {
    if (other.lapsedMs > graceMs) continue; // not live for us either
    (other.done ? acknowledged : missing).push(other.replicaId);
  }
  acknowledged.sort();
  missing.sort();
  return { realmURL, epoch, acknowledged, missing, mode: acknowledged.length + missing.length > 0 ? 'acknowledged' : 'notify-only' };
}

/** Bounded memory of the waiter's per-realm records: the oldest entry goes first. */
const REALMS_REMEMBERED = 4096;
function remember<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > REALMS_REMEMBERED) map.delete(map.keys().next().value!);
}

const shared = new WeakMap<pg.Pool, ReplicaAckWaiter>();

/**
 * The process-wide waiter of a pool, created on first use. Its LISTEN connection is held only
 * while waits are active (plus the linger); `pool.end()` is wrapped to close the waiter first so
 * ending the pool never waits out the linger.
 */
export function sharedReplicaAckWaiter(pool: pg.Pool): ReplicaAckWaiter {
  let waiter = shared.get(pool);
  if (!waiter) {
    const created = new ReplicaAckWaiter(pool);
    waiter = created;
    shared.set(pool, created);
    const end = pool.end.bind(pool) as (callback?: () => void) => Promise<void> | void;
    (pool as { end: (callback?: () => void) => Promise<void> | void }).end = (callback?: () => void) => {
      shared.delete(pool);
      const closed = created.close().catch(() => undefined);
      if (callback) return void closed.then(() => end(callback));
      return closed.then(() => end());
    };
  }
  return waiter;
}
