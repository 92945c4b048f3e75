/**
 * Publish latency (issue 11, benchmark 1): `apply → Ready` with three acknowledging replicas, for
 * realms of 10 / 1,000 / 10,000 files, first publishes (a new PublishedRealm) and republishes with
 * one changed file (spec.revision bumped), timed by a @kubernetes/client-node watch on the
 * PublishedRealms inside this process: from just before the API request to the watch event that
 * shows Ready=True for the object's new generation.
 *
 * Real parts: etcd + kube-apiserver, PostgreSQL, the built operator (dist/) as a process, three
 * reference realm-server processes (the listener library) registered as replicas.
 *
 * Phases, from the operator's own log lines (pino `time`, the same machine clock) and the job row:
 * - watch delivery + checks: apply → the reconcile's `publishing` line (informer, queue, the checks
 *   before copying; the finalizer only where the create did not carry it, which it does here);
 * - staging, locked section: from the `published realm` line (`stageMs`, `lockHeldMs`);
 *   "publish other" is the rest of that publish (status write Publishing, lock wait, clean-up);
 * - NOTIFY → acks: `replicas acknowledged` (`waitedMs`);
 * - reindex enqueue: `replicas acknowledged` → the job's `created_at`;
 * - status write + watch delivery: the job → Ready seen by the watch.
 *
 *   make bench-publish   (PUBLISH_SIZES=10,1000,10000 PUBLISH_COUNTS=50,50,10 PUBLISH_DURABLE=false)
 *
 * PUBLISH_KINDS=republish times republishes only (one first publish per size makes the version
 * they link from, untimed), printed but not written to bench/results/: the quick loop while
 * working on a republish.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { GROUP, PLURAL, VERSION } from '../src/api/v1alpha1/published-realm-types.js';
import { kubeRequest, resourcePath } from '../src/runtime/index.js';
import { loadClientNode } from '../test/support/control-plane.js';
import { startOperator, waitForHTTP, type OperatorProcess } from '../test/support/operator-process.js';
import { startRealmServer, type RealmServerProcess } from '../test/support/realm-server-process.js';
import { createSourceRealm, makeRealmsRoot } from '../test/support/realms.js';
import { printTable, writeResults, type BenchGoal, type BenchTable } from './lib/results.js';
import { createNamespace, publishedRealmManifest, startBenchCluster, type BenchCluster } from './lib/scale-env.js';
import { benchDatabase, fmt, percentile } from './support.js';
import { DEFAULT_RACY_MARGIN_MS } from '../src/dataplane/staging-manifest.js';

const startedAt = new Date();
const sizes = (process.env.PUBLISH_SIZES ?? '10,1000,10000').split(',').map(Number);
const countsFor = (process.env.PUBLISH_COUNTS ?? '50,50,10').split(',').map(Number);
const durable = process.env.PUBLISH_DURABLE ?? 'false';
const republishOnly = process.env.PUBLISH_KINDS === 'republish';
const REPLICAS = 3;
const PHASES = ['watch delivery + checks', 'staging', 'locked section', 'publish other', 'NOTIFY → acks', 'reindex enqueue', 'status write + watch'] as const;
type Phase = (typeof PHASES)[number];

interface Sample {
  totalMs: number;
  phases: Record<Phase, number>;
}

interface ObjectEvent {
  metadata: { name: string; generation?: number };
  status?: { conditions?: Array<{ type: string; status: string; observedGeneration?: number }> };
}

const { db, close } = await benchDatabase();
const realms = await makeRealmsRoot();
let cluster: BenchCluster | undefined;
let operator: OperatorProcess | undefined;
const replicas: RealmServerProcess[] = [];
let stopWatch: (() => void) | undefined;
const samples = new Map<string, Sample[]>();
try {
  cluster = await startBenchCluster({ finalizerPolicy: true });
  const namespace = `publish-${Math.random().toString(36).slice(2, 7)}`;
  await createNamespace(cluster, namespace);
  await createNamespace(cluster, `${namespace}-system`);
  for (let i = 1; i <= REPLICAS; i++) {
    const replica = await startRealmServer({ databaseURL: db.url, realmsRoot: realms.root, replicaId: `replica-${i}` });
    await replica.waitReady(30_000);
    replicas.push(replica);
  }
  operator = await startOperator({
    databaseURL: db.url,
    realmsRoot: realms.root,
    identity: 'bench-publish',
    kubeconfig: cluster.plane.kubeconfigPath,
    leaderElectionNamespace: `${namespace}-system`,
    namespace,
    extraArgs: ['--durable', durable, '--ack-wait', '30s'],
  });
  await waitForHTTP(operator, `${operator.healthURL}/readyz`, 60_000);

  // The watch: every event's arrival time, per object; waiters resolve on Ready for a generation.
  const k8s = await loadClientNode();
  if (k8s instanceof Error) throw k8s;
  const kc = cluster.plane.kubeConfig();
  const waiters = new Map<string, { generation: number; resolve: (at: number) => void }>();
  const objectsPath = resourcePath({ group: GROUP, version: VERSION, plural: PLURAL }, namespace);
  const watchRequest = await new k8s.Watch(kc).watch(
    objectsPath,
    { allowWatchBookmarks: true },
    (type: string, object: ObjectEvent) => {
      if (type !== 'ADDED' && type !== 'MODIFIED') return;
      const at = Date.now();
      const waiter = waiters.get(object.metadata.name);
      const ready = object.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True' && c.observedGeneration === waiter?.generation);
      if (waiter && ready) {
        waiters.delete(object.metadata.name);
        waiter.resolve(at);
      }
    },
    (error: unknown) => {
      if (error) process.stderr.write(`watch ended: ${(error as Error).message}\n`);
    },
  );
  stopWatch = () => watchRequest.abort();
  const readyFor = (name: string, generation: number) =>
    new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} generation ${generation} not Ready after 300 s`)), 300_000);
      waiters.set(name, { generation, resolve: (at) => (clearTimeout(timer), resolve(at)) });
    });

  const operatorLines = () => operator!.logs();
  /** The operator's log lines about the object `name` (publishing `url`) from `sinceIndex` on. */
  const linesFor = (name: string, url: string, sinceIndex: number) =>
    operatorLines()
      .slice(sinceIndex)
      .filter((l) => l.realm === url || l.publishedRealm === `${namespace}/${name}`);
  const findLine = (lines: Array<Record<string, unknown>>, msg: string) => lines.find((l) => l.msg === msg);

  async function measure(kind: 'first' | 'republish', size: number, name: string, url: string, send: () => Promise<number>): Promise<Sample> {
    const logIndex = operatorLines().length;
    const applied = Date.now();
    const generation = await send();
    const readyPromise = readyFor(name, generation);
    const readyAt = await readyPromise;
    // Let the log lines of this reconcile arrive (they are written before the status is).
    await new Promise((resolve) => setTimeout(resolve, 20));
    const lines = linesFor(name, url, logIndex);
    const publishing = findLine(lines, 'publishing');
    const published = findLine(lines, 'published realm');
    const acked = findLine(lines, 'replicas acknowledged');
    if (!publishing || !published || !acked) throw new Error(`${kind} ${size}: missing operator log lines for ${url}: ${JSON.stringify(lines.slice(-8))}`);
    const { rows } = await db.pool.query<{ created: string }>(
      `SELECT (extract(epoch FROM max(created_at)) * 1000)::float8 AS created FROM jobs WHERE args->>'realmURL' = $1`,
      [url],
    );
    const jobAt = Number(rows[0]?.created ?? NaN);
    // No Boxel worker runs here: settle the job as one would, so the next publish's enqueue inserts
    // a new row (a pending one would be joined, and its created_at would be the first publish's).
    await db.pool.query(`UPDATE jobs SET status = 'resolved', finished_at = now() WHERE args->>'realmURL' = $1 AND status = 'unfulfilled'`, [url]);
    const t = (line: Record<string, unknown>) => Number(line.time);
    const stage = Number(published.stageMs);
    const held = Number(published.lockHeldMs);
    const publishSpan = t(published) - t(publishing);
    return {
      totalMs: readyAt - applied,
      phases: {
        'watch delivery + checks': t(publishing) - applied,
        staging: stage,
        'locked section': held,
        'publish other': Math.max(0, publishSpan - stage - held),
        'NOTIFY → acks': Number(acked.waitedMs),
        'reindex enqueue': jobAt - t(acked),
        'status write + watch': readyAt - jobAt,
      },
    };
  }

  let objectCounter = 0;
  for (const [index, size] of sizes.entries()) {
    const count = countsFor[index] ?? countsFor[countsFor.length - 1]!;
    const files: Record<string, string> = { 'index.json': '{}' };
    for (let i = 0; i < size - 1; i++) files[`dir-${i % 20}/card-${i}.json`] = JSON.stringify({ i, body: 'x'.repeat(480) });
    const sourceURL = `http://localhost:4201/bench/src-${size}/`;
    const sourceDir = await createSourceRealm(db.pool, realms.layout, sourceURL, files);
    await new Promise((resolve) => setTimeout(resolve, DEFAULT_RACY_MARGIN_MS + 200));
    const firsts: Sample[] = [];
    const firstCount = republishOnly ? 1 : count;
    for (let n = 0; n < firstCount; n++) {
      const name = `first-${size}-${n}-${objectCounter++}`;
      const url = `http://pub.localhost/${namespace}/${name}/`;
      firsts.push(
        await measure('first', size, name, url, async () => {
          const created = await kubeRequest<{ metadata: { generation: number } }>(cluster!.connection, {
            method: 'POST',
            path: objectsPath,
            body: publishedRealmManifest(namespace, name, { sourceRealmURL: sourceURL, publishedRealmURL: url, revision: '0' }),
          });
          return created.metadata.generation;
        }),
      );
    }
    if (!republishOnly) samples.set(`${size}/first publish`, firsts);
    // Republishes of the last object, one file changed before each.
    const name = `first-${size}-${firstCount - 1}-${objectCounter - 1}`;
    const url = `http://pub.localhost/${namespace}/${name}/`;
    const republishes: Sample[] = [];
    for (let n = 1; n <= count; n++) {
      await fs.writeFile(path.join(sourceDir, 'index.json'), JSON.stringify({ revision: n }));
      republishes.push(
        await measure('republish', size, name, url, async () => {
          const patched = await kubeRequest<{ metadata: { generation: number } }>(cluster!.connection, {
            method: 'PATCH',
            path: `${objectsPath}/${name}`,
            contentType: 'application/merge-patch+json',
            body: { spec: { revision: String(n) } },
          });
          return patched.metadata.generation;
        }),
      );
    }
    samples.set(`${size}/republish (1 changed)`, republishes);
    process.stderr.write(`${size} files: ${firstCount} first publishes and ${count} republishes\n`);
  }
} finally {
  stopWatch?.();
  await operator?.stop('SIGTERM');
  for (const replica of replicas) await replica.stop('SIGTERM').catch(() => undefined);
  await cluster?.stop();
  await close();
  await realms.cleanup();
}

const med = (v: number[]) => percentile(v, 50);
const tables: BenchTable[] = [
  {
    title: `Publish latency, apply → Ready with ${REPLICAS} acknowledging replicas (durable=${durable})`,
    columns: ['files', 'kind', 'n', 'p50 ms', 'p99 ms', ...PHASES.map((p) => `${p} p50`)],
    rows: [...samples].map(([key, list]) => {
      const [size, kind] = key.split('/') as [string, string];
      return [size, kind, list.length, fmt(med(list.map((s) => s.totalMs))), fmt(percentile(list.map((s) => s.totalMs), 99)), ...PHASES.map((p) => fmt(med(list.map((s) => s.phases[p]))))];
    }),
    note:
      'Timed by a client-node watch in the bench process. Phases from the operator’s log lines and the reindex job’s created_at (same machine clock, ms). ' +
      `PUBLISH_DURABLE=${durable}: ${durable === 'false' ? 'no syncfs (its cost is in bench-staging); ' : ''}counts per size: ${countsFor.join(' / ')}.`,
  },
];
const goals: BenchGoal[] = [];
for (const table of tables) printTable(table);
// A republish-only run is a partial one: printed, never written over the full run's results.
const file = republishOnly ? undefined : await writeResults({
  bench: 'publish-latency',
  command: 'make bench-publish',
  startedAt: startedAt.toISOString(),
  durationSeconds: Math.round((Date.now() - startedAt.getTime()) / 1000),
  tables,
  series: [
    {
      title: 'apply → Ready by realm size (p50)',
      xLabel: 'files',
      yLabel: 'ms',
      lines: ['first publish', 'republish (1 changed)'].map((kind) => ({
        name: kind,
        points: sizes.filter((s) => samples.has(`${s}/${kind}`)).map((s) => [s, med(samples.get(`${s}/${kind}`)!.map((x) => x.totalMs))] as [number, number]),
      })),
    },
  ],
  goals,
  raw: Object.fromEntries([...samples].map(([key, list]) => [key, { totalMs: list.map((s) => Math.round(s.totalMs)) }])),
});
if (file) console.log(`\nresults: ${file}`);
