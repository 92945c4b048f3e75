/**
 * Deleting a Realm with three realms published from it, end to end: the operator as a process
 * (REALM_SERVER_URL as the default server), two realm-server replicas as processes reading
 * continuously, a real kube-apiserver and PostgreSQL. The PublishedRealms name their source by
 * sourceRealmRef. After the Realm object is gone (its finalizer released), no replica serves any
 * of the four realms' content: 0 stale reads; every replica had acknowledged each removal's epoch;
 * Boxel's end state (no rows, no files); the PublishedRealms go Stalled and publish nothing again.
 */
import http from 'node:http';
import path from 'node:path';
import { GROUP, PLURAL } from '../../src/api/v1alpha1/published-realm-types.js';
import { REALM_PLURAL } from '../../src/api/v1alpha1/realm-types.js';
import { must, setUpE2E, type E2EEnvironment } from '../support/e2e.js';
import { startOperator, waitForHTTP, type OperatorProcess } from '../support/operator-process.js';
import { startRealmServer, type RealmServerProcess } from '../support/realm-server-process.js';
import { eventually, writeFiles } from '../support/realms.js';

const SERVER = 'http://realms.localhost/';
const SOURCE = `${SERVER}alice/site/`;
const PUBLISHED = ['http://pub-1.localhost/', 'http://pub-2.localhost/', 'http://pub-3.localhost/'];
const REALM_CRD_FILE = path.resolve(import.meta.dirname, '../../crds', `${GROUP}_${REALM_PLURAL}.yaml`);

let env: E2EEnvironment;
let operator: OperatorProcess;
const replicas: RealmServerProcess[] = [];

interface Read {
  replica: string;
  realm: string;
  startedAt: number;
  status: number;
  body: string;
}

function get(port: number, url: string): Promise<{ status: number; body: string }> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: target.pathname, headers: { host: target.host } }, (res) => {
      let body = '';
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function kubeGet(resource: string, name: string): Promise<Record<string, any> | undefined> {
  return must(['get', resource, name, '-n', env.namespace, '-o', 'json', '--ignore-not-found']).then((out) => (out.trim() ? JSON.parse(out) : undefined));
}

const readyOf = (object: Record<string, any> | undefined) => object?.status?.conditions?.find((c: { type: string }) => c.type === 'Ready');

beforeAll(async () => {
  env = await setUpE2E('realm-del');
  await must(['apply', '--server-side', '-f', REALM_CRD_FILE]);
  await must(['wait', '--for=condition=Established', `crd/${REALM_PLURAL}.${GROUP}`, '--timeout=30s']);
  for (const id of ['replica-a', 'replica-b']) {
    const replica = await startRealmServer({ databaseURL: env.db.url, realmsRoot: env.realms.root, replicaId: id, extraArgs: ['--serve-source-realms'] });
    replicas.push(replica);
    await replica.waitReady();
  }
  operator = await startOperator({
    databaseURL: env.db.url,
    realmsRoot: env.realms.root,
    identity: 'realm-del-operator',
    leaderElectionNamespace: env.leaseNamespace,
    namespace: env.namespace,
    extraArgs: ['--stalled-retry', '1s'],
    env: { REALM_SERVER_URL: SERVER },
  });
  await waitForHTTP(operator, `${operator.healthURL}/readyz`);
}, 120_000);

afterAll(async () => {
  await operator?.stop();
  await Promise.all(replicas.map((r) => r.stop()));
  await env?.cleanup();
});

test('deleting a Realm with three published realms: Boxel\'s end state, every replica acknowledged, 0 stale reads', async () => {
  await must(['apply', '-f', '-'], JSON.stringify({ apiVersion: `${GROUP}/v1alpha1`, kind: 'Realm', metadata: { name: 'site', namespace: env.namespace }, spec: { owner: '@alice:localhost', endpoint: 'site' } }));
  await eventually(async () => readyOf(await kubeGet(`${REALM_PLURAL}.${GROUP}`, 'site'))?.status === 'True', 60_000, () => 'Realm site Ready');
  const sourceDir = path.join(env.realms.root, 'alice', 'site');
  await writeFiles(sourceDir, { 'page.json': '{"title":"published"}' });

  for (const [i, url] of PUBLISHED.entries()) {
    await must(['apply', '-f', '-'], JSON.stringify({
      apiVersion: `${GROUP}/v1alpha1`,
      kind: 'PublishedRealm',
      metadata: { name: `pub-${i + 1}`, namespace: env.namespace },
      spec: { sourceRealmRef: { name: 'site' }, publishedRealmURL: url },
    }));
  }
  for (let i = 1; i <= 3; i++) {
    await eventually(async () => readyOf(await kubeGet(`${PLURAL}.${GROUP}`, `pub-${i}`))?.status === 'True', 90_000, () => `PublishedRealm pub-${i} Ready`);
  }
  const realms = [...PUBLISHED, SOURCE];
  // Every replica serves (and caches) every realm's page before the delete.
  for (const replica of replicas) {
    for (const url of realms) expect(await get(replica.port, `${url}page.json`)).toEqual({ status: 200, body: '{"title":"published"}' });
  }

  // A reader per replica and realm, reading until told to stop.
  const reads: Read[] = [];
  let reading = true;
  const readers = replicas.flatMap((replica) =>
    realms.map(async (url) => {
      while (reading) {
        const startedAt = Date.now();
        const { status, body } = await get(replica.port, `${url}page.json`).catch((error: Error) => ({ status: -1, body: error.message }));
        reads.push({ replica: replica.replicaId, realm: url, startedAt, status, body });
        await new Promise((r) => setTimeout(r, 5));
      }
    }),
  );

  await must(['delete', `${REALM_PLURAL}.${GROUP}`, 'site', '-n', env.namespace, '--wait=false']);
  await eventually(async () => (await kubeGet(`${REALM_PLURAL}.${GROUP}`, 'site')) === undefined, 90_000, () => 'the Realm object gone (finalizer released)');
  const goneAt = Date.now();
  // Read on for a while after the release: every one of these must miss.
  await eventually(() => reads.filter((r) => r.startedAt > goneAt).length >= 200, 30_000, () => '200 reads after the release');
  reading = false;
  await Promise.all(readers);

  const afterRelease = reads.filter((r) => r.startedAt > goneAt);
  const stale = afterRelease.filter((r) => r.status === 200);
  expect(stale).toEqual([]);
  expect(new Set(afterRelease.map((r) => `${r.replica} ${r.realm}`)).size).toBe(replicas.length * realms.length);
  expect(reads.some((r) => r.startedAt <= goneAt && r.status === 200)).toBe(true);

  // Each removal's epoch was acknowledged by both replicas.
  const { rows } = await env.db.pool.query<{ realm_url: string; replica_id: string; acked: boolean }>(
    `SELECT e.realm_url, r.replica_id, COALESCE(a.epoch, 0) >= e.epoch OR COALESCE(r.cache_started_epoch, 0) >= e.epoch AS acked
       FROM realm_operator.realm_epochs e CROSS JOIN realm_operator.replicas r
       LEFT JOIN realm_operator.replica_acks a ON a.realm_url = e.realm_url AND a.replica_id = r.replica_id
      WHERE e.realm_url = ANY($1) ORDER BY 1, 2`,
    [realms],
  );
  expect(rows).toHaveLength(realms.length * replicas.length);
  expect(rows.filter((r) => !r.acked)).toEqual([]);
  // ... and before the finalizer was released: no acknowledgement of these epochs came after it.
  const late = await env.db.pool.query(
    `SELECT a.realm_url, a.replica_id FROM realm_operator.replica_acks a JOIN realm_operator.realm_epochs e ON e.realm_url = a.realm_url
      WHERE a.realm_url = ANY($1) AND a.epoch >= e.epoch AND a.acked_at > to_timestamp($2 / 1000.0)`,
    [realms, goneAt],
  );
  expect(late.rows).toEqual([]);

  // Boxel's end state.
  for (const table of ['realm_registry WHERE url', 'realm_user_permissions WHERE realm_url', 'realm_metadata WHERE url', 'boxel_index WHERE realm_url']) {
    expect((await env.db.pool.query(`SELECT 1 FROM ${table} = ANY($1)`, [realms])).rowCount).toBe(0);
  }

  // The PublishedRealms stall on the missing Realm and publish nothing again.
  for (let i = 1; i <= 3; i++) {
    await eventually(
      async () => (await kubeGet(`${PLURAL}.${GROUP}`, `pub-${i}`))?.status?.conditions?.some((c: { type: string; reason: string }) => c.type === 'Stalled' && c.reason.startsWith('SourceRealm')) ?? false,
      60_000,
      () => `PublishedRealm pub-${i} Stalled on its deleted Realm`,
    );
  }
  expect((await env.db.pool.query(`SELECT 1 FROM realm_registry WHERE url = ANY($1)`, [realms])).rowCount).toBe(0);
  for (const replica of replicas) for (const url of realms) expect((await get(replica.port, `${url}page.json`)).status).not.toBe(200);
}, 300_000);
