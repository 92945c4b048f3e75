/**
 * BENCHMARK TOOL — Node flag variants for the operator, side by side with the controller-runtime
 * peer, in one run against one kube-apiserver: the status-only convergence of N PublishedRealms
 * (bench/lib/scale-status-only-operator.ts, as bench/controller-runtime.ts runs it) under each
 * variant in turn, rounds alternating, reporting peak RSS (VmHWM), CPU seconds and objects/s.
 * How docs/memory.md's flag tables were measured; the memory goal is ≤ 1.5× the peer's peak RSS.
 *
 *   npx tsx bench/lib/scale-flag-variants.ts
 *   (FLAG_VARIANTS='name=--flag --flag;name2=...' (default: shipped and Node's defaults),
 *    FLAG_OBJECTS=1000 FLAG_ROUNDS=2 FLAG_WORKERS=4; the peer must be built: make bench-controller-runtime once)
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { OPERATOR_NODE_FLAGS } from '../../src/cli/node-flags.js';
import { bundleStatusOnlyOperator, cpuSeconds, createAll, createNamespace, median, peakRssMB, publishedRealmManifest, ReadyWatcher, startBenchCluster, type BenchCluster } from './scale-env.js';

const COUNT = Number(process.env.FLAG_OBJECTS ?? 1000);
const ROUNDS = Number(process.env.FLAG_ROUNDS ?? 2);
const WORKERS = Number(process.env.FLAG_WORKERS ?? 4);
const REPO = path.resolve(import.meta.dirname, '../..');
const PEER_BIN = path.join(os.homedir(), '.cache/realm-operator/bench/controller-runtime-peer');
const BUNDLE = path.join(REPO, 'node_modules/.cache/realm-operator-bench/status-only-operator-variants.mjs');

/** `name=flags;name=flags`; the peer is always added. */
function variants(): Array<{ name: string; flags: string[] }> {
  const spec = process.env.FLAG_VARIANTS ?? `shipped=${OPERATOR_NODE_FLAGS.join(' ')};defaults=`;
  return spec
    .split(';')
    .filter(Boolean)
    .map((entry) => {
      const [name, flags = ''] = entry.split('=', 2) as [string, string?];
      // `=` inside a flag (--max-optimized-bytecode-size=2000) belongs to the flags.
      const rest = entry.slice(name.length + 1);
      return { name, flags: (rest || flags).split(/\s+/).filter(Boolean) };
    });
}

interface Sample {
  variant: string;
  peakRssMB: number;
  cpu: number;
  objectsPerSecond: number;
}

async function oneSample(cluster: BenchCluster, variant: { name: string; flags: string[] } | 'peer'): Promise<Sample> {
  const namespace = `fv-${Math.random().toString(36).slice(2, 9)}`;
  await createNamespace(cluster, namespace);
  await createAll(
    cluster.connection,
    namespace,
    Array.from({ length: COUNT }, (_, i) => publishedRealmManifest(namespace, `realm-${i}`, { sourceRealmURL: `http://localhost:4201/fv/src-${i}/`, publishedRealmURL: `http://pub.localhost/fv/${i}/` })),
  );
  const watcher = new ReadyWatcher(cluster.connection, namespace);
  await watcher.start();
  const env = { ...process.env, KUBECONFIG: cluster.plane.kubeconfigPath };
  const args = ['--namespace', namespace, '--workers', String(WORKERS)];
  const child = variant === 'peer' ? spawn(PEER_BIN, args, { env, stdio: 'ignore' }) : spawn(process.execPath, [...variant.flags, BUNDLE, ...args], { env, stdio: 'ignore' });
  try {
    await watcher.waitForReady(COUNT, 600_000);
    const times = [...watcher.readyAt.values()];
    return {
      variant: variant === 'peer' ? 'controller-runtime peer' : variant.name,
      peakRssMB: await peakRssMB(child.pid!),
      cpu: Math.round((await cpuSeconds(child.pid!)) * 100) / 100,
      objectsPerSecond: Math.round((COUNT / Math.max(1, Math.max(...times) - Math.min(...times))) * 1000),
    };
  } finally {
    watcher.stop();
    child.kill('SIGKILL');
  }
}

if (!fs.existsSync(PEER_BIN)) throw new Error(`${PEER_BIN} is missing: run make bench-controller-runtime once (it builds the peer)`);
await bundleStatusOnlyOperator(BUNDLE);
const all = variants();
const cluster = await startBenchCluster();
const samples: Sample[] = [];
try {
  for (let round = 0; round < ROUNDS; round++) {
    // Alternating order, so a drift in the machine's load does not favour one side.
    const order: Array<(typeof all)[number] | 'peer'> = ['peer', ...all];
    if (round % 2) order.reverse();
    for (const variant of order) {
      const sample = await oneSample(cluster, variant);
      samples.push(sample);
      process.stderr.write(`round ${round + 1}: ${sample.variant}: ${sample.peakRssMB} MB, ${sample.cpu} s CPU, ${sample.objectsPerSecond} objects/s (load ${os.loadavg()[0]!.toFixed(1)})\n`);
    }
  }
} finally {
  await cluster.stop();
}
const peer = median(samples.filter((s) => s.variant === 'controller-runtime peer').map((s) => s.peakRssMB));
console.log(`\n| variant | peak RSS (MB) | × peer | CPU (s) | objects/s |\n| --- | ---: | ---: | ---: | ---: |`);
for (const name of ['controller-runtime peer', ...all.map((v) => v.name)]) {
  const mine = samples.filter((s) => s.variant === name);
  const flags = all.find((v) => v.name === name)?.flags.join(' ');
  console.log(
    `| ${name}${flags ? ` (\`${flags}\`)` : name === 'controller-runtime peer' ? '' : ' (Node defaults)'} | ${mine.map((s) => s.peakRssMB).join(' / ')} | ${(median(mine.map((s) => s.peakRssMB)) / peer).toFixed(2)} | ${mine.map((s) => s.cpu).join(' / ')} | ${mine.map((s) => s.objectsPerSecond).join(' / ')} |`,
  );
}
