/**
 * Issue 13 item 4 against a real PostgreSQL and real files: a publish that ends between its swap
 * and COMMIT leaves the published link on content that never committed, which replicas may have
 * cached. When the next publish (or unpublish) finds that, the repair — the link re-pointed to
 * the committed version, a new epoch and the wildcard NOTIFY — must reach replicas even if that
 * publish's own transaction then aborts. Checked with a real RealmListener (it acknowledges the
 * new epoch) and a plain LISTEN connection (it sees the wildcard).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { publishRealm, recoverPublishedRealm, unpublishRealm, type DataPlane } from '../../src/dataplane/publish.js';
import { readPublishedLink, swapPublishedLink } from '../../src/dataplane/published-content.js';
import { ClaimConflictError } from '../../src/dataplane/realm-state.js';
import { RealmListener } from '../../src/listener/realm-listener.js';
import { createSourceRealm, eventually, openDataPlaneFixture, recordNotifications, writeFiles, type DataPlaneFixture } from '../support/realms.js';
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

class InjectedAbort extends Error {}

/** A plane whose transaction throws (and so rolls back) right after `step`. */
function abortingAt(step: string): DataPlane {
  return {
    ...fixture.plane,
    onStep: (name) => {
      if (name === step) throw new InjectedAbort(`injected abort after ${step}`);
    },
  };
}

async function epochOf(url: string): Promise<number> {
  const { rows } = await fixture.db.pool.query('SELECT epoch FROM realm_operator.realm_epochs WHERE realm_url = $1', [url]);
  return Number(rows[0]?.epoch ?? 0);
}

async function startReplica(url: string): Promise<{ listener: RealmListener; caches: RecordingCaches; acked: number[] }> {
  const caches = new RecordingCaches().add(url);
  const listener = new RealmListener({
    connection: fixture.db.url,
    replicaId: `recovery-${Math.random().toString(36).slice(2, 8)}`,
    caches,
    logger,
    metricsRegistry: new Registry(),
    heartbeatIntervalMs: 200,
    leaseDurationMs: 5000,
  });
  listeners.push(listener);
  const acked: number[] = [];
  listener.on('acknowledged', (ack: { realmURL: string; epoch: number }) => {
    if (ack.realmURL === url) acked.push(ack.epoch);
  });
  listener.start();
  await listener.waitUntilReady(10_000);
  return { listener, caches, acked };
}

/** Publishes v1, then a v2 whose transaction aborts after the swap: the link is left on uncommitted v2. */
async function interruptedRepublish(name: string) {
  const { db, layout, plane } = fixture;
  const sourceURL = `http://localhost:4201/recovery/${name}-src/`;
  const publishedURL = `http://pub.localhost/recovery/${name}/`;
  const sourceDir = await createSourceRealm(db.pool, layout, sourceURL, { 'index.json': '{"v":1}' });
  const first = await publishRealm(plane, { sourceRealmURL: sourceURL, publishedRealmURL: publishedURL, claim: { claimant: 'ns/owner/uid-1' } });
  await writeFiles(sourceDir, { 'index.json': '{"v":2}' });
  await expect(publishRealm(abortingAt('swapped'), { sourceRealmURL: sourceURL, publishedRealmURL: publishedURL })).rejects.toThrow(InjectedAbort);
  const link = await readPublishedLink(layout, first.diskId);
  // What a replica reading now would see and cache: content that never committed.
  expect(link).toMatchObject({ kind: 'version' });
  expect((link as { version: string }).version).not.toBe(first.version);
  expect(await fs.readFile(path.join(layout.publishedDir(first.diskId), 'index.json'), 'utf8')).toBe('{"v":2}');
  return { sourceURL, publishedURL, sourceDir, first };
}

test('a republish whose transaction aborts after repairing the link: the repair is committed, epoch bumped, NOTIFY seen, replica acknowledged', async () => {
  const { sourceURL, publishedURL, first } = await interruptedRepublish('publish');
  const replica = await startReplica(publishedURL);
  const notifications = await recordNotifications(fixture.db.url, ['realm_file_changes']);
  try {
    const epochBefore = await epochOf(publishedURL);
    // This publish finds the stray link, then its own transaction aborts (after the recovery).
    await expect(publishRealm(abortingAt('installed'), { sourceRealmURL: sourceURL, publishedRealmURL: publishedURL })).rejects.toThrow(InjectedAbort);

    expect(await readPublishedLink(fixture.layout, first.diskId)).toEqual({ kind: 'version', version: first.version });
    expect(await fs.readFile(path.join(fixture.layout.publishedDir(first.diskId), 'index.json'), 'utf8')).toBe('{"v":1}');
    const epochAfter = await epochOf(publishedURL);
    expect(epochAfter).toBeGreaterThan(epochBefore);
    await notifications.waitFor((n) => n.payload === `${publishedURL}:*`);
    await eventually(() => replica.acked.includes(epochAfter), 10_000, () => `the replica to acknowledge epoch ${epochAfter} (acked ${JSON.stringify(replica.acked)})`);
    expect(replica.caches.count(`dropAll ${publishedURL}`)).toBeGreaterThanOrEqual(2); // the resync, then the repair
  } finally {
    await notifications.close();
  }
});

test('an unpublish refused after repairing the link (another claimant): the repair is committed and announced too', async () => {
  const { publishedURL, first } = await interruptedRepublish('unpublish');
  const replica = await startReplica(publishedURL);
  const notifications = await recordNotifications(fixture.db.url, ['realm_file_changes']);
  try {
    const epochBefore = await epochOf(publishedURL);
    // Refused under the lock, after the recovery: the URL is claimed by someone else.
    await expect(unpublishRealm(fixture.plane, publishedURL, { claimant: 'ns/other/uid-2' })).rejects.toThrow(ClaimConflictError);
    // Still published at the committed version (the unpublish did not commit), and replicas were told.
    expect(await readPublishedLink(fixture.layout, first.diskId)).toEqual({ kind: 'version', version: first.version });
    const epochAfter = await epochOf(publishedURL);
    expect(epochAfter).toBeGreaterThan(epochBefore);
    await notifications.waitFor((n) => n.payload === `${publishedURL}:*`);
    await eventually(() => replica.acked.includes(epochAfter), 10_000, () => `the replica to acknowledge epoch ${epochAfter}`);
  } finally {
    await notifications.close();
  }
});

test('a repair whose COMMIT was lost after it re-pointed the link: the stray uncommitted version makes the next recovery invalidate again', async () => {
  const { publishedURL, first } = await interruptedRepublish('lost-commit');
  // What a repair leaves when it dies between re-pointing the link and its COMMIT: the link back
  // on the committed version, the database unchanged, the uncommitted version still there.
  await swapPublishedLink(fixture.layout, first.diskId, first.version);
  const replica = await startReplica(publishedURL);
  const notifications = await recordNotifications(fixture.db.url, ['realm_file_changes']);
  try {
    const epochBefore = await epochOf(publishedURL);
    const result = await recoverPublishedRealm(fixture.plane, publishedURL);
    expect(result.recovered).toEqual([expect.stringMatching(/^invalidated the realm: versions v\d+-[0-9a-f]{8} were installed by a publish that did not commit/)]);
    const epochAfter = await epochOf(publishedURL);
    expect(epochAfter).toBeGreaterThan(epochBefore);
    await notifications.waitFor((n) => n.payload === `${publishedURL}:*`);
    await eventually(() => replica.acked.includes(epochAfter), 10_000, () => `the replica to acknowledge epoch ${epochAfter}`);
    // Now clean: no stray left, so nothing more to invalidate.
    expect((await recoverPublishedRealm(fixture.plane, publishedURL)).recovered).toEqual([]);
    expect(await epochOf(publishedURL)).toBe(epochAfter);
  } finally {
    await notifications.close();
  }
});
