/** The reference realm server over real HTTP, PostgreSQL and files. */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { waitForReplicaAcks } from '../../src/dataplane/acknowledgements.js';
import { publishRealm } from '../../src/dataplane/publish.js';
import { RealmServer, type RealmServerOptions } from '../../src/realm-server/realm-server.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { createSourceRealm, dataPlane, eventually, makeRealmsRoot, writeFiles } from '../support/realms.js';

let db: TestDatabase;
let realms: Awaited<ReturnType<typeof makeRealmsRoot>>;
const agent = new http.Agent({ keepAlive: true });

type Response = { status: number; body: string; headers: http.IncomingHttpHeaders };

function getFrom(serverPort: number, host: string, requestPath: string, method = 'GET'): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: serverPort, path: requestPath, method, headers: { host }, agent }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Every JSON log line a server wrote, kept for assertions. */
class LogCapture {
  readonly lines: string[] = [];
  readonly logger = pino(
    { level: 'debug' },
    new Writable({
      write: (chunk: Buffer, _encoding, done) => {
        this.lines.push(...chunk.toString().split('\n').filter(Boolean));
        done();
      },
    }),
  );
}

interface Replica {
  server: RealmServer;
  port: number;
  managementPort: number;
  logs: LogCapture;
  get(host: string, requestPath: string, method?: string): Promise<Response>;
}

const replicas: Replica[] = [];

async function startReplica(replicaId: string, options: Partial<RealmServerOptions> = {}): Promise<Replica> {
  const logs = new LogCapture();
  const server = new RealmServer({
    databaseURL: db.url,
    layout: realms.layout,
    replicaId,
    logger: logs.logger,
    metricsRegistry: new Registry(),
    listener: { heartbeatIntervalMs: 200, leaseDurationMs: 3000, backoff: { initialMs: 50, maxMs: 300 } },
    ...options,
  });
  const managementPort = await server.startManagement(0);
  const port = await server.start(0);
  await server.listener.waitUntilReady(10_000);
  const replica = { server, port, managementPort, logs, get: (host: string, p: string, method?: string) => getFrom(port, host, p, method) };
  replicas.push(replica);
  return replica;
}

async function stopReplica(replica: Replica): Promise<void> {
  replicas.splice(replicas.indexOf(replica), 1);
  await replica.server.stop();
}

const source = 'http://localhost:4201/rs/src/';
const published = 'http://pub.localhost/rs/';
let sourceDir: string;
let diskId: string;
let main: Replica;

beforeAll(async () => {
  db = await createTestDatabase();
  realms = await makeRealmsRoot();
  sourceDir = await createSourceRealm(db.pool, realms.layout, source, {
    'index.json': '{"v":1}',
    'cards/a.gts': 'a1',
    'nested/index.json': '{"from":"parent"}',
    'source-nested/x.json': '{"from":"parent"}',
  });
  diskId = (await publishRealm(dataPlane(db.pool, realms.layout), { sourceRealmURL: source, publishedRealmURL: published })).diskId;
  main = await startReplica('rs-1');
});

afterAll(async () => {
  await Promise.all(replicas.splice(0).map((r) => r.server.stop()));
  agent.destroy();
  await db.drop();
  await realms.cleanup();
});

test('serves published realms by Host and path with a content-type, then from cache', async () => {
  const first = await main.get('pub.localhost', '/rs/cards/a.gts');
  expect(first).toMatchObject({ status: 200, body: 'a1' });
  expect(first.headers).toMatchObject({ 'x-cache': 'miss', 'x-realm-url': published, 'x-replica-id': 'rs-1', 'content-type': 'text/typescript+glimmer' });
  expect(Number(first.headers['x-realm-epoch'])).toBeGreaterThan(0);
  const second = await main.get('pub.localhost', '/rs/cards/a.gts');
  expect(second.headers).toMatchObject({ 'x-cache': 'hit', 'content-type': 'text/typescript+glimmer' });
  expect((await main.get('pub.localhost', '/rs/index.json')).headers['content-type']).toBe('application/json');
  const head = await main.get('pub.localhost', '/rs/index.json', 'HEAD');
  expect(head).toMatchObject({ status: 200, body: '' });
  expect(head.headers['content-length']).toBe('7');
});

test('source realms are not served unless the server is told to serve them', async () => {
  const refused = await main.get('localhost:4201', '/rs/src/index.json');
  expect(refused.status).toBe(404);
  expect(refused.body).not.toContain('{"v"');
  const withSources = await startReplica('rs-sources', { serveSourceRealms: true });
  try {
    expect(await withSources.get('localhost:4201', '/rs/src/index.json')).toMatchObject({ status: 200, body: '{"v":1}' });
  } finally {
    await stopReplica(withSources);
  }
});

test('a republish is served fresh once acknowledged, and the epoch header advances', async () => {
  const before = await main.get('pub.localhost', '/rs/index.json');
  await main.get('pub.localhost', '/rs/index.json');
  await writeFiles(sourceDir, { 'index.json': '{"v":2}' });
  const result = await publishRealm(dataPlane(db.pool, realms.layout), { sourceRealmURL: source, publishedRealmURL: published });
  const acks = await waitForReplicaAcks(db.pool, { realmURL: published, epoch: result.epoch, timeoutMs: 5000 });
  expect(acks).toMatchObject({ complete: true, acknowledged: ['rs-1'] });
  const after = await main.get('pub.localhost', '/rs/index.json');
  expect(after).toMatchObject({ status: 200, body: '{"v":2}' });
  expect(after.headers['x-cache']).toBe('miss');
  expect(Number(after.headers['x-realm-epoch'])).toBe(result.epoch);
  expect(Number(after.headers['x-realm-epoch'])).toBeGreaterThan(Number(before.headers['x-realm-epoch']));
});

test('invalid paths are 400 and neither the answer nor the log names a file-system path', async () => {
  const bad = ['/rs/x%00.json', '/rs/%00', '/rs/cards\\a.gts', '/rs/cards%5Ca.gts', '/rs/cards%2Fa.gts', '/rs/../rs/index.json', '/rs/cards/%2e%2e/index.json', '/rs//index.json', '/rs/%zz'];
  for (const target of bad) {
    const res = await main.get('pub.localhost', target);
    expect({ target, status: res.status }).toEqual({ target, status: 400 });
    expect(res.body).not.toContain(realms.root);
    expect(res.body).toMatch(/^bad request: /);
  }
  expect((await main.get('nowhere.localhost', '/x/a')).status).toBe(404);
  expect((await main.get('pub.localhost', '/rs/missing.json')).status).toBe(404);
  expect((await main.get('pub.localhost', '/rs/')).status).toBe(404);
  expect((await main.get('pub.localhost', '/rs/cards/')).status).toBe(404);
  expect((await main.get('pub.localhost', '/rs/cards')).status).toBe(404); // a directory, not a file
  expect((await main.get('pub.localhost', '/rs/index.json', 'POST')).status).toBe(405);
  expect(main.logs.lines.join('\n')).not.toContain(realms.root);
});

test('no symlink below the realm directory is followed, even one planted in the published content', async () => {
  // The published directory is a link to its version: reads go through it on purpose.
  const versionDir = await fs.realpath(realms.layout.publishedDir(diskId));
  const outside = path.join(realms.root, 'outside');
  await fs.mkdir(outside, { recursive: true });
  await fs.writeFile(path.join(outside, 'secret.txt'), 'secret');
  await fs.symlink(path.join(outside, 'secret.txt'), path.join(versionDir, 'leak.txt'));
  await fs.symlink(outside, path.join(versionDir, 'dir-link'));
  await fs.symlink('/etc/passwd', path.join(versionDir, 'cards', 'passwd'));
  await fs.symlink('../index.json', path.join(versionDir, 'cards', 'relative.json'));
  for (const target of ['/rs/leak.txt', '/rs/dir-link/secret.txt', '/rs/cards/passwd', '/rs/cards/relative.json']) {
    const res = await main.get('pub.localhost', target);
    expect({ target, status: res.status }).toEqual({ target, status: 404 });
    expect(res.body).not.toContain('secret');
    expect(res.body).not.toContain('root:');
  }
  // A FIFO is not a regular file: refused at once rather than hanging the request.
  await fs.rm(path.join(versionDir, 'cards', 'passwd'));
  const { execFileSync } = await import('node:child_process');
  execFileSync('mkfifo', [path.join(versionDir, 'cards', 'pipe.json')]);
  expect((await main.get('pub.localhost', '/rs/cards/pipe.json')).status).toBe(404);
  expect((await main.get('pub.localhost', '/rs/cards/a.gts')).status).toBe(200);
});

test('a source realm whose disk_id leads through a symlink is not served, even with source realms on', async () => {
  const outside = path.join(realms.root, 'outside-owner');
  await writeFiles(path.join(outside, 'realm'), { 'index.json': '{"escaped":true}' });
  await fs.symlink(outside, path.join(realms.root, 'linked-owner'));
  await db.pool.query(`INSERT INTO realm_registry (url, kind, disk_id, owner_username) VALUES ($1, 'source', 'linked-owner/realm', 'x')`, ['http://localhost:4201/linked/']);
  const withSources = await startReplica('rs-sources-2', { serveSourceRealms: true });
  try {
    expect((await withSources.get('localhost:4201', '/linked/index.json')).status).toBe(404);
  } finally {
    await stopReplica(withSources);
  }
});

test('metrics and readiness are on the management port only', async () => {
  const mgmt = (p: string) => getFrom(main.managementPort, 'localhost', p);
  expect((await mgmt('/_readyz')).status).toBe(200);
  expect(JSON.parse((await mgmt('/_readyz')).body)).toMatchObject({ replicaId: 'rs-1', cacheTrusted: true });
  expect((await mgmt('/_healthz')).status).toBe(200);
  const metrics = await mgmt('/_metrics');
  expect(metrics.status).toBe(200);
  expect(metrics.body).toContain('realm_server_requests_total');
  expect(metrics.body).toContain('realm_listener_ready');
  for (const p of ['/_readyz', '/_metrics', '/_healthz', '/metrics']) {
    const res = await main.get('pub.localhost', p);
    expect({ p, status: res.status }).toEqual({ p, status: 404 });
    expect(res.body).not.toContain('realm_listener');
    expect(res.body).not.toContain('lastError');
  }
});

test('log lines carry each key once (replica is not repeated by the listener)', async () => {
  const withReplica = main.logs.lines.filter((l) => l.includes('"replica"'));
  expect(withReplica.length).toBeGreaterThan(0);
  for (const line of withReplica) expect({ line, count: line.split('"replica":').length - 1 }).toEqual({ line, count: 1 });
});

describe('a realm registered at a URL nested inside a served realm', () => {
  /** A Boxel-style published realm: a registry row and a plain directory `_published/<uuid>/`. */
  async function boxelPublishedDirectory(files: Record<string, string>): Promise<string> {
    const id = randomUUID();
    await writeFiles(realms.layout.publishedDir(id), files);
    return id;
  }

  /**
   * Registers `url` the way a publish commits it (registry row, epoch bump, both NOTIFYs in one
   * transaction) and waits until every replica acknowledged the epoch: from then on, "Ready"
   * promises every replica serves the new realm. `wildcard-only` leaves the registry NOTIFY out,
   * as if it arrived after the acknowledgement: the wildcard alone must make the replica re-read.
   */
  async function registerNested(url: string, nestedDiskId: string, order: 'registry-then-wildcard' | 'wildcard-only'): Promise<void> {
    const client = await db.pool.connect();
    let epoch: number;
    try {
      await client.query('BEGIN');
      await client.query(`INSERT INTO realm_registry (url, kind, disk_id, owner_username, source_url) VALUES ($1, 'published', $2, 'x', $3)`, [url, nestedDiskId, source]);
      const { rows } = await client.query(
        `INSERT INTO realm_operator.realm_epochs (realm_url, epoch) VALUES ($1, nextval('realm_operator.epoch_seq'))
         ON CONFLICT (realm_url) DO UPDATE SET epoch = nextval('realm_operator.epoch_seq') RETURNING epoch`,
        [url],
      );
      epoch = Number(rows[0].epoch);
      const notifications = [['realm_registry', `upsert:${url}`], ['realm_file_changes', `${url}:*`]];
      if (order === 'wildcard-only') notifications.shift();
      for (const [channel, payload] of notifications) await client.query('SELECT pg_notify($1, $2)', [channel, payload]);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    const acks = await waitForReplicaAcks(db.pool, { realmURL: url, epoch, timeoutMs: 10_000 });
    expect(acks.complete).toBe(true);
    expect(acks.acknowledged.sort()).toEqual(replicas.map((r) => r.server.listener.replicaId).sort());
  }

  test.each(['registry-then-wildcard', 'wildcard-only'] as const)(
    'the next request after every replica acknowledged returns the nested realm on every replica (%s)',
    async (order) => {
      const second = await startReplica(`rs-nested-${order}`);
      try {
        const prefix = order === 'registry-then-wildcard' ? 'nested' : 'nested2';
        await writeFiles(sourceDir, { [`${prefix}/index.json`]: '{"from":"parent"}' });
        await publishRealm(dataPlane(db.pool, realms.layout), { sourceRealmURL: source, publishedRealmURL: published }).then((r) =>
          waitForReplicaAcks(db.pool, { realmURL: published, epoch: r.epoch, timeoutMs: 10_000 }),
        );
        // Both replicas have the parent's registry snapshot and its bytes for the nested path cached.
        for (const replica of replicas) {
          expect(await replica.get('pub.localhost', `/rs/${prefix}/index.json`)).toMatchObject({ status: 200, body: '{"from":"parent"}' });
          expect((await replica.get('pub.localhost', `/rs/${prefix}/index.json`)).headers).toMatchObject({ 'x-cache': 'hit', 'x-realm-url': published });
        }
        const nestedURL = `${published}${prefix}/`;
        await registerNested(nestedURL, await boxelPublishedDirectory({ 'index.json': '{"from":"nested"}' }), order);
        for (const replica of replicas) {
          const res = await replica.get('pub.localhost', `/rs/${prefix}/index.json`);
          expect({ replica: replica.server.listener.replicaId, status: res.status, body: res.body, realm: res.headers['x-realm-url'] }).toEqual({
            replica: replica.server.listener.replicaId,
            status: 200,
            body: '{"from":"nested"}',
            realm: nestedURL,
          });
        }
      } finally {
        await stopReplica(second);
      }
    },
  );

  test('any realm_registry notification, even one that does not parse, makes the replica re-read the registry', async () => {
    await writeFiles(sourceDir, { 'nested3/x.json': '{"from":"parent"}' });
    const r = await publishRealm(dataPlane(db.pool, realms.layout), { sourceRealmURL: source, publishedRealmURL: published });
    await waitForReplicaAcks(db.pool, { realmURL: published, epoch: r.epoch, timeoutMs: 10_000 });
    expect((await main.get('pub.localhost', '/rs/nested3/x.json')).body).toBe('{"from":"parent"}');
    const generation = main.server.registry.currentGeneration;
    await db.pool.query(`INSERT INTO realm_registry (url, kind, disk_id, owner_username, source_url) VALUES ($1, 'published', $2, 'x', $3)`, [
      `${published}nested3/`,
      await boxelPublishedDirectory({ 'x.json': '{"from":"nested"}' }),
      source,
    ]);
    await db.pool.query(`SELECT pg_notify('realm_registry', 'reload please')`);
    await eventually(() => main.server.registry.currentGeneration > generation, 5000, () => 'the registry notification to be handled');
    expect(await main.get('pub.localhost', '/rs/nested3/x.json')).toMatchObject({ status: 200, body: '{"from":"nested"}' });
  });

  test('a path under a nested realm that is not served is 404, never the parent realm\'s bytes', async () => {
    expect((await main.get('pub.localhost', '/rs/source-nested/x.json')).body).toBe('{"from":"parent"}');
    await db.pool.query(`INSERT INTO realm_registry (url, kind, disk_id, owner_username) VALUES ($1, 'source', 'owner/source-nested', 'x')`, [`${published}source-nested/`]);
    await db.pool.query(`SELECT pg_notify('realm_registry', $1)`, [`upsert:${published}source-nested/`]);
    await eventually(async () => (await main.get('pub.localhost', '/rs/source-nested/x.json')).status === 404, 5000, () => 'the source realm to shadow the path');
  });
});

test('while its listener is disconnected the server bypasses the cache and reports not ready', async () => {
  // A second replica whose reconnect backoff is long enough to observe the gap (at least 1.5 s).
  const slow = await startReplica('rs-slow', { listener: { heartbeatIntervalMs: 200, leaseDurationMs: 3000, backoff: { initialMs: 3000, maxMs: 3000 } } });
  try {
    await slow.get('pub.localhost', '/rs/cards/a.gts');
    expect((await slow.get('pub.localhost', '/rs/cards/a.gts')).headers['x-cache']).toBe('hit');
    const { rows } = await db.pool.query(`SELECT pid FROM pg_stat_activity WHERE application_name = 'realm-listener:rs-slow'`);
    await db.pool.query('SELECT pg_terminate_backend($1)', [rows[0].pid]);
    await eventually(() => !slow.server.listener.cacheTrusted, 5000);
    const during = await slow.get('pub.localhost', '/rs/cards/a.gts');
    expect(during).toMatchObject({ status: 200, body: 'a1' });
    expect(during.headers['x-cache']).toBe('bypass');
    expect((await getFrom(slow.managementPort, 'localhost', '/_readyz')).status).toBe(503);
    await slow.server.listener.waitUntilReady(10_000);
    expect((await slow.get('pub.localhost', '/rs/cards/a.gts')).headers['x-cache']).toBe('miss'); // the resync dropped it
    expect((await slow.get('pub.localhost', '/rs/cards/a.gts')).headers['x-cache']).toBe('hit');
  } finally {
    await stopReplica(slow);
  }
});

describe('delete:<source URL> stands for every realm published from that source (as Boxel sends it)', () => {
  test('two published realms of one source, cached on two replicas: one NOTIFY empties both caches on every replica and both are 404', async () => {
    const doomedSource = 'http://localhost:4201/rs/doomed/';
    const publishedURLs = ['http://doomed-a.localhost/', 'http://doomed-b.localhost/'];
    const otherURL = 'http://survivor.localhost/';
    await createSourceRealm(db.pool, realms.layout, doomedSource, { 'index.json': '{"doomed":true}', 'cards/c.json': '{"c":1}' });
    for (const url of [...publishedURLs, otherURL]) {
      const from = url === otherURL ? source : doomedSource;
      const result = await publishRealm(dataPlane(db.pool, realms.layout), { sourceRealmURL: from, publishedRealmURL: url });
      await waitForReplicaAcks(db.pool, { realmURL: url, epoch: result.epoch, timeoutMs: 10_000 });
    }
    const second = await startReplica('rs-delete-source');
    try {
      const hostOf = (url: string) => new URL(url).host;
      for (const replica of [main, second]) {
        for (const url of publishedURLs) {
          for (const file of ['/index.json', '/cards/c.json']) await replica.get(hostOf(url), file);
          expect((await replica.get(hostOf(url), '/index.json')).headers['x-cache']).toBe('hit');
          expect(replica.server.cachedFileCount(url)).toBe(2);
        }
        await replica.get(hostOf(otherURL), '/index.json');
        expect(replica.server.cachedFileCount(otherURL)).toBe(1);
      }

      // As Boxel's delete-realm handler does (packages/realm-server/handlers/handle-delete-realm.ts
      // with lib/realm-registry-writes.ts): in one transaction, the published rows by source_url
      // and then the source row, each followed by NOTIFY realm_registry 'delete:<source URL>';
      // PostgreSQL folds the identical pair into ONE notification at commit. No wildcard here:
      // Boxel sends those afterwards, best-effort, and the delete alone must suffice.
      const client = await db.pool.connect();
      try {
        await client.query('BEGIN');
        await client.query(`DELETE FROM realm_registry WHERE source_url = $1 AND kind = 'published'`, [doomedSource]);
        await client.query(`SELECT pg_notify('realm_registry', $1)`, [`delete:${doomedSource}`]);
        await client.query(`DELETE FROM realm_registry WHERE url = $1 AND kind <> 'bootstrap'`, [doomedSource]);
        await client.query(`SELECT pg_notify('realm_registry', $1)`, [`delete:${doomedSource}`]);
        await client.query('COMMIT');
      } finally {
        client.release();
      }

      for (const replica of [main, second]) {
        await eventually(
          () => publishedURLs.every((url) => replica.server.cachedFileCount(url) === 0),
          10_000,
          () => `${replica.server.listener.replicaId} to empty the caches of both published realms`,
        );
        for (const url of publishedURLs) {
          for (const file of ['/index.json', '/cards/c.json']) {
            const res = await replica.get(hostOf(url), file);
            expect({ replica: replica.server.listener.replicaId, url, file, status: res.status }).toEqual({ replica: replica.server.listener.replicaId, url, file, status: 404 });
          }
          expect(replica.server.cachedFileCount(url)).toBe(0);
        }
        // A realm published from another source keeps its cache.
        expect(replica.server.cachedFileCount(otherURL)).toBe(1);
        expect((await replica.get(hostOf(otherURL), '/index.json')).headers['x-cache']).toBe('hit');
      }
    } finally {
      await stopReplica(second);
    }
  });

  test('a notification whose payload names nothing (Boxel never reads it) still forgets realms whose rows are gone', async () => {
    const url = 'http://gone-quietly.localhost/';
    const result = await publishRealm(dataPlane(db.pool, realms.layout), { sourceRealmURL: source, publishedRealmURL: url });
    await waitForReplicaAcks(db.pool, { realmURL: url, epoch: result.epoch, timeoutMs: 10_000 });
    // The publish's wildcard, right after its hint, may still drop the cache after the wait ends
    // (the ack follows the hint): fill it until it stays filled.
    await eventually(async () => {
      await main.get('gone-quietly.localhost', '/index.json');
      return main.server.cachedFileCount(url) === 1;
    }, 10_000, () => 'the realm cached on the main replica');
    await db.pool.query('DELETE FROM realm_registry WHERE url = $1', [url]);
    await db.pool.query(`SELECT pg_notify('realm_registry', '')`);
    await eventually(() => main.server.cachedFileCount(url) === 0, 10_000, () => 'the cache of the realm whose row is gone to be dropped');
    expect((await main.get('gone-quietly.localhost', '/index.json')).status).toBe(404);
  });
});

describe('per-path payloads in the form Boxel writes them (real NOTIFY)', () => {
  const url = 'http://paths.localhost/';
  /**
   * File name on disk (Boxel's LocalPath: Boxel writes `join(realmDir, LocalPath)`,
   * packages/realm-server/node-realm.ts), the request path a client sends, and the payload
   * Boxel's Realm.#notifyFileChange sends after writing it (`<realm URL>:<LocalPath>`).
   */
  const vectors = [
    { disk: 'a b.json', request: '/a%20b.json', payload: `${url}:a b.json` },
    { disk: 'é.json', request: '/%C3%A9.json', payload: `${url}:é.json` },
    { disk: 'x%23y.json', request: '/x%23y.json', payload: `${url}:x%23y.json` },
    { disk: 'cards/é b.json', request: '/cards/%C3%A9%20b.json', payload: `${url}:cards/é b.json` },
  ];

  test('each NOTIFY drops exactly the entry its request filled, on every replica', async () => {
    const files: Record<string, string> = { '100%.json': '{"pct":true}' };
    for (const v of vectors) files[v.disk] = JSON.stringify({ disk: v.disk });
    const pathsSource = 'http://localhost:4201/rs/paths/';
    await createSourceRealm(db.pool, realms.layout, pathsSource, files);
    const result = await publishRealm(dataPlane(db.pool, realms.layout), { sourceRealmURL: pathsSource, publishedRealmURL: url });
    await waitForReplicaAcks(db.pool, { realmURL: url, epoch: result.epoch, timeoutMs: 10_000 });
    const second = await startReplica('rs-paths');
    try {
      for (const replica of [main, second]) {
        for (const v of vectors) {
          expect(await replica.get('paths.localhost', v.request)).toMatchObject({ status: 200, body: JSON.stringify({ disk: v.disk }) });
          expect((await replica.get('paths.localhost', v.request)).headers['x-cache']).toBe('hit');
        }
        expect(replica.server.cachedFileCount(url)).toBe(vectors.length);
        // Boxel cannot map `100%25.json` (its second decodeURI throws), so neither do we.
        const percent = await replica.get('paths.localhost', '/100%25.json');
        expect(percent.status).toBe(400);
        expect(percent.body).toContain('as Boxel maps paths');
      }
      for (const [i, v] of vectors.entries()) {
        await db.pool.query(`SELECT pg_notify('realm_file_changes', $1)`, [v.payload]);
        for (const replica of [main, second]) {
          await eventually(() => !replica.server.isCached(url, v.disk), 10_000, () => `${replica.server.listener.replicaId} to drop ${v.disk}`);
          // Exactly that entry: the ones not yet notified are still cached.
          expect(replica.server.cachedFileCount(url)).toBe(vectors.length - i - 1);
        }
      }
      for (const v of vectors) expect((await main.get('paths.localhost', v.request)).headers['x-cache']).toBe('miss');
    } finally {
      await stopReplica(second);
    }
  });
});
