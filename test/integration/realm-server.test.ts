/** The reference realm server over real HTTP, PostgreSQL and files. */
import http from 'node:http';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { waitForReplicaAcks } from '../../src/dataplane/acknowledgements.js';
import { publishRealm } from '../../src/dataplane/publish.js';
import { RealmServer } from '../../src/realm-server/realm-server.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { createSourceRealm, dataPlane, eventually, makeRealmsRoot, writeFiles } from '../support/realms.js';

let db: TestDatabase;
let realms: Awaited<ReturnType<typeof makeRealmsRoot>>;
let server: RealmServer;
let port: number;
const agent = new http.Agent({ keepAlive: true });

function get(host: string, path: string) {
  return getFrom(port, host, path);
}

function getFrom(serverPort: number, host: string, path: string): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: serverPort, path, headers: { host }, agent }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

const source = 'http://localhost:4201/rs/src/';
const published = 'http://pub.localhost/rs/';
let sourceDir: string;

beforeAll(async () => {
  db = await createTestDatabase();
  realms = await makeRealmsRoot();
  sourceDir = await createSourceRealm(db.pool, realms.layout, source, { 'index.json': '{"v":1}', 'cards/a.gts': 'a1' });
  await publishRealm(dataPlane(db.pool, realms.layout), { sourceRealmURL: source, publishedRealmURL: published });
  server = new RealmServer({
    databaseURL: db.url,
    layout: realms.layout,
    replicaId: 'rs-1',
    logger: pino({ level: 'silent' }),
    metricsRegistry: new Registry(),
    listener: { heartbeatIntervalMs: 200, leaseDurationMs: 3000, backoff: { initialMs: 50, maxMs: 300 } },
  });
  port = await server.start(0);
  await server.listener.waitUntilReady(10_000);
});

afterAll(async () => {
  agent.destroy();
  await server.stop();
  await db.drop();
  await realms.cleanup();
});

test('serves published and source realms by Host and path, then from cache', async () => {
  const first = await get('pub.localhost', '/rs/cards/a.gts');
  expect(first).toMatchObject({ status: 200, body: 'a1' });
  expect(first.headers).toMatchObject({ 'x-cache': 'miss', 'x-realm-url': published, 'x-replica-id': 'rs-1' });
  expect(Number(first.headers['x-realm-epoch'])).toBeGreaterThan(0);
  expect((await get('pub.localhost', '/rs/cards/a.gts')).headers['x-cache']).toBe('hit');
  expect(await get('localhost:4201', '/rs/src/index.json')).toMatchObject({ status: 200, body: '{"v":1}' });
});

test('a republish is served fresh once acknowledged, and the epoch header advances', async () => {
  const before = await get('pub.localhost', '/rs/index.json');
  await get('pub.localhost', '/rs/index.json');
  await writeFiles(sourceDir, { 'index.json': '{"v":2}' });
  const result = await publishRealm(dataPlane(db.pool, realms.layout), { sourceRealmURL: source, publishedRealmURL: published });
  const acks = await waitForReplicaAcks(db.pool, { realmURL: published, epoch: result.epoch, timeoutMs: 5000 });
  expect(acks).toMatchObject({ complete: true, acknowledged: ['rs-1'] });
  const after = await get('pub.localhost', '/rs/index.json');
  expect(after).toMatchObject({ status: 200, body: '{"v":2}' });
  expect(after.headers['x-cache']).toBe('miss');
  expect(Number(after.headers['x-realm-epoch'])).toBe(result.epoch);
  expect(Number(after.headers['x-realm-epoch'])).toBeGreaterThan(Number(before.headers['x-realm-epoch']));
});

test('unknown realms, missing files and path tricks are 404; readiness reflects the listener', async () => {
  expect((await get('nowhere.localhost', '/x/a')).status).toBe(404);
  expect((await get('pub.localhost', '/rs/missing.json')).status).toBe(404);
  expect((await get('pub.localhost', '/rs/../rs/src/index.json')).status).toBe(404);
  expect((await get('pub.localhost', '/rs/cards/%2e%2e/index.json')).status).toBe(404);
  expect((await get('pub.localhost', '/_readyz')).status).toBe(200);
});

test('while its listener is disconnected the server bypasses the cache and reports not ready', async () => {
  // A second replica whose reconnect backoff is long enough to observe the gap (at least 1.5 s).
  const slow = new RealmServer({
    databaseURL: db.url,
    layout: realms.layout,
    replicaId: 'rs-slow',
    logger: pino({ level: 'silent' }),
    metricsRegistry: new Registry(),
    listener: { heartbeatIntervalMs: 200, leaseDurationMs: 3000, backoff: { initialMs: 3000, maxMs: 3000 } },
  });
  const slowPort = await slow.start(0);
  const read = (path: string) => getFrom(slowPort, 'pub.localhost', path);
  try {
    await slow.listener.waitUntilReady(10_000);
    await read('/rs/cards/a.gts');
    expect((await read('/rs/cards/a.gts')).headers['x-cache']).toBe('hit');
    const { rows } = await db.pool.query(`SELECT pid FROM pg_stat_activity WHERE application_name = 'realm-listener:rs-slow'`);
    await db.pool.query('SELECT pg_terminate_backend($1)', [rows[0].pid]);
    await eventually(() => !slow.listener.cacheTrusted, 5000);
    const during = await read('/rs/cards/a.gts');
    expect(during).toMatchObject({ status: 200, body: 'a1' });
    expect(during.headers['x-cache']).toBe('bypass');
    expect((await read('/_readyz')).status).toBe(503);
    await slow.listener.waitUntilReady(10_000);
    expect((await read('/rs/cards/a.gts')).headers['x-cache']).toBe('miss'); // the resync dropped it
    expect((await read('/rs/cards/a.gts')).headers['x-cache']).toBe('hit');
  } finally {
    await slow.stop();
  }
});
