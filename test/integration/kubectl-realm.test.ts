/**
 * The `kubectl realm` plugin as users run it: the real kubectl finds bin/kubectl-realm on PATH and
 * runs it against the real kube-apiserver, on PublishedRealms whose status is what the operator
 * writes, with per-replica acknowledgements read from a real PostgreSQL. Runs dist/ (npm run build).
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { GROUP, PLURAL } from '../../src/api/v1alpha1/published-realm-types.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { installCRD, must } from '../support/e2e.js';
import { kubectl, testKubeconfigPath, testKubectlPath } from '../support/kube.js';

const run = promisify(execFile);
const BIN = path.resolve(import.meta.dirname, '../../bin');
const NS = `kubectl-realm-${Math.random().toString(36).slice(2, 8)}`;
const NS2 = `${NS}-other`;
const published = 'http://alice.localhost:4201/blog/';
let db: TestDatabase;

/** `kubectl realm <args>` through kubectl's plugin discovery. */
async function plugin(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(testKubectlPath(), ['realm', ...args], {
      env: { ...process.env, PATH: `${BIN}:${process.env.PATH}`, KUBECONFIG: testKubeconfigPath(), DATABASE_URL: '', ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

async function createRealm(namespace: string, name: string, spec: Record<string, unknown>, status?: Record<string, unknown>): Promise<void> {
  await must(['apply', '-f', '-'], JSON.stringify({ apiVersion: `${GROUP}/v1alpha1`, kind: 'PublishedRealm', metadata: { name, namespace }, spec }));
  if (status) await must(['patch', `${PLURAL}.${GROUP}`, name, '-n', namespace, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status })]);
}

const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
const readyStatus = {
  observedGeneration: 1,
  publishedGeneration: 1,
  publishedRevision: '7',
  publishedAt: now,
  diskId: 'f3b1c2d4-0000-4000-8000-000000000001',
  fileCount: 3,
  totalBytes: 2048,
  contentDigest: 'sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
  epoch: 42,
  replicas: { acknowledged: 1, expected: 2, missing: ['realm-server-1'], mode: 'Acknowledged' },
  conditions: [
    { type: 'Ready', status: 'False', reason: 'AwaitingAcknowledgement', message: 'Published epoch 42; waiting for every live replica to acknowledge.', lastTransitionTime: now, observedGeneration: 1 },
    { type: 'Reconciling', status: 'True', reason: 'AwaitingAcknowledgement', message: 'Published epoch 42; waiting for every live replica to acknowledge.', lastTransitionTime: now, observedGeneration: 1 },
  ],
};

beforeAll(async () => {
  await installCRD();
  await must(['create', 'namespace', NS]);
  await must(['create', 'namespace', NS2]);
  await createRealm(NS, 'blog', { sourceRealmURL: 'http://localhost:4201/alice/blog/', publishedRealmURL: published, revision: '7' }, readyStatus);
  await createRealm(NS, 'fresh', { sourceRealmURL: 'http://localhost:4201/alice/new/', publishedRealmURL: 'http://alice.localhost:4201/new/' });
  await createRealm(NS2, 'docs', { sourceRealmURL: 'http://localhost:4201/bob/docs/', publishedRealmURL: 'http://bob.localhost:4201/docs/', revision: 1 }, {
    ...readyStatus,
    publishedRevision: '1',
    epoch: 9,
    replicas: { acknowledged: 2, expected: 2, mode: 'Acknowledged' },
    conditions: [{ type: 'Ready', status: 'True', reason: 'Published', message: 'Every live replica acknowledged epoch 9.', lastTransitionTime: now, observedGeneration: 1 }],
  });
  db = await createTestDatabase();
  // Two live replicas: one acknowledged epoch 42, one only an older epoch; one whose lease expired.
  await db.pool.query(
    `INSERT INTO realm_operator.replicas (replica_id, lease_expires_at, lease_duration_ms) VALUES
       ('realm-server-0', now() + interval '1 hour', 15000),
       ('realm-server-1', now() + interval '1 hour', 15000),
       ('realm-server-old', now() - interval '1 hour', 15000)`,
  );
  await db.pool.query(
    `INSERT INTO realm_operator.replica_acks (replica_id, realm_url, epoch) VALUES ('realm-server-0', $1, 42), ('realm-server-1', $1, 40), ('realm-server-old', $1, 30)`,
    [published],
  );
}, 120_000);

afterAll(async () => {
  await kubectl(['delete', 'namespace', NS, NS2, '--wait=false']);
  await db?.drop();
});

test('status lists each PublishedRealm of the namespace with its live version and acknowledgements', async () => {
  const result = await plugin(['status', '-n', NS]);
  expect(result.code).toBe(0);
  const lines = result.stdout.trim().split('\n');
  expect(lines[0]).toMatch(/^NAME +READY +REASON +REVISION +EPOCH +DIGEST +FILES +PUBLISHED AT +ACKNOWLEDGED$/);
  expect(lines[1]).toMatch(/^blog +False +AwaitingAcknowledgement +7 +42 +sha256:0123456789ab +3 +\S+ +1\/2$/);
  expect(lines[2]).toMatch(/^fresh +Unknown +- +- +- +- +- +- +-$/);
  expect(lines).toHaveLength(3);
});

test('status -A lists every namespace', async () => {
  const result = await plugin(['status', '-A']);
  expect(result.code).toBe(0);
  expect(result.stdout).toMatch(new RegExp(`^${NS} +blog +False`, 'm'));
  expect(result.stdout).toMatch(new RegExp(`^${NS2} +docs +True +Published +1 +9 .* 2/2$`, 'm'));
});

test('status <name> shows the live version and, from status, who has not acknowledged', async () => {
  const result = await plugin(['status', 'blog', '-n', NS]);
  expect(result.code).toBe(0);
  expect(result.stdout).toContain(`PublishedRealm ${NS}/blog`);
  expect(result.stdout).toMatch(/Revision: +7\n/);
  expect(result.stdout).toMatch(/Epoch: +42\n/);
  expect(result.stdout).toContain('sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef');
  expect(result.stdout).toMatch(/Files: +3 \(2\.0 KiB\)/);
  expect(result.stdout).toMatch(/Replicas: +1\/2 live replicas acknowledged epoch 42 \(Acknowledged\)\n +Not yet: +realm-server-1\n/);
  expect(result.stdout).toContain('Reconciling:       AwaitingAcknowledgement');
  expect(result.stdout).not.toContain('REPLICA');
});

test('status <name> with the database shows each replica\'s acknowledgement', async () => {
  const result = await plugin(['status', 'blog', '-n', NS, '--database-url', db.url]);
  expect(result.code).toBe(0);
  expect(result.stdout).toMatch(/REPLICA +LIVE +ACKED EPOCH +ACKED AT +EPOCH 42/);
  expect(result.stdout).toMatch(/realm-server-0 +yes +42 +\S+ +acknowledged/);
  expect(result.stdout).toMatch(/realm-server-1 +yes +40 +\S+ +NOT ACKNOWLEDGED/);
  expect(result.stdout).toMatch(/realm-server-old +no +30 +\S+ +lease expired/);
  // DATABASE_URL works as the flag does.
  expect((await plugin(['status', 'blog', '-n', NS], { DATABASE_URL: db.url })).stdout).toMatch(/realm-server-1 +yes +40/);
});

test('status of an object that does not exist fails naming it', async () => {
  const result = await plugin(['status', 'nope', '-n', NS]);
  expect(result.code).toBe(1);
  expect(result.stderr).toMatch(/404 NotFound.*"nope" not found/);
});

test('versions lists the kept versions from status; rollback refuses one not kept, then sets spec.rollbackTo', async () => {
  const V1 = 'v1764130000000-0a1b2c3d';
  const V2 = 'v1764130099999-ffffffff';
  const versions = [
    { version: V2, epoch: 43, digest: `sha256:${'b'.repeat(64)}`, fileCount: 3, totalBytes: 2048, publishedAt: now, revision: '8', live: true },
    { version: V1, epoch: 42, digest: `sha256:${'a'.repeat(64)}`, fileCount: 2, totalBytes: 100, publishedAt: now, revision: '7', live: false },
  ];
  await createRealm(NS, 'history', { sourceRealmURL: 'http://localhost:4201/alice/history/', publishedRealmURL: 'http://alice.localhost:4201/history/' }, { ...readyStatus, liveVersion: V2, versions });
  const listed = await plugin(['versions', 'history', '-n', NS]);
  expect(listed.code).toBe(0);
  const lines = listed.stdout.trimEnd().split('\n');
  expect(lines[0]).toMatch(/^LIVE\s+VERSION\s+EPOCH/);
  expect(lines[1]).toMatch(new RegExp(`^\\*\\s+${V2}\\s+43\\s+8`));
  expect(lines[2]).toMatch(new RegExp(`^\\s+${V1}\\s+42\\s+7`));
  // The printer column shows the live version.
  expect((await must(['get', `${PLURAL}.${GROUP}`, 'history', '-n', NS])).split('\n')[0]).toMatch(/\bVERSION\b/);
  expect(await must(['get', `${PLURAL}.${GROUP}`, 'history', '-n', NS, '--no-headers'])).toContain(V2);

  const notKept = await plugin(['rollback', 'history', '-n', NS, '--to-version', 'v1700000000000-00000000']);
  expect(notKept.code).toBe(1);
  expect(notKept.stderr).toContain(`is not a kept version of ${NS}/history (kept: ${V2}, ${V1})`);
  expect(await must(['get', `${PLURAL}.${GROUP}`, 'history', '-n', NS, '-o', 'jsonpath={.spec.rollbackTo}'])).toBe('');

  const rolled = await plugin(['rollback', 'history', '-n', NS, '--to-version', V1]);
  expect(rolled).toEqual(expect.objectContaining({ code: 0, stdout: expect.stringContaining(`spec.rollbackTo set to ${V1}`) }));
  expect(await must(['get', `${PLURAL}.${GROUP}`, 'history', '-n', NS, '-o', 'jsonpath={.spec.rollbackTo}'])).toBe(V1);

  const missingVersion = await plugin(['rollback', 'blog', '-n', NS]);
  expect(missingVersion).toEqual(expect.objectContaining({ code: 2, stderr: expect.stringContaining('rollback needs --to-version <id>') }));
  const badVersion = await plugin(['rollback', 'blog', '-n', NS, '--to-version', 'latest']);
  expect(badVersion).toEqual(expect.objectContaining({ code: 2, stderr: expect.stringContaining('--to-version "latest" is not a version id') }));
  expect(await plugin(['versions', 'blgo', '-n', NS])).toEqual(expect.objectContaining({ code: 1, stderr: expect.stringMatching(/"blgo" not found/) }));
  // The API server itself refuses a malformed rollbackTo (CEL), naming the field and the fix.
  const refused = await kubectl(['patch', `${PLURAL}.${GROUP}`, 'history', '-n', NS, '--type=merge', '-p', '{"spec":{"rollbackTo":"latest"}}']);
  expect(refused.code).not.toBe(0);
  expect(refused.stderr).toContain('rollbackTo must be a kept version id');
});

test('help and unknown commands', async () => {
  const help = await plugin(['--help']);
  expect(help.code).toBe(0);
  expect(help.stdout).toMatch(/^usage: kubectl realm <command>/);
  const unknown = await plugin(['stauts']);
  expect(unknown).toEqual(expect.objectContaining({ code: 2, stderr: expect.stringContaining('unknown command "stauts"') }));
});
