/**
 * The reference realm server: serves realm files over HTTP from the shared realms root through an
 * in-memory cache of file bytes, kept correct by the listener library. It is the sample workload
 * in deploy/, what `make demo` runs, and the replicas of the end-to-end consistency suite.
 *
 * A request's realm is found from its URL (`<scheme>://<Host header><path>`): the longest realm URL
 * in `realm_registry` that prefixes it, resolved against a complete per-origin snapshot of the
 * registry that every registry change, wildcard invalidation and listener reconnect discards
 * before the listener acknowledges anything (see realm-registry.ts). Only published realms are
 * served (`<root>/_published/<disk_id>/`), source realms (`<root>/<disk_id>/`) only when
 * `serveSourceRealms` is set; a path under a realm that is not served is 404, never the bytes of
 * a realm whose URL is a shorter prefix.
 *
 * A path below a realm is mapped as Boxel maps it (`boxelLocalPath`, request-path.ts): Boxel's
 * `LocalPath` is both the file below the realm directory and the cache key, so a per-path
 * `realm_file_changes` payload from a Boxel server drops exactly the entry a request filled.
 * Files are read without following any symlink below the realm directory (no-follow.ts); bad
 * paths (NUL, backslash, encoded separators, dot or empty segments, paths Boxel cannot map) are
 * 400 and nothing a request or a failure reveals names a file-system path.
 *
 * Registry changes: every `realm_registry` notification, whatever its payload, makes the server
 * forget its registry snapshots and drop the caches of realms whose rows are gone (Boxel's
 * replicas re-read the registry on any such notification); a `delete:<X>` drops the caches of X
 * and of every cached realm whose `source_url` is X, which Boxel's delete-realm handler sends once
 * for a source realm and all of its published realms. Both happen before the listener handles
 * the next notification (so before any acknowledgement), and a request resolved before a
 * registry change never fills a cache after it. Metrics, readiness and liveness are on a
 * separate management listener, not on the serving port.
 *
 * Guarantees: bytes are served from (and put into) the cache only while the listener says the
 * cache can be trusted (connected, resynced, lease valid); otherwise every read goes to disk.
 * A read that began before an invalidation never fills the cache after it (generations).
 *
 * Responses carry `content-type` (by extension, as Boxel infers it), `x-realm-url`,
 * `x-realm-epoch` (the realm epoch known when the read began), `x-replica-id` and `x-cache`
 * (`hit`, `miss`, or `bypass` while fenced).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type pg from 'pg';
import { createPool } from '../dataplane/db.js';
import { pino, type Logger } from 'pino';
import { Counter, Registry } from 'prom-client';
import type { RealmsLayout } from '../dataplane/layout.js';
import { RealmListener, type RealmCache, type RealmListenerOptions } from '../listener/realm-listener.js';
import { RealmFileCache } from './file-cache.js';
import { FileReadError, readFileNoFollow, type RealmDirectory } from './no-follow.js';
import { RealmRegistrySnapshot, type RegisteredRealm } from './realm-registry.js';
import { boxelLocalPath, checkRequestPath, contentTypeFor, NOT_MAPPABLE_MESSAGE, PATH_REFUSAL_MESSAGES } from './request-path.js';

export interface RealmServerOptions {
  databaseURL: string;
  layout: RealmsLayout;
  replicaId: string;
  /** Scheme used to rebuild request URLs (the load balancer terminates TLS). Default `http`. */
  scheme?: 'http' | 'https';
  /** Also serve source realms (without any permission check). Default false: published realms only. */
  serveSourceRealms?: boolean;
  /** Extra listener settings (lease, heartbeat, backoff). */
  listener?: Partial<Omit<RealmListenerOptions, 'connection' | 'replicaId' | 'caches'>>;
  logger?: Logger;
  metricsRegistry?: Registry;
}

const REGISTRY_SWEEP_TIMEOUT_MS = 5_000;
const SAFE_DISK_SEGMENT = /^(?!\.{1,2}$)[^/\\\u0000]+$/;

export class RealmServer {
  readonly listener: RealmListener;
  private readonly pool: pg.Pool;
  private readonly caches = new Map<string, RealmFileCache>();
  readonly registry: RealmRegistrySnapshot;
  private readonly logger: Logger;
  private readonly metrics: Registry;
  private readonly requests: Counter<'cache' | 'status'>;
  private server: http.Server | undefined;
  private management: http.Server | undefined;

  constructor(private readonly options: RealmServerOptions) {
    const base = options.logger ?? pino({ name: 'realm-server' });
    this.logger = base.child({ replica: options.replicaId });
    this.metrics = options.metricsRegistry ?? new Registry();
    this.requests = new Counter({
      name: 'realm_server_requests_total',
      help: 'File requests, by cache outcome and HTTP status',
      labelNames: ['cache', 'status'],
      registers: [this.metrics],
    });
    this.pool = createPool({ connectionString: options.databaseURL, max: 8 }, (error) => this.logger.warn({ err: error }, 'a database connection failed'));
    this.registry = new RealmRegistrySnapshot((origin) => this.readRegistry(origin));
    const caches = this.caches;
    this.listener = new RealmListener({
      connection: options.databaseURL,
      replicaId: options.replicaId,
      caches: {
        find: (url): RealmCache | undefined => caches.get(url),
        all: () => caches.values(),
        publishedFrom: (sourceURL) => [...caches.values()].filter((cache) => cache.sourceURL === sourceURL),
      },
      // Boxel replicas re-read the registry on any realm_registry notification, whatever its
      // payload (RealmRegistryReconciler wakes on the channel and ignores the payload); so do
      // we, before the listener goes on to the next notification (and so before it can
      // acknowledge the publish that sent it): forget the snapshot, then drop the caches of
      // realms whose rows are gone.
      onRegistryNotification: async () => {
        this.registry.invalidate();
        await this.forgetUnregisteredRealms();
      },
      // Boxel's delete-realm handler sends ONE `delete:<source URL>` for the source realm and
      // every realm published from it (the listener has already dropped their bytes).
      onRegistryChange: (change) => {
        if (change.op !== 'delete') return;
        for (const [url, cache] of caches) if (url === change.realmURL || cache.sourceURL === change.realmURL) caches.delete(url);
      },
      // A publish or unpublish always sends a wildcard; forgetting the registry here too makes
      // the acknowledgement safe whatever order the two notifications arrive in.
      onRealmInvalidated: () => this.registry.invalidate(),
      metadata: { pod: process.env.POD_NAME ?? options.replicaId },
      // The listener binds `replica` itself; handing it our child would print the key twice.
      logger: base,
      metricsRegistry: this.metrics,
      ...options.listener,
    });
    // Registry hints may have been missed while the listener was not ready: forget what we knew.
    this.listener.on('state', () => this.registry.invalidate());
  }

  /** Starts the listener and the file-serving HTTP server; resolves with the bound port. */
  async start(port: number, host = '127.0.0.1'): Promise<number> {
    this.listener.start();
    this.server = http.createServer((req, res) => {
      this.route(req, res).catch((error: unknown) => {
        // Never the error message or stack of a file-system error: they name paths.
        const code = error instanceof FileReadError ? error.code : (error as NodeJS.ErrnoException | undefined)?.code;
        this.logger.error({ code: code ?? 'unknown', name: (error as Error | undefined)?.name }, 'request failed');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain', 'x-replica-id': this.options.replicaId });
        res.end('internal error\n');
      });
    });
    this.server.keepAliveTimeout = 30_000;
    const bound = await listen(this.server, port, host);
    this.logger.info({ host, port: bound }, 'listening');
    return bound;
  }

  /**
   * Starts the management server: `/_metrics` (Prometheus), `/_readyz` (the listener's readiness,
   * 200/503) and `/_healthz`. Kept off the serving port so the public never sees them.
   */
  async startManagement(port: number, host = '127.0.0.1'): Promise<number> {
    const readiness = this.listener.readinessHandler();
    this.management = http.createServer((req, res) => {
      const pathname = (req.url ?? '/').split('?', 1)[0];
      if (pathname === '/_readyz') return readiness(req, res);
      if (pathname === '/_healthz') return void res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      if (pathname === '/_metrics' || pathname === '/metrics') {
        this.metrics.metrics().then(
          (body) => res.writeHead(200, { 'content-type': this.metrics.contentType }).end(body),
          () => res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics failed\n'),
        );
        return;
      }
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    });
    const bound = await listen(this.management, port, host);
    this.logger.info({ host, port: bound }, 'management listening');
    return bound;
  }

  async stop(): Promise<void> {
    await Promise.all(
      [this.server, this.management].map(
        (server) =>
          new Promise<void>((resolve) => {
            if (!server) return resolve();
            server.close(() => resolve());
            server.closeAllConnections();
          }),
      ),
    );
    await this.listener.stop();
    await this.pool.end();
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') return this.reply(res, 405, 'method not allowed\n', 'none');
    const host = req.headers.host?.toLowerCase();
    if (!host || /[\s/\\@?#]/.test(host)) return this.reply(res, 400, 'a valid Host header is required\n', 'none');
    const checked = checkRequestPath(req.url ?? '/');
    if (!checked.ok) return this.reply(res, 400, `bad request: ${PATH_REFUSAL_MESSAGES[checked.refusal]}\n`, 'none');
    await this.serveFile(`${this.options.scheme ?? 'http'}://${host}${checked.pathname}`, req, res);
  }

  private async serveFile(url: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    // Noted before the realm is resolved: a registry change after this point means the request
    // may have been resolved from what was known before, so it must not fill any cache.
    const registryGeneration = this.registry.currentGeneration;
    const realm = await this.registry.resolve(url, this.listener.cacheTrusted);
    if (!realm || !this.serves(realm)) return this.reply(res, 404, 'no realm is served here\n', 'none');
    const mapped = boxelLocalPath(url.slice(realm.url.length));
    if (!mapped.ok) {
      if (mapped.refusal === 'directory') return this.reply(res, 404, 'not found (directories are not served)\n', 'none');
      return this.reply(res, 400, `bad request: ${NOT_MAPPABLE_MESSAGE}\n`, 'none');
    }
    const directory = this.realmDirectory(realm);
    if (!directory) return this.reply(res, 404, 'no realm is served here\n', 'none');
    // Boxel's LocalPath: the cache key a per-path NOTIFY names, and the file below the realm.
    const local = mapped.localPath;
    const segments = local.split('/');
    let cache = this.caches.get(realm.url);
    if (!cache) {
      cache = new RealmFileCache(realm.epoch, realm.sourceURL);
      this.caches.set(realm.url, cache);
    }
    cache.sourceURL = realm.sourceURL;
    const headers = { 'x-realm-url': realm.url, 'x-replica-id': this.options.replicaId, 'content-type': contentTypeFor(segments.at(-1)!) };
    if (this.listener.cacheTrusted) {
      const hit = cache.get(local);
      if (hit) {
        this.requests.inc({ cache: 'hit', status: '200' });
        res.writeHead(200, { ...headers, 'x-realm-epoch': String(hit.epoch), 'x-cache': 'hit', 'content-length': hit.bytes.length });
        return void res.end(req.method === 'HEAD' ? undefined : hit.bytes);
      }
    }
    // Noted before the read: if the realm or the path is invalidated while we read, the bytes are
    // served (the request began before the invalidation) but never cached.
    const ticket = cache.beginRead(local);
    const trustedAtStart = this.listener.cacheTrusted;
    const cacheState = trustedAtStart ? 'miss' : 'bypass';
    const bytes = await readFileNoFollow(directory.dir, [...directory.prefix, ...segments]);
    if (!bytes) return this.reply(res, 404, 'not found\n', cacheState, { 'x-realm-url': realm.url });
    if (trustedAtStart && this.listener.cacheTrusted && this.registry.currentGeneration === registryGeneration && this.caches.get(realm.url) === cache) {
      cache.fill(ticket, bytes);
    }
    this.requests.inc({ cache: cacheState, status: '200' });
    res.writeHead(200, { ...headers, 'x-realm-epoch': String(ticket.epoch), 'x-cache': cacheState, 'content-length': bytes.length });
    res.end(req.method === 'HEAD' ? undefined : bytes);
  }

  /** How many files this replica holds cached for `realmURL` (0 when it has no cache for it). */
  cachedFileCount(realmURL: string): number {
    return this.caches.get(realmURL)?.size ?? 0;
  }

  /** Whether this replica has a cached copy of `localPath` (Boxel's LocalPath) of `realmURL`. */
  isCached(realmURL: string, localPath: string): boolean {
    return this.caches.get(realmURL)?.get(localPath) !== undefined;
  }

  /**
   * Drops the caches of every cached realm that has no `realm_registry` row any more, as Boxel's
   * reconciler unmounts realms whose rows are gone whenever it re-reads the registry.
   */
  private async forgetUnregisteredRealms(): Promise<void> {
    const cached = [...this.caches.keys()];
    if (cached.length === 0) return;
    // Bounded: the listener handles nothing else while this runs. On failure the caches stay
    // (unreachable anyway: the snapshot is gone, so the next request re-reads the registry).
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('re-reading realm_registry timed out')), REGISTRY_SWEEP_TIMEOUT_MS);
    });
    const { rows } = await Promise.race([
      this.pool.query<{ url: string }>('SELECT url FROM realm_registry WHERE url = ANY($1::text[])', [cached]),
      timeout,
    ]).finally(() => clearTimeout(timer));
    const registered = new Set(rows.map((row) => row.url));
    for (const url of cached) {
      if (registered.has(url)) continue;
      this.caches.get(url)?.dropAll();
      this.caches.delete(url);
    }
  }

  private serves(realm: RegisteredRealm): boolean {
    return realm.kind === 'published' || (realm.kind === 'source' && this.options.serveSourceRealms === true);
  }

  /**
   * The directory to open and the segments below it that lead to the realm's files. A published
   * realm's directory is its one deliberate symlink (to its content version); a source realm is
   * walked from the realms root so no component of its `disk_id` may be a symlink either.
   * Undefined (and logged, without paths) for a `disk_id` that is not a safe relative path.
   */
  private realmDirectory(realm: RegisteredRealm): { dir: RealmDirectory; prefix: string[] } | undefined {
    const layout = this.options.layout;
    try {
      if (realm.kind === 'published') {
        const diskId = realm.diskId;
        const checkLink = (target: string) => layout.versionFromLinkTarget(diskId, target) !== undefined;
        return { dir: { path: layout.publishedDir(diskId), followLink: { checkLink } }, prefix: [] };
      }
      const segments = realm.diskId.split('/');
      if (!segments.every((segment) => SAFE_DISK_SEGMENT.test(segment))) throw new Error('unsafe disk_id');
      layout.sourceDir(realm.diskId); // also refuses the `_published` tree
      return { dir: { path: layout.root }, prefix: segments };
    } catch {
      this.logger.warn({ realm: realm.url, kind: realm.kind }, 'realm_registry row has an unsafe disk_id; not serving the realm');
      return undefined;
    }
  }

  /** Every registry row of `origin`, with the operator's epoch where it has one. */
  private async readRegistry(origin: string): Promise<RegisteredRealm[]> {
    const { rows } = await this.pool.query<{ url: string; kind: RegisteredRealm['kind']; disk_id: string; source_url: string | null; epoch: string | null }>(
      `SELECT r.url, r.kind, r.disk_id, r.source_url, e.epoch FROM realm_registry r
         LEFT JOIN realm_operator.realm_epochs e ON e.realm_url = r.url
        WHERE left(r.url, length($1)) = $1`,
      [origin],
    );
    return rows.map((r) => ({ url: r.url, kind: r.kind, diskId: r.disk_id, ...(r.source_url ? { sourceURL: r.source_url } : {}), epoch: Number(r.epoch ?? 0) }));
  }

  private reply(res: http.ServerResponse, status: number, body: string, cache: string, headers: Record<string, string> = {}): void {
    this.requests.inc({ cache, status: String(status) });
    res.writeHead(status, { ...headers, 'content-type': 'text/plain', 'x-replica-id': this.options.replicaId });
    res.end(body);
  }
}

function listen(server: http.Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}
