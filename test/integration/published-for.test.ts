/**
 * Upgrading the operator republishes nothing, and editing the ignored spec.owner neither: against
 * the real kube-apiserver and PostgreSQL, a publish recorded under a key an earlier version wrote
 * (the digest that included spec.owner) counts as this spec's publish and is rewritten to the
 * current key.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { GROUP, PLURAL, VERSION, type PublishedRealm } from '../../src/api/v1alpha1/published-realm-types.js';
import { PublishedRealmKube } from '../../src/reconciler/published-realm/kube.js';
import { legacyPublishedForKeys, publishedForKey } from '../../src/reconciler/published-realm/published-for.js';
import { PublishedRealmReconciler } from '../../src/reconciler/published-realm/reconciler.js';
import { kubeRequest } from '../../src/runtime/kube-client.js';
import { installCRD } from '../support/e2e.js';
import { testKubeConfig } from '../support/kube.js';
import { createSourceRealm, openDataPlaneFixture, silentLogger, type DataPlaneFixture } from '../support/realms.js';

const kube = testKubeConfig();
const namespace = `pubfor-${randomBytes(3).toString('hex')}`;
const collection = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}`;
let fixture: DataPlaneFixture;
let reconciler: PublishedRealmReconciler;
let copies = 0;

beforeAll(async () => {
  fixture = await openDataPlaneFixture();
  await installCRD();
  await kubeRequest(kube, { method: 'POST', path: '/api/v1/namespaces', body: { metadata: { name: namespace } } });
  reconciler = new PublishedRealmReconciler({
    kube: new PublishedRealmKube(kube, silentLogger, 'published-for-test'),
    pool: fixture.db.pool,
    layout: fixture.layout,
    logger: silentLogger,
    durable: false,
    ackWaitMs: 1_000,
    onStep: (step) => {
      if (step === 'staged') copies += 1;
    },
  });
}, 60_000);
afterAll(async () => {
  await kubeRequest(kube, { method: 'DELETE', path: `/api/v1/namespaces/${namespace}` }).catch(() => undefined);
  await fixture.close();
});

const read = (name: string) => kubeRequest<PublishedRealm>(kube, { path: `${collection}/${name}` });
const recorded = async (url: string) => (await fixture.db.pool.query<{ published_for: string }>('SELECT published_for FROM realm_operator.realm_epochs WHERE realm_url = $1', [url])).rows[0]?.published_for;

async function reconcileUntilReady(name: string): Promise<PublishedRealm> {
  for (let attempt = 0; ; attempt++) {
    await reconciler.reconcile({ namespace, name });
    const realm = await read(name);
    if (realm.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True') return realm;
    if (attempt > 20) throw new Error(`${name} not Ready: ${JSON.stringify(realm.status)}`);
  }
}

describe('published_for across an upgrade (real API server and PostgreSQL)', () => {
  test('a publish recorded with the old key (spec.owner in the digest) is not republished, the key is rewritten, and editing spec.owner then copies nothing', async () => {
    const source = 'http://localhost:4201/owner/upgraded/';
    const url = 'http://pub.localhost/upgraded/';
    await createSourceRealm(fixture.db.pool, fixture.layout, source, { 'index.json': '{}' });
    const spec = { sourceRealmURL: source, publishedRealmURL: url, revision: '1', owner: 'alice' };
    await kubeRequest(kube, { method: 'POST', path: collection, body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'PublishedRealm', metadata: { name: 'upgraded', namespace }, spec } });
    const published = await reconcileUntilReady('upgraded');
    expect(copies).toBe(1);
    const current = publishedForKey(published, spec);
    expect(await recorded(url)).toBe(current);

    // What the previous version recorded for this spec.
    const [oldKey] = legacyPublishedForKeys(published, spec);
    expect(oldKey).not.toBe(current);
    await fixture.db.pool.query('UPDATE realm_operator.realm_epochs SET published_for = $2 WHERE realm_url = $1', [url, oldKey]);

    await reconcileUntilReady('upgraded');
    expect(copies).toBe(1);
    expect(await recorded(url)).toBe(current);

    await kubeRequest(kube, { method: 'PATCH', path: `${collection}/upgraded`, contentType: 'application/merge-patch+json', body: { spec: { owner: 'bob' } } });
    await reconcileUntilReady('upgraded');
    expect(copies).toBe(1);
    // A real change still publishes.
    await kubeRequest(kube, { method: 'PATCH', path: `${collection}/upgraded`, contentType: 'application/merge-patch+json', body: { spec: { revision: '2' } } });
    await reconcileUntilReady('upgraded');
    expect(copies).toBe(2);
  });
});
