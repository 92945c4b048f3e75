/**
 * A Realm deletion whose operator is SIGKILLed after each step (a child process, against the run's
 * real kube-apiserver and PostgreSQL, with a real replica listener acknowledging): after the
 * delete transaction commits, after one realm's files, after the wildcard NOTIFYs, after the
 * acknowledgements, after the pending rows are finished. A fresh operator process then finishes
 * the deletion: every directory gone, every wildcard NOTIFY seen by a LISTEN client, each epoch
 * acknowledged by the replica, the finalizer released, no pending rows left.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Registry } from 'prom-client';
import { publishRealm } from '../../src/dataplane/publish.js';
import { announcePendingRealmRemovals, deleteSourceRealmRows, removePendingRealmFiles, type RealmDeletionStep, type RemovedRealm } from '../../src/dataplane/realm-lifecycle.js';
import { RealmListener } from '../../src/listener/realm-listener.js';
import { OrphanedRemovalSweep } from '../../src/reconciler/realm/orphaned-removal-sweep.js';
import { RealmReconciler } from '../../src/reconciler/realm/reconciler.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { must } from '../support/e2e.js';
import { kubectl } from '../support/kube.js';
import { realmKube, realmObjects, setUpRealmNamespace } from '../support/realm-objects.js';
import { dataPlane, eventually, makeRealmsRoot, recordNotifications, silentLogger, writeFiles } from '../support/realms.js';
import { RecordingCaches } from '../support/recording-caches.js';

const namespace = `realm-crash-${randomBytes(3).toString('hex')}`;
const objects = realmObjects(namespace);
const SERVER = 'http://realms.test:4201/';
const OWNER = '@alice:localhost';

let db: TestDatabase;
let realms: Awaited<ReturnType<typeof makeRealmsRoot>>;
let reconciler: RealmReconciler;
const listeners: RealmListener[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  realms = await makeRealmsRoot();
  await setUpRealmNamespace(namespace);
  reconciler = new RealmReconciler({
    kube: realmKube('realm-delete-crash-test'),
    plane: dataPlane(db.pool, realms.layout),
    logger: silentLogger,
    defaultServerURL: SERVER,
    ackWaitMs: 5_000,
    orphanSweepMs: 0,
  });
}, 60_000);

afterAll(async () => {
  for (const listener of listeners) await listener.stop();
  await kubectl(['delete', 'namespace', namespace, '--wait=false']);
  await db?.drop();
  await realms?.cleanup();
});

const read = objects.read;

const exists = (target: string) => fs.lstat(target).then(() => true, () => false);

/** A replica (the real listener library) caching every given realm; it acknowledges what it drops. */
async function startReplica(urls: string[]): Promise<{ replicaId: string; caches: RecordingCaches }> {
  const caches = new RecordingCaches();
  for (const url of urls) caches.add(url);
  const replicaId = `delete-crash-${randomBytes(3).toString('hex')}`;
  const listener = new RealmListener({ connection: db.url, replicaId, caches, logger: silentLogger, metricsRegistry: new Registry(), heartbeatIntervalMs: 200, leaseDurationMs: 5_000 });
  listeners.push(listener);
  listener.start();
  await listener.waitUntilReady(10_000);
  return { replicaId, caches };
}

/**
 * A Realm `name` with two realms the operator published from it, their directories and the
 * source's; returns the URLs (published first, the source last) and the directories.
 */
async function realmWithPublishedRealms(name: string): Promise<{ urls: string[]; dirs: string[] }> {
  await objects.create(name, { owner: OWNER, endpoint: name });
  await reconciler.reconcile({ namespace, name });
  const source = `${SERVER}alice/${name}/`;
  const sourceDir = path.join(realms.root, 'alice', name);
  await writeFiles(sourceDir, { 'page.json': '{"title":"hello"}' });
  const published = [`http://${name}-a.pub.test/`, `http://${name}-b.pub.test/`];
  for (const url of published) await publishRealm(dataPlane(db.pool, realms.layout), { sourceRealmURL: source, publishedRealmURL: url });
  const { rows } = await db.pool.query<{ disk_id: string }>(`SELECT disk_id FROM realm_registry WHERE source_url = $1 ORDER BY url`, [source]);
  const dirs = [...rows.map((r) => path.join(realms.layout.publishedRoot, r.disk_id)), sourceDir];
  for (const dir of dirs) expect(await exists(dir)).toBe(true);
  return { urls: [...published, source], dirs };
}

/** Runs the deleting operator as a child; resolves with how it ended once its database sessions are gone. */
async function runOperator(name: string, crashAt?: RealmDeletionStep, crashAfter = 1): Promise<{ signal: NodeJS.Signals | null; code: number | null; output: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, '../support/realm-delete-crash-child.ts')], {
    env: {
      ...process.env,
      DATABASE_URL: db.url,
      REALMS_ROOT: realms.root,
      NAMESPACE: namespace,
      NAME: name,
      SERVER_URL: SERVER,
      ...(crashAt ? { CRASH_AT: crashAt, CRASH_AFTER: String(crashAfter) } : {}),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const ended = await new Promise<{ signal: NodeJS.Signals | null; code: number | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  // PostgreSQL notices the dead client (and drops its advisory locks) a moment later.
  await eventually(async () => {
    const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'realm-delete-crash-child' AND datname = current_database()`);
    return rows[0].n === 0;
  }, 10_000, () => 'the crashed operator\'s database sessions to end');
  return { ...ended, output };
}

async function pendingRows(source: string): Promise<Array<{ realm_url: string; files_removed: boolean; epoch: string | null }>> {
  const { rows } = await db.pool.query(`SELECT realm_url, files_removed, epoch FROM realm_operator.pending_realm_removals WHERE source_url = $1 ORDER BY id`, [source]);
  return rows;
}

/** Per URL: whether the replica acknowledged an epoch at or after the realm's current one (drawn by the announcement). */
async function replicaAcks(replicaId: string, urls: string[]): Promise<Record<string, boolean>> {
  const { rows } = await db.pool.query<{ realm_url: string; acked: boolean }>(
    `SELECT e.realm_url, EXISTS (SELECT 1 FROM realm_operator.replica_acks a WHERE a.replica_id = $1 AND a.realm_url = e.realm_url AND a.epoch >= e.epoch) AS acked
       FROM realm_operator.realm_epochs e WHERE e.realm_url = ANY($2::text[])`,
    [replicaId, urls],
  );
  return Object.fromEntries(urls.map((url) => [url, rows.find((r) => r.realm_url === url)?.acked ?? false]));
}

/** Runs `body` with a replica acknowledging the realms and a LISTEN client recording the wildcard NOTIFYs. */
async function withReplicaWatching(
  urls: string[],
  body: (watch: { replicaId: string; notifications: Awaited<ReturnType<typeof recordNotifications>> }) => Promise<void>,
): Promise<void> {
  const { replicaId } = await startReplica(urls);
  const notifications = await recordNotifications(db.url, ['realm_file_changes']);
  try {
    await body({ replicaId, notifications });
  } finally {
    await notifications.close();
  }
}

/** The end state of a finished deletion: directories gone, no pending rows, every wildcard seen, every epoch acknowledged by the replica. */
async function expectDeletionFinished(
  { urls, dirs }: { urls: string[]; dirs: string[] },
  replicaId: string,
  notifications: Awaited<ReturnType<typeof recordNotifications>>,
): Promise<void> {
  for (const dir of dirs) expect(await exists(dir)).toBe(false);
  expect(await pendingRows(urls[urls.length - 1]!)).toEqual([]);
  for (const url of urls) await notifications.waitFor((n) => n.payload === `${url}:*`);
  expect(await replicaAcks(replicaId, urls)).toEqual(Object.fromEntries(urls.map((url) => [url, true])));
}

const CRASHES: Array<{ step: RealmDeletionStep; after?: number; label: string }> = [
  { step: 'committed', label: 'after the delete transaction commits, before any file' },
  { step: 'files-removed', after: 1, label: 'after the first realm\'s files' },
  { step: 'files-removed', after: 3, label: 'after every realm\'s files, before the NOTIFYs' },
  { step: 'announced', label: 'after the wildcard NOTIFYs, before the acknowledgements' },
  { step: 'acknowledged', label: 'after the acknowledgements, before the pending rows go' },
  { step: 'drained', label: 'after the pending rows go, before the finalizer is released' },
];

describe.each(CRASHES.map((c, i) => ({ ...c, index: i })))('operator killed $label', ({ step, after, index }) => {
  test('a fresh operator process finishes the deletion: nothing left behind, every realm announced and acknowledged', async () => {
    const name = `crash-${index}`;
    const realm = await realmWithPublishedRealms(name);
    const { urls } = realm;
    const source = urls[urls.length - 1]!;
    await withReplicaWatching(urls, async ({ replicaId, notifications }) => {
        await objects.remove(name);
        const crashed = await runOperator(name, step, after);
        expect({ signal: crashed.signal, output: crashed.output }).toEqual({ signal: 'SIGKILL', output: '' });
        // The crash left the deletion unfinished: the object is still held.
        expect((await read(name))?.metadata.finalizers).toContain('realm-operator.dev/delete-realm');
        // Whatever the crash point, the database part committed and its rows say what is left.
        expect((await db.pool.query('SELECT 1 FROM realm_registry WHERE url = ANY($1::text[])', [urls])).rows).toEqual([]);
        expect((await pendingRows(source)).length).toBe(step === 'drained' ? 0 : urls.length);

        const finished = await runOperator(name);
        expect({ code: finished.code, output: finished.output }).toEqual({ code: 0, output: 'completed without crashing\n' });
        expect(await read(name)).toBeUndefined();
        await expectDeletionFinished(realm, replicaId, notifications);
        // Boxel's order: the published realms' wildcards before the source's.
        const wildcards = notifications.received.map((n) => n.payload).filter((p) => urls.some((url) => p === `${url}:*`));
        expect(wildcards[wildcards.length - 1]).toBe(`${source}:*`);
    });
  }, 120_000);
});

describe('a deletion whose Realm object is gone', () => {
  test("the leader's sweep finishes it from the pending rows at start-up, with no Realm left to reconcile", async () => {
    const name = 'orphan';
    const realm = await realmWithPublishedRealms(name);
    const { urls } = realm;
    const source = urls[urls.length - 1]!;
    await withReplicaWatching(urls, async ({ replicaId, notifications }) => {
        await objects.remove(name);
        expect((await runOperator(name, 'committed')).signal).toBe('SIGKILL');
        // Someone removes the finalizer by hand: the object goes, its deletion is still pending.
        await must(['patch', 'realm', name, '-n', namespace, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
        await eventually(async () => (await read(name)) === undefined, 10_000, () => `${name} to be gone`);
        expect(await pendingRows(source)).toHaveLength(urls.length);

        // A new operator process: nothing to reconcile (no Realm object), only the leader's sweep runs.
        const sweeper = new RealmReconciler({
          kube: realmKube('realm-orphan-sweep-test'),
          plane: dataPlane(db.pool, realms.layout),
          logger: silentLogger,
          defaultServerURL: SERVER,
          ackWaitMs: 5_000,
          orphanSweepMs: 60_000,
        });
        const stop = new AbortController();
        const sweep = new OrphanedRemovalSweep(sweeper).start(stop.signal);
        try {
          await eventually(async () => (await pendingRows(source)).length === 0, 20_000, () => 'the sweep to finish the pending rows');
          await expectDeletionFinished(realm, replicaId, notifications);
        } finally {
          stop.abort();
          await sweep;
        }
    });
  }, 120_000);

  test('leaves alone the pending rows of a Realm that still exists', async () => {
    const name = 'alive';
    const { urls, dirs } = await realmWithPublishedRealms(name);
    await objects.remove(name);
    expect((await runOperator(name, 'committed')).signal).toBe('SIGKILL');
    expect(await reconciler.finishOrphanedRemovals()).toEqual([]);
    for (const dir of dirs) expect(await exists(dir)).toBe(true);
    expect(await pendingRows(urls[urls.length - 1]!)).toHaveLength(urls.length);
    expect((await runOperator(name)).code).toBe(0);
    for (const dir of dirs) expect(await exists(dir)).toBe(false);
  }, 120_000);
});

describe('a deletion recorded only in status (as an older operator kept it)', () => {
  /** Commits the delete transaction and then forgets its rows, recording the removals only in status.deletion, without epochs. */
  async function statusOnlyDeletion(name: string, announce: boolean): Promise<{ urls: string[]; dirs: string[]; removed: RemovedRealm[] }> {
    const { urls, dirs } = await realmWithPublishedRealms(name);
    const source = urls[urls.length - 1]!;
    await objects.remove(name);
    const plane = dataPlane(db.pool, realms.layout);
    const removed = (await deleteSourceRealmRows(plane, source)).map(({ url, diskId }) => ({ url, diskId }));
    if (announce) {
      await removePendingRealmFiles(plane, source);
      await announcePendingRealmRemovals(db.pool, source);
    }
    await db.pool.query('DELETE FROM realm_operator.pending_realm_removals WHERE source_url = $1', [source]);
    await realmKube('older-operator').updateStatus({ namespace, name }, (s) => ({ ...s, deletion: { removed, committedAt: new Date().toISOString() } }));
    return { urls, dirs, removed };
  }

  test('not yet announced (the claim still held): taken over into the table and finished', async () => {
    const name = 'legacy-pending';
    const realm = await statusOnlyDeletion(name, false);
    await withReplicaWatching(realm.urls, async ({ replicaId, notifications }) => {
        for (const dir of realm.dirs) expect(await exists(dir)).toBe(true);
        expect((await runOperator(name)).code).toBe(0);
        expect(await read(name)).toBeUndefined();
        await expectDeletionFinished(realm, replicaId, notifications);
    });
  }, 120_000);

  test('already announced (the claim dropped), status without the epochs: only the wait is left; a directory made since at the same place stays', async () => {
    const name = 'legacy-announced';
    const realm = await statusOnlyDeletion(name, true);
    const sourceDir = realm.dirs[realm.dirs.length - 1]!;
    await writeFiles(sourceDir, { 'realm.json': '{"made":"since"}' });
    const notifications = await recordNotifications(db.url, ['realm_file_changes']);
    try {
      expect((await runOperator(name)).code).toBe(0);
      expect(await read(name)).toBeUndefined();
      expect(await fs.readFile(path.join(sourceDir, 'realm.json'), 'utf8')).toBe('{"made":"since"}');
      expect(await pendingRows(realm.urls[realm.urls.length - 1]!)).toEqual([]);
      expect(notifications.received).toEqual([]);
    } finally {
      await notifications.close();
    }
  }, 120_000);
});

test('a realm created again at a URL whose earlier removal was interrupted after its NOTIFYs: both deletions finish, the new directory included', async () => {
  const first = await realmWithPublishedRealms('again');
  const source = first.urls[first.urls.length - 1]!;
  const sourceDir = first.dirs[first.dirs.length - 1]!;
  await objects.remove('again');
  expect((await runOperator('again', 'announced')).signal).toBe('SIGKILL');
  // Announced: the claim is dropped, so a new Realm may create the realm at the same URL again.
  await objects.create('again-2', { owner: OWNER, endpoint: 'again' });
  await reconciler.reconcile({ namespace, name: 'again-2' });
  expect((await read('again-2'))?.status?.url).toBe(source);
  expect(await exists(path.join(sourceDir, 'realm.json'))).toBe(true);

  await objects.remove('again-2');
  expect((await runOperator('again-2')).code).toBe(0);
  expect((await runOperator('again')).code).toBe(0);
  expect(await read('again')).toBeUndefined();
  expect(await read('again-2')).toBeUndefined();
  for (const dir of first.dirs) expect(await exists(dir)).toBe(false);
  expect(await pendingRows(source)).toEqual([]);
}, 120_000);
