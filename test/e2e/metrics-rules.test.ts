/**
 * The monitoring kit names only metrics that are really exported: a real operator process and two
 * real realm-server replicas publish and republish a realm, then every alert expression of
 * deploy/monitoring/prometheus-rule.yaml and every query of the Grafana dashboard is checked
 * against what their metrics endpoints serve (sample lines, and the families their `# TYPE` lines
 * declare: a labelled counter has no sample until its first event). The suite also leaves objects
 * in the states the per-object alerts watch (Ready after acknowledgements, a PublishedRealm Stalled
 * on a taken URL, a Realm Stalled with nothing to adopt) and checks the operator's state metrics say
 * exactly what the objects' status says, and forget an object once it is deleted.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { GROUP, PLURAL } from '../../src/api/v1alpha1/published-realm-types.js';
import { REALM_PLURAL } from '../../src/api/v1alpha1/realm-types.js';
import { STATE_METRIC_NAMES } from '../../src/reconciler/state-metrics.js';
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
/** A replica that hangs (SIGSTOP) with a long lease: live, so publishes wait for it, but never acknowledging. */
let hung: RealmServerProcess | undefined;
const run = promisify(execFile);
const REPO = path.resolve(import.meta.dirname, '../..');
const REALM_CRD_FILE = path.resolve(import.meta.dirname, '../../crds', `${GROUP}_${REALM_PLURAL}.yaml`);

interface ObjectCondition {
  type: string;
  status: string;
  reason: string;
}

async function conditionsOf(plural: string, name: string): Promise<ObjectCondition[]> {
  return JSON.parse(await must(['get', `${plural}.${GROUP}`, name, '-n', env.namespace, '-o', 'json'])).status?.conditions ?? [];
}

async function stalledReason(plural: string, name: string): Promise<string | undefined> {
  return (await conditionsOf(plural, name)).find((c) => c.type === 'Stalled' && c.status === 'True')?.reason;
}

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
  // The Realm CRD before the operator starts, so it runs the Realm controller (and reports Realms).
  await must(['apply', '--server-side', '-f', REALM_CRD_FILE]);
  await must(['wait', '--for=condition=Established', `crd/${REALM_PLURAL}.${GROUP}`, '--timeout=30s']);
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
  // Objects a person must fix: a second PublishedRealm on the same URL, and a Realm adopting nothing.
  await must(['apply', '-f', '-'], JSON.stringify({
    apiVersion: `${GROUP}/v1alpha1`,
    kind: 'PublishedRealm',
    metadata: { name: 'site-again', namespace: env.namespace },
    spec: { sourceRealmURL: source, publishedRealmURL: published, revision: 1 },
  }));
  await must(['apply', '-f', '-'], JSON.stringify({
    apiVersion: `${GROUP}/v1alpha1`,
    kind: 'Realm',
    metadata: { name: 'nothing-here', namespace: env.namespace },
    spec: { owner: '@alice:localhost', endpoint: 'nothing-here', serverURL: 'http://localhost:4201/', adopt: true },
  }));
  await eventually(async () => (await stalledReason(PLURAL, 'site-again')) === 'URLAlreadyPublished', 60_000, () => 'site-again Stalled URLAlreadyPublished');
  await eventually(async () => (await stalledReason(REALM_PLURAL, 'nothing-here')) !== undefined, 60_000, () => 'Realm nothing-here Stalled');
  // A publish that waits for a hung replica: live (its 10-minute lease holds) but stopped, so it
  // never acknowledges and the PublishedRealm stays AwaitingAcknowledgement with 2 of 3.
  hung = await startRealmServer({ databaseURL: env.db.url, realmsRoot: env.realms.root, replicaId: 'metrics-replica-hung', leaseDuration: '10m', heartbeatInterval: '1s' });
  await hung.waitReady();
  hung.child.kill('SIGSTOP');
  await must(['apply', '-f', '-'], JSON.stringify({
    apiVersion: `${GROUP}/v1alpha1`,
    kind: 'PublishedRealm',
    metadata: { name: 'waiting', namespace: env.namespace },
    spec: { sourceRealmURL: source, publishedRealmURL: 'http://metrics.localhost/waiting/', revision: 1 },
  }));
  await eventually(
    async () => {
      const status = JSON.parse(await must(['get', `${PLURAL}.${GROUP}`, 'waiting', '-n', env.namespace, '-o', 'json'])).status ?? {};
      const reconciling = (status.conditions ?? []).find((c: ObjectCondition) => c.type === 'Reconciling' && c.status === 'True');
      return reconciling?.reason === 'AwaitingAcknowledgement' && status.replicas?.acknowledged === 2 && status.replicas?.expected === 3;
    },
    90_000,
    () => 'waiting AwaitingAcknowledgement with 2 of 3 replicas',
  );
}, 300_000);

afterAll(async () => {
  await operator?.stop();
  await Promise.all([...replicas, ...(hung ? [hung] : [])].map((r) => r.stop()));
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

test('the operator\'s state metrics say what each object\'s status says', async () => {
  const text = await scrape(`${operator.metricsURL}/metrics`);
  const lines = new Set(text.split('\n'));
  const objects = [
    { kind: 'PublishedRealm', plural: PLURAL, name: 'site' },
    { kind: 'PublishedRealm', plural: PLURAL, name: 'site-again' },
    { kind: 'Realm', plural: REALM_PLURAL, name: 'nothing-here' },
    { kind: 'PublishedRealm', plural: PLURAL, name: 'waiting' },
  ];
  const missing: string[] = [];
  for (const { kind, plural, name } of objects) {
    const conditions = await conditionsOf(plural, name);
    expect(conditions.length).toBeGreaterThan(0);
    for (const c of conditions) {
      const line = `realm_operator_resource_condition{kind="${kind}",namespace="${env.namespace}",name="${name}",type="${c.type}",status="${c.status}",reason="${c.reason}"} 1`;
      if (!lines.has(line)) missing.push(line);
    }
  }
  expect(missing).toEqual([]);
  expect(text).toContain(`realm_operator_resource_condition{kind="PublishedRealm",namespace="${env.namespace}",name="site",type="Ready",status="True",reason="Published"} 1`);
  expect(text).toContain(`realm_operator_resource_condition{kind="PublishedRealm",namespace="${env.namespace}",name="site-again",type="Stalled",status="True",reason="URLAlreadyPublished"} 1`);
  expect(text).toMatch(new RegExp(`^realm_operator_resource_condition\\{kind="Realm",namespace="${env.namespace}",name="nothing-here",type="Stalled",status="True",reason="\\w+"\\} 1$`, 'm'));
  // Both replicas acknowledged revision 2.
  expect(text).toContain(`realm_operator_published_realm_replicas{namespace="${env.namespace}",name="site",state="acknowledged"} 2`);
  expect(text).toContain(`realm_operator_published_realm_replicas{namespace="${env.namespace}",name="site",state="expected"} 2`);
  expect(text).toContain(`realm_operator_resource_condition{kind="PublishedRealm",namespace="${env.namespace}",name="waiting",type="Reconciling",status="True",reason="AwaitingAcknowledgement"} 1`);
  expect(text).toContain(`realm_operator_published_realm_replicas{namespace="${env.namespace}",name="waiting",state="acknowledged"} 2`);
  expect(text).toContain(`realm_operator_published_realm_replicas{namespace="${env.namespace}",name="waiting",state="expected"} 3`);
  const siteStatus = JSON.parse(await must(['get', `${PLURAL}.${GROUP}`, 'site', '-n', env.namespace, '-o', 'json'])).status;
  expect(text).toContain(`realm_operator_published_realm_info{namespace="${env.namespace}",name="site",url="${published}",revision="2",live_version="${siteStatus.liveVersion ?? ''}"} 1`);
  expect(text).toContain(`realm_operator_published_realm_epoch{namespace="${env.namespace}",name="site"} ${siteStatus.epoch}`);
  // Every state metric has samples here, not only a declared family.
  for (const metric of Object.values(STATE_METRIC_NAMES)) expect({ metric, sampled: new RegExp(`^${metric}\\{`, 'm').test(text) }).toEqual({ metric, sampled: true });
});

/**
 * The operator's real state series, as promtool input: constant for 30 minutes, the transition
 * timestamps moved so that promtool's clock (which starts at 0) reads as "now" at the start.
 */
function stateSeriesAsPromtoolInput(exposition: string, namespace: string, nowSeconds: number): Array<{ series: string; values: string }> {
  const input: Array<{ series: string; values: string }> = [];
  for (const [, name, labels, value] of exposition.matchAll(/^(realm_operator_(?:resource|published_realm|realm)_\w+)\{(.*)\} (\S+)$/gm)) {
    if (!labels!.includes(`namespace="${namespace}"`)) continue;
    const shifted = name!.endsWith('_timestamp_seconds') ? Number(value) - nowSeconds : Number(value);
    input.push({ series: `${name}{${labels}}`, values: `${shifted}x30` });
  }
  return input;
}

test('the per-object alerts, evaluated by promtool on the operator\'s real series, fire for the Stalled objects and the unacknowledged publish only', async () => {
  const { stdout } = await run('bash', [path.join(REPO, 'hack/promtool.sh')], { maxBuffer: 16 * 2 ** 20 });
  const promtool = stdout.trim().split('\n').at(-1)!;
  const text = await scrape(`${operator.metricsURL}/metrics`);
  const input = stateSeriesAsPromtoolInput(text, env.namespace, Date.now() / 1000);
  expect(input.length).toBeGreaterThan(10);
  const objectAlerts = ruleGroups().groups.find((g) => g.name === 'realm-operator.objects')!.rules.map((r) => r.alert!);
  const firing = `count by (alertname, severity, kind, namespace, name, reason) (ALERTS{alertstate="firing",alertname=~"${[...new Set(objectAlerts)].join('|')}"})`;
  const stalled = async (plural: string, name: string) => (await stalledReason(plural, name))!;
  const sample = (kind: string, name: string, reason: string) => ({
    labels: `{alertname="RealmOperatorResourceStalled",severity="warning",kind="${kind}",namespace="${env.namespace}",name="${name}",reason="${reason}"}`,
    value: 1,
  });
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'realm-alerts-'));
  try {
    await fs.writeFile(path.join(dir, 'rules.yaml'), stringify(ruleGroups()));
    await fs.writeFile(path.join(dir, 'live.test.yaml'), stringify({
      rule_files: ['rules.yaml'],
      evaluation_interval: '1m',
      tests: [{
        interval: '1m',
        input_series: input,
        promql_expr_test: [
          // Just now: nothing has lasted long enough.
          { expr: firing, eval_time: '4m', exp_samples: [] },
          // A quarter of an hour on: the two refused requests are warnings, the publish waiting for the
          // hung replica is critical (one replica missing); the Ready site is quiet.
          {
            expr: firing,
            eval_time: '16m',
            exp_samples: [
              sample('PublishedRealm', 'site-again', await stalled(PLURAL, 'site-again')),
              sample('Realm', 'nothing-here', await stalled(REALM_PLURAL, 'nothing-here')),
              { labels: `{alertname="RealmOperatorReplicasNotAcknowledging",severity="critical",namespace="${env.namespace}",name="waiting"}`, value: 1 },
            ],
          },
        ],
      }],
    }));
    const result = await run(promtool, ['test', 'rules', 'live.test.yaml'], { cwd: dir }).then(
      ({ stdout: out }) => ({ code: 0, out }),
      (error: { code?: number; stdout?: string; stderr?: string }) => ({ code: error.code ?? -1, out: `${error.stdout ?? ''}${error.stderr ?? ''}` }),
    );
    expect(result).toEqual({ code: 0, out: expect.stringContaining('SUCCESS') });
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}, 30 * 60_000);

test('a deleted object leaves the operator\'s scrape', async () => {
  await must(['delete', `${PLURAL}.${GROUP}`, 'site-again', '-n', env.namespace, '--timeout=60s']);
  await eventually(
    async () => !(await scrape(`${operator.metricsURL}/metrics`)).includes(`name="site-again"`),
    30_000,
    () => 'no series for site-again',
  );
  expect(await scrape(`${operator.metricsURL}/metrics`)).toContain(`name="site",type="Ready"`);
});
