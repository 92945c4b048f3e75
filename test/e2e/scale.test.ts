/**
 * Many PublishedRealms: an operator restart republishes none of them, and the drain on SIGTERM
 * finishes in-flight work and releases the lease. `E2E_SCALE_REALMS` sets the count (default 1,000).
 */
import { GROUP, PLURAL } from '../../src/api/v1alpha1/published-realm-types.js';
import { must, setUpE2E, type E2EEnvironment } from '../support/e2e.js';
import { kubectl } from '../support/kube.js';
import { startOperator, waitForHTTP, type OperatorProcess } from '../support/operator-process.js';
import { createSourceRealm, eventually } from '../support/realms.js';

const COUNT = Number(process.env.E2E_SCALE_REALMS ?? 1000);
let NS: string;
let LEASE_NS: string;
let env: E2EEnvironment;
let db: E2EEnvironment['db'];
let realms: E2EEnvironment['realms'];
let operator: OperatorProcess | undefined;


interface Listed {
  metadata: { name: string; resourceVersion: string };
  status?: { conditions?: Array<{ type: string; status: string }> };
}

async function list(): Promise<Listed[]> {
  return JSON.parse(await must(['get', `${PLURAL}.${GROUP}`, '-n', NS, '-o', 'json'])).items as Listed[];
}

async function readyCount(): Promise<number> {
  return (await list()).filter((i) => i.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')).length;
}

/** name → resourceVersion: any write to an object (status, finalizers) changes it. */
async function versions(): Promise<Map<string, string>> {
  return new Map((await list()).map((i) => [i.metadata.name, i.metadata.resourceVersion]));
}

async function epochs(): Promise<Map<string, string>> {
  const { rows } = await db.pool.query<{ realm_url: string; epoch: string }>(`SELECT realm_url, epoch FROM realm_operator.realm_epochs WHERE realm_url LIKE 'http://pub.localhost/scale/%'`);
  return new Map(rows.map((r) => [r.realm_url, r.epoch]));
}

function start(identity: string): Promise<OperatorProcess> {
  return startOperator({
    databaseURL: db.url,
    realmsRoot: realms.root,
    identity,
    leaderElectionNamespace: LEASE_NS, namespace: NS,
    extraArgs: ['--max-concurrent-reconciles', '8', '--log-level', 'info'],
  });
}

beforeAll(async () => {
  env = await setUpE2E('scale');
  ({ db, realms, namespace: NS, leaseNamespace: LEASE_NS } = env);
});

afterAll(async () => {
  await operator?.stop('SIGKILL');
  await env?.cleanup();
});

test(`an operator restart with ${COUNT} published realms republishes none of them`, async () => {
  const manifests: string[] = [];
  for (let i = 0; i < COUNT; i++) {
    const source = `http://localhost:4201/scale/src-${i}/`;
    await createSourceRealm(db.pool, realms.layout, source, { 'index.json': `{"i":${i}}` }, `scale/src-${i}`);
    manifests.push(
      JSON.stringify({
        apiVersion: `${GROUP}/v1alpha1`,
        kind: 'PublishedRealm',
        metadata: { name: `realm-${i}`, namespace: NS },
        spec: { sourceRealmURL: source, publishedRealmURL: `http://pub.localhost/scale/${i}/`, reindex: { enabled: false } },
      }),
    );
  }
  operator = await start('scale-a');
  await waitForHTTP(operator, `${operator.healthURL}/readyz`);
  const applied = Date.now();
  await must(['apply', '-f', '-'], manifests.join('\n'));
  await eventually(async () => (await readyCount()) === COUNT, 600_000, () => `${COUNT} Ready`);
  process.stderr.write(`scale: ${COUNT} PublishedRealms applied → all Ready in ${Date.now() - applied} ms\n`);
  const before = await epochs();
  expect(before.size).toBe(COUNT);
  const versionsBefore = await versions();
  const publishedBefore = operator.logs().filter((l) => l.msg === 'published realm').length;
  expect(publishedBefore).toBe(COUNT);

  // Graceful stop: exit 0 and the lease released for the successor.
  const stopped = await operator.stop('SIGTERM');
  expect(stopped).toEqual({ code: 0, signal: null });
  const holder = await kubectl(['get', 'lease', 'realm-operator-leader', '-n', LEASE_NS, '-o', 'jsonpath={.spec.holderIdentity}']);
  expect(holder.stdout.trim()).toBe('');

  const restarted = Date.now();
  operator = await start('scale-b');
  await waitForHTTP(operator, `${operator.healthURL}/readyz`);
  // Every object is reconciled once after the restart (the informer's initial list enqueues all).
  await eventually(async () => {
    const res = await fetch(`${operator!.metricsURL}/metrics`).then((r) => r.text());
    const match = /controller_runtime_reconcile_total\{controller="publishedrealm",result="success"\} (\d+)/.exec(res);
    return Number(match?.[1] ?? 0) >= COUNT;
  }, 300_000, () => `${COUNT} reconciles after the restart`);
  process.stderr.write(`scale: restart → ${COUNT} objects re-verified in ${Date.now() - restarted} ms\n`);
  expect(operator.logs().filter((l) => l.msg === 'published realm')).toHaveLength(0);
  expect(await epochs()).toEqual(before);
  expect(await readyCount()).toBe(COUNT);
  // Re-verifying wrote nothing: no status write, no finalizer patch on any object.
  expect(await versions()).toEqual(versionsBefore);
}, 900_000);
