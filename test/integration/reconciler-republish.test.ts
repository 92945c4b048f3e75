/**
 * What the reconciler does after a republish commits, against a real kube-apiserver, PostgreSQL
 * and files:
 * - the post-commit clean-up (the superseded version's removal, the staging manifest) runs after
 *   Ready is written, and the reconcile returns only once it is done;
 * - a republish by the object that already published the URL skips the size pre-walk, and staging
 *   refuses a realm grown over the limit itself: Stalled RealmTooLarge, the live content and the
 *   finalizer stay.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { GROUP, PLURAL, UNPUBLISH_FINALIZER, VERSION, type PublishedRealm } from '../../src/api/v1alpha1/published-realm-types.js';
import type { PublishStep, UnpublishStep } from '../../src/dataplane/publish.js';
import { PublishedRealmKube } from '../../src/reconciler/published-realm/kube.js';
import { PublishedRealmReconciler } from '../../src/reconciler/published-realm/reconciler.js';
import { kubeRequest } from '../../src/runtime/kube-client.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { installCRD } from '../support/e2e.js';
import { testKubeConfig } from '../support/kube.js';
import { createSourceRealm, makeRealmsRoot, readTree, silentLogger, writeFiles } from '../support/realms.js';

const kube = testKubeConfig();
const namespace = `republish-${randomBytes(3).toString('hex')}`;
const collection = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}`;
let db: TestDatabase;
let realms: Awaited<ReturnType<typeof makeRealmsRoot>>;

beforeAll(async () => {
  [db, realms] = await Promise.all([createTestDatabase(), makeRealmsRoot(), installCRD()]);
  await kubeRequest(kube, { method: 'POST', path: '/api/v1/namespaces', body: { metadata: { name: namespace } } });
});

afterAll(async () => {
  await kubeRequest(kube, { method: 'DELETE', path: `/api/v1/namespaces/${namespace}` }).catch(() => undefined);
  await db.drop();
  await realms.cleanup();
});

const get = (name: string) => kubeRequest<PublishedRealm>(kube, { path: `${collection}/${name}` });
const ready = (realm: PublishedRealm) => realm.status?.conditions?.find((c) => c.type === 'Ready');
const epochOf = async (url: string) => Number((await db.pool.query('SELECT epoch FROM realm_operator.realm_epochs WHERE realm_url = $1', [url])).rows[0].epoch);

async function create(name: string, spec: Record<string, unknown>): Promise<void> {
  await kubeRequest(kube, { method: 'POST', path: collection, body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'PublishedRealm', metadata: { name, namespace }, spec } });
}

async function setRevision(name: string, revision: string): Promise<void> {
  await kubeRequest(kube, { method: 'PATCH', path: `${collection}/${name}`, contentType: 'application/merge-patch+json', body: { spec: { revision } } });
}

function reconcilerWith(onStep?: (step: PublishStep | UnpublishStep, url: string) => void | Promise<void>, realmLimits?: { maxFiles?: number }): PublishedRealmReconciler {
  return new PublishedRealmReconciler({
    kube: new PublishedRealmKube(kube, silentLogger, 'republish-test'),
    pool: db.pool,
    layout: realms.layout,
    logger: silentLogger,
    durable: false,
    ackWaitMs: 5_000,
    ackRequeueMs: 1_000,
    ...(onStep && { onStep }),
    ...(realmLimits && { realmLimits }),
  });
}

test('a republish writes Ready before its clean-up, and the reconcile returns only once the superseded version and the manifest are done', async () => {
  const source = 'http://localhost:4201/republish/order/';
  const published = 'http://pub.localhost/republish/order/';
  const sourceDir = await createSourceRealm(db.pool, realms.layout, source, { 'index.json': '{"v":1}', 'a.json': '"a"' }, 'republish/order');
  await create('order', { sourceRealmURL: source, publishedRealmURL: published, revision: '1', history: { limit: 1 }, reindex: { enabled: false } });
  // At the clean-up's end ('cleaned'): the object as the API server has it, and the versions on disk.
  const atCleaned: Array<{ ready: ReturnType<typeof ready>; generation: number | undefined; epoch: number | undefined }> = [];
  const reconciler = reconcilerWith(async (step, url) => {
    if (step !== 'cleaned' || url !== published) return;
    const realm = await get('order');
    atCleaned.push({ ready: ready(realm), generation: realm.metadata.generation, epoch: realm.status?.epoch });
  });
  const key = { namespace, name: 'order' };
  const versions: string[] = [];
  for (let revision = 1; revision <= 3; revision++) {
    if (revision > 1) {
      await writeFiles(sourceDir, { 'a.json': `"a${revision}"` });
      await setRevision('order', String(revision));
    }
    await reconciler.reconcile(key);
    const realm = await get('order');
    expect(ready(realm)).toMatchObject({ status: 'True', observedGeneration: realm.metadata.generation });
    versions.push(realm.status!.liveVersion!);
    // Ready, for this generation and epoch, was already written when the clean-up ended.
    expect(atCleaned.at(-1)).toEqual({ ready: expect.objectContaining({ status: 'True', observedGeneration: realm.metadata.generation }), generation: realm.metadata.generation, epoch: await epochOf(published) });
    // Done by the time the reconcile returned: the live version's manifest is written...
    const diskId = realm.status!.diskId!;
    await expect(fs.stat(realms.layout.manifestPath(diskId, realm.status!.liveVersion!))).resolves.toBeTruthy();
    // ...and only the live and the previous version are left (history limit 1).
    const onDisk = (await fs.readdir(realms.layout.versionsDir(diskId))).sort();
    expect(onDisk).toEqual(versions.slice(-2).sort());
  }
  expect(atCleaned).toHaveLength(3);
  expect(await readTree(realms.layout.publishedDir((await get('order')).status!.diskId!))).toMatchObject({ 'a.json': '"a3"' });
});

test('a republish over the size limit by the object that published: staging refuses it (no pre-walk), Stalled RealmTooLarge, the live content and the finalizer stay', async () => {
  const source = 'http://localhost:4201/republish/big/';
  const published = 'http://pub.localhost/republish/big/';
  const sourceDir = await createSourceRealm(db.pool, realms.layout, source, { 'index.json': '{}', 'a.json': '"a"' }, 'republish/big');
  await create('big', { sourceRealmURL: source, publishedRealmURL: published, revision: '1', reindex: { enabled: false } });
  const steps: string[] = [];
  const reconciler = reconcilerWith((step, url) => void (url === published && steps.push(step)), { maxFiles: 3 });
  const key = { namespace, name: 'big' };
  await reconciler.reconcile(key);
  const first = await get('big');
  expect(ready(first)).toMatchObject({ status: 'True' });
  const epoch = await epochOf(published);

  await writeFiles(sourceDir, { 'b.json': '"b"', 'c.json': '"c"', 'd.json': '"d"' });
  await setRevision('big', '2');
  steps.length = 0;
  const result = await reconciler.reconcile(key);
  const after = await get('big');
  expect(after.status?.conditions?.map((c) => [c.type, c.status, c.reason])).toEqual([
    ['Ready', 'False', 'RealmTooLarge'],
    ['Stalled', 'True', 'RealmTooLarge'],
  ]);
  expect(ready(after)?.message).toContain('--max-realm-files');
  expect(result.requeueAfterMs).toBeGreaterThan(0);
  // Refused while staging: no step of the publish was reached, nothing committed, no copy left.
  expect(steps).toEqual([]);
  expect(await epochOf(published)).toBe(epoch);
  expect(await fs.readdir(realms.layout.stagingRoot)).toEqual([]);
  expect(await readTree(realms.layout.publishedDir(first.status!.diskId!))).toEqual(expect.objectContaining({ 'a.json': '"a"' }));
  expect(Object.keys(await readTree(realms.layout.publishedDir(first.status!.diskId!)))).not.toContain('b.json');
  expect(after.metadata.finalizers).toContain(UNPUBLISH_FINALIZER);
});
