/**
 * `make demo`: PostgreSQL (embedded unless DATABASE_URL), three replica processes running the
 * listener library, and a publish that reaches all of them. Shows each replica's view of the
 * published file before and after the republish, and the measured latency. Cleans up on exit
 * and on Ctrl-C.
 */
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { pino } from 'pino';
import { waitForReplicaAcks } from '../src/dataplane/acknowledgements.js';
import { publishRealm } from '../src/dataplane/publish.js';
import { benchDatabase } from '../bench/support.js';
import { createSourceRealm, makeRealmsRoot, writeFiles } from '../test/support/realms.js';

const REPLICAS = 3;
const source = 'http://localhost:4201/demo/source/';
const published = 'http://localhost:4201/demo/published/';
const say = (line: string) => process.stdout.write(`${line}\n`);

const children: ChildProcess[] = [];
let cleanup: () => Promise<void> = async () => undefined;
let cleaning = false;
async function shutdown(code: number) {
  if (cleaning) return;
  cleaning = true;
  for (const child of children) child.kill('SIGTERM');
  await cleanup().catch(() => undefined);
  process.exit(code);
}
process.on('SIGINT', () => void shutdown(130));
process.on('SIGTERM', () => void shutdown(143));

try {
  say('starting PostgreSQL…');
  const { db, close } = await benchDatabase();
  const realms = await makeRealmsRoot();
  cleanup = async () => {
    await realms.cleanup();
    await close();
  };
  const plane = { pool: db.pool, layout: realms.layout, logger: pino({ level: 'silent' }) };

  const sourceDir = await createSourceRealm(db.pool, realms.layout, source, { 'index.json': '{"title":"Hello, v1"}' });
  const first = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published, ownerUsername: 'demo' });
  say(`published ${published} at epoch ${first.epoch} (${first.fileCount} file)`);

  say(`starting ${REPLICAS} replicas…`);
  const replicas = await Promise.all(
    Array.from({ length: REPLICAS }, async (_, i) => {
      const child = fork(path.join(import.meta.dirname, 'demo-replica.ts'), [], {
        execArgv: ['--import', 'tsx'],
        env: { ...process.env, DATABASE_URL: db.url, REALM_URL: published, REALMS_ROOT: realms.root, REPLICA_ID: `replica-${i + 1}` },
      });
      children.push(child);
      await new Promise<void>((resolve) => child.on('message', (m: { type: string }) => m.type === 'ready' && resolve()));
      return { id: `replica-${i + 1}`, child };
    }),
  );
  const read = (child: ChildProcess) =>
    new Promise<{ content: string; fromCache: boolean }>((resolve) => {
      const onMessage = (m: { type: string; content: string; fromCache: boolean }) => {
        if (m.type !== 'read') return;
        child.off('message', onMessage);
        resolve(m);
      };
      child.on('message', onMessage);
      child.send({ type: 'read', path: 'index.json' });
    });

  // Warm every cache, then read again: the second read is served from cache.
  for (const r of replicas) await read(r.child);
  const before = await Promise.all(replicas.map((r) => read(r.child)));

  say('editing the source realm and republishing…');
  await writeFiles(sourceDir, { 'index.json': '{"title":"Hello, v2"}' });
  const started = performance.now();
  const second = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
  const acks = await waitForReplicaAcks(db.pool, { realmURL: published, epoch: second.epoch, timeoutMs: 10_000 });
  const latency = performance.now() - started;
  const after = await Promise.all(replicas.map((r) => read(r.child)));

  say('');
  say(`${'replica'.padEnd(11)} | ${`before republish (epoch ${first.epoch})`.padEnd(38)} | after all acknowledged (epoch ${second.epoch})`);
  say(`${'-'.repeat(12)}|${'-'.repeat(40)}|${'-'.repeat(40)}`);
  replicas.forEach((r, i) => {
    const b = before[i]!;
    const a = after[i]!;
    say(`${r.id.padEnd(11)} | ${`${b.content} ${b.fromCache ? '(cache)' : '(disk)'}`.padEnd(38)} | ${a.content} ${a.fromCache ? '(cache)' : '(disk)'}`);
  });
  say('');
  say(`acknowledged by ${acks.acknowledged.length}/${acks.acknowledged.length + acks.missing.length} live replicas (${acks.acknowledged.join(', ')})`);
  say(`publish → every replica acknowledged: ${latency.toFixed(1)} ms (stage ${second.timing.stageMs.toFixed(1)} ms, lock held ${second.timing.lockHeldMs.toFixed(1)} ms, ack wait ${acks.waitedMs.toFixed(1)} ms)`);
  const stale = after.filter((a) => !a.content.includes('v2')).length;
  say(stale === 0 ? 'no replica serves pre-publish bytes.' : `${stale} replica(s) still serve old bytes!`);
  await shutdown(stale === 0 && acks.complete ? 0 : 1);
} catch (error) {
  process.stderr.write(`demo failed: ${(error as Error).stack}\n`);
  await shutdown(1);
}
