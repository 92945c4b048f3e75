/**
 * The monitoring kit names only metrics that are really exported: a real operator process and two
 * real realm-server replicas publish and republish a realm, then every alert expression of
 * deploy/monitoring/prometheus-rule.yaml and every query of the Grafana dashboard is checked
 * against what their metrics endpoints serve (sample lines, and the families their `# TYPE` lines
 * declare: a labelled counter has no sample until its first event).
 */
import { GROUP, PLURAL } from '../../src/api/v1alpha1/published-realm-types.js';
import { dashboardQueries, metricNamesIn, ruleGroups, scrapedMetricNames } from '../support/monitoring.js';
import { must, setUpE2E, type E2EEnvironment } from '../support/e2e.js';
import { startOperator, waitForHTTP, type OperatorProcess } from '../support/operator-process.js';
import { startRealmServer, type RealmServerProcess } from '../support/realm-server-process.js';
import { createSourceRealm, eventually } from '../support/realms.js';

const source = 'http://localhost:4201/metrics/src/';
const published = 'http://metrics.localhost/site/';
let env: E2EEnvironment;
let operator: OperatorProcess;
const replicas: RealmServerProcess[] = [];

/** Families a text exposition declares, with the sample names a histogram or summary family has. */
function declaredMetricNames(exposition: string): Set<string> {
  const names = scrapedMetricNames(exposition);
  for (const [, name, type] of exposition.matchAll(/^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)$/gm)) {
    names.add(name!);
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${name}${suffix}`);
    if (type === 'summary') for (const suffix of ['_sum', '_count']) names.add(`${name}${suffix}`);
  }
  return names;
}

async function scrape(url: string): Promise<string> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: ${response.status}`);
  return response.text();
}

async function ready(revision: number): Promise<boolean> {
  const status = JSON.parse(await must(['get', `${PLURAL}.${GROUP}`, 'site', '-n', env.namespace, '-o', 'json'])).status ?? {};
  return status.publishedRevision === String(revision) && (status.conditions ?? []).some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True');
}

beforeAll(async () => {
  env = await setUpE2E('metrics');
  await createSourceRealm(env.db.pool, env.realms.layout, source, { 'index.json': '{}', 'a.json': '{"a":1}' });
  for (const replicaId of ['metrics-replica-0', 'metrics-replica-1']) {
    const replica = await startRealmServer({ databaseURL: env.db.url, realmsRoot: env.realms.root, replicaId });
    replicas.push(replica);
    await replica.waitReady();
  }
  operator = await startOperator({ databaseURL: env.db.url, realmsRoot: env.realms.root, identity: 'metrics-operator', leaderElectionNamespace: env.leaseNamespace, namespace: env.namespace });
  await waitForHTTP(operator, `${operator.healthURL}/readyz`);
  await must(['apply', '-f', '-'], JSON.stringify({
    apiVersion: `${GROUP}/v1alpha1`,
    kind: 'PublishedRealm',
    metadata: { name: 'site', namespace: env.namespace },
    spec: { sourceRealmURL: source, publishedRealmURL: published, revision: 1 },
  }));
  await eventually(() => ready(1), 90_000, () => 'revision 1 Ready');
  // A republish: both replicas acknowledge an invalidation, so the ack histograms have samples.
  await must(['patch', `${PLURAL}.${GROUP}`, 'site', '-n', env.namespace, '--type=merge', '-p', '{"spec":{"revision":2}}']);
  await eventually(() => ready(2), 90_000, () => 'revision 2 Ready');
}, 240_000);

afterAll(async () => {
  await operator?.stop();
  await Promise.all(replicas.map((r) => r.stop()));
  await env?.cleanup();
});

async function exportedNames(): Promise<{ operator: Set<string>; replicas: Set<string> }> {
  const operatorText = await scrape(`${operator.metricsURL}/metrics`);
  const replicaTexts = await Promise.all(replicas.map((r) => scrape(`http://127.0.0.1:${r.managementPort}/_metrics`)));
  return { operator: declaredMetricNames(operatorText), replicas: new Set(replicaTexts.flatMap((t) => [...declaredMetricNames(t)])) };
}

test('the scrapes hold what the alerts watch, with samples after a republish', async () => {
  const operatorText = await scrape(`${operator.metricsURL}/metrics`);
  expect(operatorText).toMatch(/^controller_runtime_reconcile_total\{controller="publishedrealm",result="success"\} [1-9]/m);
  expect(operatorText).toMatch(/^leader_election_master_status\{name="realm-operator-leader"\} 1$/m);
  for (const replica of replicas) {
    const text = await scrape(`http://127.0.0.1:${replica.managementPort}/_metrics`);
    expect(text).toMatch(new RegExp(`^realm_listener_ready\\{replica="${replica.replicaId}"\\} 1$`, 'm'));
    expect(text).toMatch(/^realm_listener_ack_duration_seconds_count [1-9]/m);
  }
});

test('every metric an alert expression selects is exported by the operator or the realm servers', async () => {
  const { operator: fromOperator, replicas: fromReplicas } = await exportedNames();
  const missing: string[] = [];
  for (const rule of ruleGroups().groups.flatMap((g) => g.rules)) {
    for (const name of metricNamesIn(rule.expr)) if (!fromOperator.has(name) && !fromReplicas.has(name)) missing.push(`${rule.alert}: ${name}`);
  }
  expect(missing).toEqual([]);
});

test('every metric a dashboard query selects is exported by the operator or the realm servers', async () => {
  const { operator: fromOperator, replicas: fromReplicas } = await exportedNames();
  const missing: string[] = [];
  const queries = dashboardQueries();
  for (const query of queries) {
    for (const name of metricNamesIn(query.expr)) if (!fromOperator.has(name) && !fromReplicas.has(name)) missing.push(`${query.where}: ${name}`);
  }
  expect(missing).toEqual([]);
  // The check reads names at all: the dashboard covers both processes.
  const used = new Set(queries.flatMap((q) => [...metricNamesIn(q.expr)]));
  expect([...used].filter((n) => fromOperator.has(n)).length).toBeGreaterThan(5);
  expect([...used].filter((n) => fromReplicas.has(n) && !fromOperator.has(n)).length).toBeGreaterThan(5);
});
