/**
 * Issue 13 item 3: `RealmListener.stop()` stops trusting the cache BEFORE it deregisters. Once the
 * replica's row is gone the operator no longer waits for it, so a server still serving during
 * shutdown must already bypass its cache. The deregistration is held on a real row lock so the
 * moment between "stop called" and "row deleted" can be observed without timing.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { RealmListener } from '../../src/listener/realm-listener.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { eventually } from '../support/realms.js';
import { RecordingCaches } from '../support/recording-caches.js';

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
let db: TestDatabase;
const started: RealmListener[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  // Also after a failed test: a listener left running reconnects forever.
  await Promise.all(started.map((l) => l.stop()));
  await db.drop();
});

async function replicaRowExists(replicaId: string): Promise<boolean> {
  const { rowCount } = await db.pool.query('SELECT 1 FROM realm_operator.replicas WHERE replica_id = $1', [replicaId]);
  return rowCount === 1;
}

test('stop(): the cache is untrusted (property, readiness, event) while the replica row still exists; the row goes after', async () => {
  const listener = new RealmListener({
    connection: db.url,
    replicaId: `stop-order-${Math.random().toString(36).slice(2, 8)}`,
    caches: new RecordingCaches(),
    logger,
    metricsRegistry: new Registry(),
    heartbeatIntervalMs: 200,
    // Long enough that the held deregistration is not abandoned by its timeout while we look.
    heartbeatTimeoutMs: 60_000,
    leaseDurationMs: 120_000,
  });
  started.push(listener);
  const readiness = http.createServer(listener.readinessHandler());
  await new Promise<void>((resolve) => readiness.listen(0, '127.0.0.1', resolve));
  const readyzStatus = async () => (await fetch(`http://127.0.0.1:${(readiness.address() as AddressInfo).port}/`)).status;
  listener.start();
  await listener.waitUntilReady(10_000);
  expect(listener.cacheTrusted).toBe(true);
  expect(await readyzStatus()).toBe(200);

  // An observer as an embedding server would have one: what did it see when `not-ready` fired?
  const observed: Array<{ event: string; rowExists: Promise<boolean>; trusted: boolean }> = [];
  listener.on('not-ready', () => observed.push({ event: 'not-ready', trusted: listener.cacheTrusted, rowExists: replicaRowExists(listener.replicaId) }));

  // Hold the replica's row so its DELETE waits (renewals wait too; the lease is long).
  const blocker = await db.pool.connect();
  let stopped: Promise<void> | undefined;
  try {
    await blocker.query('BEGIN');
    await blocker.query('SELECT 1 FROM realm_operator.replicas WHERE replica_id = $1 FOR UPDATE', [listener.replicaId]);
    stopped = listener.stop();
    // The deregistration (or a renewal queued before it) is now waiting on our lock.
    await eventually(
      async () =>
        (
          await db.pool.query(`SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`, [`realm-listener:${listener.replicaId}`])
        ).rowCount === 1,
      10_000,
      () => 'the listener to wait on the replica row',
    );
    expect(listener.cacheTrusted).toBe(false);
    expect(listener.status()).toMatchObject({ state: 'stopping', cacheTrusted: false, ready: false });
    expect(await readyzStatus()).toBe(503);
    expect(await replicaRowExists(listener.replicaId)).toBe(true);
    expect(observed).toHaveLength(1);
    expect(observed[0]!.trusted).toBe(false);
    expect(await observed[0]!.rowExists).toBe(true);
  } finally {
    await blocker.query('ROLLBACK');
    blocker.release();
  }
  await stopped;
  // Deregistered: the operator stops waiting for it only now.
  expect(await replicaRowExists(listener.replicaId)).toBe(false);
  expect(listener.status()).toMatchObject({ state: 'stopped', cacheTrusted: false });
  await new Promise<void>((resolve) => {
    readiness.close(() => resolve());
    readiness.closeAllConnections();
  });
});

test('stop() before start() and a second stop() are no-ops', async () => {
  const listener = new RealmListener({ connection: db.url, replicaId: 'never-started', caches: new RecordingCaches(), logger, metricsRegistry: new Registry() });
  started.push(listener);
  await listener.stop();
  expect(listener.status()).toMatchObject({ state: 'stopped', cacheTrusted: false });
  listener.start();
  await listener.waitUntilReady(10_000);
  await Promise.all([listener.stop(), listener.stop()]);
  expect(listener.status()).toMatchObject({ state: 'stopped' });
  expect(await replicaRowExists('never-started')).toBe(false);
});
