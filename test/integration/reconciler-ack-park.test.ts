/**
 * A publish whose replicas have not acknowledged yet does not keep its worker: the reconcile
 * returns AwaitingAcknowledgement after a short in-worker wait, the wait goes on parked, and the
 * key is enqueued again (`wake`) the moment the last replica acknowledges. Real kube-apiserver
 * and PostgreSQL; the replica is a registered row that acknowledges when the test says so.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { GROUP, PLURAL, VERSION, type PublishedRealm } from '../../src/api/v1alpha1/published-realm-types.js';
import { recordAck } from '../../src/listener/replica-registry.js';
import { PublishedRealmKube } from '../../src/reconciler/published-realm/kube.js';
import { PublishedRealmReconciler } from '../../src/reconciler/published-realm/reconciler.js';
import { kubeRequest } from '../../src/runtime/kube-client.js';
import type { ObjectKey } from '../../src/runtime/object-key.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { installCRD } from '../support/e2e.js';
import { testKubeConfig } from '../support/kube.js';
import { createSourceRealm, eventually, makeRealmsRoot, silentLogger } from '../support/realms.js';

const kube = testKubeConfig();
const namespace = `ack-park-${randomBytes(3).toString('hex')}`;
const collection = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}`;
const source = 'http://localhost:4201/park/src/';
const published = 'http://pub.localhost/park/';
let db: TestDatabase;
let realms: Awaited<ReturnType<typeof makeRealmsRoot>>;

beforeAll(async () => {
  db = await createTestDatabase();
  realms = await makeRealmsRoot();
  await installCRD();
  await kubeRequest(kube, { method: 'POST', path: '/api/v1/namespaces', body: { metadata: { name: namespace } } });
  await createSourceRealm(db.pool, realms.layout, source, { 'index.json': '{}' }, 'park/src');
  await db.pool.query(
    `INSERT INTO realm_operator.replicas (replica_id, lease_expires_at, lease_duration_ms, cache_started_epoch)
     VALUES ('silent-replica', now() + interval '10 minutes', 600000, 0)`,
  );
});

afterAll(async () => {
  await kubeRequest(kube, { method: 'DELETE', path: `/api/v1/namespaces/${namespace}` }).catch(() => undefined);
  await db.drop();
  await realms.cleanup();
});

test('an unacknowledged publish frees its worker, and the acknowledgement wakes its key', async () => {
  await kubeRequest(kube, {
    method: 'POST',
    path: collection,
    body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'PublishedRealm', metadata: { name: 'parked', namespace }, spec: { sourceRealmURL: source, publishedRealmURL: published, reindex: { enabled: false } } },
  });
  const woken: ObjectKey[] = [];
  const reconciler = new PublishedRealmReconciler({
    kube: new PublishedRealmKube(kube, silentLogger, 'ack-park-test'),
    pool: db.pool,
    layout: realms.layout,
    logger: silentLogger,
    durable: false,
    authorization: undefined,
    // Far longer than the test's timeout: only parking lets the reconcile return before the ack.
    ackWaitMs: 10 * 60_000,
    ackRequeueMs: 10 * 60_000,
    ackParkAfterMs: 200,
    wake: (key) => woken.push(key),
  });
  try {
    const key = { namespace, name: 'parked' };
    const first = await reconciler.reconcile(key);
    expect(first).toEqual({ requeueAfterMs: 10 * 60_000 });
    const awaiting = await kubeRequest<PublishedRealm>(kube, { path: `${collection}/parked` });
    expect(awaiting.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({ status: 'False', reason: 'AwaitingAcknowledgement' });
    expect(woken).toEqual([]);

    // A second reconcile of the same epoch parks no second wait.
    await reconciler.reconcile(key);
    const { rows } = await db.pool.query<{ epoch: string }>('SELECT epoch FROM realm_operator.realm_epochs WHERE realm_url = $1', [published]);
    await recordAck(db.pool, 'silent-replica', published, Number(rows[0]!.epoch));
    await eventually(() => woken.length > 0, 30_000, () => 'the parked wait to wake the key');
    expect(woken).toEqual([key]);

    await reconciler.reconcile(key);
    const ready = await kubeRequest<PublishedRealm>(kube, { path: `${collection}/parked` });
    expect(ready.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({ status: 'True', reason: 'Published' });
  } finally {
    reconciler.close();
  }
}, 120_000);
