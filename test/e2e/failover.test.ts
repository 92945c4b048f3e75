/**
 * Two operator processes against one apiserver and database: one leads; SIGKILL it in the middle
 * of a publish; the other takes the lease over and finishes, with the published realm whole.
 */
import fs from 'node:fs/promises';
import { GROUP } from '../../src/api/v1alpha1/published-realm-types.js';
import { must, RESOURCE, setUpE2E, type E2EEnvironment } from '../support/e2e.js';
import { kubectl } from '../support/kube.js';
import { startOperator, waitForHTTP, type OperatorProcess } from '../support/operator-process.js';
import { createSourceRealm, eventually, readTree } from '../support/realms.js';

let env: E2EEnvironment;
const operators: OperatorProcess[] = [];

async function leaseHolder(): Promise<string | undefined> {
  const result = await kubectl(['get', 'lease', 'realm-operator-leader', '-n', env.leaseNamespace, '-o', 'jsonpath={.spec.holderIdentity}']);
  return result.code === 0 ? result.stdout.trim() || undefined : undefined;
}

beforeAll(async () => {
  env = await setUpE2E('failover');
});

afterAll(async () => {
  await Promise.all(operators.map((o) => o.stop('SIGKILL')));
  await env?.cleanup();
});

test('the leader is SIGKILLed mid-publish; the other operator takes over and the data is whole', async () => {
  const source = 'http://localhost:4201/failover/big/';
  const published = 'http://pub.localhost/failover/big/';
  const files: Record<string, string> = {};
  for (let i = 0; i < 10_000; i++) files[`d${i % 40}/card-${i}.json`] = `{"i":${i}}`;
  await createSourceRealm(env.db.pool, env.realms.layout, source, files);

  for (const identity of ['operator-x', 'operator-y']) {
    const operator = await startOperator({ databaseURL: env.db.url, realmsRoot: env.realms.root, identity, leaderElectionNamespace: env.leaseNamespace, namespace: env.namespace });
    operators.push(operator);
    await waitForHTTP(operator, `${operator.healthURL}/healthz`);
  }
  await eventually(async () => (await leaseHolder()) !== undefined, 20_000, () => 'a leader');
  const leaderId = (await leaseHolder())!;
  const leader = operators.find((o) => o.identity === leaderId)!;
  const follower = operators.find((o) => o.identity !== leaderId)!;
  expect(leader).toBeDefined();

  await must(['apply', '-f', '-'], JSON.stringify({
    apiVersion: `${GROUP}/v1alpha1`,
    kind: 'PublishedRealm',
    metadata: { name: 'big', namespace: env.namespace },
    spec: { sourceRealmURL: source, publishedRealmURL: published },
  }));
  // Kill the leader as soon as it logs that it is publishing (it then stages 10,000 files).
  await leader.waitForLog((l) => l.msg === 'publishing', 60_000);
  const killedAt = Date.now();
  await leader.stop('SIGKILL');
  expect(leader.logs().some((l) => l.msg === 'published realm')).toBe(false);

  const wait = await kubectl(['wait', `${RESOURCE}/big`, '-n', env.namespace, '--for=condition=Ready', '--timeout=90s']);
  expect(wait.code).toBe(0);
  process.stderr.write(`failover: killed leader → Ready in ${Date.now() - killedAt} ms\n`);
  expect(await leaseHolder()).toBe(follower.identity);
  expect(follower.logs().some((l) => l.msg === 'published realm')).toBe(true);

  const realm = JSON.parse(await must(['get', RESOURCE, 'big', '-n', env.namespace, '-o', 'json']));
  expect(realm.status.fileCount).toBe(10_000);
  const tree = await readTree(env.realms.layout.publishedDir(realm.status.diskId));
  expect(Object.keys(tree)).toHaveLength(10_000);
  expect(tree['d7/card-9967.json']).toBe('{"i":9967}');
  // The killed leader's staging copy was recognised as abandoned and removed (the trash is emptied
  // by the publish's clean-up, which may finish after Ready is written).
  expect(await fs.readdir(env.realms.layout.stagingRoot).catch(() => [])).toEqual([]);
  await eventually(async () => (await fs.readdir(env.realms.layout.trashDir).catch(() => [])).length === 0, 30_000, () => 'the trash to be emptied');
  const { rows } = await env.db.pool.query('SELECT count(*)::int AS n FROM realm_registry WHERE url = $1', [published]);
  expect(rows[0].n).toBe(1);
}, 180_000);
