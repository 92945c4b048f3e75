/**
 * What one reconcile costs PostgreSQL, counted on a real database through the reconciler against
 * a real kube-apiserver (bench-scale's statements per object come from here): a new object's
 * publish, and a resync of one already published, with Boxel's authorization rules on. The status
 * written from what the publish returned must equal what reading the rows after it gives.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { GROUP, PLURAL, VERSION, type PublishedRealm } from '../../src/api/v1alpha1/published-realm-types.js';
import { readKeptVersions } from '../../src/dataplane/published-versions.js';
import { readRealmEpochRow } from '../../src/dataplane/realm-state.js';
import { PublishedRealmKube } from '../../src/reconciler/published-realm/kube.js';
import { PublishedRealmReconciler } from '../../src/reconciler/published-realm/reconciler.js';
import { kubeRequest } from '../../src/runtime/kube-client.js';
import { countingPool, type CountingPool } from '../support/counting-pool.js';
import { testKubeConfig } from '../support/kube.js';
import { setUpReconcilerSuite, tearDownReconcilerSuite, type ReconcilerSuite } from '../support/reconciler-suite.js';
import { createSourceRealm, silentLogger } from '../support/realms.js';

const kube = testKubeConfig();
const namespace = `statements-${randomBytes(3).toString('hex')}`;
const collection = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}`;
let suite: ReconcilerSuite;
let counting: CountingPool;

beforeAll(async () => {
  suite = await setUpReconcilerSuite(namespace);
  counting = countingPool(suite.db.url, 8);
}, 60_000);
afterAll(async () => {
  await counting?.pool.end();
  await tearDownReconcilerSuite(namespace, suite);
});

/** The acknowledgement wait's own reads (the shared waiter's LISTEN and status query) are counted apart: they are the waiter's, not the publish's. */
const isAckWait = (text: string) => /^(UN)?LISTEN\b/.test(text) || /\bw\.i\b/.test(text);
const publishStatements = () => counting.texts().filter((text) => !isAckWait(text));

describe('statements per reconcile (real API server, real PostgreSQL)', () => {
  test("a new object's publish: the checks, epoch row and authorization facts in one read; the claim; the publish; no read after it", async () => {
    const name = 'fresh';
    const source = `http://localhost:4201/statements/${name}/`;
    const published = `http://pub.localhost/statements/${namespace}/${name}/`;
    await createSourceRealm(suite.db.pool, suite.realms.layout, source, { 'index.json': '{}' }, `statements/${name}`);
    await kubeRequest(kube, {
      method: 'POST',
      path: collection,
      body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'PublishedRealm', metadata: { name, namespace }, spec: { sourceRealmURL: source, publishedRealmURL: published, reindex: { enabled: false } } },
    });
    const reconciler = new PublishedRealmReconciler({
      kube: new PublishedRealmKube(kube, silentLogger, 'statements-test'),
      pool: counting.pool,
      layout: suite.realms.layout,
      logger: silentLogger,
      durable: false,
      ackWaitMs: 2_000,
      publishingWriteAfterMs: 600_000,
      authorization: { publishedRealmDomains: [] },
    });
    try {
      counting.reset();
      expect(await reconciler.reconcile({ namespace, name })).toEqual({});
      // The first read 1; the claim 2 (BEGIN, the lock and the locked rows read and written in one
      // round trip; COMMIT); the staging guard 2; the publish transaction 6 (lock with the checks' rows
      // and the locked epoch row in one round trip; Boxel's tables; the swap, then the definitions
      // cleared; epoch with kept version; wildcard NOTIFY; COMMIT). Was 17: the epoch row and the
      // checks read apart, the claim's read and write apart, and the epoch row and kept versions read
      // again after the publish.
      expect(publishStatements()).toHaveLength(11);

      // Status says what a read of the rows says now.
      const realm = await kubeRequest<PublishedRealm>(kube, { path: `${collection}/${name}` });
      const row = await readRealmEpochRow(suite.db.pool, published);
      const kept = await readKeptVersions(suite.db.pool, published, row!.disk_id!);
      expect(realm.status).toMatchObject({ epoch: Number(row!.epoch), diskId: row!.disk_id, liveVersion: row!.content_version, publishedAt: row!.published_at!.toISOString() });
      expect(realm.status?.versions).toEqual(
        kept.map((v) => ({ version: v.version, epoch: v.epoch, digest: v.digest, fileCount: v.fileCount, totalBytes: v.totalBytes, publishedAt: v.publishedAt.toISOString(), live: true })),
      );

      // A resync of the published object: one statement (the re-authorization shares the first read).
      counting.reset();
      expect(await reconciler.reconcile({ namespace, name })).toEqual({});
      expect(publishStatements()).toHaveLength(1);
    } finally {
      reconciler.close();
    }
  });
});
