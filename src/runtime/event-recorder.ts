/**
 * Kubernetes Events through `events.k8s.io/v1`, the way client-go's current recorder
 * (`k8s.io/client-go/tools/events`) writes them: `eventTime` with microseconds,
 * `reportingController`/`reportingInstance`, `action`, `regarding`, `note`, and series.
 *
 * Expected flow: `record({ regarding, type, reason, action, note })` from anywhere; it resolves
 * once the write was attempted and never rejects (an Event is never worth failing a reconcile).
 *
 * Guarantees:
 * - Aggregation: an event isomorphic to one recorded within `seriesWindowMs` of its last
 *   occurrence (same regarding object, related object, type, reason, action, note and reporting
 *   controller) does not create a new object: the existing one's `series.count` and
 *   `series.lastObservedTime` are PATCHed. So 20 identical Events are one object with
 *   `series.count: 20`, and `kubectl describe` shows "(x20 over …)".
 * - Rate limit per regarding object: a token bucket (client-go's spam filter: burst 25, one
 *   token per 5 minutes). A new Event without a token is dropped, as client-go does; a series bump
 *   without a token is kept in memory and written when the next token is due (or on `close()`),
 *   so counts stay right without writing on every occurrence.
 * - Writes for one series are sequential (the PATCH never races its CREATE).
 * - Bounded memory, as client-go's EventCorrelator bounds its caches: series are keyed by a
 *   digest of their identity (never by the note itself, which the series' state holds once, for
 *   its CREATE), at most {@link MAX_CACHED_SERIES} series and as many per-object buckets are kept,
 *   least recently used first out (client-go's LRU of 4096), and idle series and full buckets are
 *   swept. An evicted series' next occurrence creates a new Event, as in client-go.
 *
 * API use: `create` and `patch` on `events.k8s.io` `events` in the regarding object's namespace;
 * nothing else. A series whose Event was deleted meanwhile (TTL) is created again.
 */
import { createHash } from 'node:crypto';
import { pino, type Logger } from 'pino';
import { KubeApiError, kubeRequest, type KubeConnection } from './kube-client.js';
import { formatMicroTime } from './lease-record.js';

export type EventType = 'Normal' | 'Warning';

/** `core/v1 ObjectReference`, as events.k8s.io uses it for `regarding` and `related`. */
export interface ObjectReference {
  apiVersion?: string;
  kind?: string;
  name: string;
  /** Empty or absent for cluster-scoped objects (the Event then goes to `default`). */
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  fieldPath?: string;
}

export interface EventInput {
  regarding: ObjectReference;
  related?: ObjectReference;
  type: EventType;
  /** Why the action was taken, CamelCase (at most 128 characters). */
  reason: string;
  /** What was done or failed, CamelCase (at most 128 characters), e.g. `Publish`, `Reconcile`. */
  action: string;
  /** Human-readable; cut to 1 kB, the API's limit. */
  note: string;
}

export interface TokenBucketPolicy {
  burst: number;
  /** One token comes back this often. */
  refillEveryMs: number;
}

/** client-go's EventSourceObjectSpamFilter defaults: 25 at once, then one every 5 minutes. */
export const DEFAULT_EVENT_RATE_LIMIT: TokenBucketPolicy = { burst: 25, refillEveryMs: 5 * 60_000 };
/** client-go keeps an isomorphic event's series open this long after its last occurrence. */
export const DEFAULT_SERIES_WINDOW_MS = 6 * 60_000;
/** client-go's `maxLruCacheEntries`: open series, and per-object rate-limit buckets, kept at most. */
export const MAX_CACHED_SERIES = 4096;

/** A token bucket over an injected clock (pure). */
export class TokenBucket {
  private tokens: number;
  private updatedAt: number;

  constructor(
    private readonly policy: TokenBucketPolicy,
    now: number,
  ) {
    this.tokens = policy.burst;
    this.updatedAt = now;
  }

  /** Takes a token if one is available. */
  take(now: number): boolean {
    this.refill(now);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Milliseconds until a token is available (0 when one is). */
  msUntilToken(now: number): number {
    this.refill(now);
    return this.tokens >= 1 ? 0 : Math.ceil((1 - this.tokens) * this.policy.refillEveryMs);
  }

  /** Whether the bucket is full, i.e. forgetting it changes nothing. */
  isFull(now: number): boolean {
    this.refill(now);
    return this.tokens >= this.policy.burst;
  }

  private refill(now: number): void {
    const elapsed = Math.max(0, now - this.updatedAt);
    this.tokens = Math.min(this.policy.burst, this.tokens + elapsed / this.policy.refillEveryMs);
    this.updatedAt = now;
  }
}

/**
 * The identity of an event for aggregation (client-go's `eventKey`), as a fixed-size digest
 * (sha256, base64url): the note is part of the identity, but a key that held it would keep every
 * note twice for as long as its series is open (~0.4 MB at 1,000 objects).
 */
export function isomorphismKey(input: EventInput, reportingController: string): string {
  const ref = (r: ObjectReference | undefined) => (r ? [r.apiVersion, r.kind, r.namespace, r.name, r.uid, r.fieldPath] : null);
  const identity = JSON.stringify([ref(input.regarding), ref(input.related), input.type, input.reason, input.action, input.note, reportingController]);
  return createHash('sha256').update(identity).digest('base64url');
}

/** Marks `key` most recently used in `map` (a Map iterates in insertion order: its first key is the least recently used). */
function touch<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key);
  map.set(key, value);
}

/** What to do with one occurrence of an event. */
export type SeriesDecision = { write: 'create' } | { write: 'patch'; count: number } | { write: 'none'; count: number };

/**
 * Which occurrences open a series and which bump it (pure). `observe` returns, for an occurrence
 * at `now`, whether it is new (create) or the n-th of an open series; the caller then asks the
 * rate limiter whether to write now.
 */
export class SeriesTracker {
  private readonly open = new Map<string, { count: number; lastObserved: number }>();

  constructor(
    private readonly windowMs: number,
    /** Series kept at most; beyond it the least recently observed one is forgotten (client-go's LRU). */
    private readonly maxEntries = MAX_CACHED_SERIES,
  ) {}

  /** `evicted`: the series forgotten to make room for this one, if any. */
  observe(key: string, now: number): { count: number; isNew: boolean; evicted?: string } {
    const entry = this.open.get(key);
    if (entry && now - entry.lastObserved <= this.windowMs) {
      entry.count += 1;
      entry.lastObserved = now;
      touch(this.open, key, entry);
      return { count: entry.count, isNew: false };
    }
    touch(this.open, key, { count: 1, lastObserved: now });
    if (this.open.size <= this.maxEntries) return { count: 1, isNew: true };
    const evicted = this.open.keys().next().value!;
    this.open.delete(evicted);
    return { count: 1, isNew: true, evicted };
  }

  /** Forgets a series (its create was dropped or failed: the next occurrence creates). */
  forget(key: string): void {
    this.open.delete(key);
  }

  /** Drops series idle for longer than the window; returns the keys dropped. */
  sweep(now: number): string[] {
    const dropped: string[] = [];
    for (const [key, entry] of this.open) {
      if (now - entry.lastObserved > this.windowMs) {
        this.open.delete(key);
        dropped.push(key);
      }
    }
    return dropped;
  }

  get size(): number {
    return this.open.size;
  }
}

/** Cuts `text` to at most `maxBytes` of UTF-8 without splitting a character. */
export function truncateUTF8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  let cut = text.slice(0, maxBytes);
  while (Buffer.byteLength(cut) > maxBytes - 3) cut = cut.slice(0, -1);
  return `${cut}…`;
}

export interface EventRecorderOptions {
  kubeConfig: KubeConnection;
  /** `reportingController`: a qualified name such as `example.com/my-operator`. */
  reportingController: string;
  /** `reportingInstance`: this process (e.g. the pod name), at most 128 characters. */
  reportingInstance: string;
  seriesWindowMs?: number;
  rateLimit?: TokenBucketPolicy;
  logger?: Logger;
  /** Wall-clock milliseconds since the epoch, with a sub-millisecond fraction when available. */
  now?: () => number;
}

interface SeriesState {
  namespace: string;
  /** The Event object, once created. */
  name?: string;
  count: number;
  /** When the series began: the Event's `eventTime`. */
  firstObserved: number;
  lastObserved: number;
  /** The count the API server has. */
  written: number;
  chain: Promise<void>;
  flushTimer?: NodeJS.Timeout;
  input: EventInput;
}

const NOTE_LIMIT_BYTES = 1024;
const SWEEP_EVERY_MS = 1000;

export class EventRecorder {
  private readonly tracker: SeriesTracker;
  private readonly series = new Map<string, SeriesState>();
  private readonly buckets = new Map<string, TokenBucket>();
  /** Series the tracker closed while a write held back for a token was pending. */
  private readonly closedWithPendingWrite = new Set<string>();
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly rateLimit: TokenBucketPolicy;
  private readonly windowMs: number;
  private lastNanos = 0n;
  private sweptAt = -Infinity;
  private closed = false;

  constructor(private readonly options: EventRecorderOptions) {
    this.windowMs = options.seriesWindowMs ?? DEFAULT_SERIES_WINDOW_MS;
    this.tracker = new SeriesTracker(this.windowMs);
    this.rateLimit = options.rateLimit ?? DEFAULT_EVENT_RATE_LIMIT;
    this.logger = options.logger ?? pino({ name: 'events' });
    this.now = options.now ?? (() => performance.timeOrigin + performance.now());
  }

  /** Records one occurrence; see the module comment. Never rejects. */
  async record(input: EventInput): Promise<void> {
    if (this.closed) return;
    const now = this.now();
    this.sweep(now);
    const key = isomorphismKey(input, this.options.reportingController);
    const { count, isNew, evicted } = this.tracker.observe(key, now);
    if (evicted !== undefined) this.forgetSeries(evicted);
    const bucket = this.bucketFor(input.regarding, now);
    if (isNew) {
      if (!bucket.take(now)) {
        this.tracker.forget(key);
        this.logger.debug({ reason: input.reason, regarding: input.regarding.name }, 'event dropped by the per-object rate limit');
        return;
      }
      const state: SeriesState = { namespace: input.regarding.namespace || 'default', count, firstObserved: now, lastObserved: now, written: 0, chain: Promise.resolve(), input };
      const previous = this.series.get(key);
      if (previous) clearTimeout(previous.flushTimer);
      this.series.set(key, state);
      return this.enqueue(state, () => this.create(state));
    }
    const state = this.series.get(key);
    if (!state) return;
    state.count = count;
    state.lastObserved = now;
    if (bucket.take(now)) return this.enqueue(state, () => this.patch(state));
    // No token: keep the count and write it when the next token is due.
    if (!state.flushTimer) {
      state.flushTimer = setTimeout(() => {
        state.flushTimer = undefined;
        const at = this.now();
        if (state.count > state.written && this.bucketFor(state.input.regarding, at).take(at)) void this.enqueue(state, () => this.patch(state));
      }, bucket.msUntilToken(now));
      state.flushTimer.unref();
    }
    return state.chain;
  }

  /** Writes every series bump still held back by the rate limit, then stops recording. */
  async close(): Promise<void> {
    this.closed = true;
    const pending: Array<Promise<void>> = [];
    for (const state of this.series.values()) {
      clearTimeout(state.flushTimer);
      state.flushTimer = undefined;
      pending.push(state.count > state.written ? this.enqueue(state, () => this.patch(state)) : state.chain);
    }
    await Promise.all(pending);
  }

  /** Resolves once every write started so far has finished. */
  async idle(): Promise<void> {
    await Promise.all([...this.series.values()].map((s) => s.chain));
  }

  private enqueue(state: SeriesState, write: () => Promise<void>): Promise<void> {
    state.chain = state.chain.then(write).catch((error: unknown) => {
      this.logger.warn({ err: error, reason: state.input.reason, regarding: state.input.regarding.name }, 'could not record an Event');
    });
    return state.chain;
  }

  private async create(state: SeriesState): Promise<void> {
    const { input } = state;
    for (let attempt = 0; ; attempt++) {
      const eventTime = state.firstObserved;
      const body = {
        apiVersion: 'events.k8s.io/v1',
        kind: 'Event',
        metadata: { name: this.eventName(input.regarding.name, eventTime), namespace: state.namespace },
        eventTime: formatMicroTime(eventTime),
        reportingController: this.options.reportingController,
        reportingInstance: this.options.reportingInstance.slice(0, 128),
        action: input.action.slice(0, 128),
        reason: input.reason.slice(0, 128),
        note: truncateUTF8(input.note, NOTE_LIMIT_BYTES),
        type: input.type,
        regarding: input.regarding,
        ...(input.related ? { related: input.related } : {}),
        // A series re-created after its Event was deleted keeps its count.
        ...(state.count >= 2 ? { series: { count: state.count, lastObservedTime: formatMicroTime(state.lastObserved) } } : {}),
      };
      const countAtWrite = state.count;
      try {
        await kubeRequest(this.options.kubeConfig, { method: 'POST', path: `/apis/events.k8s.io/v1/namespaces/${encodeURIComponent(state.namespace)}/events`, body });
        state.name = body.metadata.name;
        state.written = countAtWrite;
        // Occurrences that arrived while creating were held for this write; send them now.
        if (state.count > state.written) await this.patch(state);
        return;
      } catch (error) {
        if (error instanceof KubeApiError && error.statusCode === 409 && attempt < 3) continue; // name clash: a new name
        throw error;
      }
    }
  }

  private async patch(state: SeriesState): Promise<void> {
    if (state.count <= state.written) return;
    if (!state.name) return this.create(state);
    const count = state.count;
    try {
      await kubeRequest(this.options.kubeConfig, {
        method: 'PATCH',
        path: `/apis/events.k8s.io/v1/namespaces/${encodeURIComponent(state.namespace)}/events/${encodeURIComponent(state.name)}`,
        contentType: 'application/merge-patch+json',
        body: { series: { count, lastObservedTime: formatMicroTime(state.lastObserved) } },
      });
      state.written = count;
    } catch (error) {
      if (error instanceof KubeApiError && error.statusCode === 404) {
        state.name = undefined;
        return this.create(state);
      }
      throw error;
    }
  }

  /** client-go's `<regarding name>.<hex nanoseconds>`; the nanoseconds never repeat within this process. */
  private eventName(regardingName: string, epochMs: number): string {
    const nanos = BigInt(Math.floor(epochMs * 1000)) * 1000n;
    this.lastNanos = nanos > this.lastNanos ? nanos : this.lastNanos + 1n;
    return `${regardingName}.${this.lastNanos.toString(16)}`;
  }

  /** A series the tracker evicted: its state goes too (a bump still held back for a token is lost, as in client-go's LRU). */
  private forgetSeries(key: string): void {
    const state = this.series.get(key);
    if (!state) return;
    clearTimeout(state.flushTimer);
    state.flushTimer = undefined;
    this.series.delete(key);
  }

  /** The object's bucket, most recently used; at most {@link MAX_CACHED_SERIES} are kept (client-go's spam filter LRU). */
  private bucketFor(regarding: ObjectReference, now: number): TokenBucket {
    const key = regarding.uid ?? `${regarding.apiVersion}/${regarding.kind}/${regarding.namespace}/${regarding.name}`;
    const bucket = this.buckets.get(key) ?? new TokenBucket(this.rateLimit, now);
    touch(this.buckets, key, bucket);
    if (this.buckets.size > MAX_CACHED_SERIES) this.buckets.delete(this.buckets.keys().next().value!);
    return bucket;
  }

  /** Series and buckets held (bounded by {@link MAX_CACHED_SERIES} each). */
  get cachedEntries(): { series: number; buckets: number } {
    return { series: this.series.size, buckets: this.buckets.size };
  }

  /**
   * Bounds memory: closed series and full buckets are forgotten. At most once a second: it walks
   * every series and bucket, which at a thousand objects cost more than recording the Event.
   */
  private sweep(now: number): void {
    if (now - this.sweptAt < SWEEP_EVERY_MS) return;
    this.sweptAt = now;
    // A closed series whose held-back bump is still to be written goes on a later sweep, once written.
    for (const key of [...this.tracker.sweep(now), ...this.closedWithPendingWrite]) {
      const state = this.series.get(key);
      this.closedWithPendingWrite.delete(key);
      if (state?.flushTimer) this.closedWithPendingWrite.add(key);
      else if (state && now - state.lastObserved > this.windowMs) this.series.delete(key);
    }
    if (this.buckets.size > 1000) for (const [key, bucket] of this.buckets) if (bucket.isFull(now)) this.buckets.delete(key);
  }
}
