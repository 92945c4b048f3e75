/**
 * Issue 13 item 1 against a real PostgreSQL: the replica's fence margin and the operator's lease
 * grace keep "the operator stopped waiting for a replica" after "that replica stopped trusting its
 * cache", even when the database's clock runs ahead of the replica's.
 *
 * A database clock that steps forward by X is simulated where it matters: a trigger stores every
 * lease renewal X earlier than the database computed it (exactly what the operator then reads back
 * against a `now()` X ahead). Renewals are then blocked on a row lock, and an observer reads
 * liveness as the operator does; each time it sees the replica not live, the replica must already
 * be fenced. With margin + grace > X that holds; with neither (the old behaviour) it is caught.
 */
import pg from 'pg';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { readLiveReplicaPods, readReplicaAckStatus, setReplicaLeaseGrace } from '../../src/dataplane/acknowledgements.js';
import { RealmListener } from '../../src/listener/realm-listener.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { eventually } from '../support/realms.js';
import { RecordingCaches } from '../support/recording-caches.js';

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
let db: TestDatabase;
const listeners: RealmListener[] = [];
const pools: pg.Pool[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(`
    CREATE TABLE test_clock_step (replica_id text PRIMARY KEY, step interval NOT NULL);
    CREATE FUNCTION test_shift_lease() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      NEW.lease_expires_at := NEW.lease_expires_at - COALESCE((SELECT step FROM test_clock_step WHERE replica_id = NEW.replica_id), interval '0');
      RETURN NEW;
    END $$;
    CREATE TRIGGER test_shift_lease BEFORE UPDATE ON realm_operator.replicas FOR EACH ROW EXECUTE FUNCTION test_shift_lease();`);
});
afterAll(async () => {
  await Promise.all(listeners.splice(0).map((l) => l.stop()));
  await Promise.all(pools.splice(0).map((p) => p.end()));
  await db.drop();
});

/** An operator-side pool with its own lease grace. */
function operatorPool(graceMs: number): pg.Pool {
  const pool = new pg.Pool({ connectionString: db.url, max: 4 });
  pool.on('error', () => undefined);
  setReplicaLeaseGrace(pool, graceMs);
  pools.push(pool);
  return pool;
}

interface Outcome {
  /** Reads that saw the replica not live while it still trusted its cache. */
  violations: number;
  /** Reads that saw it not live (the observation ends after a few). */
  notLiveReads: number;
}

/**
 * Starts a replica with `fenceMarginMs`, steps the database clock `stepMs` ahead of it, blocks its
 * renewals and watches, through a pool with `graceMs`, until the operator no longer counts it.
 */
async function clockStepScenario({ fenceMarginMs, graceMs, stepMs }: { fenceMarginMs: number; graceMs: number; stepMs: number }): Promise<Outcome> {
  const replicaId = `fence-${fenceMarginMs}-${graceMs}-${Math.random().toString(36).slice(2, 8)}`;
  const listener = new RealmListener({
    connection: db.url,
    replicaId,
    caches: new RecordingCaches(),
    logger,
    metricsRegistry: new Registry(),
    leaseDurationMs: 3000,
    heartbeatIntervalMs: 200,
    // A blocked renewal must not end the connection early: the fence alone is under test.
    heartbeatTimeoutMs: 60_000,
    fenceMarginMs,
    metadata: { pod: replicaId },
  });
  listeners.push(listener);
  listener.start();
  await listener.waitUntilReady(10_000);
  const pool = operatorPool(graceMs);

  await db.pool.query('INSERT INTO test_clock_step (replica_id, step) VALUES ($1, make_interval(secs => $2::double precision / 1000))', [replicaId, stepMs]);
  const renewedAt = async () => (await db.pool.query('SELECT renewed_at FROM realm_operator.replicas WHERE replica_id = $1', [replicaId])).rows[0].renewed_at as Date;
  const before = (await renewedAt()).getTime();
  await eventually(async () => (await renewedAt()).getTime() > before, 10_000, () => 'a renewal made after the clock step');

  const blocker = await db.pool.connect();
  const outcome: Outcome = { violations: 0, notLiveReads: 0 };
  try {
    await blocker.query('BEGIN');
    await blocker.query('SELECT 1 FROM realm_operator.replicas WHERE replica_id = $1 FOR UPDATE', [replicaId]);
    // The operator's view, read again and again; whenever it no longer counts the replica, the
    // replica must not trust its cache (read AFTER the operator's read: the order that matters).
    while (outcome.notLiveReads < 5) {
      const live = (await readLiveReplicaPods(pool)).has(replicaId);
      if (!live) {
        outcome.notLiveReads += 1;
        if (listener.cacheTrusted) outcome.violations += 1;
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  } finally {
    await blocker.query('ROLLBACK');
    blocker.release();
  }
  await listener.stop();
  return outcome;
}

test('a database clock 1.2 s ahead: with a 500 ms fence margin and a 1 s grace the operator stops waiting only after the replica fenced itself', async () => {
  const outcome = await clockStepScenario({ fenceMarginMs: 500, graceMs: 1000, stepMs: 1200 });
  expect(outcome).toEqual({ violations: 0, notLiveReads: 5 });
});

test('proof the scenario can fail: with no margin and no grace (the old protocol) the same clock step is caught as a replica trusting its cache after the operator stopped waiting', async () => {
  const outcome = await clockStepScenario({ fenceMarginMs: 0, graceMs: 0, stepMs: 1200 });
  expect(outcome.violations).toBeGreaterThan(0);
});

test('the operator counts a replica whose lease expired less than the grace ago, in ack status and live pods', async () => {
  // Replicas of the scenarios above stopped while fenced (so without deregistering): not part of this one.
  await db.pool.query('DELETE FROM realm_operator.replicas');
  const realm = 'http://pub.localhost/grace/';
  await db.pool.query(`INSERT INTO realm_operator.realm_epochs (realm_url, epoch) VALUES ($1, nextval('realm_operator.epoch_seq'))`, [realm]);
  const epoch = Number((await db.pool.query('SELECT epoch FROM realm_operator.realm_epochs WHERE realm_url = $1', [realm])).rows[0].epoch);
  await db.pool.query(
    `INSERT INTO realm_operator.replicas (replica_id, lease_expires_at, lease_duration_ms, metadata)
     VALUES ('just-expired', now() - interval '1 second', 15000, '{"pod":"just-expired"}'), ('long-gone', now() - interval '1 minute', 15000, '{"pod":"long-gone"}')`,
  );
  const withGrace = operatorPool(30_000);
  const withoutGrace = operatorPool(0);
  expect(await readReplicaAckStatus(withGrace, realm, epoch)).toMatchObject({ missing: ['just-expired'], mode: 'acknowledged' });
  expect([...(await readLiveReplicaPods(withGrace))]).toEqual(['just-expired']);
  expect(await readReplicaAckStatus(withoutGrace, realm, epoch)).toMatchObject({ missing: [], mode: 'notify-only' });
  expect([...(await readLiveReplicaPods(withoutGrace))]).toEqual([]);
  // The default (no setting) is the documented 2 s: one second past its lease still counts.
  expect((await readReplicaAckStatus(db.pool, realm, epoch)).missing).toEqual(['just-expired']);
  await db.pool.query(`DELETE FROM realm_operator.replicas WHERE replica_id IN ('just-expired', 'long-gone')`);
});
