import http from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { formatRealmEpochHint, REALM_EPOCH_HINT_CHANNEL } from '../../src/wire/epoch-hint.js';
import { readReplicaAckStatus, waitForReplicaAcks } from '../../src/dataplane/acknowledgements.js';
import { notifyAllFileChanges } from '../../src/dataplane/invalidation.js';
import { publishRealm } from '../../src/dataplane/publish.js';
import { RealmListener, type RealmListenerOptions } from '../../src/listener/realm-listener.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { createSourceRealm, dataPlane, eventually, makeRealmsRoot } from '../support/realms.js';
import { RecordingCaches } from '../support/recording-caches.js';

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
let db: TestDatabase;
let realms: Awaited<ReturnType<typeof makeRealmsRoot>>;
const listeners: RealmListener[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  realms = await makeRealmsRoot();
});
afterEach(async () => {
  await Promise.all(listeners.splice(0).map((l) => l.stop()));
});
afterAll(async () => {
  await db.drop();
  await realms.cleanup();
});

function startListener(caches: RecordingCaches, options: Partial<RealmListenerOptions> = {}) {
  const metricsRegistry = new Registry();
  const listener = new RealmListener({
    connection: db.url,
    replicaId: `replica-${Math.random().toString(36).slice(2, 8)}`,
    caches,
    logger,
    metricsRegistry,
    heartbeatIntervalMs: 200,
    heartbeatTimeoutMs: 1000,
    leaseDurationMs: 3000,
    backoff: { initialMs: 50, maxMs: 500 },
    ...options,
  });
  listeners.push(listener);
  listener.start();
  return { listener, metricsRegistry };
}

async function metric(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  // Histograms report `<name>_count` etc. as values of the `<name>` metric.
  const values = (await registry.getMetricsAsJSON()).flatMap((m) =>
    m.values.map((v) => ({ ...v, metricName: (v as { metricName?: string }).metricName ?? m.name })),
  );
  const value = values.find((v) => v.metricName === name && Object.entries(labels).every(([k, l]) => v.labels[k] === l));
  return Number(value?.value ?? 0);
}

async function sendNotify(channel: string, payload: string) {
  await db.pool.query('SELECT pg_notify($1, $2)', [channel, payload]);
}

async function backendPid(replicaId: string): Promise<number | undefined> {
  const { rows } = await db.pool.query(`SELECT pid FROM pg_stat_activity WHERE application_name = $1`, [`realm-listener:${replicaId}`]);
  return rows[0]?.pid;
}

describe('RealmListener dispatch (real LISTEN connection)', () => {
  const realmA = 'http://localhost:4201/a/';
  const realmB = 'https://realms.example.com/b/';

  test('resyncs on start, then routes each channel to the right cache call', async () => {
    const caches = new RecordingCaches().add(realmA).add(realmB);
    const hookCalls: string[] = [];
    const { listener, metricsRegistry } = startListener(caches, { onRegistryChange: (c) => void hookCalls.push(`${c.op} ${c.realmURL}`) });
    expect(listener.ready).toBe(false);
    await listener.waitUntilReady(10_000);
    // The resync dropped everything before reporting ready.
    expect(caches.calls.sort()).toEqual([`dropAll ${realmA}`, `dropAll ${realmB}`].sort());
    caches.calls.length = 0;

    await sendNotify('realm_file_changes', `${realmA}:cards/x.gts`);
    await sendNotify('realm_file_changes', `${realmB}:*`);
    await sendNotify('module_cache_invalidated', JSON.stringify({ k: 'realm', r: realmA }));
    await sendNotify('module_cache_invalidated', JSON.stringify({ k: 'module', r: realmB, m: [`${realmB}m.gts`] }));
    await sendNotify('module_cache_invalidated', JSON.stringify({ k: 'global' }));
    await sendNotify('realm_registry', `delete:${realmA}`);
    await sendNotify('realm_registry', `upsert:${realmB}`);
    await eventually(() => hookCalls.length === 2, 5000, () => JSON.stringify(caches.calls));
    expect(caches.calls).toEqual([
      `dropPath ${realmA} cards/x.gts`,
      `dropAll ${realmB}`,
      `bump ${realmA}`,
      `bump ${realmB} ${realmB}m.gts`,
      `bump ${realmA}`,
      `bump ${realmB}`,
      `dropAll ${realmA}`,
    ]);
    expect(hookCalls).toEqual([`delete ${realmA}`, `upsert ${realmB}`]);
    expect(await metric(metricsRegistry, 'realm_listener_notifications_total', { channel: 'realm_file_changes' })).toBe(2);
    expect(await metric(metricsRegistry, 'realm_listener_ready', { replica: listener.replicaId })).toBe(1);
  });

  test('malformed payloads and unknown realms are counted and ignored; a throwing cache does not kill the listener', async () => {
    const caches = new RecordingCaches().add(realmA);
    const { listener, metricsRegistry } = startListener(caches);
    await listener.waitUntilReady(10_000);
    caches.calls.length = 0;
    await sendNotify('realm_file_changes', 'no-separator-here');
    await sendNotify('realm_file_changes', `${realmA}:`);
    await sendNotify('module_cache_invalidated', '{not json');
    await sendNotify('module_cache_invalidated', '{"k":"bogus"}');
    await sendNotify('realm_registry', 'rename:http://x/');
    await sendNotify('realm_file_changes', 'http://unknown.example/r/:file.gts');
    caches.failDropAllFor = realmA;
    await sendNotify('realm_file_changes', `${realmA}:*`);
    await sendNotify('realm_file_changes', `${realmA}:after.gts`);
    await eventually(() => caches.calls.includes(`dropPath ${realmA} after.gts`), 5000);
    const ignored = (channel: string, reason: string) => metric(metricsRegistry, 'realm_listener_notifications_ignored_total', { channel, reason });
    expect(await ignored('realm_file_changes', 'malformed')).toBe(2);
    expect(await ignored('module_cache_invalidated', 'malformed')).toBe(2);
    expect(await ignored('realm_registry', 'malformed')).toBe(1);
    expect(await ignored('realm_file_changes', 'unknown-realm')).toBe(1);
    expect(listener.ready).toBe(true);
    expect(await metric(metricsRegistry, 'realm_listener_reconnects_total')).toBe(0);
  });
});

/** RecordingCaches that also know which source each cached published realm came from. */
class CachesWithSources extends RecordingCaches {
  private readonly sources = new Map<string, string>();
  addPublished(realmURL: string, sourceURL: string): this {
    this.sources.set(realmURL, sourceURL);
    return this.add(realmURL);
  }
  publishedFrom(sourceURL: string) {
    return [...this.sources].filter(([, from]) => from === sourceURL).map(([url]) => this.find(url)!);
  }
}

describe('realm_registry notifications (real NOTIFY)', () => {
  const source = 'http://localhost:4201/owner/src/';
  const publishedA = 'https://a.example/';
  const publishedB = 'https://b.example/site/';
  const otherPublished = 'https://c.example/';

  test('every payload, whatever it is, reaches onRegistryNotification first and in order', async () => {
    const caches = new CachesWithSources().add(source);
    const seen: string[] = [];
    const parsed: string[] = [];
    const { listener, metricsRegistry } = startListener(caches, {
      onRegistryNotification: (payload) => void seen.push(payload),
      onRegistryChange: (change) => void parsed.push(`${change.op} ${change.realmURL}`),
    });
    await listener.waitUntilReady(10_000);
    const payloads = [`upsert:${publishedA}`, `delete:${publishedB}`, `rename:${publishedA}`, '', 'reload please', 'delete:', '{"op":"upsert"}'];
    for (const payload of payloads) await sendNotify('realm_registry', payload);
    await sendNotify('realm_registry', 'last');
    await eventually(() => seen.includes('last'), 5000, () => JSON.stringify(seen));
    expect(seen).toEqual([...payloads, 'last']);
    expect(parsed).toEqual([`upsert ${publishedA}`, `delete ${publishedB}`]);
    expect(await metric(metricsRegistry, 'realm_listener_notifications_ignored_total', { channel: 'realm_registry', reason: 'malformed' })).toBe(6);
    expect(listener.ready).toBe(true);
  });

  test('delete:<source URL> drops the source and every realm published from it, before onRegistryChange runs', async () => {
    const caches = new CachesWithSources().add(source).addPublished(publishedA, source).addPublished(publishedB, source).addPublished(otherPublished, 'http://localhost:4201/owner/other/');
    const atHook: string[][] = [];
    const { listener } = startListener(caches, { onRegistryChange: () => void atHook.push([...caches.calls]) });
    await listener.waitUntilReady(10_000);
    caches.calls.length = 0;
    await sendNotify('realm_registry', `delete:${source}`);
    await eventually(() => atHook.length === 1, 5000);
    expect([...atHook[0]!].sort()).toEqual([`dropAll ${publishedA}`, `dropAll ${publishedB}`, `dropAll ${source}`].sort());
    expect(caches.calls).not.toContain(`dropAll ${otherPublished}`);
  });
});

describe('per-path payloads the listener cannot match as written (real NOTIFY)', () => {
  const realm = 'http://localhost:4201/paths/';

  test('are counted by reason and drop the whole realm instead; canonical paths drop exactly; warnings are rate-limited', async () => {
    const caches = new RecordingCaches().add(realm);
    const lines: Array<Record<string, unknown>> = [];
    const capture = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const { listener, metricsRegistry } = startListener(caches, { logger: capture });
    await listener.waitUntilReady(10_000);
    caches.calls.length = 0;
    const payloads = [
      `${realm}:/index.json`,
      `${realm}:index.json\n`,
      `${realm}:cards//a.gts`,
      `${realm}:cards/../index.json`,
      `${realm}:/other.json`,
      `${realm}:INDEX.JSON`,
      `${realm}:index.json`,
    ];
    for (const payload of payloads) await sendNotify('realm_file_changes', payload);
    await eventually(() => caches.calls.includes(`dropPath ${realm} index.json`), 5000, () => JSON.stringify(caches.calls));
    expect(caches.calls).toEqual([
      `dropAll ${realm}`,
      `dropAll ${realm}`,
      `dropAll ${realm}`,
      `dropAll ${realm}`,
      `dropAll ${realm}`,
      `dropPath ${realm} INDEX.JSON`, // canonical: matched exactly (case-sensitive, as Boxel)
      `dropPath ${realm} index.json`,
    ]);
    const unmatched = (reason: string) => metric(metricsRegistry, 'realm_listener_unmatched_paths_total', { channel: 'realm_file_changes', reason });
    expect(await unmatched('leading-slash')).toBe(2);
    expect(await unmatched('surrounding-whitespace')).toBe(1);
    expect(await unmatched('empty-segment')).toBe(1);
    expect(await unmatched('dot-segment')).toBe(1);
    // Two leading-slash payloads, one warning (the second is suppressed for 10 s).
    const warnings = lines.filter((l) => l.msg === 'a per-path change names no canonical realm path; dropped the whole realm instead');
    expect(warnings.map((w) => w.reason).sort()).toEqual(['dot-segment', 'empty-segment', 'leading-slash', 'surrounding-whitespace']);
    // The listener binds `replica` once; a payload with a newline is logged quoted, on one line.
    for (const w of warnings) expect(w.replica).toBe(listener.replicaId);
    expect(warnings.find((w) => w.reason === 'surrounding-whitespace')?.path).toBe(JSON.stringify('index.json\n'));
  });

  test('case variants a cache reports dropping are counted', async () => {
    const calls: string[] = [];
    const caches = {
      find: (url: string) =>
        url === realm
          ? {
              dropPath: (p: string) => (calls.push(p), { caseVariantsDropped: 2 }),
              dropAll: () => undefined,
              bumpDefinitionsGeneration: () => undefined,
            }
          : undefined,
      all: () => [],
    };
    const { listener, metricsRegistry } = startListener(caches as never);
    await listener.waitUntilReady(10_000);
    await sendNotify('realm_file_changes', `${realm}:INDEX.JSON`);
    await eventually(() => calls.length === 1, 5000);
    expect(await metric(metricsRegistry, 'realm_listener_unmatched_paths_total', { channel: 'realm_file_changes', reason: 'case-variant' })).toBe(2);
  });
});

describe('RealmListener survives connection loss', () => {
  test('pg_terminate_backend: not ready in between, reconnects, resyncs, ready again', async () => {
    const realm = 'http://localhost:4201/term/';
    const caches = new RecordingCaches().add(realm);
    const { listener, metricsRegistry } = startListener(caches);
    await listener.waitUntilReady(10_000);
    const states: string[] = [];
    listener.on('state', (s: string) => states.push(s));
    const pid = await backendPid(listener.replicaId);
    expect(pid).toBeDefined();
    await db.pool.query('SELECT pg_terminate_backend($1)', [pid]);
    await eventually(() => !listener.ready, 5000);
    expect(listener.cacheTrusted).toBe(false);
    // A NOTIFY sent while the listener is down is missed, so the resync must cover it.
    await sendNotify('realm_file_changes', `${realm}:missed.gts`);
    await listener.waitUntilReady(10_000);
    expect(states).toEqual(expect.arrayContaining(['backoff', 'connecting', 'resyncing', 'ready']));
    expect(states.indexOf('resyncing')).toBeLessThan(states.lastIndexOf('ready'));
    expect(caches.count(`dropAll ${realm}`)).toBe(2);
    expect(await metric(metricsRegistry, 'realm_listener_reconnects_total')).toBeGreaterThanOrEqual(1);
    expect(await metric(metricsRegistry, 'realm_listener_resyncs_total')).toBe(2);
    expect(await backendPid(listener.replicaId)).not.toBe(pid);
    // And it still works.
    await sendNotify('realm_file_changes', `${realm}:after.gts`);
    await eventually(() => caches.calls.includes(`dropPath ${realm} after.gts`), 5000);
  });

  test('a PostgreSQL restart: not ready while it is down, reconnects and resyncs when it is back', async () => {
    const { startEmbeddedPostgres } = await import('../support/embedded-postgres.js');
    const server = await startEmbeddedPostgres();
    try {
      const own = await createTestDatabase({ admin: server.adminURL });
      const realm = 'http://localhost:4201/restart/';
      const caches = new RecordingCaches().add(realm);
      const { listener, metricsRegistry } = startListener(caches, { connection: own.url });
      await listener.waitUntilReady(10_000);
      await own.pool.end();
      await server.stop();
      await eventually(() => !listener.ready, 5000);
      expect(listener.cacheTrusted).toBe(false);
      await new Promise((r) => setTimeout(r, 1000));
      expect(listener.ready).toBe(false);
      await server.start();
      await listener.waitUntilReady(20_000);
      expect(caches.count(`dropAll ${realm}`)).toBe(2);
      expect(await metric(metricsRegistry, 'realm_listener_reconnects_total')).toBeGreaterThanOrEqual(1);
      const client = new pg.Client({ connectionString: own.url });
      await client.connect();
      await client.query(`SELECT pg_notify('realm_file_changes', $1)`, [`${realm}:back.gts`]);
      await client.end();
      await eventually(() => caches.calls.includes(`dropPath ${realm} back.gts`), 5000);
    } finally {
      await Promise.all(listeners.splice(0).map((l) => l.stop()));
      await server.destroy();
    }
  }, 60_000);

  test('the readiness handler answers 200 when ready and 503 when not', async () => {
    const caches = new RecordingCaches();
    const { listener } = startListener(caches);
    const server = http.createServer(listener.readinessHandler());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/readyz`;
    try {
      await listener.waitUntilReady(10_000);
      const ok = await fetch(url);
      expect(ok.status).toBe(200);
      expect(await ok.json()).toMatchObject({ replicaId: listener.replicaId, state: 'ready', cacheTrusted: true });
      await listener.stop();
      const down = await fetch(url);
      expect(down.status).toBe(503);
      expect(await down.json()).toMatchObject({ state: 'stopped', cacheTrusted: false });
    } finally {
      server.close();
    }
  });
});

describe('acknowledged invalidation', () => {
  test('a publish is acknowledged by every live replica, with the epoch read before clearing', async () => {
    const layout = realms.layout;
    const plane = dataPlane(db.pool, layout);
    const source = 'http://localhost:4201/ack/src/';
    const published = 'http://pub.localhost/ack/pub/';
    await createSourceRealm(db.pool, layout, source, { 'a.txt': 'a' });
    const cachesA = new RecordingCaches().add(published);
    const cachesB = new RecordingCaches(); // does not serve the realm yet: must still acknowledge
    const a = startListener(cachesA);
    const b = startListener(cachesB);
    await Promise.all([a.listener.waitUntilReady(10_000), b.listener.waitUntilReady(10_000)]);

    // The ack row commits before the listener records its metric: wait for the listener's own event.
    const ackedByA = new Promise<void>((resolve) => a.listener.on('acknowledged', (e: { realmURL: string }) => e.realmURL === published && resolve()));
    const result = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
    const waited = await waitForReplicaAcks(db.pool, { realmURL: published, epoch: result.epoch, timeoutMs: 10_000 });
    expect(waited).toMatchObject({ complete: true, missing: [], mode: 'acknowledged' });
    expect(waited.acknowledged.sort()).toEqual([a.listener.replicaId, b.listener.replicaId].sort());
    // The resync's drop and the hint's (before its ack) are in by now; the wildcard right after the hint
    // drops again without a second ack, so it may still be on its way when the completion proof ends the wait.
    expect(cachesA.count(`dropAll ${published}`)).toBeGreaterThanOrEqual(2);
    await eventually(() => cachesA.count(`dropAll ${published}`) === 3, 5000, () => `dropAll ${published} 3 times`); // resync + hint + wildcard
    const acks = await db.pool.query('SELECT replica_id, epoch FROM realm_operator.replica_acks WHERE realm_url = $1', [published]);
    expect(acks.rows.map((r) => Number(r.epoch))).toEqual([result.epoch, result.epoch]);
    await ackedByA;
    expect(await metric(a.metricsRegistry, 'realm_listener_ack_duration_seconds_count')).toBe(1);
  });

  test('an epoch hint is handled as its wildcard with the epoch it carries (no read); the wildcard right after it is not handled twice', async () => {
    const hinted = 'http://pub.localhost/ack/hinted/';
    const other = 'http://pub.localhost/ack/other/';
    const epochOf: Record<string, number> = {};
    for (const realm of [hinted, other]) {
      const { rows } = await db.pool.query(
        `INSERT INTO realm_operator.realm_epochs (realm_url, epoch) VALUES ($1, nextval('realm_operator.epoch_seq') + 100) RETURNING epoch`,
        [realm],
      );
      epochOf[realm] = Number(rows[0].epoch);
    }
    const caches = new RecordingCaches().add(hinted).add(other);
    const { listener } = startListener(caches);
    await listener.waitUntilReady(10_000);
    const acked: Array<[string, number]> = [];
    listener.on('acknowledged', (e: { realmURL: string; epoch: number }) => void acked.push([e.realmURL, e.epoch]));
    // The table says epochOf[realm]; a hint that differs shows which one an ack used.
    const inOneTransaction = async (notifications: Array<[string, string]>) => {
      const client = await db.pool.connect();
      try {
        await client.query('BEGIN');
        for (const [channel, payload] of notifications) await client.query('SELECT pg_notify($1, $2)', [channel, payload]);
        await client.query('COMMIT');
      } finally {
        client.release();
      }
    };
    const hint = (epoch: number, realm: string): [string, string] => [REALM_EPOCH_HINT_CHANNEL, formatRealmEpochHint({ epoch, realmURL: realm })];
    const wildcard = (realm: string): [string, string] => ['realm_file_changes', `${realm}:*`];
    await inOneTransaction([hint(epochOf[hinted]! - 50, hinted), wildcard(hinted)]);
    await eventually(() => acked.length === 1, 5000, () => 'the hinted ack');
    // A hint is its realm's invalidation whatever follows; a wildcard not right after its hint reads the epoch.
    await inOneTransaction([hint(epochOf[hinted]! - 40, hinted), wildcard(other)]);
    await inOneTransaction([hint(epochOf[hinted]! - 30, hinted), ['realm_registry', `upsert:${other}`], wildcard(hinted)]);
    await inOneTransaction([[REALM_EPOCH_HINT_CHANNEL, 'garbage'], wildcard(other)]);
    await eventually(() => acked.length === 6, 5000, () => 'five more acks');
    expect(acked).toEqual([
      [hinted, epochOf[hinted]! - 50],
      [hinted, epochOf[hinted]! - 40],
      [other, epochOf[other]],
      [hinted, epochOf[hinted]! - 30],
      [hinted, epochOf[hinted]],
      [other, epochOf[other]],
    ]);
    // resync + three hints + the wildcard not right after its hint + the one right after it (dropped again, not re-acked)
    expect(caches.count(`dropAll ${hinted}`)).toBe(6);

    // notifyAllFileChanges sends the hint itself, from the committed epoch, just before the wildcard.
    const observer = new pg.Client({ connectionString: db.url });
    await observer.connect();
    const seen: string[] = [];
    observer.on('notification', (m) => void seen.push(`${m.channel} ${m.payload}`));
    await observer.query(`LISTEN ${REALM_EPOCH_HINT_CHANNEL}; LISTEN realm_file_changes`);
    try {
      await notifyAllFileChanges(db.pool, other);
      await eventually(() => acked.length === 7 && seen.length === 2, 5000, () => 'the ack of notifyAllFileChanges');
      expect(seen).toEqual([`${REALM_EPOCH_HINT_CHANNEL} ${epochOf[other]} ${other}`, `realm_file_changes ${other}:*`]);
      expect(acked[6]).toEqual([other, epochOf[other]]);

      // Two epochs in one transaction: PostgreSQL folds the second, identical wildcard into the
      // first, so only the second hint tells of the final epoch. It must be acknowledged.
      const client = await db.pool.connect();
      let final = 0;
      try {
        await client.query('BEGIN');
        for (let i = 0; i < 2; i++) {
          const { rows } = await client.query(`UPDATE realm_operator.realm_epochs SET epoch = nextval('realm_operator.epoch_seq') WHERE realm_url = $1 RETURNING epoch`, [other]);
          final = Number(rows[0].epoch);
          await notifyAllFileChanges(client, other);
        }
        await client.query('COMMIT');
        await eventually(() => acked.some(([realm, epoch]) => realm === other && epoch === final), 5000, () => `the ack of the final epoch ${final}`);
        expect(seen.slice(2)).toEqual([`${REALM_EPOCH_HINT_CHANNEL} ${final - 1} ${other}`, `realm_file_changes ${other}:*`, `${REALM_EPOCH_HINT_CHANNEL} ${final} ${other}`]);
        // The next transaction on that connection sends a bare wildcard (no hint): right after the
        // folded transaction's last hint, from the same backend. Its caches must still be dropped.
        const drops = caches.count(`dropAll ${other}`);
        const acks = acked.length;
        await client.query('SELECT pg_notify($1, $2)', ['realm_file_changes', `${other}:*`]);
        await eventually(() => caches.count(`dropAll ${other}`) === drops + 1, 5000, () => 'the bare wildcard to drop the caches');
        expect(acked).toHaveLength(acks); // already acknowledged at the hinted epoch: no second ack
      } finally {
        client.release();
      }
    } finally {
      await observer.end();
    }
  });

  test('a replica that registered but never acknowledges is reported missing until its lease expires', async () => {
    const realm = 'http://pub.localhost/ack/silent/';
    await db.pool.query(`INSERT INTO realm_operator.realm_epochs (realm_url, epoch) VALUES ($1, nextval('realm_operator.epoch_seq'))`, [realm]);
    const { rows } = await db.pool.query('SELECT epoch FROM realm_operator.realm_epochs WHERE realm_url = $1', [realm]);
    const epoch = Number(rows[0].epoch);
    const { listener } = startListener(new RecordingCaches());
    await listener.waitUntilReady(10_000);
    // A replica that registered (with cache_started before this epoch) and then went silent.
    await db.pool.query(
      `INSERT INTO realm_operator.replicas (replica_id, lease_expires_at, lease_duration_ms, cache_started_epoch) VALUES ('silent', now() + interval '3 seconds', 3000, 0)`,
    );
    await notifyAllFileChanges(db.pool, realm);
    const early = await waitForReplicaAcks(db.pool, { realmURL: realm, epoch, timeoutMs: 1000 });
    expect(early).toMatchObject({ complete: false, missing: ['silent'], acknowledged: [listener.replicaId] });
    // The lease lapses; the silent replica is no longer live, so the wait completes without it.
    const later = await waitForReplicaAcks(db.pool, { realmURL: realm, epoch, timeoutMs: 5000, pollIntervalMs: 100 });
    expect(later).toMatchObject({ complete: true, missing: [] });
    expect(later.waitedMs).toBeGreaterThan(200);
  });

  test('a replica that starts after the publish counts through its cache-start position', async () => {
    const realm = 'http://pub.localhost/ack/late/';
    await db.pool.query(`INSERT INTO realm_operator.realm_epochs (realm_url, epoch) VALUES ($1, nextval('realm_operator.epoch_seq'))`, [realm]);
    const epoch = Number((await db.pool.query('SELECT epoch FROM realm_operator.realm_epochs WHERE realm_url = $1', [realm])).rows[0].epoch);
    const { listener } = startListener(new RecordingCaches());
    await listener.waitUntilReady(10_000);
    const status = await readReplicaAckStatus(db.pool, realm, epoch);
    expect(status.acknowledged).toContain(listener.replicaId);
    const { rows } = await db.pool.query('SELECT cache_started_epoch FROM realm_operator.replicas WHERE replica_id = $1', [listener.replicaId]);
    expect(Number(rows[0].cache_started_epoch)).toBeGreaterThanOrEqual(epoch);
  });

  test('no registered replica means notify-only, reported as such', async () => {
    await db.pool.query('DELETE FROM realm_operator.replicas');
    const status = await waitForReplicaAcks(db.pool, { realmURL: 'http://pub.localhost/nobody/', epoch: 1, timeoutMs: 100 });
    expect(status).toMatchObject({ complete: true, mode: 'notify-only', acknowledged: [], missing: [] });
  });

  test('a replica whose lease cannot be renewed fences itself before the database expires it', async () => {
    const caches = new RecordingCaches();
    const { listener, metricsRegistry } = startListener(caches, { leaseDurationMs: 1000, heartbeatIntervalMs: 200, heartbeatTimeoutMs: 10_000 });
    await listener.waitUntilReady(10_000);
    expect(listener.cacheTrusted).toBe(true);
    // Block renewals: hold the replica's row lock in another transaction.
    const blocker = await db.pool.connect();
    await blocker.query('BEGIN');
    await blocker.query('SELECT 1 FROM realm_operator.replicas WHERE replica_id = $1 FOR UPDATE', [listener.replicaId]);
    const blockedAt = Date.now();
    try {
      await eventually(() => !listener.cacheTrusted, 3000);
      const fencedAfter = Date.now() - blockedAt;
      expect(fencedAfter).toBeLessThan(1500);
      // cacheTrusted turns false by the clock alone; the fence timer then tears the connection down.
      await eventually(async () => (await metric(metricsRegistry, 'realm_listener_fenced_total')) === 1, 2000, () => 'the fence to be counted');
      await eventually(() => !listener.ready, 2000, () => 'not ready after fencing');
    } finally {
      await blocker.query('ROLLBACK');
      blocker.release();
    }
    // Once renewals work again it re-registers, resyncs and trusts its cache again.
    await listener.waitUntilReady(10_000);
    expect(listener.cacheTrusted).toBe(true);
  });
});
