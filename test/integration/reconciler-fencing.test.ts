/**
 * Issue 13 item 2 through the reconciler, real kube-apiserver and PostgreSQL: two operator
 * processes' reconcilers on one object. The old leader is paused mid-publish of generation 1; the
 * new leader publishes generation 2 and reports Ready; the old one resumes. Its publish is
 * refused (the newer generation wins) without an error, a status write or a changed realm. And a
 * reconcile whose signal aborts (leadership lost) stops its publish and writes no status.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { GROUP, PLURAL, VERSION, type PublishedRealm } from '../../src/api/v1alpha1/published-realm-types.js';
import type { DataPlane } from '../../src/dataplane/publish.js';
import { readRealmEpochRow } from '../../src/dataplane/realm-state.js';
import { PublishedRealmKube } from '../../src/reconciler/published-realm/kube.js';
import { PublishedRealmReconciler } from '../../src/reconciler/published-realm/reconciler.js';
import { kubeRequest } from '../../src/runtime/kube-client.js';
import type { TestDatabase } from '../support/database.js';
import { testKubeConfig } from '../support/kube.js';
import { setUpReconcilerSuite, tearDownReconcilerSuite } from '../support/reconciler-suite.js';
import { createSourceRealm, makeRealmsRoot, silentLogger, writeFiles } from '../support/realms.js';

const kube = testKubeConfig();
const namespace = `fencing-${randomBytes(3).toString('hex')}`;
const collection = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}`;
let db: TestDatabase;
let realms: Awaited<ReturnType<typeof makeRealmsRoot>>;

beforeAll(async () => ({ db, realms } = await setUpReconcilerSuite(namespace)));
afterAll(() => tearDownReconcilerSuite(namespace, db && realms ? { db, realms } : undefined));

function reconciler(identity: string, onStep?: DataPlane['onStep']): PublishedRealmReconciler {
  return new PublishedRealmReconciler({
    kube: new PublishedRealmKube(kube, silentLogger, identity),
    pool: db.pool,
    layout: realms.layout,
    logger: silentLogger,
    durable: false,
    ackWaitMs: 2_000,
    ackRequeueMs: 1_000,
    // Publishing written before the publish starts, as these tests compare status around it.
    publishingWriteAfterMs: 0,
    ...(onStep ? { onStep } : {}),
  });
}

async function createObject(name: string, source: string, published: string): Promise<void> {
  await kubeRequest(kube, {
    method: 'POST',
    path: collection,
    body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'PublishedRealm', metadata: { name, namespace }, spec: { sourceRealmURL: source, publishedRealmURL: published, revision: '1', reindex: { enabled: false } } },
  });
}

async function setRevision(name: string, revision: string): Promise<void> {
  await kubeRequest(kube, { method: 'PATCH', path: `${collection}/${name}`, contentType: 'application/merge-patch+json', body: { spec: { revision } } });
}

const readObject = (name: string) => kubeRequest<PublishedRealm>(kube, { path: `${collection}/${name}` });

async function servedIndex(published: string): Promise<string> {
  const row = await readRealmEpochRow(db.pool, published);
  return fs.readFile(path.join(realms.layout.publishedDir(row!.disk_id!), 'index.json'), 'utf8');
}

test('a paused old leader resumes after the new leader\'s Ready: its older generation is not committed, no error, no status write', async () => {
  const source = 'http://localhost:4201/fencing/paused-src/';
  const published = 'http://pub.localhost/fencing/paused/';
  const sourceDir = await createSourceRealm(db.pool, realms.layout, source, { 'index.json': '{"revision":1}' }, 'fencing/paused-src');
  await createObject('paused', source, published);
  const key = { namespace, name: 'paused' };

  let reached!: () => void;
  let resume!: () => void;
  const atReserved = new Promise<void>((resolve) => (reached = resolve));
  const gate = new Promise<void>((resolve) => (resume = resolve));
  const oldLeader = reconciler('old-leader', async (step) => {
    if (step !== 'reserved') return;
    reached();
    await gate;
  });
  const newLeader = reconciler('new-leader');
  try {
    const paused = oldLeader.reconcile(key, new AbortController().signal);
    await atReserved; // generation 1 staged, then the process "pauses"

    await writeFiles(sourceDir, { 'index.json': '{"revision":2}' });
    await setRevision('paused', '2');
    expect(await newLeader.reconcile(key, new AbortController().signal)).toEqual({});
    const ready = await readObject('paused');
    expect(ready.metadata.generation).toBe(2);
    expect(ready.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({ status: 'True', observedGeneration: 2 });
    const readyStatus = JSON.stringify(ready.status);
    expect(await servedIndex(published)).toBe('{"revision":2}');

    resume();
    // Refused under the lock: a requeue, not an error loop.
    expect(await paused).toEqual({ requeueAfterMs: 1_000 });
    expect(await servedIndex(published)).toBe('{"revision":2}');
    expect(await readRealmEpochRow(db.pool, published)).toMatchObject({ published_generation: '2' });
    expect(JSON.stringify((await readObject('paused')).status)).toBe(readyStatus);
  } finally {
    resume();
    oldLeader.close();
    newLeader.close();
  }
}, 120_000);

test('leadership lost mid-publish: the reconcile stops before the swap, throws, and writes no status after the abort', async () => {
  const source = 'http://localhost:4201/fencing/lost-src/';
  const published = 'http://pub.localhost/fencing/lost/';
  await createSourceRealm(db.pool, realms.layout, source, { 'index.json': '{"revision":1}' }, 'fencing/lost-src');
  await createObject('lost', source, published);
  const leadership = new AbortController();
  let statusAtAbort: string | undefined;
  const deposed = reconciler('deposed', async (step) => {
    if (step !== 'locked') return;
    statusAtAbort = JSON.stringify((await readObject('lost')).status);
    leadership.abort(new Error('leader election lost'));
  });
  try {
    await expect(deposed.reconcile({ namespace, name: 'lost' }, leadership.signal)).rejects.toThrow('leader election lost');
    expect(await readRealmEpochRow(db.pool, published)).toMatchObject({ content_version: null });
    // Still "Publishing" as it was when leadership was lost: no PublishFailed written over a new leader's status.
    expect(JSON.stringify((await readObject('lost')).status)).toBe(statusAtAbort);
  } finally {
    deposed.close();
  }
}, 120_000);
