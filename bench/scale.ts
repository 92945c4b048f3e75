/**
 * Scale benchmark (issue 11, benchmark 4): N PublishedRealms (default 1,000) created at once →
 * all Ready=True for their generation, timed by a watch client in this process; reconciles per
 * second and the operator's peak RSS (VmHWM). Then a graceful operator restart with those N:
 * time from the new process's start until its work queue is idle (every key reconciled once,
 * depth 0, no worker busy — read from its /metrics), and how many realms it republished (must be 0).
 *
 * Real parts: kube-apiserver + etcd, PostgreSQL, the built operator (dist/) as a process. No
 * realm-server replica is registered, so Ready is `PublishedNotifyOnly` (the publish and its
 * NOTIFY happen, there is nobody to acknowledge); bench-fanout and bench-publish measure acks.
 *
 *   make bench-scale    (SCALE_REALMS=1000 SCALE_RUNS=3 (make bench-scale; the script alone: 1) SCALE_CONCURRENCY=<workers> SCALE_DURABLE=false;
 *                        SCALE_CPU_PROF=<dir> writes the operator's .cpuprofile there; SCALE_NODE_OPTIONS=<node flags>;
 *                        SCALE_OPERATOR_FLAGS=shipped (default: OPERATOR_NODE_FLAGS, as the image runs it) | defaults (Node's) | '--flag …' (a variant))
 */
import { GROUP, VERSION } from '../src/api/v1alpha1/published-realm-types.js';
import { OPERATOR_NODE_FLAGS } from '../src/cli/node-flags.js';
import { operatorConfigSchema } from '../src/cli/operator-config.js';
import { startOperator, waitForHTTP, type OperatorProcess } from '../test/support/operator-process.js';
import { createSourceRealm, makeRealmsRoot } from '../test/support/realms.js';
import path from 'node:path';
import { printTable, RESULTS_DIR, writeResults, type BenchGoal, type BenchTable } from './lib/results.js';
import {
  RESOURCE,
  apiRequestsByVerb,
  CpuMeter,
  createAll,
  createNamespace,
  diffCounts,
  median,
  parseMetrics,
  peakRssMB,
  postgresPids,
  publishedRealmManifest,
  ReadyWatcher,
  startBenchCluster,
  type BenchCluster,
} from './lib/scale-env.js';
import { benchDatabase } from './support.js';
import {
  apiserverCounters,
  idleRate,
  minimalShapes,
  operatorSample,
  operatorShapes,
  pacedFloor,
  phasedFloor,
  type FloorRun,
  type OperatorSample,
  type PacedFloorRun,
} from './lib/api-floor.js';

const COUNT = Number(process.env.SCALE_REALMS ?? 1000);
const RUNS = Number(process.env.SCALE_RUNS ?? 1);
const CONCURRENCY = process.env.SCALE_CONCURRENCY;
const DURABLE = process.env.SCALE_DURABLE ?? 'false';
const CPU_PROF = process.env.SCALE_CPU_PROF;
/** Skip the API floor (the same requests from a bare client, no operator): SCALE_API_FLOOR=0. */
const API_FLOOR = process.env.SCALE_API_FLOOR !== '0';
/** Skip the paced API floor (the operator's requests spread over its convergence time): SCALE_API_PACED=0. */
const API_PACED = process.env.SCALE_API_PACED !== '0';
/** The issue's goal for created → all Ready. */
const READY_GOAL_MS = 20_000;
/** How long the API server's idle CPU rate is read, with the operator running and without it. */
const IDLE_MS = Number(process.env.SCALE_IDLE_MS ?? 5000);
/** Extra Node options for the operator (e.g. --max-semi-space-size=1 to trade GC work for memory). */
/** Every operator counts its SQL statements (bench/lib/count-queries.cjs) into this directory. */
const QUERY_COUNTS = await (await import('node:fs/promises')).mkdtemp(`${(await import('node:os')).tmpdir()}/scale-queries-`);
const COUNT_QUERIES = `--require ${new URL('./lib/count-queries.cjs', import.meta.url).pathname}`;
/**
 * The operator runs with the Node flags it ships with (src/cli/node-flags.ts) unless
 * SCALE_OPERATOR_FLAGS=defaults (Node's) or SCALE_OPERATOR_FLAGS='--flag --flag…' (a variant to
 * measure; V8 flags cannot go in NODE_OPTIONS).
 */
const OPERATOR_FLAGS_MODE = process.env.SCALE_OPERATOR_FLAGS === 'defaults' ? 'defaults' : process.env.SCALE_OPERATOR_FLAGS?.startsWith('--') ? 'custom' : 'shipped';
const OPERATOR_FLAGS: readonly string[] =
  OPERATOR_FLAGS_MODE === 'shipped' ? OPERATOR_NODE_FLAGS : OPERATOR_FLAGS_MODE === 'custom' ? process.env.SCALE_OPERATOR_FLAGS!.split(/\s+/).filter(Boolean) : [];
const NODE_FLAGS = [process.env.SCALE_NODE_OPTIONS, CPU_PROF ? `--cpu-prof --cpu-prof-dir=${CPU_PROF}` : undefined, COUNT_QUERIES].filter(Boolean).join(' ');
const startedAt = new Date();
const machineLoad = Math.round((await import('node:os')).loadavg()[0]! * 10) / 10;

interface RunResult {
  readyMs: number;
  reconcilesPerSecond: number;
  peakRssMB: number;
  restartIdleMs: number;
  restartReadyzMs: number;
  restartReconciles: number;
  restartPeakRssMB: number;
  republishes: number;
  epochsChanged: number;
  /** CPU seconds each part used from the creates until all Ready. */
  cpu: { operator: number; apiserver: number; etcd: number; postgres: number };
  restartOperatorCpu: number;
  /** API requests during convergence, by resource and verb. */
  requests: { publishedrealms: Record<string, number>; events: Record<string, number> };
  dbTransactions: number;
  /** SQL statements the operator sent until all Ready, and the most frequent ones (text, count). */
  dbStatements: number;
  topStatements: Array<[string, number]>;
  /** Reconciles until all Ready, by controller_runtime_reconcile_total's result label. */
  reconcileResults: Record<string, number>;
  /** kube-apiserver's counters over the convergence: requests by resource and verb, watch events and bytes (every client's). */
  apiCounters: Record<string, number>;
  /** kube-apiserver and etcd CPU seconds per second with nothing sent: the operator idle after all Ready, and no operator at all. */
  idle: { withOperator: { apiserver: number; etcd: number }; withoutOperator: { apiserver: number; etcd: number } };
  /** JSON bytes of one Ready object as stored (with and without managedFields), its status, and one Event. */
  objectBytes: { object: number; withoutManagedFields: number; status: number; event: number };
}

const { db, close } = await benchDatabase();
let cluster: BenchCluster | undefined;
let operator: OperatorProcess | undefined;
const realms = await makeRealmsRoot();
const results: RunResult[] = [];
let floor: ApiFloor | undefined;
/** The last run's Ready object and Event, whose bodies the API floor sends again. */
let lastSample: OperatorSample | undefined;
try {
  // SCALE_FINALIZER_POLICY=0: without deploy/base's admission policy (the operator PATCHes the finalizer on), to compare.
  cluster = await startBenchCluster({ finalizerPolicy: process.env.SCALE_FINALIZER_POLICY !== '0' });
  process.stderr.write(`scale: control plane up in ${cluster.plane.startedInMs} ms; creating ${COUNT} source realms\n`);
  for (let i = 0; i < COUNT; i++) {
    await createSourceRealm(db.pool, realms.layout, `http://localhost:4201/scale/src-${i}/`, { 'index.json': `{"i":${i}}` }, `scale/src-${i}`);
  }
  for (let run = 0; run < RUNS; run++) {
    results.push(await oneRun(cluster, run));
    const r = results.at(-1)!;
    process.stderr.write(`scale run ${run + 1}/${RUNS}: ${COUNT} Ready in ${r.readyMs} ms, peak RSS ${r.peakRssMB} MB; restart idle in ${r.restartIdleMs} ms, ${r.republishes} republishes\n`);
  }
  if (API_FLOOR) {
    floor = await apiFloor(cluster, results.at(-1)!, lastSample!);
    process.stderr.write(`scale API floor: the same requests from a bare client in ${floor.wallMs} ms, ${floor.cpu.apiserver + floor.cpu.etcd} s of API server + etcd CPU\n`);
  }
} finally {
  await operator?.stop('SIGKILL');
  await cluster?.stop();
  await close();
  await realms.cleanup();
}

async function oneRun(cluster: BenchCluster, run: number): Promise<RunResult> {
  const namespace = `scale-${run}-${Math.random().toString(36).slice(2, 7)}`;
  const leaseNamespace = `${namespace}-system`;
  await createNamespace(cluster, namespace);
  await createNamespace(cluster, leaseNamespace);
  // Each run publishes at its own URLs: the previous run's objects stay in another namespace.
  const manifests = Array.from({ length: COUNT }, (_, i) =>
    publishedRealmManifest(namespace, `realm-${i}`, {
      sourceRealmURL: `http://localhost:4201/scale/src-${i}/`,
      publishedRealmURL: `http://pub.localhost/${namespace}/${i}/`,
      reindex: { enabled: false },
    }),
  );
  const start = (identity: string) =>
    startOperator({
      databaseURL: db.url,
      realmsRoot: realms.root,
      identity,
      kubeconfig: cluster.plane.kubeconfigPath,
      leaderElectionNamespace: leaseNamespace,
      namespace,
      extraArgs: [
        '--log-level', 'info', '--durable', DURABLE, ...(CONCURRENCY ? ['--max-concurrent-reconciles', CONCURRENCY] : []),
        // Leader election as shipped (client-go's defaults), not the test support's short timings: renewals are API requests too.
        '--leader-election-lease-duration', '15s', '--leader-election-renew-deadline', '10s', '--leader-election-retry-period', '2s',
      ],
      env: { NODE_OPTIONS: NODE_FLAGS, COUNT_QUERIES_DIR: QUERY_COUNTS },
      nodeFlags: OPERATOR_FLAGS,
    });

  operator = await start(`scale-${run}-a`);
  await waitForHTTP(operator, `${operator.healthURL}/readyz`, 60_000);
  const watcher = new ReadyWatcher(cluster.connection, namespace);
  await watcher.start();
  // PostgreSQL starts a backend per new connection: its processes are listed again at every sample.
  const parts = { operator: [operator.child.pid!], apiserver: [cluster.plane.pids.apiserver], etcd: [cluster.plane.pids.etcd], postgres: [] as number[] };
  const refreshPostgres = async () => {
    for (const pid of await postgresPids((sql) => db.pool.query(sql))) if (!parts.postgres.includes(pid)) parts.postgres.push(pid);
  };
  await refreshPostgres();
  const meter = new CpuMeter();
  const sampleAll = async () => {
    await refreshPostgres();
    await meter.sample(Object.values(parts).flat());
  };
  const requestsBefore = { publishedrealms: await apiRequestsByVerb(cluster.connection, 'publishedrealms'), events: await apiRequestsByVerb(cluster.connection, 'events') };
  const countersBefore = await apiserverCounters(cluster.connection);
  const xactBefore = await transactions();
  await sampleAll();
  const sampler = setInterval(() => void sampleAll(), 1000);
  const applied = performance.timeOrigin + performance.now();
  await createAll(cluster.connection, namespace, manifests);
  try {
    await watcher.waitForReady(COUNT, 900_000);
  } finally {
    clearInterval(sampler);
  }
  await sampleAll();
  const readyMs = Math.round(watcher.lastReadyAt() - applied);
  const peakRss = await peakRssMB(operator.child.pid!);
  const requests = {
    publishedrealms: diffCounts(await apiRequestsByVerb(cluster.connection, 'publishedrealms'), requestsBefore.publishedrealms),
    events: diffCounts(await apiRequestsByVerb(cluster.connection, 'events'), requestsBefore.events),
  };
  const apiCounters = diffCounts(await apiserverCounters(cluster.connection), countersBefore);
  const dbTransactions = (await transactions()) - xactBefore;
  const cpu = {
    operator: round1(meter.used(parts.operator)),
    apiserver: round1(meter.used(parts.apiserver)),
    etcd: round1(meter.used(parts.etcd)),
    postgres: round1(meter.used(parts.postgres)),
  };
  const metrics = parseMetrics(await fetch(`${operator.metricsURL}/metrics`).then((r) => r.text()));
  const reconciles = sumReconciles(metrics);
  const reconcileResults: Record<string, number> = {};
  for (const [key, value] of metrics) {
    const result = /^controller_runtime_reconcile_total\{controller="publishedrealm",result="([a-z_]+)"\}$/.exec(key)?.[1];
    if (result && value > 0) reconcileResults[result] = value;
  }
  watcher.stop();
  const idleWithOperator = await idleRate(cluster, IDLE_MS);
  lastSample = await operatorSample(cluster.connection, namespace, 'realm-0');
  const { managedFields: _managed, ...metadataWithout } = lastSample.object.metadata;
  const objectBytes = {
    object: jsonBytes(lastSample.object),
    withoutManagedFields: jsonBytes({ ...lastSample.object, metadata: metadataWithout }),
    status: jsonBytes(lastSample.object.status),
    event: jsonBytes(lastSample.event),
  };
  const epochsBefore = await epochs(namespace);
  if (epochsBefore.size !== COUNT) throw new Error(`expected ${COUNT} published epochs, found ${epochsBefore.size}`);

  const firstPid = operator.child.pid!;
  const stopped = await operator.stop('SIGTERM');
  if (stopped.code !== 0) throw new Error(`the operator exited with ${JSON.stringify(stopped)} on SIGTERM`);
  // Written at exit: everything the first operator sent (its start-up's few statements included).
  const statements = (await (await import('node:fs/promises')).readFile(`${QUERY_COUNTS}/queries-${firstPid}.txt`, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((line) => [line.slice(line.indexOf('\t') + 1), Number(line.slice(0, line.indexOf('\t')))] as [string, number]);

  // Restart: from spawning the process until its queue is idle with every key reconciled once.
  const restarted = performance.now();
  operator = await start(`scale-${run}-b`);
  const restartPid = operator.child.pid!;
  const restartMeter = new CpuMeter();
  await restartMeter.sample([restartPid]);
  await waitForHTTP(operator, `${operator.healthURL}/readyz`, 60_000);
  const readyzMs = Math.round(performance.now() - restarted);
  let after: Map<string, number>;
  for (;;) {
    after = parseMetrics(await fetch(`${operator.metricsURL}/metrics`).then((r) => r.text()));
    const idle = sumReconciles(after) >= COUNT && metric(after, 'workqueue_depth') === 0 && metric(after, 'controller_runtime_active_workers') === 0;
    if (idle) break;
    if (performance.now() - restarted > 600_000) throw new Error('the restarted operator did not go idle within 10 minutes');
    await new Promise((r) => setTimeout(r, 100));
  }
  const restartIdleMs = Math.round(performance.now() - restarted);
  const restartPeak = await peakRssMB(operator.child.pid!);
  await restartMeter.sample([restartPid]);
  const epochsAfter = await epochs(namespace);
  const republishes = operator.logs().filter((l) => l.msg === 'published realm').length;
  const epochsChanged = [...epochsBefore].filter(([url, epoch]) => epochsAfter.get(url) !== epoch).length;
  await operator.stop('SIGTERM');
  operator = undefined;
  const idleWithoutOperator = await idleRate(cluster, IDLE_MS);
  return {
    readyMs,
    reconcilesPerSecond: Math.round((reconciles / readyMs) * 1000 * 10) / 10,
    peakRssMB: peakRss,
    restartIdleMs,
    restartReadyzMs: readyzMs,
    restartReconciles: sumReconciles(after),
    restartPeakRssMB: restartPeak,
    republishes,
    epochsChanged,
    cpu,
    restartOperatorCpu: round1(restartMeter.used([restartPid])),
    requests,
    dbTransactions,
    dbStatements: statements.reduce((total, [, n]) => total + n, 0),
    topStatements: statements.slice(0, 6),
    reconcileResults,
    apiCounters,
    idle: { withOperator: idleWithOperator, withoutOperator: idleWithoutOperator },
    objectBytes,
  };
}

function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value));
}

interface ApiFloor {
  /** The floor with the operator's bodies (the comparable one), burst: created → all Ready, and its whole wall time. */
  wallMs: number;
  cpu: { apiserver: number; etcd: number };
  /** Requests per object, as sent (one of each kind the convergence had). */
  perObject: { create: number; patch: number; statusPuts: number; events: number };
  parallel: number;
  minimal: FloorRun;
  operatorBodies: FloorRun;
  paced: PacedFloorRun | null;
  /** The same, paced over the goal's time (when the run took longer): what the API server would spend if the convergence met it. */
  pacedAtGoal: PacedFloorRun | null;
}

/**
 * The Kubernetes side's floor (bench/lib/api-floor.ts): the requests the operator's convergence
 * made per object (create, a finalizer PATCH unless the create carried it, status PUT, Event POST), sent by a bare client with
 * kept-alive connections and nothing else between them, while two watch clients (as the bench's
 * and the operator's informer) receive every change — once with minimal bodies, once with the
 * operator's own, kind by kind; then with the operator's bodies spread over its convergence time.
 * Its API server + etcd CPU is what no operator could save without sending fewer requests.
 */
async function apiFloor(cluster: BenchCluster, measured: RunResult, sample: OperatorSample): Promise<ApiFloor> {
  // As many at once as the operator's workers (its default when SCALE_CONCURRENCY is unset).
  const parallel = Number(CONCURRENCY ?? operatorConfigSchema.shape.maxConcurrentReconciles.parse(undefined));
  const manifest = (namespace: string, name: string, i: number) =>
    publishedRealmManifest(namespace, name, { sourceRealmURL: `http://localhost:4201/scale/src-${i}/`, publishedRealmURL: `http://pub.localhost/${namespace}/${i}/`, reindex: { enabled: false } });
  const minimal = await phasedFloor(cluster, minimalShapes(), { count: COUNT, parallel });
  const operatorBodies = await phasedFloor(cluster, operatorShapes(sample, manifest), { count: COUNT, parallel, comparePutWithPatch: true });
  const paced = API_PACED ? await pacedFloor(cluster, operatorShapes(sample, manifest), { count: COUNT, parallel, durationMs: measured.readyMs }) : null;
  const pacedAtGoal = API_PACED && measured.readyMs > READY_GOAL_MS ? await pacedFloor(cluster, operatorShapes(sample, manifest), { count: COUNT, parallel, durationMs: READY_GOAL_MS }) : null;
  return {
    wallMs: operatorBodies.wallMs,
    cpu: operatorBodies.totalCpu,
    perObject: { create: 1, patch: (operatorBodies.phases.find((p) => p.phase === 'finalizer PATCH')?.requests ?? 0) / COUNT, statusPuts: 1, events: 1 },
    parallel,
    minimal,
    operatorBodies,
    paced,
    pacedAtGoal,
  };
}

function round1(value: number): number {
  return Math.round(value * 10) / 10;
}

async function transactions(): Promise<number> {
  const { rows } = await db.pool.query<{ n: string }>(`SELECT xact_commit + xact_rollback AS n FROM pg_stat_database WHERE datname = current_database()`);
  return Number(rows[0]!.n);
}

function metric(values: Map<string, number>, name: string): number {
  return values.get(`${name}{name="publishedrealm"}`) ?? values.get(`${name}{controller="publishedrealm"}`) ?? NaN;
}

function sumReconciles(values: Map<string, number>): number {
  let total = 0;
  for (const [key, value] of values) if (key.startsWith('controller_runtime_reconcile_total{controller="publishedrealm"')) total += value;
  return total;
}

async function epochs(namespace: string): Promise<Map<string, string>> {
  const { rows } = await db.pool.query<{ realm_url: string; epoch: string }>(`SELECT realm_url, epoch FROM realm_operator.realm_epochs WHERE realm_url LIKE $1`, [
    `http://pub.localhost/${namespace}/%`,
  ]);
  return new Map(rows.map((r) => [r.realm_url, r.epoch]));
}

const m = (pick: (r: RunResult) => number) => median(results.map(pick));
const table: BenchTable = {
  title: `Scale: ${COUNT} PublishedRealms (${GROUP}/${VERSION}) created at once, then an operator restart (median of ${results.length} run${results.length === 1 ? '' : 's'})`,
  columns: ['metric', 'median', ...results.map((_, i) => `run ${i + 1}`)],
  rows: [
    ['created → all Ready (ms)', m((r) => r.readyMs), ...results.map((r) => r.readyMs)],
    ['reconciles / s', m((r) => r.reconcilesPerSecond), ...results.map((r) => r.reconcilesPerSecond)],
    ['operator peak RSS (MB, VmHWM)', m((r) => r.peakRssMB), ...results.map((r) => r.peakRssMB)],
    ['restart: spawn → /readyz (ms)', m((r) => r.restartReadyzMs), ...results.map((r) => r.restartReadyzMs)],
    ['restart: spawn → queue idle (ms)', m((r) => r.restartIdleMs), ...results.map((r) => r.restartIdleMs)],
    ['restart: reconciles until idle', m((r) => r.restartReconciles), ...results.map((r) => r.restartReconciles)],
    ['restart: peak RSS (MB)', m((r) => r.restartPeakRssMB), ...results.map((r) => r.restartPeakRssMB)],
    ['restart: republishes', Math.max(...results.map((r) => r.republishes)), ...results.map((r) => r.republishes)],
    ['restart: epochs changed', Math.max(...results.map((r) => r.epochsChanged)), ...results.map((r) => r.epochsChanged)],
  ],
  note:
    `Timed by a watch client in the bench (Ready=True with observedGeneration = generation). Operator: dist/, default options except ` +
    `Node flags ${OPERATOR_FLAGS_MODE === 'shipped' ? `as shipped (${OPERATOR_FLAGS.join(' ')}; src/cli/node-flags.ts)` : OPERATOR_FLAGS_MODE === 'custom' ? `${OPERATOR_FLAGS.join(' ')} (SCALE_OPERATOR_FLAGS; not as shipped)` : "Node's defaults (SCALE_OPERATOR_FLAGS=defaults)"}, --durable ${DURABLE}${CONCURRENCY ? `, --max-concurrent-reconciles ${CONCURRENCY}` : ''}${process.env.SCALE_NODE_OPTIONS ? `, NODE_OPTIONS=${process.env.SCALE_NODE_OPTIONS}` : ''}; no realm-server replica registered (Ready is PublishedNotifyOnly); ${process.env.SCALE_FINALIZER_POLICY === '0' ? "without deploy/base's finalizer admission policy (SCALE_FINALIZER_POLICY=0: the operator PATCHes the finalizer on)" : "deploy/base's finalizer admission policy installed (objects are created with the finalizer)"}. ` +
    'Queue idle = every key reconciled once, workqueue_depth 0 and no active worker, polled from /metrics every 100 ms.',
};
const perObject = (n: number) => Math.round((n / COUNT) * 100) / 100;
const verbs = (pick: (r: RunResult) => Record<string, number>) => {
  const all = new Set(results.flatMap((r) => Object.keys(pick(r))));
  return [...all].sort().map((verb) => [verb, perObject(median(results.map((r) => pick(r)[verb] ?? 0)))] as const);
};
const cpuTotal = (r: RunResult) => r.cpu.operator + r.cpu.apiserver + r.cpu.etcd + r.cpu.postgres;
const cores = (await import('node:os')).cpus().length;
const costTable: BenchTable = {
  title: `Where the convergence of ${COUNT} objects goes: CPU seconds per process and requests per object (median)`,
  columns: ['what', 'value'],
  rows: [
    ['operator CPU (s)', m((r) => r.cpu.operator)],
    ['kube-apiserver CPU (s)', m((r) => r.cpu.apiserver)],
    ['etcd CPU (s)', m((r) => r.cpu.etcd)],
    ['PostgreSQL CPU (s)', m((r) => r.cpu.postgres)],
    [`CPU floor on ${cores} idle cores: total CPU / cores (s)`, Math.round((m(cpuTotal) / cores) * 10) / 10],
    ['operator CPU per reconcile (ms)', Math.round((m((r) => r.cpu.operator) / m((r) => (r.reconcilesPerSecond * r.readyMs) / 1000)) * 1000 * 10) / 10],
    ...verbs((r) => r.requests.publishedrealms).map(([verb, n]) => [`PublishedRealm ${verb} per object`, n] as (string | number)[]),
    ...verbs((r) => r.requests.events).map(([verb, n]) => [`Event ${verb} per object`, n] as (string | number)[]),
    ...verbs((r) => r.reconcileResults).map(([result, n]) => [`reconciles with result ${result} per object`, n] as (string | number)[]),
    ['database transactions per object', perObject(m((r) => r.dbTransactions))],
    ['SQL statements the operator sent per object', perObject(m((r) => r.dbStatements))],
    ...results[0]!.topStatements.map(([text, n]) => [`  of which ${text.length >= 110 ? `${text}…` : text}`, perObject(n)] as (string | number)[]),
    ['restart: operator CPU until idle (s)', m((r) => r.restartOperatorCpu)],
    ...(floor
      ? [
          [`API floor: the same requests with the operator's bodies from a bare client (${floor.perObject.create} create, ${floor.perObject.patch} PATCH, ${floor.perObject.statusPuts} status PUT, ${floor.perObject.events} Event POST per object, ${floor.parallel} at a time, kind by kind), all sent (s)`, round1(floor.wallMs / 1000)],
          ['API floor: kube-apiserver CPU (s)', floor.cpu.apiserver],
          ['API floor: etcd CPU (s)', floor.cpu.etcd],
        ]
      : []),
  ],
  note:
    'CPU from /proc/<pid>/stat (user + system) of each process, sampled every second over the convergence; requests from kube-apiserver\'s apiserver_request_total (the bench\'s own creates, list and watch included); transactions from pg_stat_database. ' +
    'API floor: after the runs, in a fresh namespace, the same requests per object sent by a bare kept-alive client with nothing between them (no database, no staging), two watch clients receiving every change as the bench and the operator\'s informer do; the tables below break it down.',
};
/**
 * Where kube-apiserver's and etcd's CPU goes: the measured convergence beside the same requests
 * without the operator (burst, minimal and the operator's bodies; paced over the run's time), the
 * idle rates, the cost per request kind, and every request the API server counted.
 */
function apiCostTables(): BenchTable[] {
  if (!floor) return [];
  const last = results.at(-1)!;
  const both = (c: { apiserver: number; etcd: number }) => round2(c.apiserver + c.etcd);
  const idleWith = both(last.idle.withOperator);
  const idleWithout = both(last.idle.withoutOperator);
  const runCpu = last.cpu.apiserver + last.cpu.etcd;
  const rows: (string | number)[][] = [
    ['the measured convergence (operator, PostgreSQL and the bench on the same cores)', round1(last.readyMs / 1000), round1(last.cpu.apiserver), round1(last.cpu.etcd), round2(runCpu), round2((runCpu / COUNT) * 1000)],
    [`floor, minimal bodies, ${floor.parallel} at a time, kind by kind`, round1(floor.minimal.wallMs / 1000), floor.minimal.totalCpu.apiserver, floor.minimal.totalCpu.etcd, both(floor.minimal.totalCpu), round2((both(floor.minimal.totalCpu) / COUNT) * 1000)],
    [`floor, the operator's bodies, ${floor.parallel} at a time, kind by kind`, round1(floor.operatorBodies.wallMs / 1000), floor.operatorBodies.totalCpu.apiserver, floor.operatorBodies.totalCpu.etcd, both(floor.operatorBodies.totalCpu), round2((both(floor.operatorBodies.totalCpu) / COUNT) * 1000)],
    ...[floor.paced, floor.pacedAtGoal]
      .filter((run) => run !== null)
      .map((run) => [`floor, ${run.label} (one chain per object, as a reconcile sends them)`, round1(run.wallMs / 1000), run.cpu.apiserver, run.cpu.etcd, both(run.cpu), round2((both(run.cpu) / COUNT) * 1000)]),
    [`idle, the operator running (its informer's watch, lease renewals), × the convergence's ${round1(last.readyMs / 1000)} s`, round1(last.readyMs / 1000), round2(last.idle.withOperator.apiserver * last.readyMs / 1000), round2(last.idle.withOperator.etcd * last.readyMs / 1000), round2((idleWith * last.readyMs) / 1000), '–'],
    [`idle, no operator, × the same time`, round1(last.readyMs / 1000), round2(last.idle.withoutOperator.apiserver * last.readyMs / 1000), round2(last.idle.withoutOperator.etcd * last.readyMs / 1000), round2((idleWithout * last.readyMs) / 1000), '–'],
  ];
  const whereTable: BenchTable = {
    title: `Where kube-apiserver + etcd CPU goes: the last run's convergence of ${COUNT} objects beside the same requests from a bare client`,
    columns: ['what', 'wall s', 'kube-apiserver CPU s', 'etcd CPU s', 'together s', 'ms per object'],
    rows,
    note:
      `Idle rates (CPU s per s, kube-apiserver + etcd): ${idleWith} with the operator running idle, ${idleWithout} with no operator (each read over ${IDLE_MS / 1000} s). ` +
      'Floors run after the measured runs, in fresh namespaces, with two watch clients; "kind by kind": every object\'s create, then every finalizer PATCH (none when the create already carries the finalizer, as with deploy/base\'s admission policy), then every status PUT, then every Event POST, CPU read between kinds (next table). ' +
      'Paced: the same requests with the operator\'s bodies, each object\'s requests in a chain, objects started evenly over the measured convergence time: what the API server spends when the requests come as slowly as the operator sends them, without the operator and PostgreSQL competing for the cores.',
  };
  const minimalByPhase = new Map(floor.minimal.phases.map((p) => [p.phase, p]));
  const perRequest = (p: { apiserverCpu: number; etcdCpu: number; requests: number } | undefined) => (p ? round2(((p.apiserverCpu + p.etcdCpu) / p.requests) * 1000) : '–');
  const bytesOf: Record<string, (b: FloorRun['bodyBytes']) => number> = {
    create: (b) => b.create,
    'finalizer PATCH': (b) => b.finalizerPatch,
    'status PUT': (b) => b.statusPut,
    'Event POST': (b) => b.event,
    'status PUT without managedFields, later write': (b) => b.statusPutWithoutManagedFields,
    'status merge PATCH, later write': (b) => b.statusMergePatch,
  };
  const kindTable: BenchTable = {
    title: 'kube-apiserver + etcd CPU per request, by kind (API floor, kind by kind)',
    columns: ['request', 'minimal: ms CPU per request', 'minimal: request bytes', "operator's bodies: ms CPU per request", "operator's bodies: request bytes", "operator's bodies: kube-apiserver ms", "operator's bodies: etcd ms"],
    rows: floor.operatorBodies.phases.map((p) => {
      const m = minimalByPhase.get(p.phase);
      const bytes = bytesOf[p.phase];
      return [
        p.phase,
        perRequest(m),
        m && bytes ? bytes(floor!.minimal.bodyBytes) : '–',
        perRequest(p),
        bytes ? bytes(floor!.operatorBodies.bodyBytes) : '(as status PUT)',
        round2((p.apiserverCpu / p.requests) * 1000),
        round2((p.etcdCpu / p.requests) * 1000),
      ];
    }),
    note:
      `One Ready object of the operator's, as stored: ${last.objectBytes.object} bytes of JSON (${last.objectBytes.withoutManagedFields} without managedFields; its status ${last.objectBytes.status}); one of its Events ${last.objectBytes.event} bytes. ` +
      'The two "later write" rows change one condition\'s message of an already Ready object: a PUT of the whole object, then a merge PATCH of the status alone (not part of the floors\' totals).',
  };
  const perObjectCount = (n: number) => Math.round((n / COUNT) * 1000) / 1000;
  const counterTable: BenchTable = {
    title: `Every request kube-apiserver counted during the last run's convergence, per object (all clients: the bench's creates and watch, the operator)`,
    columns: ['counter', 'per object', 'total'],
    // Watch events of the API server's own informers (a handful each, from the bench's namespaces) are left out.
    rows: Object.entries(last.apiCounters)
      .filter(([key, n]) => key.startsWith('requests ') || (key.startsWith('watch events') && n >= 5))
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([key, n]) => [key, perObjectCount(n), n])
      .concat(
        Object.entries(last.apiCounters)
          .filter(([key]) => key.startsWith('watch bytes') && (last.apiCounters[key.replace('bytes', 'events')] ?? 0) >= 5)
          .map(([key, n]) => [`${key} (per watch event ${Math.round(n / Math.max(1, last.apiCounters[key.replace('bytes', 'events')] ?? 1))})`, Math.round(n / COUNT), n]),
      ),
    note: 'From kube-apiserver\'s /metrics before and after the convergence (apiserver_request_total by resource/subresource and verb; apiserver_watch_events_total and apiserver_watch_events_sizes by resource: every event sent to every watcher).',
  };
  return [whereTable, kindTable, counterTable];
}

/** The API server + etcd gap between the measured run and the floor, in words, from the tables' numbers. */
function apiGapWhy(): string {
  if (!floor) return '';
  const last = results.at(-1)!;
  const both = (c: { apiserver: number; etcd: number }) => round1(c.apiserver + c.etcd);
  const status = (run: FloorRun) => run.phases.find((p) => p.phase === 'status PUT');
  const perRequest = (p: { apiserverCpu: number; etcdCpu: number; requests: number } | undefined) => (p ? round2(((p.apiserverCpu + p.etcdCpu) / p.requests) * 1000) : NaN);
  return (
    `Where the API server + etcd CPU of the last run (${both(last.cpu)} s over ${round1(last.readyMs / 1000)} s) goes: the floor's requests with minimal bodies cost ${both(floor.minimal.totalCpu)} s, ` +
    `with the operator's bodies ${both(floor.operatorBodies.totalCpu)} s (its status PUT ${perRequest(status(floor.operatorBodies))} ms against ${perRequest(status(floor.minimal))} ms: a ${last.objectBytes.status}-byte status of conditions and publish facts, validated, diffed for managedFields and stored), ` +
    (floor.paced
      ? `and ${both(floor.paced.cpu)} s when a bare client sends them as slowly as the operator did (paced over ${round1(floor.paced.wallMs / 1000)} s): the API server's and etcd's CPU per request grows when requests come spread out (each wakes them alone; etcd commits them one by one), so their CPU follows the convergence time; the operator's requests, finished in clumps by its workers, cost between the burst and that evenly paced worst case` +
        (floor.pacedAtGoal ? ` (paced over the goal's ${round1(floor.pacedAtGoal.wallMs / 1000)} s: ${both(floor.pacedAtGoal.cpu)} s). ` : '. ')
      : '') +
    `Idle, they use ${round2(last.idle.withOperator.apiserver + last.idle.withOperator.etcd)} cores with the operator running (its watch, lease renewals every 2 s) and ${round2(last.idle.withoutOperator.apiserver + last.idle.withoutOperator.etcd)} without. ` +
    `No request beyond those per object: ${Object.entries(last.apiCounters)
      .filter(([key]) => key.startsWith('requests ') && !['requests publishedrealms POST', 'requests publishedrealms PATCH', 'requests publishedrealms/status PUT', 'requests events POST'].includes(key))
      .map(([key, n]) => `${key.slice('requests '.length)} ${n}`)
      .join(', ') || 'none'} in all besides them. `
  );
}

function round2(value: number): number {
  return Math.round(value * 100) / 100;
}

/**
 * The run recorded in bench/results/scale.json before this one (the committed results), at the same
 * object count: its figures beside this run's, so a change's effect is read from one table.
 */
async function previousRunTable(): Promise<BenchTable | undefined> {
  let before: { startedAt: string; raw: { count: number; runs: RunResult[] }; machine?: { loadAverage1m?: number; loadAverage1mAtStart?: number } };
  try {
    before = JSON.parse(await (await import('node:fs/promises')).readFile(path.join(RESULTS_DIR, 'scale.json'), 'utf8'));
  } catch {
    return undefined;
  }
  if (before.raw?.count !== COUNT || !before.raw.runs?.length) return undefined;
  const pm = (pick: (r: RunResult) => number) => median(before.raw.runs.map(pick));
  const rows: Array<[string, (pick: typeof m) => number]> = [
    ['created → all Ready (s)', (f) => round1(f((r) => r.readyMs) / 1000)],
    ['SQL statements the operator sent per object', (f) => Math.round((f((r) => r.dbStatements) / COUNT) * 100) / 100],
    ['database transactions per object', (f) => Math.round((f((r) => r.dbTransactions) / COUNT) * 100) / 100],
    ['operator CPU (s)', (f) => f((r) => r.cpu.operator)],
    ['kube-apiserver CPU (s)', (f) => f((r) => r.cpu.apiserver)],
    ['etcd CPU (s)', (f) => f((r) => r.cpu.etcd)],
    ['PostgreSQL CPU (s)', (f) => f((r) => r.cpu.postgres)],
    [`CPU floor on ${cores} idle cores (s)`, (f) => round1(f((r) => r.cpu.operator + r.cpu.apiserver + r.cpu.etcd + r.cpu.postgres) / cores)],
    ['restart: spawn → queue idle (s)', (f) => round1(f((r) => r.restartIdleMs) / 1000)],
    ['restart: operator CPU until idle (s)', (f) => f((r) => r.restartOperatorCpu)],
  ];
  return {
    title: `This run beside the previous recorded run of ${COUNT} objects (bench/results/scale.json as it was before this run)`,
    columns: ['metric', `previous (${before.startedAt})`, 'this run', 'this / previous'],
    rows: rows.map(([label, value]) => {
      const [was, now] = [value(pm), value(m)];
      return [label, was, now, was > 0 ? Math.round((now / was) * 100) / 100 : '–'];
    }),
    note:
      `Medians of each run set. The machine is shared: 1-minute load average ${before.machine?.loadAverage1mAtStart ?? '?'} at the start and ${before.machine?.loadAverage1m ?? '?'} at the end of the previous run, ` +
      `${machineLoad} at the start of this one (its end is in the header above).`,
  };
}
const previousTable = await previousRunTable();
const apiTables = apiCostTables();
printTable(table);
printTable(costTable);
for (const t of apiTables) printTable(t);
if (previousTable) printTable(previousTable);
const readyMs = m((r) => r.readyMs);
const rss = Math.max(...results.map((r) => r.peakRssMB));
const idleMs = m((r) => r.restartIdleMs);
const republishes = Math.max(...results.map((r) => r.republishes + r.epochsChanged));
const cpuOf = (pick: (r: RunResult) => number) => Math.round(m(pick) * 10) / 10;
const floorS = Math.round((m(cpuTotal) / cores) * 10) / 10;
const profileHow = 'Profile: SCALE_REALMS=1000 SCALE_CPU_PROF=/tmp/prof npx tsx bench/scale.ts, then open the .cpuprofile files (Chrome DevTools, speedscope).';
const readyWhy =
  `CPU the convergence needs, measured per process: operator ${cpuOf((r) => r.cpu.operator)} s + kube-apiserver ${cpuOf((r) => r.cpu.apiserver)} s + etcd ${cpuOf((r) => r.cpu.etcd)} s + PostgreSQL ${cpuOf((r) => r.cpu.postgres)} s, ` +
  `so at least ${floorS} s on ${cores} otherwise idle cores (the load average was ${machineLoad} at the start: other work shares them). ` +
  `Per object the API server serves a create (with the finalizer when deploy/base's admission policy adds it), ${perObject(m((r) => r.requests.publishedrealms.PATCH ?? 0))} finalizer PATCHes, ${perObject(m((r) => r.requests.publishedrealms.PUT ?? 0))} status PUTs (Ready; Publishing before it only when the publish takes longer than 1 s, AwaitingAcknowledgement only when the acknowledgements take longer than 100 ms) and ${perObject(m((r) => r.requests.events.POST ?? 0))} Event POSTs (the publish's; Ready reached in the same reconcile has none of its own), each change also sent to every watcher; ` +
  `the operator's share is mostly PostgreSQL round trips (${perObject(m((r) => r.dbStatements))} statements in ${perObject(m((r) => r.dbTransactions))} transactions per object: the claim, the publish and its post-commit clean-up are a locked transaction each, the checks run once before the claim and again under the lock (the registry, claim and overlap rows in one statement, Boxel's authorization facts in another) — the most frequent statement, ${JSON.stringify(results[0]!.topStatements[0]?.[0].slice(0, 60) ?? '')}…, runs ${perObject(results[0]!.topStatements[0]?.[1] ?? 0)} times per object — then the acknowledgement reads and, on later reconciles, the re-authorization) and staging; each statement is a socket write and a wake-up of a PostgreSQL backend on the same 2 cores. ` +
  (floor
    ? `The Kubernetes side alone — the same ${floor.perObject.create + floor.perObject.patch + floor.perObject.statusPuts + floor.perObject.events} requests per object from a bare client, no operator, no database — took ${(floor.wallMs / 1000).toFixed(1)} s and ${round1(floor.cpu.apiserver + floor.cpu.etcd)} s of API server + etcd CPU in this run. ` +
      apiGapWhy()
    : '') +
  profileHow;
const goals: BenchGoal[] = [
  {
    goal: `${COUNT} PublishedRealms → all Ready`,
    target: '≤ 20 s',
    measured: `${(readyMs / 1000).toFixed(1)} s (${m((r) => r.reconcilesPerSecond)} reconciles/s)`,
    met: COUNT >= 1000 && readyMs <= READY_GOAL_MS,
    ...(readyMs > READY_GOAL_MS ? { why: readyWhy } : {}),
  },
  {
    goal: 'operator peak RSS during that',
    target: '≤ 200 MB',
    measured: `${rss} MB (${m((r) => r.restartPeakRssMB)} MB after a restart with nothing to publish)`,
    met: rss <= 200,
    ...(rss > 200
      ? { why: `Peak while publishing 1,000 realms with ${OPERATOR_FLAGS.length ? 'the shipped Node flags (src/cli/node-flags.ts)' : "Node's default flags (SCALE_OPERATOR_FLAGS=defaults; the shipped flags turn V8's optimizing compilers off and cap the young generation)"}; docs/memory.md measures where the memory goes.` }
      : {}),
  },
  {
    goal: 'restart → queue idle',
    target: '≤ 5 s',
    measured: `${(idleMs / 1000).toFixed(1)} s (${(m((r) => r.restartReadyzMs) / 1000).toFixed(1)} s of it until /readyz)`,
    met: COUNT >= 1000 && idleMs <= 5_000,
    ...(idleMs > 5_000
      ? {
          why:
            `From spawn: process start, schema check, lease and the informer's first list until /readyz, then one reconcile per object with no API request (read from the cache, status unchanged) ` +
            `but its PostgreSQL reads (epoch row, Boxel's authorization re-check, acks), ${cpuOf((r) => r.restartOperatorCpu)} s of operator CPU in all. ${profileHow}`,
        }
      : {}),
  },
  { goal: 'republishes after the restart', target: '0', measured: String(republishes), met: republishes === 0 },
];
const file = await writeResults({
  bench: 'scale',
  command: 'make bench-scale',
  startedAt: startedAt.toISOString(),
  durationSeconds: Math.round((Date.now() - startedAt.getTime()) / 1000),
  tables: [table, costTable, ...apiTables, ...(previousTable ? [previousTable] : [])],
  series: [],
  goals,
  raw: { operatorStatusSample: lastSample?.object.status ?? null, count: COUNT, operatorNodeFlags: OPERATOR_FLAGS, durable: DURABLE, concurrency: CONCURRENCY ?? 'default', nodeOptions: process.env.SCALE_NODE_OPTIONS ?? '', runs: results, apiFloor: floor ?? null },
});
console.log(`\nwrote ${file}`);
