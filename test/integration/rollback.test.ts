/**
 * Kept versions and instant rollback against a real PostgreSQL and real files: versions kept and
 * trimmed by the history limit and byte budget; a rollback swaps the link to a kept directory with
 * no copy (the served files are the same inodes), draws a new epoch, sends the wildcard NOTIFY a
 * real LISTEN client sees, and a real RealmListener acknowledges it; a version that is not kept is
 * refused; a rollback SIGKILLed at each step leaves the old or the new content whole, and recovery
 * makes files and database agree.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { publishRealm, recoverPublishedRealm, rollbackRealm, unpublishRealm, type PublishStep } from '../../src/dataplane/publish.js';
import { readPublishedLink } from '../../src/dataplane/published-content.js';
import { type HistoryPolicy, readKeptVersions, VersionNotKeptError } from '../../src/dataplane/published-versions.js';
import { SupersededPublishError } from '../../src/dataplane/realm-state.js';
import { RealmListener } from '../../src/listener/realm-listener.js';
import { createSourceRealm, eventually, openDataPlaneFixture, readTree, recordNotifications, writeFiles, type DataPlaneFixture } from '../support/realms.js';
import { RecordingCaches } from '../support/recording-caches.js';

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
let fixture: DataPlaneFixture;
const listeners: RealmListener[] = [];

beforeAll(async () => {
  fixture = await openDataPlaneFixture();
});
afterAll(async () => {
  await Promise.all(listeners.splice(0).map((l) => l.stop()));
  await fixture.close();
});

async function epochOf(url: string): Promise<number> {
  const { rows } = await fixture.db.pool.query('SELECT epoch FROM realm_operator.realm_epochs WHERE realm_url = $1', [url]);
  return Number(rows[0]?.epoch ?? 0);
}

/** Publishes `contents` one after another with `history`; returns the publish results. */
async function publishSeries(name: string, contents: Array<Record<string, string>>, history: HistoryPolicy = { limit: 3 }) {
  const { db, layout, plane } = fixture;
  const sourceURL = `http://localhost:4201/rollback/${name}-src/`;
  const publishedURL = `http://pub.localhost/rollback/${name}/`;
  const sourceDir = await createSourceRealm(db.pool, layout, sourceURL, contents[0]!);
  const results = [];
  for (const [i, files] of contents.entries()) {
    if (i > 0) {
      await fs.rm(sourceDir, { recursive: true });
      await fs.mkdir(sourceDir);
      await writeFiles(sourceDir, files);
    }
    results.push(await publishRealm(plane, { sourceRealmURL: sourceURL, publishedRealmURL: publishedURL, history, revision: `r${i + 1}` }));
  }
  return { sourceURL, publishedURL, sourceDir, results };
}

const content = (n: number, extra = '') => ({ 'index.json': `{"v":${n}}`, 'cards/a.gts': `a ${n}${extra}` });

async function versionsOnDisk(diskId: string): Promise<string[]> {
  return (await fs.readdir(fixture.layout.versionsDir(diskId))).sort();
}

test('the history limit keeps the newest N published versions, rows and directories alike', async () => {
  const { publishedURL, results } = await publishSeries('limit', [content(1), content(2), content(3), content(4)], { limit: 2 });
  const diskId = results[0]!.diskId;
  const kept = await readKeptVersions(fixture.db.pool, publishedURL);
  expect(kept.map((v) => v.version)).toEqual([results[3]!.version, results[2]!.version]);
  expect(kept[1]).toMatchObject({ epoch: results[2]!.epoch, digest: results[2]!.digest, fileCount: 2, revision: 'r3' });
  // The previous version is kept too (it is in the kept set anyway here); v1 and v2 are gone.
  expect(await versionsOnDisk(diskId)).toEqual([results[2]!.version, results[3]!.version].sort());
});

test('the byte budget trims older versions beyond it, never the live one', async () => {
  const big = 'x'.repeat(4000);
  const { publishedURL, results } = await publishSeries('budget', [content(1, big), content(2, big), content(3, big)], { limit: 3, maxBytes: 9000 });
  const kept = await readKeptVersions(fixture.db.pool, publishedURL);
  // Each version is ~4 KB: the budget holds two of the three.
  expect(kept.map((v) => v.version)).toEqual([results[2]!.version, results[1]!.version]);
  expect(await versionsOnDisk(results[0]!.diskId)).toEqual([results[1]!.version, results[2]!.version].sort());
});

test('rollback: link swapped to the kept directory with no copy, new epoch, wildcard NOTIFY, acknowledged by a replica', async () => {
  const { publishedURL, results } = await publishSeries('swap', [content(1), content(2), content(3)]);
  const [v1, , v3] = results;
  const diskId = v1!.diskId;
  const inodesOf = async (dir: string) => {
    const out: Record<string, number> = {};
    for (const file of ['index.json', 'cards/a.gts']) out[file] = (await fs.stat(path.join(dir, file))).ino;
    return out;
  };
  const keptInodes = await inodesOf(fixture.layout.versionDir(diskId, v1!.version));
  const stagingBefore = await fs.readdir(fixture.layout.stagingRoot).catch(() => [] as string[]);

  const caches = new RecordingCaches().add(publishedURL);
  const listener = new RealmListener({ connection: fixture.db.url, replicaId: `rollback-${Math.random().toString(36).slice(2, 8)}`, caches, logger, metricsRegistry: new Registry(), heartbeatIntervalMs: 200, leaseDurationMs: 5000 });
  listeners.push(listener);
  const acked: number[] = [];
  listener.on('acknowledged', (ack: { realmURL: string; epoch: number }) => ack.realmURL === publishedURL && acked.push(ack.epoch));
  listener.start();
  await listener.waitUntilReady(10_000);
  const notifications = await recordNotifications(fixture.db.url, ['realm_file_changes', 'realm_registry']);
  const steps: string[] = [];
  try {
    const rolled = await rollbackRealm({ ...fixture.plane, onStep: (step) => void steps.push(step) }, { publishedRealmURL: publishedURL, version: v1!.version, history: { limit: 3 } });
    expect(rolled).toMatchObject({ version: v1!.version, previousVersion: v3!.version, digest: v1!.digest, fileCount: 2 });
    expect(rolled.epoch).toBeGreaterThan(v3!.epoch);
    // Nothing staged or installed: the same steps as a publish minus staging and install.
    expect(steps).toEqual(['locked', 'swapped', 'recorded', 'committed', 'cleaned']);
    expect(await fs.readdir(fixture.layout.stagingRoot).catch(() => [] as string[])).toEqual(stagingBefore);
    // Readers are served the kept files themselves: same inodes, same content.
    expect(await readPublishedLink(fixture.layout, diskId)).toEqual({ kind: 'version', version: v1!.version });
    expect(await inodesOf(fixture.layout.publishedDir(diskId))).toEqual(keptInodes);
    expect(await readTree(fixture.layout.publishedDir(diskId))).toMatchObject({ 'index.json': '{"v":1}' });
    const row = (await fixture.db.pool.query('SELECT * FROM realm_operator.realm_epochs WHERE realm_url = $1', [publishedURL])).rows[0];
    expect(row).toMatchObject({ content_version: v1!.version, previous_version: v3!.version, content_digest: v1!.digest });
    expect(Number(row.epoch)).toBe(rolled.epoch);
    await notifications.waitFor((n) => n.channel === 'realm_file_changes' && n.payload === `${publishedURL}:*`);
    await eventually(() => acked.includes(rolled.epoch), 10_000, () => `the replica to acknowledge epoch ${rolled.epoch} (acked ${JSON.stringify(acked)})`);
    // All three versions still kept: rolling back trims nothing and can go forward again.
    expect((await readKeptVersions(fixture.db.pool, publishedURL)).map((v) => v.version).sort()).toEqual(results.map((r) => r.version).sort());
    const forward = await rollbackRealm(fixture.plane, { publishedRealmURL: publishedURL, version: v3!.version, history: { limit: 3 } });
    expect(await readTree(fixture.layout.publishedDir(diskId))).toMatchObject({ 'index.json': '{"v":3}' });
    expect(forward.epoch).toBeGreaterThan(rolled.epoch);
  } finally {
    await notifications.close();
  }
});

test("rollback advances realm_registry.last_published_at as Boxel's publish does when content goes live (its HTML ETag), and returns the epoch row it committed", async () => {
  const { publishedURL, results } = await publishSeries('last-published', [content(1), content(2)]);
  const registryRow = async () => (await fixture.db.pool.query('SELECT last_published_at, disk_id, updated_at FROM realm_registry WHERE url = $1', [publishedURL])).rows[0];
  const before = await registryRow();
  expect(Number(before.last_published_at)).toBe(results[1]!.publishedAt);
  const startedAt = Date.now();
  const rolled = await rollbackRealm(fixture.plane, { publishedRealmURL: publishedURL, version: results[0]!.version, history: { limit: 3 } });
  const after = await registryRow();
  // Milliseconds since the epoch, as Boxel writes it (Date.now() when the content goes live).
  expect(Number(after.last_published_at)).toBeGreaterThanOrEqual(startedAt);
  expect(Number(after.last_published_at)).toBeGreaterThan(Number(before.last_published_at));
  expect(after.disk_id).toBe(before.disk_id);
  // The row the caller would otherwise read again after COMMIT.
  const { rows } = await fixture.db.pool.query('SELECT * FROM realm_operator.realm_epochs WHERE realm_url = $1', [publishedURL]);
  expect(rows[0]).toMatchObject(rolled.state!);
  expect(rolled.state!.epoch).toBe(String(rolled.epoch));
  // A refused rollback writes nothing.
  await expect(rollbackRealm(fixture.plane, { publishedRealmURL: publishedURL, version: 'v-19700101T000000000Z-00000000' })).rejects.toBeInstanceOf(VersionNotKeptError);
  expect(await registryRow()).toEqual(after);
});

test('a version that is not kept is refused before anything changes, naming the kept ones', async () => {
  const { publishedURL, results } = await publishSeries('refuse', [content(1), content(2), content(3)], { limit: 2 });
  const epoch = await epochOf(publishedURL);
  const error = await rollbackRealm(fixture.plane, { publishedRealmURL: publishedURL, version: results[0]!.version }).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(VersionNotKeptError);
  expect((error as Error).message).toContain(results[1]!.version);
  expect((error as Error).message).toContain('spec.rollbackTo');
  expect(await epochOf(publishedURL)).toBe(epoch);
  expect(await readPublishedLink(fixture.layout, results[0]!.diskId)).toEqual({ kind: 'version', version: results[2]!.version });
});

test('rollback is fenced by generation like a publish', async () => {
  const { db, layout, plane } = fixture;
  const sourceURL = 'http://localhost:4201/rollback/fence-src/';
  const publishedURL = 'http://pub.localhost/rollback/fence/';
  const sourceDir = await createSourceRealm(db.pool, layout, sourceURL, content(1));
  const fenceOf = 'ns/fence/uid-1';
  const first = await publishRealm(plane, { sourceRealmURL: sourceURL, publishedRealmURL: publishedURL, history: { limit: 3 }, fence: { of: fenceOf, generation: 1 } });
  await writeFiles(sourceDir, content(2));
  await publishRealm(plane, { sourceRealmURL: sourceURL, publishedRealmURL: publishedURL, history: { limit: 3 }, fence: { of: fenceOf, generation: 3 } });
  // A paused leader's rollback for generation 2 must not commit over generation 3's publish.
  await expect(rollbackRealm(plane, { publishedRealmURL: publishedURL, version: first.version, fence: { of: fenceOf, generation: 2 } })).rejects.toThrow(SupersededPublishError);
  expect(await readTree(layout.publishedDir(first.diskId))).toMatchObject({ 'index.json': '{"v":2}' });
  await rollbackRealm(plane, { publishedRealmURL: publishedURL, version: first.version, fence: { of: fenceOf, generation: 4 }, history: { limit: 3 } });
  expect(await readTree(layout.publishedDir(first.diskId))).toMatchObject({ 'index.json': '{"v":1}' });
});

const ROLLBACK_STEPS: PublishStep[] = ['locked', 'swapped', 'recorded', 'committed', 'cleaned'];

async function crashRollback(crashAt: string, publishedURL: string, version: string): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, '../support/crash-child.ts')], {
    env: { ...process.env, DATABASE_URL: fixture.db.url, REALMS_ROOT: fixture.realms.root, OPERATION: 'rollback', PUBLISHED_URL: publishedURL, VERSION: version, CRASH_AT: crashAt },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, s) => resolve(s)));
  if (signal !== 'SIGKILL') throw new Error(`child did not crash at ${crashAt}: ${output}`);
  await eventually(async () => {
    const { rows } = await fixture.db.pool.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'crash-child' AND datname = current_database()`);
    return rows[0].n === 0;
  }, 10_000, () => "the crashed rollback's backends to exit");
}

describe.each(ROLLBACK_STEPS)('rollback killed after step "%s"', (step) => {
  test('old or rolled-back content whole; recovery agrees with the database and keeps every kept version', async () => {
    const { publishedURL, results } = await publishSeries(`crash-${step}`, [content(1), content(2)]);
    const [v1, v2] = results;
    const diskId = v1!.diskId;
    const epochBefore = await epochOf(publishedURL);
    await crashRollback(step, publishedURL, v1!.version);
    const visible = await readTree(fixture.layout.publishedDir(diskId));
    expect([content(1), content(2)]).toContainEqual(visible);

    const recovery = await recoverPublishedRealm(fixture.plane, publishedURL);
    const row = (await fixture.db.pool.query('SELECT content_version FROM realm_operator.realm_epochs WHERE realm_url = $1', [publishedURL])).rows[0];
    const committedRollback = step === 'committed' || step === 'cleaned';
    expect(row.content_version).toBe(committedRollback ? v1!.version : v2!.version);
    expect(await readPublishedLink(fixture.layout, diskId)).toEqual({ kind: 'version', version: row.content_version });
    expect(await readTree(fixture.layout.publishedDir(diskId))).toEqual(committedRollback ? content(1) : content(2));
    if (step === 'swapped' || step === 'recorded') {
      // Readers may have seen v1 before the crash: the repair drew a new epoch.
      expect(recovery.recovered.join(' ')).toContain('re-pointed the published link');
      expect(await epochOf(publishedURL)).toBeGreaterThan(epochBefore);
    }
    // Both versions are still kept, rows and directories, and nothing else is left behind.
    expect((await readKeptVersions(fixture.db.pool, publishedURL)).map((v) => v.version).sort()).toEqual([v1!.version, v2!.version].sort());
    expect(await versionsOnDisk(diskId)).toEqual([v1!.version, v2!.version].sort());
    for (const dir of [fixture.layout.linkScratchDir, fixture.layout.trashDir]) expect(await fs.readdir(dir).catch(() => [])).toEqual([]);
    // And a rollback then completes.
    const target = committedRollback ? v2! : v1!;
    await rollbackRealm(fixture.plane, { publishedRealmURL: publishedURL, version: target.version, history: { limit: 3 } });
    expect(await readPublishedLink(fixture.layout, diskId)).toEqual({ kind: 'version', version: target.version });
  });
});

test('unpublishing a realm with kept versions removes them all with the unpublish epoch alone (no extra invalidation)', async () => {
  const { publishedURL, results } = await publishSeries('unpublish', [content(1), content(2), content(3)]);
  const unpublished = await unpublishRealm(fixture.plane, publishedURL);
  expect(unpublished.unpublished).toBe(true);
  // The kept versions were committed once: their removal needs no repair, so the epoch stays the unpublish's.
  expect(await epochOf(publishedURL)).toBe(unpublished.epoch);
  expect(await readKeptVersions(fixture.db.pool, publishedURL)).toEqual([]);
  await expect(fs.stat(fixture.layout.versionsDir(results[0]!.diskId))).rejects.toMatchObject({ code: 'ENOENT' });
});
