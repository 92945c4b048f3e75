/**
 * Acknowledged invalidation through the operator: the reindex job is created only after every live
 * replica acknowledged, and replicas that never register (unmodified Boxel servers, seen through
 * the realm-server Service's EndpointSlices) make the publish notify-only, said in status, instead
 * of a hang.
 */
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { GROUP, PLURAL } from '../../src/api/v1alpha1/published-realm-types.js';
import { RealmListener, type RealmCache } from '../../src/listener/realm-listener.js';
import { must, setUpE2E, type E2EEnvironment } from '../support/e2e.js';
import { kubectl } from '../support/kube.js';
import { startOperator, waitForHTTP, type OperatorProcess } from '../support/operator-process.js';
import { createSourceRealm, eventually } from '../support/realms.js';

let NS: string;
let LEASE_NS: string;
let env: E2EEnvironment;
const source = 'http://localhost:4201/ack/src/';
const published = 'http://pub.localhost/ack/';
let db: E2EEnvironment['db'];
let realms: E2EEnvironment['realms'];
let operator: OperatorProcess;
let listener: RealmListener;
let dropDelayMs = 0;


async function realmStatus(): Promise<Record<string, any>> {
  return JSON.parse(await must(['get', `${PLURAL}.${GROUP}`, 'ack', '-n', NS, '-o', 'json'])).status ?? {};
}

async function bumpAndWaitReady(revision: number): Promise<Record<string, any>> {
  await must(['patch', `${PLURAL}.${GROUP}`, 'ack', '-n', NS, '--type=merge', '-p', JSON.stringify({ spec: { revision } })]);
  await eventually(async () => {
    const status = await realmStatus();
    return status.publishedRevision === String(revision) && status.conditions?.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True');
  }, 60_000, () => `revision ${revision} Ready`);
  return realmStatus();
}

beforeAll(async () => {
  env = await setUpE2E('ack');
  ({ db, realms, namespace: NS, leaseNamespace: LEASE_NS } = env);
  await createSourceRealm(db.pool, realms.layout, source, { 'index.json': '{}' });
  const cache: RealmCache = {
    dropPath: () => undefined,
    dropAll: () => new Promise((resolve) => setTimeout(resolve, dropDelayMs)),
    bumpDefinitionsGeneration: () => undefined,
  };
  listener = new RealmListener({
    connection: db.url,
    replicaId: 'replica-pod-1',
    metadata: { pod: 'replica-pod-1' },
    caches: { find: (url) => (url === published ? cache : undefined), all: () => [cache] },
    logger: pino({ level: 'silent' }),
    metricsRegistry: new Registry(),
    heartbeatIntervalMs: 300,
    leaseDurationMs: 4000,
  });
  listener.start();
  await listener.waitUntilReady(10_000);
  operator = await startOperator({
    databaseURL: db.url,
    realmsRoot: realms.root,
    identity: 'ack-operator',
    leaderElectionNamespace: LEASE_NS, namespace: NS,
    extraArgs: ['--realm-server-service', `${NS}/realm-server`],
  });
  await waitForHTTP(operator, `${operator.healthURL}/readyz`);
  await must(['apply', '-f', '-'], JSON.stringify({
    apiVersion: `${GROUP}/v1alpha1`,
    kind: 'PublishedRealm',
    metadata: { name: 'ack', namespace: NS },
    spec: { sourceRealmURL: source, publishedRealmURL: published, revision: 0, owner: 'ack' },
  }));
  await eventually(async () => (await realmStatus()).conditions?.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True') ?? false, 60_000);
}, 120_000);

afterAll(async () => {
  await operator?.stop();
  await listener?.stop();
  await env?.cleanup();
});

test('the reindex job is created only after every live replica acknowledged', async () => {
  dropDelayMs = 2500; // the replica takes 2.5 s to drop its cache
  const startEpoch = Number((await realmStatus()).epoch);
  // A worker finished the first publish's reindex: otherwise this epoch's enqueue joins that still
  // pending job (Boxel's queue protocol) and there is no new job whose creation time to compare.
  await db.pool.query(`UPDATE jobs SET status = 'resolved', finished_at = now() WHERE concurrency_group = $1`, [`indexing:${published}`]);
  await must(['patch', `${PLURAL}.${GROUP}`, 'ack', '-n', NS, '--type=merge', '-p', '{"spec":{"revision":1}}']);
  // Watch the database while the replica is still clearing.
  let newEpoch = 0;
  let sawAwaiting = false;
  const samples: Array<{ at: number; acked: boolean; job: boolean }> = [];
  const deadline = Date.now() + 30_000;
  for (;;) {
    const { rows } = await db.pool.query(`SELECT epoch, reindex_epoch FROM realm_operator.realm_epochs WHERE realm_url = $1`, [published]);
    newEpoch = Number(rows[0].epoch);
    if (newEpoch > startEpoch) {
      const acked = (await db.pool.query(`SELECT 1 FROM realm_operator.replica_acks WHERE realm_url = $1 AND epoch >= $2`, [published, newEpoch])).rowCount === 1;
      const job = rows[0].reindex_epoch !== null && Number(rows[0].reindex_epoch) === newEpoch;
      samples.push({ at: Date.now(), acked, job });
      if (!sawAwaiting) sawAwaiting = (await realmStatus()).conditions?.some((c: { reason: string }) => c.reason === 'AwaitingAcknowledgement') ?? false;
      if (job) break;
    }
    if (Date.now() > deadline) throw new Error(`no reindex job for the new epoch; samples ${JSON.stringify(samples.slice(-5))}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  // Before the acknowledgement there was no job; the job came only after it.
  expect(samples.some((s) => !s.acked && !s.job)).toBe(true);
  expect(samples.every((s) => !s.job || s.acked)).toBe(true);
  expect(sawAwaiting).toBe(true);
  // Compared in SQL: jobs.created_at is Boxel's timestamp without time zone, written in the session's
  // time zone, which the comparison applies too (a JS Date of it would assume Node's time zone).
  const { rows } = await db.pool.query(
    `SELECT j.created_at >= a.acked_at AS job_after_ack FROM realm_operator.replica_acks a, jobs j, realm_operator.realm_epochs e
      WHERE a.realm_url = $1 AND e.realm_url = $1 AND j.id = e.reindex_job_id`,
    [published],
  );
  expect(rows).toEqual([{ job_after_ack: true }]);
  dropDelayMs = 0;
  const status = await bumpAndWaitReady(2);
  expect(status.replicas).toEqual({ acknowledged: 1, expected: 1, mode: 'Acknowledged' });
});

test('ready pods that never register make the publish notify-only, and status names them', async () => {
  await must(['apply', '-f', '-'], JSON.stringify({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'realm-server-x1', namespace: NS, labels: { 'kubernetes.io/service-name': 'realm-server' } },
    addressType: 'IPv4',
    endpoints: [
      { addresses: ['10.0.0.1'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'replica-pod-1', namespace: NS } },
      { addresses: ['10.0.0.2'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'boxel-unmodified-0', namespace: NS } },
      { addresses: ['10.0.0.3'], conditions: { ready: false }, targetRef: { kind: 'Pod', name: 'boxel-starting-1', namespace: NS } },
    ],
    ports: [{ name: 'http', port: 4201, protocol: 'TCP' }],
  }));
  // The operator's EndpointSlice informer has it before the publish counts ready pods.
  const cached = new RegExp(`^runtime_informer_cached_objects\\{informer="endpointslices/${NS}/realm-server"\\} 1$`, 'm');
  await eventually(async () => cached.test(await fetch(`${operator.metricsURL}/metrics`).then((r) => r.text(), () => '')), 20_000, () => 'the EndpointSlice in the operator\'s informer cache');
  const status = await bumpAndWaitReady(3);
  expect(status.replicas).toEqual({ acknowledged: 1, expected: 2, unregistered: ['boxel-unmodified-0'], mode: 'NotifyOnly' });
  const ready = status.conditions.find((c: { type: string }) => c.type === 'Ready');
  expect(ready.reason).toBe('PublishedNotifyOnly');
  expect(ready.message).toContain('1 ready realm-server pod does not run the acknowledging listener (boxel-unmodified-0)');

  // With no registered replica at all the publish does not hang either.
  await listener.stop();
  const started = Date.now();
  const alone = await bumpAndWaitReady(4);
  expect(Date.now() - started).toBeLessThan(15_000);
  expect(alone.replicas).toEqual({ acknowledged: 0, expected: 2, unregistered: ['boxel-unmodified-0', 'replica-pod-1'], mode: 'NotifyOnly' });
});
