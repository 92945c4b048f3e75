/**
 * Two operator processes against one apiserver and database: one leads; SIGKILL it in the middle
 * of a publish; the other takes the lease over and finishes, with the published realm whole.
 */
import fs from 'node:fs/promises';
import { GROUP, PLURAL } from '../../src/api/v1alpha1/published-realm-types.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { kubectl } from '../support/kube.js';
import { startOperator, waitForHTTP, type OperatorProcess } from '../support/operator-process.js';
import { createSourceRealm, eventually, makeRealmsRoot, readTree } from '../support/realms.js';

const NS = `failover-${Math.random().toString(36).slice(2, 8)}`;
const LEASE_NS = `${NS}-system`;
let db: TestDatabase;
let realms: Awaited<ReturnType<typeof makeRealmsRoot>>;
const operators: OperatorProcess[] = [];

async function must(args: string[], input?: string): Promise<string> {
  const result = await kubectl(args, { input });
  if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${result.code}): ${result.stderr}`);
  return result.stdout;
}

async function leaseHolder(): Promise<string | undefined> {
  const result = await kubectl(['get', 'lease', 'realm-operator-leader', '-n', LEASE_NS, '-o', 'jsonpath={.spec.holderIdentity}']);
  return result.code === 0 ? result.stdout.trim() || undefined : undefined;
}

beforeAll(async () => {
  db = await createTestDatabase();
  realms = await makeRealmsRoot();
  await must(['apply', '--server-side', '-f', `crds/${GROUP}_${PLURAL}.yaml`]);
  await must(['wait', '--for=condition=Established', `crd/${PLURAL}.${GROUP}`, '--timeout=30s']);
  await must(['create', 'namespace', NS]);
  await must(['create', 'namespace', LEASE_NS]);
});

afterAll(async () => {
  await Promise.all(operators.map((o) => o.stop('SIGKILL')));
  await kubectl(['delete', 'namespace', NS, '--wait=false']);
  await db?.drop();
  await realms?.cleanup();
});

test('the leader is SIGKILLed mid-publish; the other operator takes over and the data is whole', async () => {
  const source = 'http://localhost:4201/failover/big/';
  const published = 'http://pub.localhost/failover/big/';
  const files: Record<string, string> = {};
  for (let i = 0; i < 10_000; i++) files[`d${i % 40}/card-${i}.json`] = `{"i":${i}}`;
  await createSourceRealm(db.pool, realms.layout, source, files);

  for (const identity of ['operator-x', 'operator-y']) {
    const operator = await startOperator({ databaseURL: db.url, realmsRoot: realms.root, identity, leaderElectionNamespace: LEASE_NS });
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
    metadata: { name: 'big', namespace: NS },
    spec: { sourceRealmURL: source, publishedRealmURL: published },
  }));
  // Kill the leader as soon as it logs that it is publishing (it then stages 10,000 files).
  await leader.waitForLog((l) => l.msg === 'publishing', 60_000);
  const killedAt = Date.now();
  await leader.stop('SIGKILL');
  expect(leader.logs().some((l) => l.msg === 'published realm')).toBe(false);

  const wait = await kubectl(['wait', `${PLURAL}.${GROUP}/big`, '-n', NS, '--for=condition=Ready', '--timeout=90s']);
  expect(wait.code).toBe(0);
  process.stderr.write(`failover: killed leader → Ready in ${Date.now() - killedAt} ms\n`);
  expect(await leaseHolder()).toBe(follower.identity);
  expect(follower.logs().some((l) => l.msg === 'published realm')).toBe(true);

  const realm = JSON.parse(await must(['get', `${PLURAL}.${GROUP}`, 'big', '-n', NS, '-o', 'json']));
  expect(realm.status.fileCount).toBe(10_000);
  const tree = await readTree(realms.layout.publishedDir(realm.status.diskId));
  expect(Object.keys(tree)).toHaveLength(10_000);
  expect(tree['d7/card-9967.json']).toBe('{"i":9967}');
  // The killed leader's staging copy was recognised as abandoned and removed.
  expect(await fs.readdir(realms.layout.stagingRoot).catch(() => [])).toEqual([]);
  expect(await fs.readdir(realms.layout.trashDir).catch(() => [])).toEqual([]);
  const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM realm_registry WHERE url = $1', [published]);
  expect(rows[0].n).toBe(1);
}, 180_000);
