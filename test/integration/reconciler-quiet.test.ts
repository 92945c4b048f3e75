/**
 * The PublishedRealm reconciler in-process (informer → controller with the operator's predicate →
 * reconciler) against the run's real kube-apiserver and PostgreSQL: Stalled objects stay quiet
 * for a minute (a handful of writes and Events, zero copies), suspend/resume publishes nothing,
 * and status says AwaitingAcknowledgement as soon as the publish committed.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { Registry } from 'prom-client';
import { GROUP, PLURAL, VERSION, type PublishedRealm } from '../../src/api/v1alpha1/published-realm-types.js';
import { PublishedRealmKube } from '../../src/reconciler/published-realm/kube.js';
import { PublishedRealmReconciler } from '../../src/reconciler/published-realm/reconciler.js';
import { Controller, type Reconciler } from '../../src/runtime/controller.js';
import type { ObjectReference } from '../../src/runtime/event-recorder.js';
import { Informer } from '../../src/runtime/informer.js';
import { kubeRequest } from '../../src/runtime/kube-client.js';
import { Manager } from '../../src/runtime/manager.js';
import { specOrLifecycleChanged } from '../../src/runtime/predicates.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { installCRD } from '../support/e2e.js';
import { testKubeConfig } from '../support/kube.js';
import { createSourceRealm, eventually, makeRealmsRoot, silentLogger } from '../support/realms.js';

const kube = testKubeConfig();
const namespace = `reconciler-${randomBytes(3).toString('hex')}`;
const collection = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}`;

let db: TestDatabase;
let realms: Awaited<ReturnType<typeof makeRealmsRoot>>;
let stop: () => Promise<void>;
let reconciler: PublishedRealmReconciler;
/** Per PublishedRealm name: update events seen by a watch (every write to the object is one). */
const writes = new Map<string, number>();
/** Per PublishedRealm name: reconciles run. */
const reconciles = new Map<string, number>();
/** Per published URL: how many times a publish finished copying (the `staged` step). */
const copies = new Map<string, number>();

/** The last state of each object the watch delivered, for failure messages. */
const lastSeen = new Map<string, PublishedRealm>();
const bump = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1);

interface EventV1 {
  reason: string;
  type: string;
  note: string;
  action: string;
  regarding: ObjectReference;
  series?: { count: number };
}

async function apply(name: string, spec: Record<string, unknown>): Promise<void> {
  await kubeRequest(kube, { method: 'POST', path: collection, body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'PublishedRealm', metadata: { name, namespace }, spec } });
}

async function patchSpec(name: string, spec: Record<string, unknown>): Promise<void> {
  await kubeRequest(kube, { method: 'PATCH', path: `${collection}/${name}`, contentType: 'application/merge-patch+json', body: { spec } });
}

async function read(name: string): Promise<PublishedRealm> {
  return kubeRequest<PublishedRealm>(kube, { path: `${collection}/${name}` });
}

async function events(name: string): Promise<EventV1[]> {
  const list = await kubeRequest<{ items: EventV1[] }>(kube, { path: `/apis/events.k8s.io/v1/namespaces/${namespace}/events` });
  return list.items.filter((e) => e.regarding.name === name);
}

function ready(realm: PublishedRealm) {
  return realm.status?.conditions?.find((c) => c.type === 'Ready');
}

async function waitForReason(name: string, reason: string, timeoutMs = 30_000): Promise<PublishedRealm> {
  await eventually(async () => ready(await read(name))?.reason === reason, timeoutMs, () => `${name}: Ready reason ${reason} (last seen status ${JSON.stringify(lastSeen.get(name)?.status)})`);
  return read(name);
}

async function epochOf(url: string): Promise<number> {
  const { rows } = await db.pool.query('SELECT epoch FROM realm_operator.realm_epochs WHERE realm_url = $1', [url]);
  return Number(rows[0]?.epoch ?? 0);
}

async function reindexJobs(url: string): Promise<number> {
  const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM jobs WHERE concurrency_group = $1', [`indexing:${url}`]);
  return rows[0].n as number;
}

beforeAll(async () => {
  db = await createTestDatabase();
  realms = await makeRealmsRoot();
  await installCRD();
  await kubeRequest(kube, { method: 'POST', path: '/api/v1/namespaces', body: { metadata: { name: namespace } } });

  const registry = new Registry();
  const informer = new Informer<PublishedRealm & { metadata: { name: string; namespace: string } }>({
    kubeConfig: kube,
    resource: { group: GROUP, version: VERSION, plural: PLURAL },
    namespace,
    name: PLURAL,
    logger: silentLogger,
    metricsRegistry: registry,
  });
  informer.addEventHandler({
    onUpdate: (_old, object) => {
      bump(writes, object.metadata.name);
      lastSeen.set(object.metadata.name, object);
    },
  });
  reconciler = new PublishedRealmReconciler({
    kube: new PublishedRealmKube(kube, silentLogger, 'reconciler-test'),
    pool: db.pool,
    layout: realms.layout,
    logger: silentLogger,
    durable: false,
    // Long enough that a status still saying Publishing during the wait would be seen.
    ackWaitMs: 60_000,
    ackRequeueMs: 500,
    // The production default: what a Stalled object's re-checks look like for real.
    stalledRetryMs: 30_000,
    realmLimits: { maxFiles: 5 },
    onStep: (step, url) => {
      if (step === 'staged') bump(copies, url);
    },
  });
  const counting: Reconciler = {
    reconcile: (key, signal) => {
      bump(reconciles, key.name);
      return reconciler.reconcile(key, signal);
    },
  };
  const controller = new Controller({
    name: 'publishedrealm',
    reconciler: counting,
    source: informer,
    predicates: [specOrLifecycleChanged()],
    resyncPeriodMs: 0,
    logger: silentLogger,
    metricsRegistry: registry,
  });
  const manager = new Manager({ server: false, logger: silentLogger, metricsRegistry: registry }).add(informer).add(controller);
  const abort = new AbortController();
  const running = manager.start(abort.signal);
  stop = async () => {
    abort.abort();
    await running;
  };
}, 60_000);

afterAll(async () => {
  await stop?.();
  await kubeRequest(kube, { method: 'DELETE', path: `/api/v1/namespaces/${namespace}` }).catch(() => undefined);
  await db?.drop();
  await realms?.cleanup();
});

describe('PublishedRealm reconciler (real API server and PostgreSQL)', () => {
  const source = 'http://localhost:4201/quiet/src/';
  const published = 'http://pub.localhost/quiet/src/';

  test('publishes: one ContentPublished Event with correct plurals (Ready, reached in the same reconcile, gets none of its own), then Ready with its own reason', async () => {
    await createSourceRealm(db.pool, realms.layout, source, { 'index.json': '{}' });
    await apply('first', { sourceRealmURL: source, publishedRealmURL: published, revision: '1' });
    const realm = await waitForReason('first', 'PublishedNotifyOnly');
    expect(ready(realm)?.message).toContain('(1 file)');
    await eventually(async () => (await events('first')).some((e) => e.reason === 'ReindexEnqueued'), 10_000, () => 'the reindex Event');
    const recorded = await events('first');
    const published1 = recorded.find((e) => e.reason === 'ContentPublished');
    expect(published1).toMatchObject({ type: 'Normal', action: 'Publish' });
    expect(published1!.note).toMatch(/^Published 1 file \(2 bytes\) at epoch \d+/);
    expect(recorded.map((e) => e.reason).sort()).toEqual(['ContentPublished', 'ReindexEnqueued']);
    expect(copies.get(published)).toBe(1);
  });

  test('Stalled objects (missing source, URL taken, URL nested in a realm, realm too large) for 60 s: a handful of writes and Events, zero copies', async () => {
    const copiesBefore = copies.get(published) ?? 0;
    const bigSource = 'http://localhost:4201/quiet/big/';
    await createSourceRealm(db.pool, realms.layout, bigSource, Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`f${i}.txt`, 'x'])));
    const stalled = {
      'missing-source': { spec: { sourceRealmURL: 'http://localhost:4201/quiet/nowhere/', publishedRealmURL: 'http://pub.localhost/quiet/missing/' }, reason: 'SourceRealmUnavailable' },
      duplicate: { spec: { sourceRealmURL: source, publishedRealmURL: published }, reason: 'URLAlreadyPublished' },
      // Inside the source realm's URL: replicas would route its paths to either realm.
      nested: { spec: { sourceRealmURL: bigSource, publishedRealmURL: `${source}nested/` }, reason: 'URLOverlapsRealm' },
      'too-large': { spec: { sourceRealmURL: bigSource, publishedRealmURL: 'http://pub.localhost/quiet/big/' }, reason: 'RealmTooLarge' },
    };
    for (const [name, { spec }] of Object.entries(stalled)) await apply(name, spec);
    const started = performance.now();
    const firstStatus = new Map<string, PublishedRealm>();
    for (const [name, { reason }] of Object.entries(stalled)) {
      const realm = await waitForReason(name, reason);
      expect(realm.status?.conditions?.map((c) => [c.type, c.status, c.reason])).toEqual([
        ['Ready', 'False', reason],
        ['Stalled', 'True', reason],
      ]);
      firstStatus.set(name, realm);
    }
    expect(ready(firstStatus.get('duplicate')!)?.message).toContain('is already published by');
    expect(ready(firstStatus.get('too-large')!)?.message).toContain('--max-realm-files');
    // Stay Stalled for a minute.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, 60_000 - (performance.now() - started))));

    for (const [name, { spec, reason }] of Object.entries(stalled)) {
      const seen = await events(name);
      const occurrences = seen.reduce((sum, e) => sum + (e.series?.count ?? 1), 0);
      process.stderr.write(`${name}: ${writes.get(name)} writes, ${reconciles.get(name)} reconciles, events ${JSON.stringify(seen.map((e) => [e.reason, e.series?.count ?? 1]))}\n`);
      // Writes: the one Stalled status (no finalizer: refused before it held the URL's claim). Before the fix: hundreds.
      expect({ name, writes: writes.get(name) }).toEqual({ name, writes: 1 });
      // One Warning Event, once.
      expect({ name, events: seen.map((e) => [e.type, e.reason]), occurrences }).toEqual({ name, events: [['Warning', reason]], occurrences: 1 });
      // Created, its status update, one re-check at 30 s (the next is due at 90 s).
      expect(reconciles.get(name)).toBeLessThanOrEqual(4);
      expect((await read(name)).status).toEqual(firstStatus.get(name)!.status);
      if (spec.publishedRealmURL !== published) expect({ name, copies: copies.get(spec.publishedRealmURL) ?? 0 }).toEqual({ name, copies: 0 });
    }
    expect(copies.get(published) ?? 0).toBe(copiesBefore);
  }, 150_000);

  test('suspend says Suspended; resuming publishes nothing (no new epoch, no new reindex job, no copy)', async () => {
    const epoch = await epochOf(published);
    const jobs = await reindexJobs(published);
    const copied = copies.get(published);
    await patchSpec('first', { suspend: true });
    const suspended = await waitForReason('first', 'Suspended');
    expect(suspended.status?.conditions).toEqual([
      expect.objectContaining({ type: 'Ready', status: 'False', reason: 'Suspended', observedGeneration: suspended.metadata.generation, message: expect.stringContaining('spec.suspend is true') }),
    ]);
    await patchSpec('first', { suspend: false });
    await eventually(async () => {
      const realm = await read('first');
      return ready(realm)?.status === 'True' && realm.status?.observedGeneration === realm.metadata.generation;
    }, 30_000, () => 'Ready again after resume');
    expect(await epochOf(published)).toBe(epoch);
    expect(await reindexJobs(published)).toBe(jobs);
    expect(copies.get(published)).toBe(copied);
    expect((await events('first')).filter((e) => e.reason === 'ContentRepublished')).toEqual([]);
    // A real change still republishes.
    await patchSpec('first', { revision: '2' });
    await eventually(async () => (await epochOf(published)) > epoch, 30_000, () => 'republish for revision 2');
    // Ready's reason was PublishedNotifyOnly before the change too: wait for this generation's Ready.
    await eventually(async () => {
      const realm = await read('first');
      return ready(realm)?.reason === 'PublishedNotifyOnly' && realm.status?.observedGeneration === realm.metadata.generation;
    }, 30_000, () => 'Ready for revision 2');
    // The Event is sent by the recorder's queue, not before the status write returns.
    const republished = async () => (await events('first')).filter((e) => e.reason === 'ContentRepublished');
    await eventually(async () => (await republished()).length > 0, 10_000, () => 'a ContentRepublished Event');
    expect(await republished()).toHaveLength(1);
  });

  test('a publish recorded the old way (<uid>/<generation>) counts as published: reconciling it again copies nothing', async () => {
    const realm = await read('first');
    const epoch = await epochOf(published);
    const copied = copies.get(published);
    await db.pool.query('UPDATE realm_operator.realm_epochs SET published_for = $2 WHERE realm_url = $1', [published, `${realm.metadata.uid}/${realm.metadata.generation}`]);
    // What a restart of an older operator's deployment does: reconcile every object once.
    await reconciler.reconcile({ namespace, name: 'first' });
    expect(await epochOf(published)).toBe(epoch);
    expect(copies.get(published)).toBe(copied);
    expect(ready(await read('first'))?.status).toBe('True');
  });

  test('status says AwaitingAcknowledgement from the moment the publish committed', async () => {
    const src = 'http://localhost:4201/quiet/acks/';
    const url = 'http://pub.localhost/quiet/acks/';
    await createSourceRealm(db.pool, realms.layout, src, { 'a.txt': 'a', 'b.txt': 'b' });
    // A live replica that never acknowledges: the reconcile waits up to ackWaitMs (60 s) for it.
    await db.pool.query(
      `INSERT INTO realm_operator.replicas (replica_id, lease_expires_at, lease_duration_ms) VALUES ('stuck-replica', now() + interval '5 minutes', 300000)`,
    );
    try {
      await apply('awaiting', { sourceRealmURL: src, publishedRealmURL: url });
      const realm = await waitForReason('awaiting', 'AwaitingAcknowledgement', 20_000);
      expect(realm.status?.epoch).toBe(await epochOf(url));
      expect(realm.status?.fileCount).toBe(2);
      expect(ready(realm)?.message).toMatch(/^Published epoch \d+ \(2 files \(2 bytes\)\); waiting for every live replica to acknowledge it\.$/);
      expect(realm.status?.conditions?.map((c) => [c.type, c.reason])).toEqual([
        ['Ready', 'AwaitingAcknowledgement'],
        ['Reconciling', 'AwaitingAcknowledgement'],
      ]);
    } finally {
      await db.pool.query(`DELETE FROM realm_operator.replicas WHERE replica_id = 'stuck-replica'`);
    }
    await waitForReason('awaiting', 'PublishedNotifyOnly', 30_000);
  });
});
