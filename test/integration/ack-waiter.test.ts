/**
 * The shared acknowledgement waiter against a real PostgreSQL: one LISTEN connection for every
 * waiting publish, one NOTIFY per completed set of acks and one status query per burst, and a LISTEN connection that dies mid-wait
 * (acks committed while it is down must still end the waits: resync re-reads the table).
 */
import pg from 'pg';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { DEFAULT_REPLICA_LEASE_GRACE_MS, setReplicaLeaseGrace } from '../../src/dataplane/ack-status.js';
import { ReplicaAckWaiter } from '../../src/dataplane/ack-waiter.js';
import { notifyAllFileChanges } from '../../src/dataplane/invalidation.js';
import { RealmListener } from '../../src/listener/realm-listener.js';
import { migrate } from '../../src/dataplane/migrations.js';
import {
  ANNOUNCED_LAPSE_WINDOW_MS,
  announceIfAllAcked,
  COMPLETION_FUNCTION,
  COMPLETION_FUNCTION_BODY,
  prepareAckThenAnnounceStatements,
  recordAck,
  writeAck,
  writeAckThenAnnounce,
} from '../../src/listener/replica-registry.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { eventually } from '../support/realms.js';
import { RecordingCaches } from '../support/recording-caches.js';

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
const ACK_CHANNEL_LISTEN = 'LISTEN realm_operator_replica_acks';
let db: TestDatabase;
const cleanups: Array<() => Promise<void>> = [];

beforeAll(async () => {
  db = await createTestDatabase();
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await db.pool.query('DELETE FROM realm_operator.replicas');
});
afterAll(async () => {
  await db.drop();
});

function newWaiter(options: ConstructorParameters<typeof ReplicaAckWaiter>[1] = {}): ReplicaAckWaiter {
  const waiter = new ReplicaAckWaiter(db.pool, { lingerMs: 0, ...options });
  cleanups.push(() => waiter.close());
  return waiter;
}

/** Commits a new epoch for the realm and its wildcard NOTIFY in one transaction, as a publish does. */
async function publishEpoch(realmURL: string): Promise<number> {
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    const { rows } = await client.query(
      `INSERT INTO realm_operator.realm_epochs (realm_url, epoch) VALUES ($1, nextval('realm_operator.epoch_seq'))
       ON CONFLICT (realm_url) DO UPDATE SET epoch = EXCLUDED.epoch RETURNING epoch`,
      [realmURL],
    );
    await notifyAllFileChanges(client, realmURL);
    await client.query('COMMIT');
    return Number(rows[0].epoch);
  } finally {
    client.release();
  }
}

/** A registered, live replica that acknowledges only when the test says so. */
async function registerSilentReplica(replicaId: string): Promise<void> {
  await db.pool.query(
    `INSERT INTO realm_operator.replicas (replica_id, lease_expires_at, lease_duration_ms, cache_started_epoch)
     VALUES ($1, now() + interval '60 seconds', 60000, 0)`,
    [replicaId],
  );
}

/** A registered replica whose lease lapsed `secondsAgo` (not live to the replicas; to the operator only within its grace). */
async function registerLapsedReplica(replicaId: string, secondsAgo: number): Promise<void> {
  await db.pool.query(
    `INSERT INTO realm_operator.replicas (replica_id, lease_expires_at, lease_duration_ms, cache_started_epoch)
     VALUES ($1, now() - make_interval(secs => $2), 60000, 0)`,
    [replicaId, secondsAgo],
  );
}

/** Backends of this database LISTENing on the ack channel (their last statement was the LISTEN). */
async function ackListenerPids(): Promise<number[]> {
  const { rows } = await db.pool.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = $1 AND pid <> pg_backend_pid()`,
    [ACK_CHANNEL_LISTEN],
  );
  return rows.map((r) => r.pid);
}

/**
 * Silent replicas registered, a realm published and ONE wait on it, polling effectively off (only
 * a NOTIFY or its timeout ends it), once the waiter is LISTENing and its first read is done.
 */
async function waitOnNewRealm(name: string, replicaIds: string[], timeoutMs: number) {
  for (const id of replicaIds) await registerSilentReplica(id);
  const waiter = newWaiter();
  const realmURL = `http://pub.localhost/${name}/`;
  const epoch = await publishEpoch(realmURL);
  const wait = waiter.wait({ realmURL, epoch, timeoutMs, pollIntervalMs: 60_000 });
  await eventually(() => waiter.stats.reads >= 1 && waiter.listening, 5000, () => 'the first read');
  return { waiter, realmURL, epoch, wait };
}

/** Each replica's ack written in its own open transaction (each blind to the others'), then all committed. */
async function blindAcks(clients: pg.PoolClient[], replicaIds: string[], realmURL: string, epoch: number, beforeCommit?: () => Promise<void>): Promise<void> {
  for (const client of clients) await client.query('BEGIN');
  for (const [i, client] of clients.entries()) expect(await writeAck(client, replicaIds[i]!, realmURL, epoch)).toBe('written');
  await beforeCommit?.();
  for (const client of clients) await client.query('COMMIT');
}

/**
 * Every ack NOTIFY payload from now on; `untilSentinel` sends one more NOTIFY and returns what
 * arrived before it (NOTIFYs are delivered in commit order, so nothing earlier is still on its way).
 */
async function ackNotificationsHeard(channel = 'realm_operator_replica_acks'): Promise<{ untilSentinel(): Promise<unknown[]> }> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  cleanups.push(() => client.end());
  const payloads: string[] = [];
  let onSentinel: (() => void) | undefined;
  client.on('notification', (m) => (m.payload === 'sentinel' ? onSentinel?.() : payloads.push(m.payload ?? '')));
  await client.query(`LISTEN ${channel}`);
  return {
    async untilSentinel() {
      const sentinel = new Promise<void>((resolve) => (onSentinel = resolve));
      await db.pool.query(`SELECT pg_notify($1, 'sentinel')`, [channel]);
      await sentinel;
      return payloads.map((p) => JSON.parse(p) as unknown);
    },
  };
}

/** A completion announcement's proof when every replica is live and done (replica-registry.ts COMPLETION). */
function proof(...acknowledged: string[]) {
  return { a: acknowledged, o: [], w: ANNOUNCED_LAPSE_WINDOW_MS };
}

async function startListener(): Promise<RealmListener> {
  const listener = new RealmListener({
    connection: db.url,
    replicaId: `replica-${Math.random().toString(36).slice(2, 8)}`,
    caches: new RecordingCaches(),
    logger,
    metricsRegistry: new Registry(),
    heartbeatIntervalMs: 200,
    heartbeatTimeoutMs: 2000,
    leaseDurationMs: 5000,
    backoff: { initialMs: 50, maxMs: 500 },
  });
  cleanups.push(() => listener.stop());
  listener.start();
  await listener.waitUntilReady(10_000);
  return listener;
}

describe('shared replica acknowledgement waiter', () => {
  test('many concurrent publishes share one LISTEN connection and all complete with every replica', async () => {
    const listeners = await Promise.all([startListener(), startListener(), startListener()]);
    // Kept between the two rounds (the default linger), so the second round re-LISTENs nothing.
    const waiter = newWaiter({ lingerMs: 10_000 });
    const realms = Array.from({ length: 25 }, (_, i) => `http://pub.localhost/shared/r${i}/`);
    // Waits started before the publishes (an epoch nobody has reached yet) and after them.
    const epochs = await Promise.all(realms.map((realm) => publishEpoch(realm)));
    const waits = realms.map((realmURL, i) => waiter.wait({ realmURL, epoch: epochs[i]!, timeoutMs: 20_000, pollIntervalMs: 60_000 }));
    const results = await Promise.all(waits);
    const ids = listeners.map((l) => l.replicaId).sort();
    for (const [i, result] of results.entries()) {
      expect(result).toMatchObject({ realmURL: realms[i], epoch: epochs[i], complete: true, missing: [], mode: 'acknowledged' });
      expect(result.acknowledged).toEqual(ids);
    }
    expect(waiter.stats.connections).toBe(1);
    // Republish them all while waiting: a second round on the same connection, epochs moving on.
    const waitsAgain = realms.map(async (realmURL) => {
      const epoch = await publishEpoch(realmURL);
      return waiter.wait({ realmURL, epoch, timeoutMs: 20_000, pollIntervalMs: 60_000 });
    });
    for (const result of await Promise.all(waitsAgain)) expect(result).toMatchObject({ complete: true, acknowledged: ids });
    expect(waiter.stats.connections).toBe(1);
  });

  /**
   * 8 silent replicas, 6 realms each published and waited for; once every wait had its first read
   * (all missing), `ack(client, replica, realm, epoch)` runs for every pair in ONE transaction, so
   * the acks arrive as one burst. Returns the waits' results and the reads the burst cost.
   */
  async function burstOfAcks(name: string, ack: (client: pg.PoolClient, replica: string, realm: string, epoch: number) => Promise<void>) {
    const replicas = Array.from({ length: 8 }, (_, i) => `${name}-${i}`);
    for (const id of replicas) await registerSilentReplica(id);
    const waiter = newWaiter();
    const realms = Array.from({ length: 6 }, (_, i) => `http://pub.localhost/${name}/r${i}/`);
    const epochs = await Promise.all(realms.map((realm) => publishEpoch(realm)));
    const waits = realms.map((realmURL, i) => waiter.wait({ realmURL, epoch: epochs[i]!, timeoutMs: 20_000, pollIntervalMs: 60_000 }));
    await eventually(() => waiter.stats.reads >= 1 && waiter.listening, 5000, () => 'the first read');
    const readsBefore = waiter.stats.reads;
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      for (const [i, realm] of realms.entries()) for (const id of replicas) await ack(client, id, realm, epochs[i]!);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    for (const result of await Promise.all(waits)) expect(result).toMatchObject({ complete: true, missing: [], acknowledged: replicas });
    return { waiter, burstReads: waiter.stats.reads - readsBefore, acks: realms.length * replicas.length, realms: realms.length };
  }

  test('only the ack that completes a realm\'s set is NOTIFYd (one per realm, not one per ack), and it ends the waits with one status query', async () => {
    const { waiter, burstReads, acks, realms } = await burstOfAcks('burst', async (client, id, realm, epoch) => {
      expect(await recordAck(client, id, realm, epoch)).toBe(true);
    });
    expect(acks).toBe(realms * 8);
    // Inside the burst's transaction each ack sees the ones before it: the 8th of each realm is the only one NOTIFYd.
    expect(waiter.stats.notifications).toBe(realms);
    // The other 7 acks of each realm were written silently since the first read: one re-read (two if the burst came in two pieces).
    expect(burstReads).toBeGreaterThanOrEqual(1);
    expect(burstReads).toBeLessThanOrEqual(2);
    expect(waiter.stats.completedByNotification).toBe(0);
  });

  test('one replica: its ack NOTIFY ends the wait with no status query after it', async () => {
    const { waiter, realmURL, epoch, wait } = await waitOnNewRealm('alone', ['alone'], 20_000);
    const readsBefore = waiter.stats.reads;
    expect(await writeAck(db.pool, 'alone', realmURL, epoch)).toBe('written-alone');
    expect(await wait).toMatchObject({ complete: true, acknowledged: ['alone'] });
    expect(waiter.stats.reads).toBe(readsBefore);
    expect(waiter.stats.completedByNotification).toBe(1);
  });

  test('two acks committing concurrently, each blind to the other: the announcement after the commit ends the wait', async () => {
    // Polling is effectively off: only a NOTIFY can end this wait in time.
    const { waiter, realmURL, epoch, wait } = await waitOnNewRealm('race', ['race-a', 'race-b'], 20_000);
    const [a, b] = [await db.pool.connect(), await db.pool.connect()];
    try {
      await a.query('BEGIN');
      await b.query('BEGIN');
      expect(await writeAck(a, 'race-a', realmURL, epoch)).toBe('written'); // b's ack not yet visible
      expect(await writeAck(b, 'race-b', realmURL, epoch)).toBe('written'); // nor a's
      await a.query('COMMIT');
      await b.query('COMMIT');
      expect(waiter.stats.notifications).toBe(0);
      // Each replica asks once its own ack committed; b's commit came last, and either sees both.
      expect(await announceIfAllAcked(b, 'race-b', realmURL, epoch)).toBe(true);
    } finally {
      a.release();
      b.release();
    }
    expect(await wait).toMatchObject({ complete: true, missing: [], acknowledged: ['race-a', 'race-b'] });
    expect(waiter.stats.notifications).toBe(1);
  });

  test('replicas that see the same completion announce it once: one NOTIFY per epoch, whoever claims first', async () => {
    const heard = await ackNotificationsHeard();
    for (const id of ['claim-a', 'claim-b', 'claim-c']) await registerSilentReplica(id);
    const realmURL = 'http://pub.localhost/claim/';
    const first = await publishEpoch(realmURL);
    for (const id of ['claim-a', 'claim-b']) expect(await writeAck(db.pool, id, realmURL, first)).toBe('written');
    // a and b announce after their own commits, as they do when their acks overlapped c's: all three see the same completion.
    expect(await writeAck(db.pool, 'claim-c', realmURL, first)).toBe('written-notified');
    expect(await announceIfAllAcked(db.pool, 'claim-a', realmURL, first)).toBe(false);
    expect(await announceIfAllAcked(db.pool, 'claim-b', realmURL, first)).toBe(false);

    const second = await publishEpoch(realmURL);
    const [a, b] = [await db.pool.connect(), await db.pool.connect()];
    try {
      await blindAcks([a, b], ['claim-a', 'claim-b'], realmURL, second, () =>
        writeAck(db.pool, 'claim-c', realmURL, second).then((written) => expect(written).toBe('written')), // a's and b's not committed yet
      );
      // Two announcements at once: the second waits for the first's claim and, once it committed, sends nothing.
      await a.query('BEGIN');
      expect(await announceIfAllAcked(a, 'claim-a', realmURL, second)).toBe(true);
      const late = announceIfAllAcked(b, 'claim-b', realmURL, second);
      await a.query('COMMIT');
      expect(await late).toBe(false);
      expect(await announceIfAllAcked(db.pool, 'claim-c', realmURL, second)).toBe(false);
    } finally {
      a.release();
      b.release();
    }
    expect(await heard.untilSentinel()).toEqual([
      { r: realmURL, e: first, id: 'claim-c' }, // the general statement's NOTIFY carries no proof
      { r: realmURL, e: second, id: 'claim-a', c: proof('claim-a', 'claim-b', 'claim-c') },
    ]);
  });

  test('a claim rolled back leaves the completion to the announcement that waited for it', async () => {
    const heard = await ackNotificationsHeard();
    for (const id of ['undo-a', 'undo-b']) await registerSilentReplica(id);
    const realmURL = 'http://pub.localhost/undo/';
    const epoch = await publishEpoch(realmURL);
    const [a, b] = [await db.pool.connect(), await db.pool.connect()];
    try {
      await blindAcks([a, b], ['undo-a', 'undo-b'], realmURL, epoch);
      await a.query('BEGIN');
      expect(await announceIfAllAcked(a, 'undo-a', realmURL, epoch)).toBe(true);
      const second = announceIfAllAcked(b, 'undo-b', realmURL, epoch);
      await a.query('ROLLBACK'); // a's replica died before its commit: its NOTIFY is never sent
      expect(await second).toBe(true);
    } finally {
      a.release();
      b.release();
    }
    expect(await heard.untilSentinel()).toEqual([{ r: realmURL, e: epoch, id: 'undo-b', c: proof('undo-a', 'undo-b') }]);
  });

  test("a replica within the operator's lease grace that acks after the completion was announced is announced again", async () => {
    setReplicaLeaseGrace(db.pool, 600_000);
    cleanups.push(async () => setReplicaLeaseGrace(db.pool, DEFAULT_REPLICA_LEASE_GRACE_MS));
    await registerSilentReplica('graced-live');
    // Lapsed for the replicas (no grace), still waited for by the operator (within its grace).
    await registerLapsedReplica('graced-lapsed', 5);
    const { waiter, realmURL, epoch, wait } = await waitOnNewRealm('graced', [], 20_000);
    expect(await writeAck(db.pool, 'graced-live', realmURL, epoch)).toBe('written-notified');
    await eventually(() => waiter.stats.notifications === 1 && waiter.stats.reads >= 2, 5000, () => 'the first announcement and its re-read');
    expect(await writeAck(db.pool, 'graced-lapsed', realmURL, epoch)).toBe('written-notified');
    expect(await wait).toMatchObject({ complete: true, acknowledged: ['graced-lapsed', 'graced-live'] });
    expect(waiter.stats.notifications).toBe(2);
  });

  test('the lean ack of a replica that was alone: NOTIFYs while alone; once another registered, writes silently and the announcement completes', async () => {
    const heard = await ackNotificationsHeard();
    await registerSilentReplica('lean-a');
    const realmURL = 'http://pub.localhost/lean/';
    const first = await publishEpoch(realmURL);
    expect(await writeAck(db.pool, 'lean-a', realmURL, first, { expectAlone: true })).toBe('written-alone');
    await registerSilentReplica('lean-b');
    const second = await publishEpoch(realmURL);
    await writeAck(db.pool, 'lean-b', realmURL, second);
    expect(await writeAck(db.pool, 'lean-a', realmURL, second, { expectAlone: true })).toBe('written'); // no NOTIFY, though b is done
    expect(await announceIfAllAcked(db.pool, 'lean-a', realmURL, second)).toBe(true);
    expect(await heard.untilSentinel()).toEqual([
      { r: realmURL, e: first, id: 'lean-a', c: proof('lean-a') },
      { r: realmURL, e: second, id: 'lean-a', c: proof('lean-a', 'lean-b') },
    ]);
  });

  describe('writeAckThenAnnounce: the ack, its COMMIT and the announcement in one round trip', () => {
    test('the first ack (another replica missing) is silent; the last one, announced after its own commit, NOTIFYs and ends the wait', async () => {
      const heard = await ackNotificationsHeard();
      const { waiter, realmURL, epoch, wait } = await waitOnNewRealm('one-trip', ['trip-a', 'trip-b'], 20_000);
      const [a, b] = [await db.pool.connect(), await db.pool.connect()];
      try {
        expect(await writeAckThenAnnounce(a, 'trip-a', realmURL, epoch)).toBe('written'); // trip-b still missing
        expect(await writeAckThenAnnounce(b, 'trip-b', realmURL, epoch)).toBe('written-notified');
        // Not left inside a transaction: another client sees both rows at once.
        expect((await a.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
      } finally {
        a.release();
        b.release();
      }
      expect(await wait).toMatchObject({ complete: true, missing: [], acknowledged: ['trip-a', 'trip-b'] });
      expect(waiter.stats.notifications).toBe(1);
      expect(await heard.untilSentinel()).toEqual([{ r: realmURL, e: epoch, id: 'trip-b', c: proof('trip-a', 'trip-b') }]);
      // The claim records both acks as done.
      const { rows } = await db.pool.query('SELECT epoch, done FROM realm_operator.ack_announcements WHERE realm_url = $1', [realmURL]);
      expect(rows).toEqual([{ epoch: String(epoch), done: 2 }]);
    });

    test('two acks in flight at once, each announcing only after its own COMMIT: the later announcement sees both and NOTIFYs', async () => {
      const heard = await ackNotificationsHeard();
      for (const id of ['flight-a', 'flight-b']) await registerSilentReplica(id);
      const realmURL = 'http://pub.localhost/flight/';
      const [a, b, locker] = [await db.pool.connect(), await db.pool.connect(), await db.pool.connect()];
      try {
        // Each connection prepares its statements at its first ack (a table lock would block that too).
        const warmup = await publishEpoch(realmURL);
        expect(await writeAckThenAnnounce(a, 'flight-a', realmURL, warmup)).toBe('written');
        expect(await writeAckThenAnnounce(b, 'flight-b', realmURL, warmup)).toBe('written-notified');
        const epoch = await publishEpoch(realmURL);
        // Both completion checks wait on the replica table's lock (the acks, updates of existing
        // rows, do not read it), after both acks were written: had the check run inside its ack's
        // transaction, neither would see the other's ack (no NOTIFY).
        await locker.query('BEGIN');
        await locker.query('LOCK TABLE realm_operator.replicas IN ACCESS EXCLUSIVE MODE');
        const acks = [writeAckThenAnnounce(a, 'flight-a', realmURL, epoch), writeAckThenAnnounce(b, 'flight-b', realmURL, epoch)];
        await eventually(
          async () => (await db.pool.query(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`)).rowCount === 2,
          5000,
          () => 'both completion checks waiting on the lock',
        );
        expect((await db.pool.query('SELECT count(*)::int AS n FROM realm_operator.replica_acks WHERE realm_url = $1 AND epoch = $2', [realmURL, epoch])).rows).toEqual([{ n: 2 }]);
        await locker.query('COMMIT');
        expect((await Promise.all(acks)).sort()).toEqual(['written', 'written-notified']);
        const notified = (await heard.untilSentinel()) as Array<{ e: number }>;
        expect(notified.filter((n) => n.e === epoch)).toHaveLength(1);
      } finally {
        for (const c of [a, b, locker]) c.release();
      }
    });

    test('alone: NOTIFYs without a claim and says so (the listener then takes the lean statement)', async () => {
      const heard = await ackNotificationsHeard();
      await registerSilentReplica('trip-alone');
      const realmURL = 'http://pub.localhost/trip-alone/';
      const epoch = await publishEpoch(realmURL);
      const client = await db.pool.connect();
      try {
        expect(await writeAckThenAnnounce(client, 'trip-alone', realmURL, epoch)).toBe('written-alone');
      } finally {
        client.release();
      }
      expect(await heard.untilSentinel()).toEqual([{ r: realmURL, e: epoch, id: 'trip-alone', c: proof('trip-alone') }]);
      expect((await db.pool.query('SELECT 1 FROM realm_operator.ack_announcements WHERE realm_url = $1', [realmURL])).rowCount).toBe(0);
    });

    test('values travel as escaped literals: quotes and backslashes arrive as written; a NUL or a bad epoch is refused', async () => {
      const heard = await ackNotificationsHeard();
      const replicaId = String.raw`it's a\replica'); DROP TABLE realm_operator.replicas; --`;
      await registerSilentReplica(replicaId);
      const realmURL = String.raw`http://pub.localhost/o'brien\x/`; // not a canonical realm URL: its epoch written directly
      const { rows: epochs } = await db.pool.query(`INSERT INTO realm_operator.realm_epochs (realm_url, epoch) VALUES ($1, nextval('realm_operator.epoch_seq')) RETURNING epoch`, [realmURL]);
      const epoch = Number(epochs[0].epoch);
      const client = await db.pool.connect();
      try {
        expect(await writeAckThenAnnounce(client, replicaId, realmURL, epoch)).toBe('written-alone');
        await expect(writeAckThenAnnounce(client, 'a\0b', realmURL, epoch)).rejects.toThrow(/must not contain a NUL character/);
        await expect(writeAckThenAnnounce(client, replicaId, realmURL, 1.5)).rejects.toThrow(/epoch must be a positive integer \(got 1\.5\)/);
      } finally {
        client.release();
      }
      const { rows } = await db.pool.query('SELECT replica_id, realm_url, epoch FROM realm_operator.replica_acks WHERE replica_id = $1', [replicaId]);
      expect(rows).toEqual([{ replica_id: replicaId, realm_url: realmURL, epoch: String(epoch) }]);
      expect(await heard.untilSentinel()).toEqual([{ r: realmURL, e: epoch, id: replicaId, c: proof(replicaId) }]);
    });

    test('prepared and planned ahead: the check (calling the announcement function) has its generic plan before the first ack', async () => {
      await registerSilentReplica('warm-up-done');
      await db.pool.query(`UPDATE realm_operator.replicas SET cache_started_epoch = 10 WHERE replica_id = 'warm-up-done'`);
      const warmUpHeard = await ackNotificationsHeard('realm_operator_warm_up');
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      try {
        await client.query(`SET plan_cache_mode = force_generic_plan`); // as the listener's connection (realm-listener.ts listen())
        await prepareAckThenAnnounceStatements(client);
        await prepareAckThenAnnounceStatements(client); // a no-op the second time (PREPARE of an existing name would throw)
        const { rows } = await client.query(`SELECT name, generic_plans FROM pg_prepared_statements WHERE name LIKE 'realm_operator_ack_then_announce_%' ORDER BY name`);
        expect(rows).toEqual([
          { name: 'realm_operator_ack_then_announce_ack', generic_plans: '0' },
          { name: 'realm_operator_ack_then_announce_check', generic_plans: '1' },
        ]);
        // The warm-up call of the function (realm '', epoch 1) claimed and NOTIFYd here — the one
        // live replica started its cache past epoch 1, so nobody is missing — but was rolled back:
        // no claim row, nothing heard, and the session is not left in a transaction.
        expect((await client.query(`SELECT count(*)::int AS n FROM realm_operator.ack_announcements WHERE realm_url = ''`)).rows).toEqual([{ n: 0 }]);
        expect(await warmUpHeard.untilSentinel()).toEqual([]);
        expect((await client.query(`SELECT now() = statement_timestamp() AS outside`)).rows).toEqual([{ outside: true }]);
      } finally {
        await client.end();
      }
    });

    test('the last ack completes the set in its one round trip: the check calls the announcement function', async () => {
      const heard = await ackNotificationsHeard();
      const { waiter, realmURL, epoch, wait } = await waitOnNewRealm('folded', ['folded-a', 'folded-b'], 20_000);
      // Connections of their own: a pooled one may hold statements prepared by an earlier test.
      const [a, b] = [new pg.Client({ connectionString: db.url }), new pg.Client({ connectionString: db.url })];
      try {
        for (const client of [a, b]) await client.connect();
        expect(await writeAckThenAnnounce(a, 'folded-a', realmURL, epoch)).toBe('written');
        expect(await writeAckThenAnnounce(b, 'folded-b', realmURL, epoch)).toBe('written-notified');
        // The announcement was not sent as a statement of its own: its statement does not exist on b.
        const { rows } = await b.query(`SELECT name FROM pg_prepared_statements WHERE name LIKE 'realm_operator_ack_then_announce_%' ORDER BY name`);
        expect(rows.map((r) => r.name)).toEqual(['realm_operator_ack_then_announce_ack', 'realm_operator_ack_then_announce_check']);
      } finally {
        await Promise.all([a.end(), b.end()]);
      }
      expect(await wait).toMatchObject({ complete: true, missing: [], acknowledged: ['folded-a', 'folded-b'] });
      expect(waiter.stats.notifications).toBe(1);
      expect(await heard.untilSentinel()).toEqual([{ r: realmURL, e: epoch, id: 'folded-b', c: proof('folded-a', 'folded-b') }]);
    });

    test('with another release\'s announcement function, or none, the last ack sends its own announcement itself; migrate puts this release\'s back', async () => {
      const heard = await ackNotificationsHeard();
      const preparedOn = async (client: pg.Client) =>
        (await client.query(`SELECT name FROM pg_prepared_statements WHERE name LIKE 'realm_operator_ack_then_announce_%' ORDER BY name`)).rows.map((r) => r.name);
      const separate = ['realm_operator_ack_then_announce_ack', 'realm_operator_ack_then_announce_announce', 'realm_operator_ack_then_announce_check'];
      // Another release's body (here one that would never announce): not used.
      await db.pool.query(`CREATE OR REPLACE FUNCTION ${COMPLETION_FUNCTION} RETURNS text LANGUAGE plpgsql AS $$ BEGIN RETURN 'written'; END $$`);
      const [client, other] = [new pg.Client({ connectionString: db.url }), new pg.Client({ connectionString: db.url })];
      try {
        await client.connect();
        const { waiter, realmURL, epoch, wait } = await waitOnNewRealm('separate', ['separate-a', 'separate-b'], 20_000);
        await prepareAckThenAnnounceStatements(client);
        expect(await preparedOn(client)).toEqual(separate);
        expect(await writeAckThenAnnounce(client, 'separate-a', realmURL, epoch)).toBe('written');
        expect(await writeAckThenAnnounce(client, 'separate-b', realmURL, epoch)).toBe('written-notified');
        expect(await wait).toMatchObject({ complete: true, missing: [] });
        expect(waiter.stats.notifications).toBe(1);
        expect(await heard.untilSentinel()).toEqual([{ r: realmURL, e: epoch, id: 'separate-b', c: proof('separate-a', 'separate-b') }]);
        // No function at all (a database no migrate of this release has run on): the same.
        await db.pool.query(`DROP FUNCTION ${COMPLETION_FUNCTION}`);
        await other.connect();
        await prepareAckThenAnnounceStatements(other);
        expect(await preparedOn(other)).toEqual(separate);
      } finally {
        await Promise.all([client.end(), other.end()]);
        await migrate(db.pool);
      }
      // migrate made it again, and replaces a body that is not this release's.
      const body = async () => (await db.pool.query(`SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure($1)`, [COMPLETION_FUNCTION])).rows[0]?.prosrc;
      expect(await body()).toBe(COMPLETION_FUNCTION_BODY);
      await db.pool.query(`CREATE OR REPLACE FUNCTION ${COMPLETION_FUNCTION} RETURNS text LANGUAGE plpgsql AS $$ BEGIN RETURN 'written'; END $$`);
      await migrate(db.pool);
      expect(await body()).toBe(COMPLETION_FUNCTION_BODY);
    });

    test('a PREPARE that failed half-way heals: the next ack prepares both statements again', async () => {
      await registerSilentReplica('heal');
      const realmURL = 'http://pub.localhost/heal/';
      const epoch = await publishEpoch(realmURL);
      // A connection of its own: a pooled one may already hold the statements from an earlier test.
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      try {
        // The check's name taken on this connection: the ack's PREPARE succeeds, the check's fails.
        await client.query('PREPARE realm_operator_ack_then_announce_check AS SELECT 1');
        await expect(writeAckThenAnnounce(client, 'heal', realmURL, epoch)).rejects.toThrow(/already exists/);
        expect(await writeAckThenAnnounce(client, 'heal', realmURL, epoch)).toBe('written-alone');
      } finally {
        await client.end();
      }
    });

    test('an unregistered replica gets `unregistered`, nothing is notified, and the connection is usable (its failed transaction rolled back)', async () => {
      const heard = await ackNotificationsHeard();
      const realmURL = 'http://pub.localhost/trip-gone/';
      const epoch = await publishEpoch(realmURL);
      const client = await db.pool.connect();
      try {
        expect(await writeAckThenAnnounce(client, 'never-registered', realmURL, epoch)).toBe('unregistered');
        // In a failed transaction this would be refused ("current transaction is aborted").
        expect((await client.query('SELECT 1 AS ok')).rows).toEqual([{ ok: 1 }]);
      } finally {
        client.release();
      }
      expect(await heard.untilSentinel()).toEqual([]);
    });
  });

  test('an announcement while a live replica is still missing sends nothing', async () => {
    for (const id of ['done', 'late']) await registerSilentReplica(id);
    const realmURL = 'http://pub.localhost/not-yet/';
    const epoch = await publishEpoch(realmURL);
    expect(await writeAck(db.pool, 'done', realmURL, epoch)).toBe('written');
    expect(await announceIfAllAcked(db.pool, 'done', realmURL, epoch)).toBe(false);
    expect(await writeAck(db.pool, 'late', realmURL, epoch)).toBe('written-notified');
  });

  test('acks that name only their realm (older replicas) cost one status query per burst, not one per ack', async () => {
    const { waiter, burstReads } = await burstOfAcks('legacy', async (client, id, realm, epoch) => {
      await client.query(`INSERT INTO realm_operator.replica_acks (replica_id, realm_url, epoch) VALUES ($1, $2, $3)`, [id, realm, epoch]);
      // The payload an older replica sends (PostgreSQL folds a transaction's identical ones: one per realm).
      await client.query(`SELECT pg_notify('realm_operator_replica_acks', $1)`, [realm]);
    });
    expect(waiter.stats.completedByNotification).toBe(0);
    // One query for the burst; a second only if the burst reached the socket in two pieces.
    expect(burstReads).toBeGreaterThanOrEqual(1);
    expect(burstReads).toBeLessThanOrEqual(2);
  });

  test('an ack NOTIFY for an older epoch, another realm or a garbled payload never completes a wait by itself', async () => {
    const { waiter, realmURL, epoch, wait } = await waitOnNewRealm('careful', ['careful'], 1500);
    const send = (payload: string) => db.pool.query(`SELECT pg_notify('realm_operator_replica_acks', $1)`, [payload]);
    await send(JSON.stringify({ r: realmURL, e: epoch - 1, id: 'careful' }));
    await send(JSON.stringify({ r: 'http://pub.localhost/elsewhere/', e: epoch, id: 'careful' }));
    await send(JSON.stringify({ r: realmURL, e: String(epoch), id: 'careful' }));
    const result = await wait;
    expect(result).toMatchObject({ complete: false, missing: ['careful'] });
    expect(waiter.stats.completedByNotification).toBe(0);
  });

  test('acks committed while the LISTEN connection is down still end every wait (resync re-reads the table)', async () => {
    const replicas = ['down-a', 'down-b'];
    for (const id of replicas) await registerSilentReplica(id);
    const lost: Error[] = [];
    // Polling is effectively off (60 s) and reconnecting is slow: only the resync can end the waits in time.
    const waiter = newWaiter({ reconnectDelayMs: 1500, onConnectionError: (e) => void lost.push(e) });
    const realms = Array.from({ length: 10 }, (_, i) => `http://pub.localhost/down/r${i}/`);
    const epochs = await Promise.all(realms.map((realm) => publishEpoch(realm)));
    const waits = realms.map((realmURL, i) => waiter.wait({ realmURL, epoch: epochs[i]!, timeoutMs: 15_000, pollIntervalMs: 60_000 }));
    await eventually(() => waiter.listening && waiter.stats.reads >= 1, 5000, () => 'the waiter to be listening');
    // Half the acks before the drop (their notifications arrive), half while it is down (lost).
    for (const [i, realm] of realms.entries()) if (i % 2 === 0) for (const id of replicas) await recordAck(db.pool, id, realm, epochs[i]!);
    const pids = await ackListenerPids();
    expect(pids).toHaveLength(1);
    await eventually(() => waiter.stats.readsDone === waiter.stats.reads, 5000, () => 'the re-reads the first half woke');
    const readsBeforeDrop = waiter.stats.reads;
    await db.pool.query('SELECT pg_terminate_backend($1)', [pids[0]]);
    // Dropped, and the re-read it triggers at once has returned (else it may see the acks below).
    await eventually(
      () => !waiter.listening && waiter.stats.reads > readsBeforeDrop && waiter.stats.readsDone === waiter.stats.reads,
      5000,
      () => 'the waiter to notice the dropped connection and re-read',
    );
    for (const [i, realm] of realms.entries()) if (i % 2 === 1) for (const id of replicas) await recordAck(db.pool, id, realm, epochs[i]!);
    expect(waiter.listening).toBe(false); // the second half really was committed while nobody listened
    const results = await Promise.all(waits);
    for (const [i, result] of results.entries()) {
      expect(result).toMatchObject({ realmURL: realms[i], complete: true, missing: [], acknowledged: replicas });
      expect(result.waitedMs).toBeLessThan(15_000);
    }
    expect(waiter.stats).toMatchObject({ connections: 2, lost: 1 });
    expect(lost).toHaveLength(1);
    // Released (lingerMs 0) once the waits ended; the server drops the backend from
    // pg_stat_activity only after the client's close (or the termination) reaches it.
    await eventually(async () => (await ackListenerPids()).length === 0, 10_000, () => 'the LISTEN connection to be released');
  });

  test('a wait that times out reports who is missing; an aborted one settles at once', async () => {
    await registerSilentReplica('never-acks');
    const waiter = newWaiter();
    const realmURL = 'http://pub.localhost/timeout/';
    const epoch = await publishEpoch(realmURL);
    const timedOut = await waiter.wait({ realmURL, epoch, timeoutMs: 300, pollIntervalMs: 100 });
    expect(timedOut).toMatchObject({ complete: false, missing: ['never-acks'], acknowledged: [], mode: 'acknowledged' });
    const controller = new AbortController();
    const aborted = waiter.wait({ realmURL, epoch, timeoutMs: 60_000, pollIntervalMs: 60_000, signal: controller.signal });
    controller.abort();
    expect(await aborted).toMatchObject({ complete: false, missing: ['never-acks'] });
  });

  test('a replica whose lease lapses stops counting, and a deregistration wakes every wait', async () => {
    await registerSilentReplica('stays');
    await db.pool.query(
      `INSERT INTO realm_operator.replicas (replica_id, lease_expires_at, lease_duration_ms, cache_started_epoch) VALUES ('lapses', now() + interval '1 second', 1000, 0)`,
    );
    const waiter = newWaiter();
    const realmURL = 'http://pub.localhost/lapse/';
    const epoch = await publishEpoch(realmURL);
    const wait = waiter.wait({ realmURL, epoch, timeoutMs: 10_000, pollIntervalMs: 200 });
    await recordAck(db.pool, 'stays', realmURL, epoch);
    const result = await wait;
    // Complete only once 'lapses' is no longer live: its lease ran out, it never acknowledged.
    expect(result).toMatchObject({ complete: true, missing: [], acknowledged: ['stays'] });
    const { rows } = await db.pool.query(`SELECT lease_expires_at <= now() AS lapsed FROM realm_operator.replicas WHERE replica_id = 'lapses'`);
    expect(rows[0].lapsed).toBe(true);

    await registerSilentReplica('leaves');
    const epoch2 = await publishEpoch(realmURL);
    await recordAck(db.pool, 'stays', realmURL, epoch2);
    const readsBefore = waiter.stats.reads;
    const wait2 = waiter.wait({ realmURL, epoch: epoch2, timeoutMs: 10_000, pollIntervalMs: 60_000 });
    await eventually(() => waiter.listening && waiter.stats.reads > readsBefore, 5000, () => 'the first read of the second wait');
    await db.pool.query(
      `WITH gone AS (DELETE FROM realm_operator.replicas WHERE replica_id = 'leaves' RETURNING 1) SELECT pg_notify('realm_operator_replica_acks', '-') FROM gone`,
    );
    expect(await wait2).toMatchObject({ complete: true, acknowledged: ['stays'] });
  });

  test('an ack from a replica whose row is gone is refused (recordAck says false), and nothing is notified', async () => {
    const waiter = newWaiter();
    await registerSilentReplica('present');
    const realmURL = 'http://pub.localhost/pruned/';
    const epoch = await publishEpoch(realmURL);
    const wait = waiter.wait({ realmURL, epoch, timeoutMs: 1500, pollIntervalMs: 60_000 });
    await eventually(() => waiter.stats.reads >= 1 && waiter.listening, 5000, () => 'the first read');
    expect(await recordAck(db.pool, 'pruned-long-ago', realmURL, epoch)).toBe(false);
    expect((await db.pool.query(`SELECT 1 FROM realm_operator.replica_acks WHERE replica_id = 'pruned-long-ago'`)).rowCount).toBe(0);
    expect(await recordAck(db.pool, 'present', realmURL, epoch)).toBe(true);
    expect(await wait).toMatchObject({ complete: true, acknowledged: ['present'] });
    expect(waiter.stats.notifications).toBe(1);
  });

  describe('completion proofs: an announcement that completes a wait with no status read', () => {
    /** A waiter that keeps its LISTEN, has read once and found replicas (so it expects announcements). */
    async function listeningWaiter(options: ConstructorParameters<typeof ReplicaAckWaiter>[1] = {}): Promise<ReplicaAckWaiter> {
      const waiter = newWaiter({ lingerMs: 60_000, ...options });
      // Epoch 0: every registered replica is done with it, so this wait completes on its first read.
      expect(await waiter.wait({ realmURL: 'http://pub.localhost/warm-up/', epoch: 0, timeoutMs: 5000 })).toMatchObject({ complete: true, mode: 'acknowledged' });
      expect(waiter.listening).toBe(true);
      return waiter;
    }

    async function ackOneTrip(replicaId: string, realmURL: string, epoch: number) {
      const client = await db.pool.connect();
      try {
        return await writeAckThenAnnounce(client, replicaId, realmURL, epoch);
      } finally {
        client.release();
      }
    }

    test('the last ack\'s announcement carries the proof: the wait completes with no read after its first', async () => {
      const { waiter, realmURL, epoch, wait } = await waitOnNewRealm('proof', ['proof-a', 'proof-b'], 20_000);
      const readsBefore = waiter.stats.reads;
      expect(await ackOneTrip('proof-a', realmURL, epoch)).toBe('written');
      expect(await ackOneTrip('proof-b', realmURL, epoch)).toBe('written-notified');
      expect(await wait).toMatchObject({ complete: true, missing: [], acknowledged: ['proof-a', 'proof-b'], mode: 'acknowledged' });
      expect(waiter.stats.reads).toBe(readsBefore);
      expect(waiter.stats.completedByAnnouncement).toBe(1);
    });

    test('LISTEN active since before the commit: no first read; a proof heard before the wait began completes it at once', async () => {
      await registerSilentReplica('early');
      const waiter = await listeningWaiter();
      const realmURL = 'http://pub.localhost/early/';
      const readsBefore = waiter.stats.reads;
      const epoch = await publishEpoch(realmURL);
      const wait = waiter.wait({ realmURL, epoch, timeoutMs: 20_000, pollIntervalMs: 60_000 });
      expect(waiter.stats.firstReadsSkipped).toBe(1);
      expect(await ackOneTrip('early', realmURL, epoch)).toBe('written-alone');
      expect(await wait).toMatchObject({ complete: true, acknowledged: ['early'], missing: [], mode: 'acknowledged' });
      // Announced between the commit and the wait (the publisher had not called wait yet).
      const epoch2 = await publishEpoch(realmURL);
      expect(await ackOneTrip('early', realmURL, epoch2)).toBe('written-alone');
      await eventually(() => waiter.stats.notifications === 2, 5000, () => 'the second announcement');
      expect(await waiter.wait({ realmURL, epoch: epoch2, timeoutMs: 20_000, pollIntervalMs: 60_000 })).toMatchObject({ complete: true, acknowledged: ['early'] });
      expect(waiter.stats.reads).toBe(readsBefore);
      expect(waiter.stats.completedByAnnouncement).toBe(2);
    });

    test('a proof for an older epoch completes no newer wait, whether heard before the wait or during it', async () => {
      await registerSilentReplica('older');
      const waiter = await listeningWaiter();
      const realmURL = 'http://pub.localhost/older/';
      const first = await publishEpoch(realmURL);
      expect(await ackOneTrip('older', realmURL, first)).toBe('written-alone');
      await eventually(() => waiter.stats.notifications === 1, 5000, () => 'the first announcement');
      const second = await publishEpoch(realmURL);
      const wait = waiter.wait({ realmURL, epoch: second, timeoutMs: 1500, pollIntervalMs: 60_000 });
      // A complete proof, but for the epoch before ours (as a replica acking late would send it).
      const stale = { r: realmURL, e: second - 1, id: 'older', c: proof('older') };
      await db.pool.query(`SELECT pg_notify('realm_operator_replica_acks', $1)`, [JSON.stringify(stale)]);
      expect(await wait).toMatchObject({ complete: false, missing: ['older'] });
      expect(waiter.stats.completedByAnnouncement).toBe(0);
    });

    test('a forged proof for a far-future epoch, or one heard before the invalidation was sent, completes no wait', async () => {
      await registerSilentReplica('forged');
      const waiter = await listeningWaiter();
      const realmURL = 'http://pub.localhost/forged/';
      // Any session may NOTIFY: a "complete" proof for the largest epoch, before any publish.
      const farFuture = { r: realmURL, e: Number.MAX_SAFE_INTEGER, id: 'forged', c: proof('forged') };
      await db.pool.query(`SELECT pg_notify('realm_operator_replica_acks', $1)`, [JSON.stringify(farFuture)]);
      // And, for another realm, one for exactly the epoch its next publish will take, sent before that publish.
      const otherURL = 'http://pub.localhost/forged-early/';
      const { rows } = await db.pool.query<{ next: string }>(`SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END AS next FROM realm_operator.epoch_seq`);
      const early = { r: otherURL, e: Number(rows[0]!.next), id: 'forged', c: proof('forged') };
      await db.pool.query(`SELECT pg_notify('realm_operator_replica_acks', $1)`, [JSON.stringify(early)]);
      await eventually(() => waiter.stats.notifications === 2, 5000, () => 'both forged proofs heard');
      const otherEpoch = await publishEpoch(otherURL);
      expect(otherEpoch).toBe(early.e);
      const epoch = await publishEpoch(realmURL);
      const [before, beforeOther] = await Promise.all([
        waiter.wait({ realmURL, epoch, timeoutMs: 1500, pollIntervalMs: 60_000 }),
        waiter.wait({ realmURL: otherURL, epoch: otherEpoch, timeoutMs: 1500, pollIntervalMs: 60_000 }),
      ]);
      expect(before).toMatchObject({ complete: false, missing: ['forged'] });
      expect(beforeOther).toMatchObject({ complete: false, missing: ['forged'] });
      // Heard during a wait, the far-future proof only makes it read the table.
      const epoch2 = await publishEpoch(realmURL);
      const during = waiter.wait({ realmURL, epoch: epoch2, timeoutMs: 1500, pollIntervalMs: 60_000 });
      await db.pool.query(`SELECT pg_notify('realm_operator_replica_acks', $1)`, [JSON.stringify(farFuture)]);
      expect(await during).toMatchObject({ complete: false, missing: ['forged'] });
      expect(waiter.stats.completedByAnnouncement).toBe(0);
    });

    test('LISTEN re-opened between the commit and the announcement: the wait reads first (the announcement was lost)', async () => {
      await registerSilentReplica('gap');
      const waiter = await listeningWaiter({ reconnectDelayMs: 1000 });
      // An open wait keeps the waiter reconnecting after the drop.
      const keep = new AbortController();
      const kept = waiter.wait({ realmURL: 'http://pub.localhost/gap-other/', epoch: 1e12, timeoutMs: 30_000, pollIntervalMs: 60_000, signal: keep.signal });
      const realmURL = 'http://pub.localhost/gap/';
      const epoch = await publishEpoch(realmURL);
      const pids = await ackListenerPids();
      expect(pids).toHaveLength(1);
      await db.pool.query('SELECT pg_terminate_backend($1)', [pids[0]]);
      await eventually(() => waiter.stats.lost === 1, 5000, () => 'the waiter to notice the drop');
      expect(await ackOneTrip('gap', realmURL, epoch)).toBe('written-alone'); // announced while nobody listened
      await eventually(() => waiter.listening && waiter.stats.connections === 2, 5000, () => 'the waiter to LISTEN again');
      const readsBefore = waiter.stats.reads;
      const result = await waiter.wait({ realmURL, epoch, timeoutMs: 5000, pollIntervalMs: 60_000 });
      expect(result).toMatchObject({ complete: true, acknowledged: ['gap'] });
      expect(waiter.stats.reads).toBeGreaterThan(readsBefore);
      expect(waiter.stats.firstReadsSkipped).toBe(0);
      keep.abort();
      await kept;
    });

    test("a replica within the operator's lease grace that the proof lists as missing keeps the wait open; one lapsed past the grace does not", async () => {
      setReplicaLeaseGrace(db.pool, 30_000);
      cleanups.push(async () => setReplicaLeaseGrace(db.pool, DEFAULT_REPLICA_LEASE_GRACE_MS));
      await registerSilentReplica('graced-proof-live');
      await registerLapsedReplica('graced-proof-lapsed', 5);
      const { waiter, realmURL, epoch, wait } = await waitOnNewRealm('graced-proof', [], 1500);
      // Lapsed for the replicas: the announcement claims and NOTIFYs, listing it as lapsed 5 s ago, not done.
      expect(await ackOneTrip('graced-proof-live', realmURL, epoch)).toBe('written-notified');
      expect(await wait).toMatchObject({ complete: false, missing: ['graced-proof-lapsed'], acknowledged: ['graced-proof-live'] });
      expect(waiter.stats.completedByAnnouncement).toBe(0);

      setReplicaLeaseGrace(db.pool, 1000); // now lapsed past the grace: the proof alone completes
      const next = await waitOnNewRealm('graced-proof-2', [], 20_000);
      const readsBefore = next.waiter.stats.reads;
      expect(await ackOneTrip('graced-proof-live', next.realmURL, next.epoch)).toBe('written-notified');
      expect(await next.wait).toMatchObject({ complete: true, missing: [], acknowledged: ['graced-proof-live'] });
      expect(next.waiter.stats.reads).toBe(readsBefore);
      expect(next.waiter.stats.completedByAnnouncement).toBe(1);
    });

    test('a replica whose lease lapses unacknowledged: only the poll\'s read completes the wait (a lapse sends nothing)', async () => {
      await registerSilentReplica('poll-stays');
      await db.pool.query(
        `INSERT INTO realm_operator.replicas (replica_id, lease_expires_at, lease_duration_ms, cache_started_epoch) VALUES ('poll-lapses', now() + interval '3 seconds', 3000, 0)`,
      );
      setReplicaLeaseGrace(db.pool, 0);
      cleanups.push(async () => setReplicaLeaseGrace(db.pool, DEFAULT_REPLICA_LEASE_GRACE_MS));
      const waiter = await listeningWaiter();
      const realmURL = 'http://pub.localhost/poll-lapse/';
      const readsBefore = waiter.stats.reads;
      const epoch = await publishEpoch(realmURL);
      const wait = waiter.wait({ realmURL, epoch, timeoutMs: 10_000, pollIntervalMs: 200 });
      expect(waiter.stats.firstReadsSkipped).toBe(1);
      expect(await ackOneTrip('poll-stays', realmURL, epoch)).toBe('written'); // poll-lapses still live: nothing announced
      expect(await wait).toMatchObject({ complete: true, missing: [], acknowledged: ['poll-stays'] });
      expect(waiter.stats.reads).toBeGreaterThan(readsBefore);
      expect(waiter.stats).toMatchObject({ notifications: 0, completedByAnnouncement: 0 });
    });
  });

  test('no registered replica: notify-only', async () => {
    const waiter = newWaiter();
    const result = await waiter.wait({ realmURL: 'http://pub.localhost/nobody-shared/', epoch: 1, timeoutMs: 1000 });
    expect(result).toMatchObject({ complete: true, mode: 'notify-only', acknowledged: [], missing: [] });
  });
});
