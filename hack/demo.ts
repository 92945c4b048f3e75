/**
 * `make demo`: the whole system, locally, on the embedded defaults — PostgreSQL (embedded unless
 * DATABASE_URL), a real etcd + kube-apiserver on loopback, the operator as its own process, and
 * three replica processes running the listener library. Applies a sample PublishedRealm, waits
 * for Ready, edits the source, bumps `revision`, and shows each replica's view of the published
 * file before and after, with the measured latency. Cleans up on exit and on Ctrl-C.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import type pg from 'pg';
import { benchDatabase } from '../bench/support.js';
import { REPLICA_ROLE } from '../src/dataplane/migrations.js';
import { createReplicaLogin, type ReplicaLogin } from '../test/support/database.js';
import { startControlPlane, type ControlPlane } from '../test/support/control-plane.js';
import { startOperator, waitForHTTP, type OperatorProcess } from '../test/support/operator-process.js';
import { startRealmServer, type RealmServerProcess } from '../test/support/realm-server-process.js';
import { createSourceRealm, makeRealmsRoot, writeFiles } from '../test/support/realms.js';

const REPLICAS = 3;
const NAMESPACE = 'default';
const source = 'http://localhost:4201/demo/source/';
const published = 'http://demo.localhost:4201/published/';
const say = (line: string) => process.stdout.write(`${line}\n`);
const repo = path.resolve(import.meta.dirname, '..');

const cleanups: Array<() => Promise<unknown>> = [];
let cleaning: Promise<void> | undefined;
/** Set by Ctrl-C (130) or SIGTERM (143): that exit code wins, and failures it causes are not reported. */
let interruptedWith: number | undefined;
/** Runs every clean-up once, even when Ctrl-C and a failure both ask for it, then exits. */
async function shutdown(code: number): Promise<never> {
  cleaning ??= (async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  })();
  await cleaning;
  process.exit(interruptedWith ?? code);
}
function interrupt(code: number): void {
  if (interruptedWith !== undefined) return;
  interruptedWith = code;
  process.stderr.write('\ninterrupted, cleaning up…\n');
  void shutdown(code);
}
process.on('SIGINT', () => interrupt(130));
process.on('SIGTERM', () => interrupt(143));

async function must(plane: ControlPlane, args: string[], input?: string): Promise<string> {
  const result = await plane.kubectl(args, { input });
  if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

/**
 * The replicas' own login in the least-privilege group role `migrate` set up (as deploy/ does),
 * so the demo runs realm servers the way production should; dropped again on exit.
 */
async function replicaLogin(pool: pg.Pool, operatorURL: string): Promise<string> {
  let login: ReplicaLogin;
  try {
    login = await createReplicaLogin(pool, operatorURL, `demo_realm_server_${randomBytes(3).toString('hex')}`);
  } catch (error) {
    say(`  could not create a login in ${REPLICA_ROLE} (${(error as Error).message}): the replicas use the operator's credentials`);
    return operatorURL;
  }
  cleanups.push(() => login.drop());
  say(`  realm servers connect as ${login.name}, a member of ${REPLICA_ROLE} (no writes to epochs, registry, modules or jobs)`);
  return login.url;
}

const agent = new http.Agent({ keepAlive: true });
function httpGet(port: number, host: string, urlPath: string): Promise<{ status: number; body: string; cache: string; epoch: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: urlPath, headers: { host }, agent }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body, cache: String(res.headers['x-cache'] ?? ''), epoch: String(res.headers['x-realm-epoch'] ?? '') }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

try {
  let started = performance.now();
  say('starting PostgreSQL…');
  const { db, close } = await benchDatabase();
  cleanups.push(close);
  const replicaURL = await replicaLogin(db.pool, db.url);
  const realms = await makeRealmsRoot();
  cleanups.push(realms.cleanup);
  say(`  ready in ${Math.round(performance.now() - started)} ms`);

  started = performance.now();
  say('starting etcd + kube-apiserver on loopback (binaries are built once on first use; that takes minutes)…');
  const plane = await startControlPlane();
  cleanups.push(() => plane.stop());
  say(`  ready in ${Math.round(performance.now() - started)} ms at ${plane.server}`);
  await must(plane, ['apply', '-k', path.join(repo, 'crds')]);
  await must(plane, ['wait', '--for=condition=Established', 'crd/publishedrealms.realm-operator.dev', '--timeout=30s']);
  await must(plane, ['create', 'namespace', 'realm-operator-system']);

  const sourceDir = await createSourceRealm(db.pool, realms.layout, source, { 'index.json': '{"title":"Hello, v1"}' }, 'demo/source');
  // The demo's publisher must own the source realm (Boxel's publish rule, checked by the operator).
  await db.pool.query(`INSERT INTO realm_user_permissions (realm_url, username, read, write, realm_owner) VALUES ($1, '@demo:localhost', true, true, true)`, [source]);

  say('starting the operator…');
  const operator: OperatorProcess = await startOperator({
    databaseURL: db.url,
    realmsRoot: realms.root,
    identity: 'demo-operator',
    leaderElectionNamespace: 'realm-operator-system',
    kubeconfig: plane.kubeconfigPath,
  });
  cleanups.push(() => operator.stop());
  await waitForHTTP(operator, `${operator.healthURL}/readyz`);

  say(`starting ${REPLICAS} realm-server replicas…`);
  const replicas = await Promise.all(
    Array.from({ length: REPLICAS }, async (_, i) => {
      // Production lease and heartbeat (15 s / 2 s), as a Deployment would run them.
      const replica = await startRealmServer({ databaseURL: replicaURL, realmsRoot: realms.root, replicaId: `realm-server-${i + 1}`, leaseDuration: '15s', heartbeatInterval: '2s' });
      cleanups.push(() => replica.stop());
      await replica.waitReady();
      return replica;
    }),
  );
  const publishedHost = new URL(published).host;
  const publishedPath = `${new URL(published).pathname}index.json`;
  const read = (replica: RealmServerProcess) => httpGet(replica.port, publishedHost, publishedPath);

  const manifest = (revision: string) =>
    JSON.stringify({
      apiVersion: 'realm-operator.dev/v1alpha1',
      kind: 'PublishedRealm',
      metadata: { name: 'demo', namespace: NAMESPACE },
      spec: { sourceRealmURL: source, publishedRealmURL: published, revision, publisher: '@demo:localhost' },
    });
  say('applying PublishedRealm demo (revision 1)…');
  started = performance.now();
  await must(plane, ['apply', '-f', '-'], manifest('1'));
  await must(plane, ['wait', 'publishedrealm/demo', '-n', NAMESPACE, '--for=condition=Ready', '--timeout=60s']);
  say(`  Ready in ${Math.round(performance.now() - started)} ms`);
  say((await must(plane, ['get', 'publishedrealms', '-n', NAMESPACE, '-o', 'wide'])).trimEnd());

  // Fill every replica's cache, then read again: served from cache.
  for (const r of replicas) await read(r);
  const before = await Promise.all(replicas.map((r) => read(r)));
  const epochBefore = JSON.parse(await must(plane, ['get', 'publishedrealm/demo', '-n', NAMESPACE, '-o', 'json'])).status.epoch;

  say('');
  say('editing the source realm and bumping revision to 2…');
  await writeFiles(sourceDir, { 'index.json': '{"title":"Hello, v2"}' });
  const appliedAt = Date.now();
  await must(plane, ['apply', '-f', '-'], manifest('2'));
  await must(plane, ['wait', 'publishedrealm/demo', '-n', NAMESPACE, '--for=jsonpath={.status.publishedRevision}=2', '--timeout=60s']);
  await must(plane, ['wait', 'publishedrealm/demo', '-n', NAMESPACE, '--for=condition=Ready', '--timeout=60s']);
  const status = JSON.parse(await must(plane, ['get', 'publishedrealm/demo', '-n', NAMESPACE, '-o', 'json'])).status;
  // From the status itself (millisecond timestamps), not from kubectl's own start-up and polling.
  const readyAt = Date.parse(status.conditions.find((c: { type: string }) => c.type === 'Ready').lastTransitionTime);
  const latency = readyAt - appliedAt;
  const after = await Promise.all(replicas.map((r) => read(r)));

  say('');
  say(`GET ${published}index.json from each replica:`);
  say(`${'replica'.padEnd(15)} | ${`before (epoch ${epochBefore})`.padEnd(42)} | after Ready (epoch ${status.epoch})`);
  say(`${'-'.repeat(16)}|${'-'.repeat(44)}|${'-'.repeat(44)}`);
  replicas.forEach((r, i) => {
    const b = before[i]!;
    const a = after[i]!;
    const cell = (x: typeof b) => `${x.body} (${x.cache}, epoch ${x.epoch})`;
    say(`${r.replicaId.padEnd(15)} | ${cell(b).padEnd(42)} | ${cell(a)}`);
  });
  say('');
  say(`revision 2 applied → Ready=True written: ${latency.toFixed(0)} ms; replicas acknowledged ${status.replicas.acknowledged}/${status.replicas.expected} (${status.replicas.mode}); reindex job ${status.reindexJobId}`);
  const stale = after.filter((a) => !a.body.includes('v2')).length;
  say(stale === 0 ? 'no replica serves pre-publish bytes after Ready.' : `${stale} replica(s) still serve old bytes!`);
  say('');
  say((await must(plane, ['describe', 'publishedrealm/demo', '-n', NAMESPACE])).split('\n').filter((l) => /Events:|Normal|Warning/.test(l)).join('\n'));
  if (process.env.DEMO_OPERATOR_LOGS) for (const l of operator.logs()) say(JSON.stringify(l));
  agent.destroy();
  await shutdown(stale === 0 ? 0 : 1);
} catch (error) {
  // After Ctrl-C the children (same process group) stop too, so whatever was in progress fails: expected, not news.
  if (interruptedWith === undefined) process.stderr.write(`demo failed: ${(error as Error).stack ?? String(error)}\n`);
  await shutdown(1);
}
