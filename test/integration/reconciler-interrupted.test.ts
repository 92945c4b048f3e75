/**
 * A reconcile that finds its spec already published must not report Ready over content that
 * never committed. Set-up: a publish dies after its swap (the files as such a crash leaves them: a
 * version directory installed and the published link swapped to it, the database unchanged —
 * test/integration/crash-recovery.test.ts shows real crashes leave exactly that), then the
 * object is reconciled with the spec the database records as published. Against a real
 * kube-apiserver, PostgreSQL, files, a LISTEN client and a RealmListener: the link goes back to
 * the committed version with a new epoch and the wildcard NOTIFY, and Ready reports that epoch
 * only once the replica acknowledged it.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { Registry } from 'prom-client';
import { GROUP, PLURAL, VERSION, type PublishedRealm } from '../../src/api/v1alpha1/published-realm-types.js';
import { installStagedVersion, newVersionName, readPublishedLink, swapPublishedLink } from '../../src/dataplane/published-content.js';
import { RealmListener } from '../../src/listener/realm-listener.js';
import { PublishedRealmKube } from '../../src/reconciler/published-realm/kube.js';
import { PublishedRealmReconciler } from '../../src/reconciler/published-realm/reconciler.js';
import { kubeRequest } from '../../src/runtime/kube-client.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { installCRD } from '../support/e2e.js';
import { testKubeConfig } from '../support/kube.js';
import { createSourceRealm, eventually, makeRealmsRoot, readTree, recordNotifications, silentLogger, writeFiles } from '../support/realms.js';
import { RecordingCaches } from '../support/recording-caches.js';

const kube = testKubeConfig();
const namespace = `interrupted-${randomBytes(3).toString('hex')}`;
const collection = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}`;
const source = 'http://localhost:4201/interrupted/src/';
const published = 'http://pub.localhost/interrupted/';
let db: TestDatabase;
let realms: Awaited<ReturnType<typeof makeRealmsRoot>>;
let listener: RealmListener;
const acknowledged: number[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  realms = await makeRealmsRoot();
  await installCRD();
  await kubeRequest(kube, { method: 'POST', path: '/api/v1/namespaces', body: { metadata: { name: namespace } } });
  await createSourceRealm(db.pool, realms.layout, source, { 'index.json': '{"v":1}' }, 'interrupted/src');
  listener = new RealmListener({
    connection: db.url,
    replicaId: 'replica-a',
    caches: new RecordingCaches().add(published),
    logger: silentLogger,
    metricsRegistry: new Registry(),
    heartbeatIntervalMs: 200,
    leaseDurationMs: 600_000,
  });
  listener.on('acknowledged', (ack: { realmURL: string; epoch: number }) => ack.realmURL === published && acknowledged.push(ack.epoch));
  listener.start();
  await listener.waitUntilReady(10_000);
});

afterAll(async () => {
  await listener?.stop();
  await kubeRequest(kube, { method: 'DELETE', path: `/api/v1/namespaces/${namespace}` }).catch(() => undefined);
  await db.drop();
  await realms.cleanup();
});

const get = () => kubeRequest<PublishedRealm>(kube, { path: `${collection}/site` });
const ready = (realm: PublishedRealm) => realm.status?.conditions?.find((c) => c.type === 'Ready');
const epochNow = async () => Number((await db.pool.query('SELECT epoch FROM realm_operator.realm_epochs WHERE realm_url = $1', [published])).rows[0].epoch);

test('a publish that died after its swap: the next reconcile of the already-published spec puts the committed version back with a new epoch and NOTIFY before Ready', async () => {
  await kubeRequest(kube, {
    method: 'POST',
    path: collection,
    body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'PublishedRealm', metadata: { name: 'site', namespace }, spec: { sourceRealmURL: source, publishedRealmURL: published, revision: 1, reindex: { enabled: false } } },
  });
  const reconciler = new PublishedRealmReconciler({ kube: new PublishedRealmKube(kube, silentLogger, 'interrupted-test'), pool: db.pool, layout: realms.layout, logger: silentLogger, durable: false, ackWaitMs: 5_000, ackRequeueMs: 1_000 });
  const key = { namespace, name: 'site' };
  await reconciler.reconcile(key);
  const first = await get();
  expect(ready(first)).toMatchObject({ status: 'True', reason: 'Published' });
  const diskId = first.status!.diskId!;
  const committed = first.status!.liveVersion!;
  const committedEpoch = first.status!.epoch!;

  // What a publisher killed between its swap and its COMMIT leaves: an installed version, the link on it.
  const staged = path.join(realms.layout.stagingRoot, `crashed-${randomBytes(3).toString('hex')}`);
  await fs.mkdir(staged, { recursive: true });
  await writeFiles(staged, { 'index.json': '{"v":"never committed"}' });
  const uncommitted = newVersionName();
  await installStagedVersion(realms.layout, staged, diskId, uncommitted);
  await swapPublishedLink(realms.layout, diskId, uncommitted);
  expect(await readTree(realms.layout.publishedDir(diskId))).toMatchObject({ 'index.json': '{"v":"never committed"}' });

  const notifications = await recordNotifications(db.url, ['realm_file_changes']);
  try {
    await reconciler.reconcile(key);
    await notifications.waitFor((n) => n.payload === `${published}:*`);
  } finally {
    await notifications.close();
  }
  const recoveredEpoch = await epochNow();
  expect(recoveredEpoch).toBeGreaterThan(committedEpoch);
  expect(await readPublishedLink(realms.layout, diskId)).toEqual({ kind: 'version', version: committed });
  expect(await readTree(realms.layout.publishedDir(diskId))).toMatchObject({ 'index.json': '{"v":1}' });
  await eventually(() => acknowledged.includes(recoveredEpoch), 10_000, () => `replica-a to acknowledge epoch ${recoveredEpoch}`);
  await reconciler.reconcile(key);
  const after = await get();
  expect(ready(after)).toMatchObject({ status: 'True', reason: 'Published' });
  expect(after.status!.epoch).toBe(recoveredEpoch);
  expect(after.status!.liveVersion).toBe(committed);
});
