/**
 * charts/realm-operator against the real tools: it is exactly what hack/generate-chart.ts makes of
 * deploy/base today (so it cannot drift from the kustomize manifests), `helm lint --strict`
 * passes, `helm template` with default values prints the objects `kubectl kustomize deploy/base`
 * prints, and with other values the kube-apiserver the tests start accepts the output
 * (`kubectl apply --dry-run=server`). helm is built from the Go module proxy by hack/gitops-tools.sh.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { parseAllDocuments } from 'yaml';
import { kustomizeBase, renderChart } from '../../hack/generate-chart.js';
import { installCRD, must } from '../support/e2e.js';
import { kubectl, testKubectlPath } from '../support/kube.js';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');
const CHART = path.join(ROOT, 'charts/realm-operator');
const BASE_NAMESPACE = 'realm-operator-system';
let helm: string;
let scratch: string;

interface KubeObject {
  kind: string;
  metadata: { name: string; namespace?: string };
  [key: string]: unknown;
}

async function helmRun(args: string[]): Promise<string> {
  try {
    const { stdout } = await run(helm, args, { maxBuffer: 64 << 20, env: { ...process.env, HELM_CACHE_HOME: path.join(scratch, 'cache'), HELM_CONFIG_HOME: path.join(scratch, 'config'), HELM_DATA_HOME: path.join(scratch, 'data') } });
    return stdout;
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`helm ${args.join(' ')} failed:\n${stdout ?? ''}\n${stderr ?? ''}`);
  }
}

const objects = (yaml: string) => parseAllDocuments(yaml).map((d) => d.toJS() as KubeObject).filter((o) => o !== null);
const byIdentity = (list: KubeObject[]) => new Map(list.map((o) => [`${o.kind} ${o.metadata.namespace ?? ''}/${o.metadata.name}`, o]));

beforeAll(async () => {
  const { stdout } = await run('bash', [path.join(ROOT, 'hack/gitops-tools.sh'), 'helm'], { maxBuffer: 16 << 20 });
  helm = path.join(stdout.trim().split('\n').at(-1)!, 'helm');
  scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'helm-chart-'));
});

afterAll(async () => {
  if (scratch) await fs.rm(scratch, { recursive: true, force: true });
});

test('the committed chart is what hack/generate-chart.ts makes of deploy/base (run `make chart`)', async () => {
  const pkg = JSON.parse(await fs.readFile(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const expected = renderChart(kustomizeBase(testKubectlPath()), pkg.version);
  const committed = new Map<string, string>();
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(full);
      else committed.set(path.relative(CHART, full), await fs.readFile(full, 'utf8'));
    }
  };
  await walk(CHART);
  expect([...committed.keys()].sort()).toEqual([...expected.keys()].sort());
  for (const [file, content] of expected) expect({ file, content: committed.get(file) }).toEqual({ file, content });
});

test('helm lint --strict passes', async () => {
  const out = await helmRun(['lint', '--strict', CHART]);
  expect(out).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
});

test('with default values, helm template prints exactly the objects of `kubectl kustomize deploy/base`', async () => {
  const rendered = objects(await helmRun(['template', 'realm-operator', CHART, '--namespace', BASE_NAMESPACE, '--set', 'createNamespace=true', '--include-crds']));
  const kustomized = kustomizeBase(testKubectlPath()) as unknown as KubeObject[];
  const chart = byIdentity(rendered);
  expect([...chart.keys()].sort()).toEqual([...byIdentity(kustomized).keys()].sort());
  for (const [id, object] of byIdentity(kustomized)) expect({ id, object: chart.get(id) }).toEqual({ id, object });
});

test('with other values, the output is what they say and the API server accepts it (apply --dry-run=server)', async () => {
  const namespace = `helm-${Math.random().toString(36).slice(2, 8)}`;
  await installCRD();
  await must(['create', 'namespace', namespace]);
  try {
    const rendered = await helmRun([
      'template', 'realms', CHART, '--namespace', namespace, '--include-crds',
      '--set', 'replicaCount=3', '--set', 'image.repository=registry.example/ops/realm-operator', '--set', 'image.tag=v9.9.9',
      '--set', 'publishedRealmDomains=boxel.site\\,boxel.space', '--set', 'databaseSecret.name=pg-app', '--set', 'resources.limits.memory=1Gi',
      '--set', 'finalizerPolicy.enabled=false',
    ]);
    const list = objects(rendered);
    // A cluster older than 1.36 has no MutatingAdmissionPolicy: the chart then leaves it out.
    expect(list.filter((o) => o.kind.startsWith('MutatingAdmissionPolicy'))).toEqual([]);
    expect(list.find((o) => o.kind === 'Namespace')).toBeUndefined();
    for (const o of list) if (o.kind !== 'CustomResourceDefinition' && !o.kind.startsWith('Cluster')) expect({ o: `${o.kind}/${o.metadata.name}`, ns: o.metadata.namespace }).toEqual({ o: `${o.kind}/${o.metadata.name}`, ns: namespace });
    const deployment = list.find((o) => o.kind === 'Deployment') as unknown as {
      spec: { replicas: number; template: { spec: { containers: { image: string; env: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string } } }[]; resources: { limits: { memory: string } } }[] } } };
    };
    const container = deployment.spec.template.spec.containers[0]!;
    expect(deployment.spec.replicas).toBe(3);
    expect(container.image).toBe('registry.example/ops/realm-operator:v9.9.9');
    expect(container.env.find((e) => e.name === 'PUBLISHED_REALM_DOMAINS')?.value).toBe('boxel.site,boxel.space');
    expect(container.env.find((e) => e.name === 'DATABASE_URL')?.valueFrom?.secretKeyRef?.name).toBe('pg-app');
    expect(container.resources.limits.memory).toBe('1Gi');
    const subjects = list.filter((o) => o.kind.endsWith('RoleBinding')).flatMap((o) => (o.subjects as { namespace: string }[]) ?? []);
    expect(subjects.length).toBeGreaterThan(0);
    for (const subject of subjects) expect(subject.namespace).toBe(namespace);

    const result = await kubectl(['apply', '--dry-run=server', '-f', '-'], { input: rendered });
    expect(result.stderr).not.toMatch(/error/i);
    expect({ code: result.code, stderr: result.stderr }).toMatchObject({ code: 0 });
    expect(result.stdout.match(/\(server dry run\)/g)?.length).toBe(list.length);
  } finally {
    await kubectl(['delete', 'namespace', namespace, '--wait=false']);
  }
});
