/**
 * What a publish costs the API server, through the reconciler against a real kube-apiserver and
 * PostgreSQL: the status writes and Events of one publish. A publish done within
 * `publishingWriteAfterMs` goes from the CRD's default status straight to Ready (one status PUT,
 * one finalizer PATCH, one Event); one still running then says Publishing meanwhile (no Event for
 * it); a Ready that comes in a later reconcile (the acknowledgements outlasted the first) gets its
 * own transition Event beside the publish's.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { GROUP, PLURAL, VERSION, type PublishedRealm } from '../../src/api/v1alpha1/published-realm-types.js';
import type { DataPlane } from '../../src/dataplane/publish.js';
import { readRealmEpochRow } from '../../src/dataplane/realm-state.js';
import { recordAck } from '../../src/listener/replica-registry.js';
import type { EventType, ObjectKey } from '../../src/reconciler/published-realm/kube.js';
import { PublishedRealmReconciler, type PublishedRealmReconcilerOptions } from '../../src/reconciler/published-realm/reconciler.js';
import { kubeRequest } from '../../src/runtime/kube-client.js';
import type { TestDatabase } from '../support/database.js';
import { testKubeConfig } from '../support/kube.js';
import { setUpReconcilerSuite, StatusRecordingKube, tearDownReconcilerSuite } from '../support/reconciler-suite.js';
import { createSourceRealm, eventually, makeRealmsRoot, silentLogger } from '../support/realms.js';

const kube = testKubeConfig();
const namespace = `status-writes-${randomBytes(3).toString('hex')}`;
const collection = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}`;
let db: TestDatabase;
let realms: Awaited<ReturnType<typeof makeRealmsRoot>>;

/** The reconciler's Kubernetes client, counting what it sends: status PUTs (by Ready reason), finalizer PATCHes, Events. */
class CountingKube extends StatusRecordingKube {
  readonly recorded: Array<{ type: EventType; reason: string }> = [];
  finalizerPatches = 0;

  get statusWrites(): string[] {
    return this.written.map((realm) => realm.status?.conditions?.find((c) => c.type === 'Ready')?.reason ?? '(none)');
  }

  override async setFinalizer(realm: PublishedRealm, finalizer: string, present: boolean): Promise<PublishedRealm | undefined> {
    const patched = await super.setFinalizer(realm, finalizer, present);
    if (patched) this.finalizerPatches += 1;
    return patched;
  }

  override async recordEvent(realm: PublishedRealm, type: EventType, reason: string, action: string, note: string): Promise<void> {
    this.recorded.push({ type, reason });
    await super.recordEvent(realm, type, reason, action, note);
  }
}

beforeAll(async () => ({ db, realms } = await setUpReconcilerSuite(namespace)));
afterAll(() => tearDownReconcilerSuite(namespace, db && realms ? { db, realms } : undefined));

async function createObject(name: string): Promise<{ key: ObjectKey; published: string }> {
  const source = `http://localhost:4201/status-writes/${name}/`;
  const published = `http://pub.localhost/status-writes/${namespace}/${name}/`;
  await createSourceRealm(db.pool, realms.layout, source, { 'index.json': `{"name":"${name}"}` }, `status-writes/${name}`);
  await kubeRequest(kube, {
    method: 'POST',
    path: collection,
    body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'PublishedRealm', metadata: { name, namespace }, spec: { sourceRealmURL: source, publishedRealmURL: published, reindex: { enabled: false } } },
  });
  return { key: { namespace, name }, published };
}

const readObject = (name: string) => kubeRequest<PublishedRealm>(kube, { path: `${collection}/${name}` });
const readyOf = (realm: PublishedRealm) => realm.status?.conditions?.find((c) => c.type === 'Ready');

function reconcilerWith(counting: CountingKube, options: Partial<PublishedRealmReconcilerOptions>): PublishedRealmReconciler {
  return new PublishedRealmReconciler({ kube: counting, pool: db.pool, layout: realms.layout, logger: silentLogger, durable: false, ackWaitMs: 2_000, ackRequeueMs: 1_000, ...options });
}

describe('status writes and Events per publish', () => {
  test('a publish done within publishingWriteAfterMs: one finalizer PATCH, one status PUT (Ready), one Event (ContentPublished)', async () => {
    const { key } = await createObject('fast');
    expect(readyOf(await readObject('fast'))).toBeUndefined(); // the CRD's default status: observedGeneration 0
    const counting = new CountingKube(kube, silentLogger, 'status-writes-test');
    // Far longer than any publish of one file takes: the in-progress status is never due.
    const reconciler = reconcilerWith(counting, { publishingWriteAfterMs: 600_000 });
    try {
      expect(await reconciler.reconcile(key)).toEqual({});
    } finally {
      reconciler.close();
    }
    expect(counting.statusWrites).toEqual(['PublishedNotifyOnly']);
    expect(counting.finalizerPatches).toBe(1);
    expect(counting.recorded).toEqual([{ type: 'Normal', reason: 'ContentPublished' }]);
    const realm = await readObject('fast');
    expect(readyOf(realm)).toMatchObject({ status: 'True', reason: 'PublishedNotifyOnly', observedGeneration: realm.metadata.generation });
    expect(realm.status?.observedGeneration).toBe(realm.metadata.generation);
  });

  test('a publish still running after publishingWriteAfterMs says Publishing meanwhile (no Event for it), then Ready', async () => {
    const { key, published } = await createObject('slow');
    const counting = new CountingKube(kube, silentLogger, 'status-writes-test');
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    // The publish waits after staging until the test saw Publishing on the API server.
    const onStep: DataPlane['onStep'] = async (step, url) => {
      if (step === 'staged' && url === published) await held;
    };
    const reconciler = reconcilerWith(counting, { publishingWriteAfterMs: 1, onStep });
    try {
      const reconciling = reconciler.reconcile(key);
      await eventually(async () => readyOf(await readObject('slow'))?.reason === 'Publishing', 20_000, () => 'Publishing while the publish is held');
      const during = await readObject('slow');
      expect(during.status?.conditions?.map((c) => [c.type, c.status, c.reason])).toEqual([
        ['Ready', 'False', 'Publishing'],
        ['Reconciling', 'True', 'Publishing'],
      ]);
      expect((await readRealmEpochRow(db.pool, published))?.content_version ?? null).toBeNull();
      release();
      expect(await reconciling).toEqual({});
    } finally {
      release();
      reconciler.close();
    }
    expect(counting.statusWrites).toEqual(['Publishing', 'PublishedNotifyOnly']);
    expect(counting.recorded).toEqual([{ type: 'Normal', reason: 'ContentPublished' }]);
  });

  test('a Ready reached in a later reconcile (acknowledgements outlasted the publishing one) gets its own transition Event', async () => {
    const replica = `status-writes-replica-${namespace}`;
    await db.pool.query(
      `INSERT INTO realm_operator.replicas (replica_id, lease_expires_at, lease_duration_ms, cache_started_epoch) VALUES ($1, now() + interval '10 minutes', 600000, 0)`,
      [replica],
    );
    try {
      const { key, published } = await createObject('acked-later');
      const counting = new CountingKube(kube, silentLogger, 'status-writes-test');
      const reconciler = reconcilerWith(counting, { ackWaitMs: 200, ackRequeueMs: 60_000 });
      try {
        expect(await reconciler.reconcile(key)).toEqual({ requeueAfterMs: 60_000 });
        expect(readyOf(await readObject('acked-later'))?.reason).toBe('AwaitingAcknowledgement');
        const row = await readRealmEpochRow(db.pool, published);
        await recordAck(db.pool, replica, published, Number(row!.epoch));
        expect(await reconciler.reconcile(key)).toEqual({});
      } finally {
        reconciler.close();
      }
      expect(readyOf(await readObject('acked-later'))).toMatchObject({ status: 'True', reason: 'Published' });
      expect(counting.recorded).toEqual([
        { type: 'Normal', reason: 'ContentPublished' },
        { type: 'Normal', reason: 'Published' },
      ]);
    } finally {
      await db.pool.query('DELETE FROM realm_operator.replicas WHERE replica_id = $1', [replica]);
    }
  });
});
