/**
 * The operator as deploy/ runs it: under its own ServiceAccount's token with exactly the RBAC in
 * deploy/base and deploy/realm-server (a whole publish/unpublish lifecycle works, nothing is
 * forbidden), and `/metrics` behind `--metrics-secure`: HTTPS, TokenReview + SubjectAccessReview
 * against the real API server — no token 401, a token without the permission 403, a token bound
 * to `realm-operator-metrics-reader` 200.
 */
import https from 'node:https';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { GROUP, PLURAL } from '../../src/api/v1alpha1/published-realm-types.js';
import { must, setUpE2E, type E2EEnvironment } from '../support/e2e.js';
import { kubectl, serviceAccountKubeconfig } from '../support/kube.js';
import { startOperator, waitForHTTP, type OperatorProcess } from '../support/operator-process.js';
import { createSourceRealm } from '../support/realms.js';

const DEPLOY = path.resolve(import.meta.dirname, '../../deploy');
const OPERATOR_NS = 'realm-operator-system';

let env: E2EEnvironment;
let operator: OperatorProcess;
let metricsURL: string;
let raw = '';

function get(url: string, token?: string): Promise<{ status: number; body: string; issuer: string }> {
  return new Promise((resolve, reject) => {
    // The certificate is self-signed (no --metrics-cert-file): what a scraper with insecureSkipVerify sees.
    const req = https.get(url, { rejectUnauthorized: false, headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
      const issuer = String((res.socket as TLSSocket).getPeerCertificate().issuer?.CN ?? '');
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, issuer }));
    });
    req.on('error', reject);
  });
}

async function token(namespace: string, serviceAccount: string): Promise<string> {
  await kubectl(['create', 'serviceaccount', serviceAccount, '-n', namespace]);
  return (await must(['create', 'token', serviceAccount, '-n', namespace, '--duration=1h'])).trim();
}

/** The keys of a JSON object's top level, in order, duplicates kept (JSON.parse would hide them). */
export function topLevelKeys(line: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === '"') {
      let j = i + 1;
      while (line[j] !== '"') j += line[j] === '\\' ? 2 : 1;
      let k = j + 1;
      while (line[k] === ' ') k++;
      if (depth === 1 && line[k] === ':') keys.push(JSON.parse(line.slice(i, j + 1)) as string);
      i = j;
    } else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
  }
  return keys;
}

beforeAll(async () => {
  env = await setUpE2E('sa-metrics');
  // deploy/'s identity and RBAC only (not its workloads and PVC, which deploy.test.ts dry-runs against the kind overlay).
  for (const file of ['base/namespace.yaml', 'base/service-account.yaml', 'base/rbac.yaml', 'base/metrics-rbac.yaml', 'realm-server/operator-rbac.yaml']) {
    await must(['apply', '-n', OPERATOR_NS, '-f', path.join(DEPLOY, file)]);
  }
  const asOperator = await serviceAccountKubeconfig(OPERATOR_NS, 'realm-operator');
  operator = await startOperator({
    databaseURL: env.db.url,
    realmsRoot: env.realms.root,
    identity: 'sa-operator',
    leaderElectionNamespace: OPERATOR_NS,
    namespace: env.namespace,
    kubeconfig: asOperator,
    extraArgs: ['--metrics-secure', '--max-realm-files', '3', '--leader-election-id', `sa-metrics-${env.namespace}`, '--realm-server-service', `${OPERATOR_NS}/realm-server`],
  });
  operator.child.stdout!.on('data', (chunk: Buffer) => (raw += chunk.toString()));
  await waitForHTTP(operator, `${operator.healthURL}/readyz`);
  metricsURL = `${operator.metricsURL.replace('http:', 'https:')}/metrics`;
}, 90_000);

afterAll(async () => {
  await operator?.stop();
  await env?.cleanup();
});

test('under its own ServiceAccount the operator publishes and unpublishes, and is never forbidden anything', async () => {
  const source = 'http://localhost:4201/sa/blog/';
  await createSourceRealm(env.db.pool, env.realms.layout, source, { 'index.json': '{"v":1}' });
  const manifest = { apiVersion: `${GROUP}/v1alpha1`, kind: 'PublishedRealm', metadata: { name: 'blog', namespace: env.namespace }, spec: { sourceRealmURL: source, publishedRealmURL: 'http://pub.localhost/sa/' } };
  await must(['apply', '-f', '-'], JSON.stringify(manifest));
  const ready = await kubectl(['wait', `${PLURAL}.${GROUP}/blog`, '-n', env.namespace, '--for=condition=Ready', '--timeout=60s']);
  expect({ code: ready.code, stderr: ready.stderr, logs: ready.code === 0 ? [] : operator.logs().slice(-10) }).toMatchObject({ code: 0 });
  const realm = JSON.parse(await must(['get', `${PLURAL}.${GROUP}`, 'blog', '-n', env.namespace, '-o', 'json']));
  expect(realm.metadata.finalizers).toEqual([`${GROUP}/unpublish`]);
  // Events were recorded (through whichever Events API the operator uses).
  const events = JSON.parse(await must(['get', 'events.events.k8s.io', '-n', env.namespace, '-o', 'json'])).items as Array<{ regarding?: { name?: string } }>;
  expect(events.filter((e) => e.regarding?.name === 'blog').length).toBeGreaterThan(0);
  await must(['delete', `${PLURAL}.${GROUP}`, 'blog', '-n', env.namespace, '--timeout=30s']);
  expect((await env.db.pool.query(`SELECT 1 FROM realm_registry WHERE url = 'http://pub.localhost/sa/'`)).rows).toEqual([]);
  // The Lease was taken in the operator's namespace with get/create/update only.
  const lease = JSON.parse(await must(['get', 'lease', `sa-metrics-${env.namespace}`, '-n', OPERATOR_NS, '-o', 'json']));
  expect(lease.spec.holderIdentity).toBe('sa-operator');
  // A 403 as the API server reports it (not any "403" in a port number or a timestamp).
  const forbidden = operator.logs().filter((l) => /forbidden|HTTP 403\b|"(code|statusCode)":403\b/i.test(JSON.stringify(l)));
  expect(forbidden).toEqual([]);
}, 120_000);

test('--max-realm-files reaches the reconciler: a realm over it is Stalled with RealmTooLarge, and nothing is published', async () => {
  const source = 'http://localhost:4201/sa/big/';
  await createSourceRealm(env.db.pool, env.realms.layout, source, { 'a.json': '1', 'b.json': '2', 'c.json': '3', 'd.json': '4' });
  const manifest = { apiVersion: `${GROUP}/v1alpha1`, kind: 'PublishedRealm', metadata: { name: 'big', namespace: env.namespace }, spec: { sourceRealmURL: source, publishedRealmURL: 'http://pub.localhost/sa-big/' } };
  await must(['apply', '-f', '-'], JSON.stringify(manifest));
  const stalled = await kubectl(['wait', `${PLURAL}.${GROUP}/big`, '-n', env.namespace, '--for=jsonpath={.status.conditions[?(@.type=="Stalled")].reason}=RealmTooLarge', '--timeout=30s']);
  expect({ code: stalled.code, stderr: stalled.stderr }).toMatchObject({ code: 0 });
  const realm = JSON.parse(await must(['get', `${PLURAL}.${GROUP}`, 'big', '-n', env.namespace, '-o', 'json']));
  expect(realm.status.conditions.find((c: { type: string }) => c.type === 'Stalled').message).toMatch(/\b3\b/);
  expect((await env.db.pool.query(`SELECT 1 FROM realm_registry WHERE url = 'http://pub.localhost/sa-big/'`)).rows).toEqual([]);
  await must(['delete', `${PLURAL}.${GROUP}`, 'big', '-n', env.namespace, '--timeout=30s']);
});

describe('--metrics-secure', () => {
  test('no token → 401, an unknown token → 401', async () => {
    expect(await get(metricsURL)).toMatchObject({ status: 401, body: 'Unauthorized\n', issuer: 'realm-operator-metrics' });
    expect(await get(metricsURL, 'not-a-token')).toMatchObject({ status: 401 });
  });

  test('a valid token without get /metrics → 403', async () => {
    expect(await get(metricsURL, await token(env.namespace, 'nosy'))).toMatchObject({ status: 403, body: 'Forbidden\n' });
  });

  test('a token bound to realm-operator-metrics-reader → 200 with the metrics', async () => {
    const scraper = await token(env.namespace, 'scraper');
    await must(['create', 'clusterrolebinding', `scraper-${env.namespace}`, '--clusterrole=realm-operator-metrics-reader', `--serviceaccount=${env.namespace}:scraper`]);
    try {
      const response = await get(metricsURL, scraper);
      expect(response.status).toBe(200);
      expect(response.body).toContain('controller_runtime_reconcile_total');
      expect(response.body).toContain('process_cpu_user_seconds_total');
    } finally {
      await kubectl(['delete', 'clusterrolebinding', `scraper-${env.namespace}`]);
    }
  });

  test('plain HTTP on the metrics port and /metrics on the probe port reveal nothing', async () => {
    const plain = await fetch(operator.metricsURL + '/metrics').then((r) => r.status, () => 'refused');
    expect(plain).not.toBe(200);
    expect((await fetch(`${operator.healthURL}/metrics`)).status).toBe(404);
    expect((await fetch(`${operator.healthURL}/readyz`)).status).toBe(200);
  });
});

test('log lines never repeat a key', () => {
  const lines = raw.split('\n').filter((l) => l.startsWith('{'));
  expect(lines.length).toBeGreaterThan(5);
  const repeated = lines.filter((l) => new Set(topLevelKeys(l)).size !== topLevelKeys(l).length);
  expect(repeated).toEqual([]);
  // The controller's own lines carry its name once.
  expect(lines.some((l) => topLevelKeys(l).filter((k) => k === 'controller').length === 1)).toBe(true);
});
