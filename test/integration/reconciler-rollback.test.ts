/**
 * spec.rollbackTo through the PublishedRealm reconciler, against a real kube-apiserver, a real
 * PostgreSQL, real files and a real RealmListener: kept versions listed in status with the live one
 * marked; a rollback swaps to the kept directory (the same inodes, nothing staged), is Reconciling
 * until every live replica acknowledged its epoch and only then Ready `RolledBack`; revision
 * changes publish nothing while rollbackTo is set; a version that is not kept is Stalled
 * `VersionNotKept`; removing rollbackTo publishes spec.revision again.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { Registry } from 'prom-client';
import { GROUP, PLURAL, VERSION, type PublishedRealm } from '../../src/api/v1alpha1/published-realm-types.js';
import { readPublishedLink } from '../../src/dataplane/published-content.js';
import { RealmListener } from '../../src/listener/realm-listener.js';
import { recordAck } from '../../src/listener/replica-registry.js';
import { PublishedRealmKube } from '../../src/reconciler/published-realm/kube.js';
import { PublishedRealmReconciler } from '../../src/reconciler/published-realm/reconciler.js';
import { kubeRequest } from '../../src/runtime/kube-client.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { installCRD } from '../support/e2e.js';
import { testKubeConfig } from '../support/kube.js';
import { createSourceRealm, eventually, makeRealmsRoot, readTree, recordNotifications, silentLogger, writeFiles } from '../support/realms.js';
import { RecordingCaches } from '../support/recording-caches.js';

const kube = testKubeConfig();
const namespace = `rollback-${randomBytes(3).toString('hex')}`;
const collection = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}`;
const source = 'http://localhost:4201/rollback/src/';
const published = 'http://pub.localhost/rollback/';
let db: TestDatabase;
let realms: Awaited<ReturnType<typeof makeRealmsRoot>>;
let sourceDir: string;
let listener: RealmListener;
const listenerAcks: number[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  realms = await makeRealmsRoot();
  await installCRD();
  await kubeRequest(kube, { method: 'POST', path: '/api/v1/namespaces', body: { metadata: { name: namespace } } });
  sourceDir = await createSourceRealm(db.pool, realms.layout, source, { 'index.json': '{"v":1}' }, 'rollback/src');
  // A second replica that acknowledges only when the test says so: Ready must wait for it.
  await db.pool.query(
    `INSERT INTO realm_operator.replicas (replica_id, lease_expires_at, lease_duration_ms, cache_started_epoch)
     VALUES ('held-replica', now() + interval '10 minutes', 600000, 0)`,
  );
  listener = new RealmListener({
    connection: db.url,
    replicaId: 'listening-replica',
    caches: new RecordingCaches().add(published),
    logger: silentLogger,
    metricsRegistry: new Registry(),
    heartbeatIntervalMs: 200,
    leaseDurationMs: 600_000,
  });
  listener.on('acknowledged', (ack: { realmURL: string; epoch: number }) => ack.realmURL === published && listenerAcks.push(ack.epoch));
  listener.start();
  await listener.waitUntilReady(10_000);
});

afterAll(async () => {
  await listener?.stop();
  await kubeRequest(kube, { method: 'DELETE', path: `/api/v1/namespaces/${namespace}` }).catch(() => undefined);
  await db.drop();
  await realms.cleanup();
});

const get = () => kubeRequest<PublishedRealm>(kube, { path: `${collection}/blog` });
const patchSpec = (spec: Record<string, unknown>) =>
  kubeRequest(kube, { method: 'PATCH', path: `${collection}/blog`, contentType: 'application/merge-patch+json', body: { spec } });
const condition = (realm: PublishedRealm, type: string) => realm.status?.conditions?.find((c) => c.type === type);
const epochNow = async () => Number((await db.pool.query('SELECT epoch FROM realm_operator.realm_epochs WHERE realm_url = $1', [published])).rows[0].epoch);

test('rollback through the reconciler: Reconciling until every replica acknowledged, then Ready RolledBack; revision ignored while set; VersionNotKept; removing it republishes', async () => {
  await kubeRequest(kube, {
    method: 'POST',
    path: collection,
    body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'PublishedRealm', metadata: { name: 'blog', namespace }, spec: { sourceRealmURL: source, publishedRealmURL: published, revision: 1, reindex: { enabled: false } } },
  });
  const events: string[] = [];
  const realmKube = new PublishedRealmKube(kube, silentLogger, 'rollback-test');
  const recordEvent = realmKube.recordEvent.bind(realmKube);
  realmKube.recordEvent = async (realm, type, reason, action, note) => {
    events.push(reason);
    await recordEvent(realm, type, reason, action, note);
  };
  const reconciler = new PublishedRealmReconciler({ kube: realmKube, pool: db.pool, layout: realms.layout, logger: silentLogger, durable: false, ackWaitMs: 300, ackRequeueMs: 1000 });
  const key = { namespace, name: 'blog' };
  /** Reconciles, lets the held replica acknowledge the epoch committed, and reconciles to Ready. */
  const reconcileAndAck = async () => {
    await reconciler.reconcile(key);
    await recordAck(db.pool, 'held-replica', published, await epochNow());
    await reconciler.reconcile(key);
    return get();
  };
  try {
    const first = await reconcileAndAck();
    expect(condition(first, 'Ready')).toMatchObject({ status: 'True', reason: 'Published' });
    const v1 = first.status!.liveVersion!;
    expect(first.status!.versions).toEqual([expect.objectContaining({ version: v1, live: true, revision: '1', fileCount: 1 })]);

    await writeFiles(sourceDir, { 'index.json': '{"v":2}' });
    await patchSpec({ revision: 2 });
    const second = await reconcileAndAck();
    const v2 = second.status!.liveVersion!;
    expect(v2).not.toBe(v1);
    expect(second.status!.versions!.map((v) => [v.version, v.live])).toEqual([[v2, true], [v1, false]]);
    const diskId = second.status!.diskId!;
    const keptInode = (await fs.stat(path.join(realms.layout.versionDir(diskId, v1), 'index.json'))).ino;

    // Roll back: the swap commits, the listening replica acknowledges, but Ready waits for the held one.
    await patchSpec({ rollbackTo: v1 });
    const notifications = await recordNotifications(db.url, ['realm_file_changes']);
    try {
      await reconciler.reconcile(key);
      await notifications.waitFor((n) => n.payload === `${published}:*`);
    } finally {
      await notifications.close();
    }
    const rollbackEpoch = await epochNow();
    expect(rollbackEpoch).toBeGreaterThan(second.status!.epoch!);
    const awaiting = await get();
    expect(condition(awaiting, 'Ready')).toMatchObject({ status: 'False', reason: 'AwaitingAcknowledgement' });
    expect(condition(awaiting, 'Reconciling')).toMatchObject({ status: 'True' });
    expect(events).toContain('ContentRolledBack');
    expect(await readPublishedLink(realms.layout, diskId)).toEqual({ kind: 'version', version: v1 });
    // The kept file itself is served (no copy), and nothing was staged.
    expect((await fs.stat(path.join(realms.layout.publishedDir(diskId), 'index.json'))).ino).toBe(keptInode);
    expect(await readTree(realms.layout.publishedDir(diskId))).toMatchObject({ 'index.json': '{"v":1}' });
    expect(await fs.readdir(realms.layout.stagingRoot).catch(() => [] as string[])).toEqual([]);
    await eventually(() => listenerAcks.includes(rollbackEpoch), 10_000, () => `the RealmListener to acknowledge epoch ${rollbackEpoch}`);
    await reconciler.reconcile(key);
    expect(condition(await get(), 'Ready')).toMatchObject({ status: 'False', reason: 'AwaitingAcknowledgement' });

    await recordAck(db.pool, 'held-replica', published, rollbackEpoch);
    await reconciler.reconcile(key);
    const rolled = await get();
    expect(condition(rolled, 'Ready')).toMatchObject({ status: 'True', reason: 'RolledBack', observedGeneration: rolled.metadata.generation });
    expect(condition(rolled, 'Reconciling')).toBeUndefined();
    expect(rolled.status).toMatchObject({ liveVersion: v1, epoch: rollbackEpoch, publishedRevision: '2' });
    expect(rolled.status!.versions!.map((v) => [v.version, v.live])).toEqual([[v2, false], [v1, true]]);

    // While rollbackTo is set, a revision change publishes nothing.
    await writeFiles(sourceDir, { 'index.json': '{"v":3}' });
    await patchSpec({ revision: 3 });
    await reconciler.reconcile(key);
    expect(await epochNow()).toBe(rollbackEpoch);
    const ignored = await get();
    expect(condition(ignored, 'Ready')).toMatchObject({ status: 'True', reason: 'RolledBack', observedGeneration: ignored.metadata.generation });
    expect(await readTree(realms.layout.publishedDir(diskId))).toMatchObject({ 'index.json': '{"v":1}' });

    // A version that is not kept: Stalled, naming the field and the kept versions; nothing changes.
    await patchSpec({ rollbackTo: 'v1700000000000-00000000' });
    await reconciler.reconcile(key);
    const stalled = await get();
    expect(condition(stalled, 'Stalled')).toMatchObject({ status: 'True', reason: 'VersionNotKept' });
    expect(condition(stalled, 'Stalled')!.message).toContain('spec.rollbackTo');
    expect(condition(stalled, 'Stalled')!.message).toContain(v2);
    expect(await epochNow()).toBe(rollbackEpoch);

    // Removing rollbackTo publishes spec.revision (3) again.
    await patchSpec({ rollbackTo: null });
    const republished = await reconcileAndAck();
    expect(condition(republished, 'Ready')).toMatchObject({ status: 'True', reason: 'Published' });
    expect(condition(republished, 'Stalled')).toBeUndefined();
    expect(await readTree(realms.layout.publishedDir(diskId))).toMatchObject({ 'index.json': '{"v":3}' });
    const v3 = republished.status!.liveVersion!;
    expect(republished.status!.versions!.map((v) => [v.version, v.live])).toEqual([[v3, true], [v2, false], [v1, false]]);
  } finally {
    reconciler.close();
  }
}, 120_000);
