/**
 * Against controller-runtime (issue 11, benchmark 5): status-only convergence of N PublishedRealms
 * (default 1,000) by two operators against the same local kube-apiserver, each run in turn:
 * - ours: bench/lib/scale-status-only-operator.ts — src/runtime's Informer, Controller and
 *   Manager with a reconciler that writes Ready=True with observedGeneration and nothing else
 *   (bundled with esbuild and run by plain node, as dist/ is, so no tsx loader sits in its memory),
 *   with the Node flags the operator ships with (src/cli/node-flags.ts: the image's ENTRYPOINT and
 *   bin/realm-operator use the same list); beside it, for reference, the same with Node's defaults;
 * - controller-runtime: bench/peers/controller-runtime (sigs.k8s.io/controller-runtime from the Go
 *   module proxy, built into ~/.cache/realm-operator/bench/), QPS -1 (client-side rate limiting off).
 * Both: the same worker count, objects created before the operator starts, timed by a watch
 * client in this process from the operator's spawn to the last object Ready; peak RSS from VmHWM.
 *
 *   make bench-controller-runtime    (CR_OBJECTS=1000 CR_RUNS=3 CR_WORKERS=4)
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { OPERATOR_NODE_FLAGS } from '../src/cli/node-flags.js';
import { machineInfo, printTable, writeResults, type BenchGoal, type BenchTable } from './lib/results.js';
import { bundleStatusOnlyOperator, cpuSeconds, createAll, createNamespace, median, peakRssMB, publishedRealmManifest, ReadyWatcher, startBenchCluster, type BenchCluster } from './lib/scale-env.js';

const COUNT = Number(process.env.CR_OBJECTS ?? 1000);
const RUNS = Number(process.env.CR_RUNS ?? 3);
const WORKERS = Number(process.env.CR_WORKERS ?? 4);
const startedAt = new Date();
const REPO = path.resolve(import.meta.dirname, '..');
const PEER_DIR = path.join(REPO, 'bench/peers/controller-runtime');
const CACHE = path.join(os.homedir(), '.cache/realm-operator/bench');
const PEER_BIN = path.join(CACHE, 'controller-runtime-peer');
// Inside the repository's node_modules so the bundle resolves pino, prom-client... from there.
const OURS_BUNDLE = path.join(REPO, 'node_modules/.cache/realm-operator-bench/status-only-operator.mjs');

/**
 * `ours`: as shipped, with the operator's Node flags (the goals are measured on it);
 * `ours-node-defaults`: the same code with Node's defaults, to show what the flags buy and cost.
 */
type Impl = 'ours' | 'ours-node-defaults' | 'controller-runtime';
const SHIPPED_FLAGS = OPERATOR_NODE_FLAGS.join(' ');
const NODE_FLAGS: Record<Exclude<Impl, 'controller-runtime'>, readonly string[]> = { ours: OPERATOR_NODE_FLAGS, 'ours-node-defaults': [] };
const IMPLS: Impl[] = ['ours', 'ours-node-defaults', 'controller-runtime'];
const LABEL: Record<Impl, string> = { ours: 'ours', 'ours-node-defaults': "ours, Node's defaults", 'controller-runtime': 'controller-runtime' };
interface Sample {
  impl: Impl;
  run: number;
  /** Spawn → last object Ready. */
  totalMs: number;
  /** First object Ready → last: the reconcile throughput without process start and initial list. */
  reconcileMs: number;
  objectsPerSecond: number;
  peakRssMB: number;
  cpuSeconds: number;
}

function buildPeer(): void {
  fs.mkdirSync(CACHE, { recursive: true });
  process.stderr.write('building the controller-runtime peer (go build; modules from the Go module proxy)\n');
  const result = spawnSync('go', ['build', '-o', PEER_BIN, '.'], { cwd: PEER_DIR, stdio: 'inherit' });
  if (result.status !== 0) throw new Error(`go build in ${PEER_DIR} failed (${result.status ?? result.signal})`);
}

function launch(impl: Impl, cluster: BenchCluster, namespace: string): ChildProcess {
  const env = { ...process.env, KUBECONFIG: cluster.plane.kubeconfigPath };
  const child =
    impl !== 'controller-runtime'
      ? spawn(process.execPath, [...NODE_FLAGS[impl], OURS_BUNDLE, '--namespace', namespace, '--workers', String(WORKERS)], {
          env,
          stdio: ['ignore', 'ignore', 'pipe'],
        })
      : spawn(PEER_BIN, ['--namespace', namespace, '--workers', String(WORKERS)], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  child.on('exit', (code, signal) => {
    if (code !== 0 && signal !== 'SIGTERM' && signal !== 'SIGKILL') process.stderr.write(`${impl} exited ${code ?? signal}: ${stderr}\n`);
  });
  return child;
}

async function oneSample(cluster: BenchCluster, impl: Impl, run: number): Promise<Sample> {
  const namespace = `cr-${impl === 'controller-runtime' ? 'peer' : 'ours'}-${run}-${Math.random().toString(36).slice(2, 7)}`;
  await createNamespace(cluster, namespace);
  await createAll(
    cluster.connection,
    namespace,
    Array.from({ length: COUNT }, (_, i) =>
      publishedRealmManifest(namespace, `realm-${i}`, { sourceRealmURL: `http://localhost:4201/cr/src-${i}/`, publishedRealmURL: `http://pub.localhost/cr/${i}/` }),
    ),
  );
  const watcher = new ReadyWatcher(cluster.connection, namespace);
  await watcher.start();
  const spawned = performance.timeOrigin + performance.now();
  const child = launch(impl, cluster, namespace);
  try {
    await watcher.waitForReady(COUNT, 600_000);
    const peak = await peakRssMB(child.pid!);
    const cpu = await cpuSeconds(child.pid!);
    const times = [...watcher.readyAt.values()];
    const first = Math.min(...times);
    const last = Math.max(...times);
    return {
      impl,
      run,
      totalMs: Math.round(last - spawned),
      reconcileMs: Math.round(last - first),
      objectsPerSecond: Math.round((COUNT / Math.max(1, last - first)) * 1000),
      peakRssMB: peak,
      cpuSeconds: Math.round(cpu * 10) / 10,
    };
  } finally {
    watcher.stop();
    child.kill('SIGKILL');
    // The objects stay; the next sample uses its own namespace.
  }
}

/** Peak RSS of a bare Node process (this Node, no code loaded) after 3 s: the floor of any Node program. */
async function bareNodeRssMB(): Promise<number> {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 10_000)'], { stdio: 'ignore' });
  try {
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    return await peakRssMB(child.pid!);
  } finally {
    child.kill('SIGKILL');
  }
}

/** Peak RSS of an operator watching an empty namespace for 3 s: its floor before any object. */
async function idleRssMB(cluster: BenchCluster, impl: Impl): Promise<number> {
  const namespace = `cr-idle-${impl === 'controller-runtime' ? 'peer' : 'ours'}-${Math.random().toString(36).slice(2, 7)}`;
  await createNamespace(cluster, namespace);
  const child = launch(impl, cluster, namespace);
  try {
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    return await peakRssMB(child.pid!);
  } finally {
    child.kill('SIGKILL');
  }
}

if (!fs.existsSync(PEER_BIN) || fs.statSync(PEER_BIN).mtimeMs < Math.max(...['main.go', 'level.go', 'go.mod', 'go.sum'].map((f) => fs.statSync(path.join(PEER_DIR, f)).mtimeMs))) {
  buildPeer();
}
await bundleStatusOnlyOperator(OURS_BUNDLE);
const cluster = await startBenchCluster();
const samples: Sample[] = [];
const idle: Partial<Record<Impl, number>> = {};
let bareNode = NaN;
try {
  bareNode = await bareNodeRssMB();
  for (const impl of IMPLS) idle[impl] = await idleRssMB(cluster, impl);
  for (let run = 0; run < RUNS; run++) {
    // Alternate which goes first, so neither always meets a busier API server (etcd grows with every run).
    const order: Impl[] = run % 2 === 0 ? ['ours', 'controller-runtime', 'ours-node-defaults'] : ['ours-node-defaults', 'controller-runtime', 'ours'];
    for (const impl of order) {
      const sample = await oneSample(cluster, impl, run);
      samples.push(sample);
      process.stderr.write(`run ${run + 1}/${RUNS} ${impl}: ${sample.totalMs} ms total, ${sample.reconcileMs} ms first→last Ready, ${sample.peakRssMB} MB peak\n`);
    }
  }
} finally {
  await cluster.stop();
}

const of = (impl: Impl) => samples.filter((s) => s.impl === impl);
const med = (impl: Impl, pick: (s: Sample) => number) => median(of(impl).map(pick));
const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100;
const OURS = IMPLS.filter((i) => i !== 'controller-runtime');
const metrics: Array<[string, (s: Sample) => number]> = [
  ['spawn → all Ready (ms)', (s) => s.totalMs],
  ['first → last Ready (ms)', (s) => s.reconcileMs],
  ['objects / s (first → last)', (s) => s.objectsPerSecond],
  ['peak RSS (MB, VmHWM)', (s) => s.peakRssMB],
  ['CPU (s)', (s) => s.cpuSeconds],
];
const table: BenchTable = {
  title: `Status-only convergence of ${COUNT} PublishedRealms, ${WORKERS} workers each (median of ${RUNS} runs)`,
  columns: ['metric', ...IMPLS.map((i) => LABEL[i]), ...OURS.map((i) => `${LABEL[i]} / controller-runtime`)],
  rows: [
    ['peak RSS, empty namespace (MB)', ...IMPLS.map((i) => idle[i]!), ...OURS.map((i) => ratio(idle[i]!, idle['controller-runtime']!))],
    ...metrics.map(([name, pick]) => [name, ...IMPLS.map((i) => med(i, pick)), ...OURS.map((i) => ratio(med(i, pick), med('controller-runtime', pick)))]),
  ],
  note:
    'Both read from their informer cache and PUT the status subresource once per object; client-side rate limits off (controller-runtime QPS -1; ours has none). ' +
    `Ours: src/runtime under node (bundled) with the operator's shipped Node flags (${SHIPPED_FLAGS}; src/cli/node-flags.ts, docs/memory.md); "Node's defaults": the same without them; controller-runtime: sigs.k8s.io/controller-runtime v0.21 (go.mod). Same kube-apiserver, one after the other, order alternating. ` +
    `A bare Node ${process.version} process (no code loaded) peaks at ${bareNode} MB here. Ours drops metadata.managedFields from cached objects (controller-runtime's cache.TransformStripManagedFields; the peer keeps its defaults).`,
};
printTable(table);
const throughput = ratio(med('ours', (s) => s.objectsPerSecond), med('controller-runtime', (s) => s.objectsPerSecond));
const totalRatio = ratio(med('controller-runtime', (s) => s.totalMs), med('ours', (s) => s.totalMs));
const memory = ratio(med('ours', (s) => s.peakRssMB), med('controller-runtime', (s) => s.peakRssMB));
const memoryDefaults = ratio(med('ours-node-defaults', (s) => s.peakRssMB), med('controller-runtime', (s) => s.peakRssMB));
const throughputDefaults = ratio(med('ours-node-defaults', (s) => s.objectsPerSecond), med('controller-runtime', (s) => s.objectsPerSecond));
function rangesOverlap(a: Impl, b: Impl): boolean {
  const times = (impl: Impl) => of(impl).map((s) => s.reconcileMs);
  return Math.max(Math.min(...times(a)), Math.min(...times(b))) <= Math.min(Math.max(...times(a)), Math.max(...times(b)));
}
const cpuRatio = ratio(med('ours', (s) => s.cpuSeconds), med('controller-runtime', (s) => s.cpuSeconds));
const goals: BenchGoal[] = [
  {
    goal: 'status-only throughput vs controller-runtime',
    target: '≥ 1.0×',
    measured: `${throughput}× objects/s (first → last Ready) with ${SHIPPED_FLAGS}; ${totalRatio}× including process start; ${throughputDefaults}× with Node's defaults`,
    met: throughput >= 1.0,
    ...(throughput < 1.0
      ? {
          why:
            `Our process used ${cpuRatio}× controller-runtime's CPU for the same ${COUNT} writes (${med('ours', (s) => s.cpuSeconds)} s vs ${med('controller-runtime', (s) => s.cpuSeconds)} s), ` +
            'a small fraction of the wall time: both wait on the same kube-apiserver and etcd. First → last Ready per run: ' +
            IMPLS.map((impl) => `${impl} ${of(impl).map((s) => s.reconcileMs).join(' / ')} ms`).join('; ') +
            ` (1-min load average ${machineInfo().loadAverage1m} at the end): ` +
            (rangesOverlap('ours', 'controller-runtime')
              ? 'the ranges overlap, so on this shared machine the difference is within the noise.'
              : 'ours was slower in every run; with equal CPU the gap is latency per request (HTTP/1.1 keep-alive sockets here, one HTTP/2 connection in client-go) or start-up, not work done.'),
        }
      : {}),
  },
  {
    goal: 'peak memory vs controller-runtime',
    target: '≤ 1.5×',
    measured: `${memory}× with ${SHIPPED_FLAGS} (as shipped); ${memoryDefaults}× with Node's defaults`,
    met: memory <= 1.5,
    ...(memory > 1.5
      ? {
          why:
            `Before any object, watching an empty namespace, ours peaks at ${idle.ours} MB and the controller-runtime peer at ${idle['controller-runtime']} MB (${ratio(idle.ours!, idle['controller-runtime']!)}×): ` +
            `a bare Node ${process.version} process is ${bareNode} MB here (V8, ICU, the binary's pages; no flag lowers it), already ${ratio(bareNode, med('controller-runtime', (s) => s.peakRssMB))}× the peer's converged peak. ` +
            'Loading https/TLS, pino and prom-client (which pulls in @opentelemetry/api) adds code before the runtime. Converging adds heap: ' +
            `${med('ours', (s) => s.peakRssMB)} MB with ${SHIPPED_FLAGS} (at ${ratio(med('ours', (s) => s.cpuSeconds), med('ours-node-defaults', (s) => s.cpuSeconds))}× the CPU of Node's defaults), ` +
            `${med('ours-node-defaults', (s) => s.peakRssMB)} MB with Node's defaults, vs ${med('controller-runtime', (s) => s.peakRssMB)} MB.`,
        }
      : {}),
  },
];
const file = await writeResults({
  bench: 'controller-runtime',
  command: 'make bench-controller-runtime',
  startedAt: startedAt.toISOString(),
  durationSeconds: Math.round((Date.now() - startedAt.getTime()) / 1000),
  tables: [table],
  series: [],
  goals,
  raw: { count: COUNT, workers: WORKERS, idleRssMB: idle, bareNodeRssMB: bareNode, samples },
});
console.log(`\nwrote ${file}`);
