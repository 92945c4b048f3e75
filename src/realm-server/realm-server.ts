/**
 * The reference realm server: serves realm files over HTTP from the shared realms root through an
 * in-memory cache of file bytes, kept correct by the listener library. It is the sample workload
 * in deploy/, what `make demo` runs, and the replicas of the end-to-end consistency suite.
 *
 * A request's realm is found from its URL (`<scheme>://<Host header><path>`): the longest
 * registered realm URL that prefixes it, from `realm_registry` (published realms live at
 * `<root>/_published/<disk_id>/`, source realms at `<root>/<disk_id>/`).
 *
 * Guarantees: bytes are served from (and put into) the cache only while the listener says the
 * cache can be trusted (connected, resynced, lease valid); otherwise every read goes to disk.
 * A read that began before an invalidation never fills the cache after it (generations).
 *
 * Responses carry `x-realm-url`, `x-realm-epoch` (the realm epoch known when the read began),
 * `x-replica-id` and `x-cache` (`hit`, `miss`, or `bypass` while fenced).
 */
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type pg from 'pg';
import { createPool } from '../dataplane/db.js';
import { pino, type Logger } from 'pino';
import { Counter, Registry } from 'prom-client';
import type { RealmsLayout } from '../dataplane/layout.js';
import { RealmListener, type RealmCache, type RealmListenerOptions } from '../listener/realm-listener.js';
import { RealmFileCache } from './file-cache.js';

interface RegisteredRealm {
  url: string;
  kind: 'source' | 'published' | 'bootstrap';
  diskId: string;
  epoch: number;
}

export interface RealmServerOptions {
  databaseURL: string;
  layout: RealmsLayout;
  replicaId: string;
  /** Scheme used to rebuild request URLs (the load balancer terminates TLS). Default `http`. */
  scheme?: 'http' | 'https';
  /** Extra listener settings (lease, heartbeat, backoff). */
  listener?: Partial<Omit<RealmListenerOptions, 'connection' | 'replicaId' | 'caches'>>;
  logger?: Logger;
  metricsRegistry?: Registry;
}

export class RealmServer {
  readonly listener: RealmListener;
  private readonly pool: pg.Pool;
  private readonly caches = new Map<string, RealmFileCache>();
  private readonly realms = new Map<string, RegisteredRealm>();
  private readonly logger: Logger;
  private readonly registry: Registry;
  private readonly requests: Counter<'cache' | 'status'>;
  private server: http.Server | undefined;

  constructor(private readonly options: RealmServerOptions) {
    this.logger = (options.logger ?? pino({ name: 'realm-server' })).child({ replica: options.replicaId });
    this.registry = options.metricsRegistry ?? new Registry();
    this.requests = new Counter({
      name: 'realm_server_requests_total',
      help: 'File requests, by cache outcome and HTTP status',
      labelNames: ['cache', 'status'],
      registers: [this.registry],
    });
    this.pool = createPool({ connectionString: options.databaseURL, max: 8 }, (error) => this.logger.warn({ err: error }, 'a database connection failed'));
    const caches = this.caches;
    this.listener = new RealmListener({
      connection: options.databaseURL,
      replicaId: options.replicaId,
      caches: {
        find: (url): RealmCache | undefined => caches.get(url),
        all: () => caches.values(),
      },
      onRegistryChange: (change) => {
        // Re-read on the next request; a deleted realm stops resolving at once.
        this.realms.delete(change.realmURL);
        if (change.op === 'delete') caches.delete(change.realmURL);
      },
      metadata: { pod: process.env.POD_NAME ?? options.replicaId },
      logger: this.logger,
      metricsRegistry: this.registry,
      ...options.listener,
    });
  }

  /** Starts the listener and the HTTP server; resolves with the bound port. */
  async start(port: number, host = '127.0.0.1'): Promise<number> {
    // Registry hints may have been missed while the listener was down: forget what we knew.
    this.listener.on('state', () => this.realms.clear());
    this.listener.start();
    this.server = http.createServer((req, res) => {
      this.route(req, res).catch((error: Error) => {
        this.logger.error({ err: error, url: req.url }, 'request failed');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('internal error\n');
      });
    });
    this.server.keepAliveTimeout = 30_000;
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, host, () => resolve());
    });
    const bound = (this.server.address() as AddressInfo).port;
    this.logger.info({ host, port: bound }, 'listening');
    return bound;
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
    await this.listener.stop();
    await this.pool.end();
  }

  private async route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const pathname = (req.url ?? '/').split('?')[0]!;
    if (pathname === '/_readyz') return this.listener.readinessHandler()(req, res);
    if (pathname === '/_healthz') return void res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    if (pathname === '/_metrics') {
      const body = await this.registry.metrics();
      return void res.writeHead(200, { 'content-type': this.registry.contentType }).end(body);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return this.reply(res, 405, 'method not allowed\n', 'none');
    const host = req.headers.host;
    if (!host) return this.reply(res, 400, 'a Host header is required\n', 'none');
    await this.serveFile(`${this.options.scheme ?? 'http'}://${host}${pathname}`, req, res);
  }

  private async serveFile(url: string, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const realm = await this.resolveRealm(url);
    if (!realm) return this.reply(res, 404, `no realm serves ${url}\n`, 'none');
    let local: string;
    try {
      local = decodeURIComponent(url.slice(realm.url.length));
    } catch {
      return this.reply(res, 400, 'bad path encoding\n', 'none');
    }
    if (local === '' || local.split('/').some((segment) => segment === '..' || segment === '.' || segment === '')) {
      return this.reply(res, 404, `no file ${local || '(realm root)'}\n`, 'none');
    }
    let cache = this.caches.get(realm.url);
    if (!cache) {
      cache = new RealmFileCache(realm.epoch);
      this.caches.set(realm.url, cache);
    }
    const headers = { 'x-realm-url': realm.url, 'x-replica-id': this.options.replicaId };
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
    let bytes: Buffer;
    try {
      bytes = await fs.readFile(path.join(this.realmDirectory(realm), ...local.split('/')));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'EISDIR' || code === 'ENOTDIR') return this.reply(res, 404, `no file ${local}\n`, trustedAtStart ? 'miss' : 'bypass', headers);
      throw error;
    }
    if (trustedAtStart && this.listener.cacheTrusted) cache.fill(ticket, bytes);
    const cacheState = trustedAtStart ? 'miss' : 'bypass';
    this.requests.inc({ cache: cacheState, status: '200' });
    res.writeHead(200, { ...headers, 'x-realm-epoch': String(ticket.epoch), 'x-cache': cacheState, 'content-length': bytes.length });
    res.end(req.method === 'HEAD' ? undefined : bytes);
  }

  private realmDirectory(realm: RegisteredRealm): string {
    return realm.kind === 'published' ? this.options.layout.publishedDir(realm.diskId) : this.options.layout.sourceDir(realm.diskId);
  }

  /** The longest registered realm URL prefixing `url`: from memory, else from the database. */
  private async resolveRealm(url: string): Promise<RegisteredRealm | undefined> {
    const prefixes: string[] = [];
    for (let i = url.indexOf('/', url.indexOf('//') + 2); i >= 0; i = url.indexOf('/', i + 1)) prefixes.push(url.slice(0, i + 1));
    prefixes.reverse();
    // The in-memory registry is only as fresh as the listener: while it is not trusted, ask the database.
    if (this.listener.cacheTrusted) {
      for (const prefix of prefixes) {
        const known = this.realms.get(prefix);
        if (known) return known;
      }
    }
    const { rows } = await this.pool.query<{ url: string; kind: RegisteredRealm['kind']; disk_id: string; epoch: string | null }>(
      `SELECT r.url, r.kind, r.disk_id, e.epoch FROM realm_registry r
         LEFT JOIN realm_operator.realm_epochs e ON e.realm_url = r.url
        WHERE r.url = ANY($1::text[])`,
      [prefixes],
    );
    const found = prefixes.map((p) => rows.find((r) => r.url === p)).find((r) => r !== undefined);
    if (!found) return undefined;
    const realm: RegisteredRealm = { url: found.url, kind: found.kind, diskId: found.disk_id, epoch: Number(found.epoch ?? 0) };
    this.realms.set(realm.url, realm);
    return realm;
  }

  private reply(res: http.ServerResponse, status: number, body: string, cache: string, headers: Record<string, string> = {}): void {
    this.requests.inc({ cache, status: String(status) });
    res.writeHead(status, { ...headers, 'content-type': 'text/plain', 'x-replica-id': this.options.replicaId });
    res.end(body);
  }
}
