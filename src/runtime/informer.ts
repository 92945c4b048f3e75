/**
 * List + watch of one resource kind into an in-memory cache keyed by `namespace/name`, with
 * add/update/delete callbacks: client-go's reflector + indexer, kube-rs's watcher + reflector.
 *
 * Expected flow: `start(signal)` lists (paginated, a consistent read), replaces the cache, then
 * watches from the list's resourceVersion with bookmarks. Events update the cache first and then
 * call the handlers. When the server ends a watch cleanly (its `timeoutSeconds`), the informer
 * watches again from the last resourceVersion it saw. On anything else it re-lists and watches
 * again after a capped, jittered backoff, forever, until the signal aborts:
 * - any transport or HTTP error, on the list or the watch;
 * - `410 Gone` / `Expired` ("too old resource version"), as an HTTP status or a watch ERROR event;
 * - silence: no event and no bookmark for `silenceTimeoutMs` (a half-open connection, a proxy
 *   that stopped forwarding) — the watchdog aborts the watch.
 *
 * Guarantees:
 * - Handlers see the cache already updated. A re-list calls `onAdd` for new objects, `onUpdate`
 *   for objects whose resourceVersion changed and `onDelete(obj, true)` for objects that vanished
 *   while the informer was not watching (their last known state).
 * - `hasSynced()` turns true after the first successful list and stays true: the cache may be
 *   stale while reconnecting, as with client-go — reconcilers re-read what they act on.
 * - A handler added late is first called with `onAdd` for every cached object.
 * - `start` never rejects; it resolves once the signal has aborted and the watch is closed.
 *
 * Why this instead of client-node's `makeInformer`: that one stops for good on any watch error
 * other than 410 (kubernetes-client/javascript#2385, #364), has no watchdog and no backoff (see
 * also kube-client.ts).
 *
 * Errors: thrown by handlers are logged and swallowed; nothing else escapes.
 */
import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import { backoffDelay, type BackoffPolicy } from '../common/backoff.js';
import { KubeApiError, kubeRequest, kubeWatch, statusCodeOf, type KubeConnection, type KubeStatus, type WatchLike } from './kube-client.js';
import { runtimeMetrics, type RuntimeMetrics } from './metrics.js';
import { formatKey, keyOfObject, type KubeObject, type ObjectKey } from './object-key.js';
import { sleep } from './sleep.js';

/** Which resource to list and watch: by group/version/plural, or an explicit collection path. */
export type ResourceRef =
  | {
      /** Empty or omitted for the core group (`/api/v1`). */
      group?: string;
      version: string;
      /** The resource's plural name, e.g. `configmaps`, `publishedrealms`. */
      plural: string;
    }
  | {
      /** A collection path, e.g. `/api/v1/namespaces/ns/configmaps`; `namespace` is then ignored. */
      path: string;
    };

export interface InformerEventHandler<T> {
  onAdd?(object: T): void;
  onUpdate?(oldObject: T, newObject: T): void;
  /** `finalStateUnknown`: the deletion was inferred by a re-list, and `object` is the last state seen. */
  onDelete?(object: T, finalStateUnknown: boolean): void;
}

/** What a controller needs from an informer; tests substitute a fake. */
export interface ObjectSource<T extends KubeObject = KubeObject> {
  readonly name: string;
  addEventHandler(handler: InformerEventHandler<T>): () => void;
  /** Every cached key (`namespace/name`). */
  keys(): string[];
  hasSynced(): boolean;
  /** Resolves once synced; rejects if `signal` aborts first. */
  waitForSync(signal?: AbortSignal): Promise<void>;
}

export interface InformerOptions {
  /** A client-node `KubeConfig`, or `loadKubeconfig(file)` / `inClusterConnection()`. */
  kubeConfig: KubeConnection;
  resource: ResourceRef;
  /** Watch one namespace; omit for all namespaces (or a cluster-scoped kind). */
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** For logs and metrics. Default: the collection path. */
  name?: string;
  /** Abort and restart (re-list) a watch that delivered nothing, not even a bookmark, for this long. Default 5 minutes. */
  silenceTimeoutMs?: number;
  /** Backoff between restarts after failures. Default 200 ms doubling to 30 s, jittered. */
  backoff?: BackoffPolicy;
  /** Per list request. Default 60 s. */
  listTimeoutMs?: number;
  /** Objects per list page. Default 500. */
  listPageSize?: number;
  /** Server-side watch timeout. Default random in [5, 10) minutes, like client-go, so reconnects spread out. */
  watchTimeoutSeconds?: number;
  /** How to watch; default {@link kubeWatch} over `kubeConfig`. A client-node `Watch` fits this shape too. */
  watch?: WatchLike;
  logger?: Logger;
  metricsRegistry?: Registry;
  random?: () => number;
  /**
   * Keep `metadata.managedFields` in cached objects (default false: dropped as each object
   * arrives, as controller-runtime's `cache.TransformStripManagedFields` does). Server-side apply's
   * bookkeeping is often the largest part of an object and nothing here reads it; a PUT of a
   * cached object without it leaves the server's managedFields as they are.
   */
  keepManagedFields?: boolean;
}

export type WatchRestartReason = 'closed' | 'error' | 'gone' | 'watchdog';

export interface InformerStatus {
  name: string;
  synced: boolean;
  objects: number;
  resourceVersion: string | undefined;
  /** Completed lists (the first one and every re-list). */
  lists: number;
  /** Watches started. */
  watches: number;
  restarts: Record<WatchRestartReason, number>;
  lastError?: string;
}

interface ListPage<T> {
  apiVersion?: string;
  kind?: string;
  metadata?: { resourceVersion?: string; continue?: string };
  items?: T[];
}

interface WatchOutcome {
  reason: WatchRestartReason | 'stopped';
  error?: unknown;
  /** The watch worked for a while: start the backoff over. */
  healthy: boolean;
}

export const DEFAULT_INFORMER_BACKOFF: BackoffPolicy = { initialMs: 200, maxMs: 30_000 };
const DEFAULT_SILENCE_TIMEOUT_MS = 5 * 60_000;
/** A watch the server closed after at least this long was a normal one, not a failure. */
const HEALTHY_WATCH_MS = 1_000;

export class Informer<T extends KubeObject = KubeObject> implements ObjectSource<T> {
  readonly name: string;
  /** Caches run on every replica, leader or not, so a new leader starts warm (controller-runtime does the same). */
  readonly needLeaderElection = false;
  private readonly options: InformerOptions;
  private readonly path: string;
  private readonly watcher: WatchLike;
  private readonly silenceTimeoutMs: number;
  private readonly logger: Logger;
  private readonly metrics: RuntimeMetrics;
  private readonly random: () => number;
  private cache = new Map<string, T>();
  private readonly handlers = new Set<InformerEventHandler<T>>();
  private readonly syncWaiters = new Set<() => void>();
  private synced = false;
  private running = false;
  private resourceVersion: string | undefined;
  private lists = 0;
  private watches = 0;
  private readonly restarts: Record<WatchRestartReason, number> = { closed: 0, error: 0, gone: 0, watchdog: 0 };
  private lastError: string | undefined;

  constructor(options: InformerOptions) {
    this.options = options;
    this.path = resourcePath(options.resource, options.namespace);
    this.name = options.name ?? this.path;
    this.silenceTimeoutMs = options.silenceTimeoutMs ?? DEFAULT_SILENCE_TIMEOUT_MS;
    this.random = options.random ?? Math.random;
    this.watcher = options.watch ?? kubeWatch(options.kubeConfig);
    this.logger = (options.logger ?? pino({ name: 'informer' })).child({ informer: this.name });
    this.metrics = runtimeMetrics(options.metricsRegistry ?? new Registry());
    this.metrics.informerSynced.set({ informer: this.name }, 0);
  }

  /** The cached object, if any. Treat it as read-only: it is shared with every reader. */
  get(key: string | ObjectKey): T | undefined {
    return this.cache.get(typeof key === 'string' ? key : formatKey(key));
  }

  list(): T[] {
    return [...this.cache.values()];
  }

  keys(): string[] {
    return [...this.cache.keys()];
  }

  hasSynced(): boolean {
    return this.synced;
  }

  async waitForSync(signal?: AbortSignal): Promise<void> {
    if (this.synced) return;
    signal?.throwIfAborted();
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        this.syncWaiters.delete(done);
        reject(signal?.reason ?? new Error('aborted'));
      };
      const done = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      this.syncWaiters.add(done);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Registers `handler` (first replaying the cache as adds); returns a function that removes it. */
  addEventHandler(handler: InformerEventHandler<T>): () => void {
    this.handlers.add(handler);
    for (const object of this.cache.values()) this.call('onAdd', () => handler.onAdd?.(object));
    return () => this.handlers.delete(handler);
  }

  status(): InformerStatus {
    return {
      name: this.name,
      synced: this.synced,
      objects: this.cache.size,
      resourceVersion: this.resourceVersion,
      lists: this.lists,
      watches: this.watches,
      restarts: { ...this.restarts },
      ...(this.lastError ? { lastError: this.lastError } : {}),
    };
  }

  /** Lists and watches until `signal` aborts; see the module comment. */
  async start(signal: AbortSignal): Promise<void> {
    if (this.running) throw new Error(`informer ${this.name} is already running`);
    this.running = true;
    try {
      await this.run(signal);
    } finally {
      this.running = false;
    }
  }

  private async run(signal: AbortSignal): Promise<void> {
    const backoff = this.options.backoff ?? DEFAULT_INFORMER_BACKOFF;
    let attempt = 0;
    let needList = true;
    while (!signal.aborted) {
      let outcome: WatchOutcome;
      try {
        if (needList) {
          await this.relist(signal);
          needList = false;
        }
        outcome = await this.watchOnce(signal);
      } catch (error) {
        // Only the list throws; a list is never resumable, so every failure is retried as an error.
        outcome = { reason: 'error', error, healthy: false };
      }
      if (outcome.reason === 'stopped' || signal.aborted) break;
      this.restarts[outcome.reason] += 1;
      this.metrics.informerWatchRestarts.inc({ informer: this.name, reason: outcome.reason });
      if (outcome.healthy) attempt = 0;
      // Only a watch the server ended normally can resume from where it was; after anything else
      // events may have been missed (or the resourceVersion is gone), so the cache is rebuilt.
      needList = outcome.reason !== 'closed';
      const delay = outcome.reason === 'closed' && outcome.healthy ? 0 : backoffDelay(attempt++, backoff, this.random);
      if (outcome.error !== undefined) this.lastError = errorMessage(outcome.error);
      const log = { reason: outcome.reason, err: outcome.error, delayMs: delay, relist: needList };
      if (outcome.reason === 'closed') this.logger.debug(log, 'watch closed by the server; watching again');
      else this.logger.warn(log, 'watch failed; restarting');
      await sleep(delay, signal);
    }
  }

  private async relist(signal: AbortSignal): Promise<void> {
    const items: T[] = [];
    let continueToken: string | undefined;
    let resourceVersion: string | undefined;
    do {
      const page = await kubeRequest<ListPage<T>>(this.options.kubeConfig, {
        path: this.path,
        query: {
          limit: this.options.listPageSize ?? 500,
          continue: continueToken,
          labelSelector: this.options.labelSelector,
          fieldSelector: this.options.fieldSelector,
        },
        signal: AbortSignal.any([signal, AbortSignal.timeout(this.options.listTimeoutMs ?? 60_000)]),
      });
      // List items come without apiVersion and kind; fill them in so cached objects look the same
      // whether they came from a list or a watch event.
      const kind = page.kind?.replace(/List$/, '');
      for (const item of page.items ?? []) items.push(this.trim(kind && !item.kind ? { apiVersion: page.apiVersion, kind, ...item } : item));
      continueToken = page.metadata?.continue || undefined;
      resourceVersion = page.metadata?.resourceVersion;
    } while (continueToken);
    this.replace(items, resourceVersion);
  }

  /** Swaps in a fresh list and tells the handlers what changed since the cache was last right. */
  private replace(items: T[], resourceVersion: string | undefined): void {
    const previous = this.cache;
    const next = new Map<string, T>();
    for (const item of items) next.set(keyOfObject(item), item);
    this.cache = next;
    this.resourceVersion = resourceVersion;
    this.lists += 1;
    this.metrics.informerLists.inc({ informer: this.name });
    this.metrics.informerObjects.set({ informer: this.name }, next.size);
    for (const [key, object] of next) {
      const old = previous.get(key);
      if (!old) this.emit('onAdd', (h) => h.onAdd?.(object));
      else if (old.metadata?.resourceVersion !== object.metadata?.resourceVersion) this.emit('onUpdate', (h) => h.onUpdate?.(old, object));
    }
    for (const [key, object] of previous) {
      if (!next.has(key)) this.emit('onDelete', (h) => h.onDelete?.(object, true));
    }
    this.logger.debug({ objects: next.size, resourceVersion }, 'listed');
    if (!this.synced) {
      this.synced = true;
      this.metrics.informerSynced.set({ informer: this.name }, 1);
      for (const resolve of this.syncWaiters) resolve();
      this.syncWaiters.clear();
    }
  }

  /** One watch, from the current resourceVersion, until it ends, fails, falls silent or is stopped. */
  private watchOnce(signal: AbortSignal): Promise<WatchOutcome> {
    const started = performance.now();
    let received = 0;
    this.watches += 1;
    return new Promise<WatchOutcome>((resolve) => {
      let finished = false;
      let controller: AbortController | undefined;
      let watchdog: NodeJS.Timeout | undefined;
      const finish = (outcome: WatchOutcome) => {
        if (finished) return;
        finished = true;
        clearTimeout(watchdog);
        signal.removeEventListener('abort', onAbort);
        controller?.abort();
        resolve(outcome);
      };
      const onAbort = () => finish({ reason: 'stopped', healthy: true });
      const pet = () => {
        clearTimeout(watchdog);
        watchdog = setTimeout(
          () => finish({ reason: 'watchdog', error: new Error(`no watch event or bookmark for ${this.silenceTimeoutMs} ms`), healthy: false }),
          this.silenceTimeoutMs,
        );
      };
      signal.addEventListener('abort', onAbort, { once: true });
      // Armed before connecting: a connect that hangs is silence too.
      pet();
      const onEvent = (type: string, object: unknown) => {
        // An ERROR event, or a bad object, ends this watch as a failure; handlers cannot throw (see emit).
        if (finished) return;
        try {
          this.handleWatchEvent(type, object as T);
          received += 1;
          pet();
        } catch (error) {
          finish({ reason: isGone(error) ? 'gone' : 'error', error, healthy: received > 0 });
        }
      };
      const onDone = (error: unknown) => {
        if (error) finish({ reason: isGone(error) ? 'gone' : 'error', error, healthy: received > 0 });
        else finish({ reason: 'closed', healthy: received > 0 || performance.now() - started >= HEALTHY_WATCH_MS });
      };
      const query = {
        resourceVersion: this.resourceVersion,
        allowWatchBookmarks: true,
        timeoutSeconds: this.options.watchTimeoutSeconds ?? Math.floor(300 * (1 + this.random())),
        labelSelector: this.options.labelSelector,
        fieldSelector: this.options.fieldSelector,
      };
      this.watcher.watch(this.path, query, onEvent, onDone).then(
        (abort) => {
          controller = abort;
          if (finished) abort.abort();
        },
        (error: unknown) => onDone(error ?? new Error('watch failed to start')),
      );
    });
  }

  /** Drops what the cache does not keep (see `keepManagedFields`); the object is freshly decoded, ours to change. */
  private trim(object: T): T {
    if (!this.options.keepManagedFields && object?.metadata && 'managedFields' in object.metadata) delete (object.metadata as { managedFields?: unknown }).managedFields;
    return object;
  }

  private handleWatchEvent(type: string, object: T): void {
    switch (type) {
      case 'ADDED':
      case 'MODIFIED': {
        this.trim(object);
        const key = keyOfObject(object);
        const old = this.cache.get(key);
        this.cache.set(key, object);
        this.advance(object);
        this.metrics.informerObjects.set({ informer: this.name }, this.cache.size);
        if (old) this.emit('onUpdate', (h) => h.onUpdate?.(old, object));
        else this.emit('onAdd', (h) => h.onAdd?.(object));
        return;
      }
      case 'DELETED': {
        this.cache.delete(keyOfObject(object));
        this.advance(object);
        this.metrics.informerObjects.set({ informer: this.name }, this.cache.size);
        this.emit('onDelete', (h) => h.onDelete?.(object, false));
        return;
      }
      case 'BOOKMARK':
        this.advance(object);
        return;
      case 'ERROR': {
        const status = object as unknown as KubeStatus;
        throw new KubeApiError(status.code ?? 500, status, `watch ${this.path}`);
      }
      default:
        this.logger.warn({ type }, 'ignored a watch event of unknown type');
    }
  }

  private advance(object: KubeObject): void {
    const resourceVersion = object.metadata?.resourceVersion;
    if (resourceVersion) this.resourceVersion = resourceVersion;
  }

  private emit(what: keyof InformerEventHandler<T>, call: (handler: InformerEventHandler<T>) => void): void {
    for (const handler of this.handlers) this.call(what, () => call(handler));
  }

  /** Runs one handler callback; a throw is logged, never propagated into the watch loop. */
  private call(what: string, fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.logger.error({ err: error, handler: what }, 'informer event handler threw');
    }
  }
}

/** The collection path for `resource`, in `namespace` or across all namespaces. */
export function resourcePath(resource: ResourceRef, namespace?: string): string {
  if ('path' in resource) return resource.path;
  const prefix = resource.group ? `/apis/${resource.group}/${resource.version}` : `/api/${resource.version}`;
  return namespace ? `${prefix}/namespaces/${encodeURIComponent(namespace)}/${resource.plural}` : `${prefix}/${resource.plural}`;
}

/** 410 Gone / Expired: the resourceVersion we asked for is no longer available; only a re-list helps. */
export function isGone(error: unknown): boolean {
  if (statusCodeOf(error) === 410) return true;
  if (error instanceof KubeApiError && (error.reason === 'Expired' || error.reason === 'Gone')) return true;
  return /too old resource version/i.test(errorMessage(error));
}

function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.cause instanceof Error ? `${error.message}: ${error.cause.message}` : error.message;
  return String(error);
}

