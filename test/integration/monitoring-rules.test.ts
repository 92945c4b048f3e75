/**
 * The monitoring kit checked by Prometheus's own promtool (built from the Go module proxy by
 * hack/promtool.sh): the PrometheusRule's groups pass `promtool check rules` and the unit tests
 * in deploy/monitoring/tests/ pass `promtool test rules`; every query of the Grafana dashboard
 * parses as PromQL; the kustomize component deploy/monitoring renders with the real kubectl and the
 * real kube-apiserver accepts its objects (server-side dry run, with the Prometheus Operator's CRDs).
 * test/e2e/metrics-rules.test.ts checks the metric names against a real scrape.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { must } from '../support/e2e.js';
import { dashboardQueries, dashboardQueriesAsRuleFile, DASHBOARD_FILE, MONITORING_DIR, ruleGroups } from '../support/monitoring.js';

const run = promisify(execFile);
const REPO = path.resolve(import.meta.dirname, '../..');
const UNIT_TESTS = path.join(MONITORING_DIR, 'tests', 'alerts.test.yaml');

let promtool: string;
let dir: string;

async function promtoolRun(args: string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run(promtool, args, { cwd: dir, maxBuffer: 16 * 2 ** 20 });
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : -1, output: `${failed.stdout ?? ''}${failed.stderr ?? ''}` };
  }
}

beforeAll(async () => {
  // `make test` builds promtool in its set-up (`make promtool`); run directly, this builds it once
  // (minutes on 2 cores), then it is cached under ~/.cache/realm-operator.
  const { stdout } = await run('bash', [path.join(REPO, 'hack/promtool.sh')], { maxBuffer: 16 * 2 ** 20 });
  promtool = stdout.trim().split('\n').at(-1)!;
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'realm-monitoring-'));
  await fs.writeFile(path.join(dir, 'realm-operator.rules.yaml'), stringify(ruleGroups()));
  await fs.copyFile(UNIT_TESTS, path.join(dir, 'alerts.test.yaml'));
}, 30 * 60_000);

afterAll(async () => {
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

test('promtool check rules accepts the PrometheusRule\'s groups', async () => {
  const result = await promtoolRun(['check', 'rules', 'realm-operator.rules.yaml']);
  const count = ruleGroups().groups.reduce((n, g) => n + g.rules.length, 0);
  expect(result).toEqual({ code: 0, output: expect.stringContaining(`SUCCESS: ${count} rules found`) });
});

test('promtool test rules passes the alerts\' unit tests', async () => {
  const result = await promtoolRun(['test', 'rules', 'alerts.test.yaml']);
  expect(result).toEqual({ code: 0, output: expect.stringContaining('SUCCESS') });
});

test('every alert has a unit test, a severity, a summary and a description', async () => {
  const tests = await fs.readFile(UNIT_TESTS, 'utf8');
  for (const rule of ruleGroups().groups.flatMap((g) => g.rules)) {
    const alert = rule as { alert: string; labels?: { severity?: string }; annotations?: { summary?: string; description?: string } };
    expect({ alert: alert.alert, tested: tests.includes(`alertname: ${alert.alert}\n`) }).toEqual({ alert: alert.alert, tested: true });
    expect(['warning', 'critical']).toContain(alert.labels?.severity);
    expect(alert.annotations?.summary).toBeTruthy();
    expect(alert.annotations?.description).toBeTruthy();
  }
});

test('every dashboard query parses as PromQL (promtool check rules on a file holding them)', async () => {
  expect(JSON.parse(await fs.readFile(DASHBOARD_FILE, 'utf8')).panels.length).toBeGreaterThan(10);
  await fs.writeFile(path.join(dir, 'dashboard-queries.yaml'), dashboardQueriesAsRuleFile());
  const result = await promtoolRun(['check', 'rules', 'dashboard-queries.yaml']);
  expect(result).toEqual({ code: 0, output: expect.stringContaining(`SUCCESS: ${dashboardQueries().length} rules found`) });
});

test('a typo in a query fails the check (the check can fail)', async () => {
  await fs.writeFile(path.join(dir, 'typo.yaml'), stringify({ groups: [{ name: 'typo', rules: [{ record: 'x:typo', expr: 'sum by (job (rate(realm_listener_ready[5m]))' }] }] }));
  const result = await promtoolRun(['check', 'rules', 'typo.yaml']);
  expect(result.code).not.toBe(0);
  expect(result.output).toMatch(/FAILED|parse error/);
});

test('the component renders and the API server accepts its objects (server-side dry run)', async () => {
  const { stdout: crdDir } = await run('bash', [path.join(REPO, 'hack/prometheus-operator-crds.sh')]);
  const crds = crdDir.trim().split('\n').at(-1)!;
  for (const file of await fs.readdir(crds)) if (file.endsWith('.yaml')) await must(['apply', '--server-side', '-f', path.join(crds, file)]);
  for (const crd of ['prometheusrules', 'servicemonitors', 'podmonitors']) await must(['wait', '--for=condition=Established', `crd/${crd}.monitoring.coreos.com`, '--timeout=60s']);
  const namespace = `monitoring-${Math.random().toString(36).slice(2, 8)}`;
  const overlay = path.join(dir, 'overlay');
  await fs.mkdir(overlay);
  await fs.writeFile(
    path.join(overlay, 'kustomization.yaml'),
    stringify({ apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', namespace, components: [path.relative(overlay, MONITORING_DIR)] }),
  );
  const rendered = await must(['kustomize', overlay]);
  const kinds = [...rendered.matchAll(/^kind: (\w+)$/gm)].map((m) => m[1]).sort();
  expect(kinds).toEqual(['ConfigMap', 'PodMonitor', 'PrometheusRule', 'ServiceMonitor']);
  await must(['create', 'namespace', namespace]);
  try {
    const applied = await must(['apply', '--dry-run=server', '-f', '-'], rendered);
    expect(applied).toMatch(/prometheusrule.monitoring.coreos.com\/realm-operator created \(server dry run\)/);
    expect(applied).toMatch(/configmap\/realm-operator-grafana-dashboard created \(server dry run\)/);
  } finally {
    await must(['delete', 'namespace', namespace, '--wait=false']);
  }
});
