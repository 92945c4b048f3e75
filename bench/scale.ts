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
 *   make bench-scale    (SCALE_REALMS=1000 SCALE_RUNS=1 SCALE_CONCURRENCY=<workers> SCALE_DURABLE=false;
 *                        SCALE_CPU_PROF=<dir> writes the operator's .cpuprofile there; SCALE_NODE_OPTIONS=<node flags>;
 *                        SCALE_OPERATOR_FLAGS=shipped (default: OPERATOR_NODE_FLAGS, as the image runs it) | defaults (Node's) | '--flag …' (a variant))
 */
import { GROUP, VERSION } from '../src/api/v1alpha1/published-realm-types.js';
import { OPERATOR_NODE_FLAGS } from '../src/cli/node-flags.js';
import { operatorConfigSchema } from '../src/cli/operator-config.js';
import { KeepAliveConnection, kubeRequest, resourcePath } from '../src/runtime/index.js';
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

const COUNT = Number(process.env.SCALE_REALMS ?? 1000);
const RUNS = Number(process.env.SCALE_RUNS ?? 1);
const CONCURRENCY = process.env.SCALE_CONCURRENCY;
const DURABLE = process.env.SCALE_DURABLE ?? 'false';
const CPU_PROF = process.env.SCALE_CPU_PROF;
/** Skip the API floor (the same requests from a bare client, no operator): SCALE_API_FLOOR=0. */
const API_FLOOR = process.env.SCALE_API_FLOOR !== '0';
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
}

const { db, close } = await benchDatabase();
let cluster: BenchCluster | undefined;
let operator: OperatorProcess | undefined;
const realms = await makeRealmsRoot();
const results: RunResult[] = [];
let floor: ApiFloor | undefined;
try {
  cluster = await startBenchCluster();
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
    floor = await apiFloor(cluster, results.at(-1)!);
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
      extraArgs: ['--log-level', 'info', '--durable', DURABLE, ...(CONCURRENCY ? ['--max-concurrent-reconciles', CONCURRENCY] : [])],
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
  };
}

interface ApiFloor {
  wallMs: number;
  cpu: { apiserver: number; etcd: number; client: number };
  /** Requests per object, as sent. */
  perObject: { create: number; patch: number; statusPuts: number; events: number };
  parallel: number;
}

/**
 * The Kubernetes side's floor: the requests the operator's convergence made per object (create,
 * finalizer PATCH, status PUTs, Event POSTs, rounded from the run's apiserver_request_total), sent
 * by a bare client with kept-alive connections and nothing else between them, while a watch client
 * (the bench's own) and a second watch (as the operator's informer) receive every change. Its API
 * server + etcd CPU is what no operator could save without sending fewer requests.
 */
async function apiFloor(cluster: BenchCluster, measured: RunResult): Promise<ApiFloor> {
  const namespace = `scale-floor-${Math.random().toString(36).slice(2, 7)}`;
  await createNamespace(cluster, namespace);
  const per = {
    create: 1,
    patch: Math.round((measured.requests.publishedrealms.PATCH ?? 0) / COUNT),
    statusPuts: Math.round((measured.requests.publishedrealms.PUT ?? 0) / COUNT),
    events: Math.round((measured.requests.events.POST ?? 0) / COUNT),
  };
  // As many at once as the operator's workers (its default when SCALE_CONCURRENCY is unset).
  const parallel = Number(CONCURRENCY ?? operatorConfigSchema.shape.maxConcurrentReconciles.parse(undefined));
  const connection = new KeepAliveConnection(cluster.connection);
  const watcher = new ReadyWatcher(cluster.connection, namespace);
  const informerLike = new ReadyWatcher(cluster.connection, namespace);
  await watcher.start();
  await informerLike.start();
  const path = resourcePath(RESOURCE, namespace);
  const meter = new CpuMeter();
  const pids = [cluster.plane.pids.apiserver, cluster.plane.pids.etcd, process.pid];
  await meter.sample(pids);
  const started = performance.now();
  let next = 0;
  const one = async (i: number) => {
    const name = `floor-${i}`;
    let object = await kubeRequest<{ metadata: { resourceVersion: string; uid: string; generation: number } }>(connection, {
      method: 'POST',
      path,
      body: publishedRealmManifest(namespace, name, { sourceRealmURL: `http://localhost:4201/floor/${i}/`, publishedRealmURL: `http://pub.localhost/${namespace}/${i}/` }),
    });
    for (let p = 0; p < per.patch; p++) {
      object = await kubeRequest(connection, {
        method: 'PATCH',
        path: `${path}/${name}`,
        contentType: 'application/json-patch+json',
        body: [{ op: 'test', path: '/metadata/resourceVersion', value: object.metadata.resourceVersion }, { op: 'add', path: '/metadata/finalizers', value: [`floor.example/f${p}`] }],
      });
    }
    for (let w = 0; w < per.statusPuts; w++) {
      const last = w === per.statusPuts - 1;
      const condition = { type: 'Ready', status: last ? 'True' : 'False', reason: last ? 'Published' : `Step${w}`, message: `API floor step ${w}`, observedGeneration: object.metadata.generation, lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z') };
      object = await kubeRequest(connection, { method: 'PUT', path: `${path}/${name}/status`, body: { ...object, status: { conditions: [condition] } } });
    }
    for (let e = 0; e < per.events; e++) {
      await kubeRequest(connection, {
        method: 'POST',
        path: `/apis/events.k8s.io/v1/namespaces/${namespace}/events`,
        body: {
          apiVersion: 'events.k8s.io/v1',
          kind: 'Event',
          metadata: { name: `${name}.${e}`, namespace },
          eventTime: new Date().toISOString().replace('Z', '000Z'),
          reportingController: 'realm-operator.dev/bench-floor',
          reportingInstance: 'bench',
          action: 'Floor',
          reason: `Floor${e}`,
          note: 'API floor',
          type: 'Normal',
          regarding: { apiVersion: `${GROUP}/${VERSION}`, kind: 'PublishedRealm', name, namespace, uid: object.metadata.uid },
        },
      });
    }
  };
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < COUNT) await one(next++);
    }),
  );
  await watcher.waitForReady(COUNT, 600_000);
  const wallMs = Math.round(watcher.lastReadyAt() - (performance.timeOrigin + started));
  await meter.sample(pids);
  watcher.stop();
  informerLike.stop();
  connection.destroy();
  return {
    wallMs,
    cpu: { apiserver: round1(meter.used([cluster.plane.pids.apiserver])), etcd: round1(meter.used([cluster.plane.pids.etcd])), client: round1(meter.used([process.pid])) },
    perObject: per,
    parallel,
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
    `Node flags ${OPERATOR_FLAGS_MODE === 'shipped' ? `as shipped (${OPERATOR_FLAGS.join(' ')}; src/cli/node-flags.ts)` : OPERATOR_FLAGS_MODE === 'custom' ? `${OPERATOR_FLAGS.join(' ')} (SCALE_OPERATOR_FLAGS; not as shipped)` : "Node's defaults (SCALE_OPERATOR_FLAGS=defaults)"}, --durable ${DURABLE}${CONCURRENCY ? `, --max-concurrent-reconciles ${CONCURRENCY}` : ''}${process.env.SCALE_NODE_OPTIONS ? `, NODE_OPTIONS=${process.env.SCALE_NODE_OPTIONS}` : ''}; no realm-server replica registered (Ready is PublishedNotifyOnly). ` +
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
          [`API floor: the same requests from a bare client (${floor.perObject.create} create, ${floor.perObject.patch} PATCH, ${floor.perObject.statusPuts} status PUT, ${floor.perObject.events} Event POST per object, ${floor.parallel} at a time) → all Ready (s)`, round1(floor.wallMs / 1000)],
          ['API floor: kube-apiserver CPU (s)', floor.cpu.apiserver],
          ['API floor: etcd CPU (s)', floor.cpu.etcd],
        ]
      : []),
  ],
  note:
    'CPU from /proc/<pid>/stat (user + system) of each process, sampled every second over the convergence; requests from kube-apiserver\'s apiserver_request_total (the bench\'s own creates, list and watch included); transactions from pg_stat_database. ' +
    'API floor: after the runs, in a fresh namespace, the same number of requests per object sent by a bare kept-alive client with nothing between them (no database, no staging), two watch clients receiving every change as the bench and the operator\'s informer do.',
};
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
printTable(table);
printTable(costTable);
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
  `Per object the API server serves a create, a finalizer PATCH, ${perObject(m((r) => r.requests.publishedrealms.PUT ?? 0))} status PUTs (Ready; Publishing before it only when the publish takes longer than 1 s, AwaitingAcknowledgement only when the acknowledgements take longer than 100 ms) and ${perObject(m((r) => r.requests.events.POST ?? 0))} Event POSTs (the publish's; Ready reached in the same reconcile has none of its own), each change also sent to every watcher; ` +
  `the operator's share is mostly PostgreSQL round trips (${perObject(m((r) => r.dbStatements))} statements in ${perObject(m((r) => r.dbTransactions))} transactions per object: the claim, the publish and its post-commit clean-up are a locked transaction each, the checks run once before the claim and again under the lock (the registry, claim and overlap rows in one statement, Boxel's authorization facts in another) — the most frequent statement, ${JSON.stringify(results[0]!.topStatements[0]?.[0].slice(0, 60) ?? '')}…, runs ${perObject(results[0]!.topStatements[0]?.[1] ?? 0)} times per object — then the acknowledgement reads and, on later reconciles, the re-authorization) and staging; each statement is a socket write and a wake-up of a PostgreSQL backend on the same 2 cores. ` +
  (floor
    ? `The Kubernetes side alone — the same ${floor.perObject.create + floor.perObject.patch + floor.perObject.statusPuts + floor.perObject.events} requests per object from a bare client, no operator, no database — took ${(floor.wallMs / 1000).toFixed(1)} s and ${round1(floor.cpu.apiserver + floor.cpu.etcd)} s of API server + etcd CPU in this run. `
    : '') +
  profileHow;
const goals: BenchGoal[] = [
  {
    goal: `${COUNT} PublishedRealms → all Ready`,
    target: '≤ 20 s',
    measured: `${(readyMs / 1000).toFixed(1)} s (${m((r) => r.reconcilesPerSecond)} reconciles/s)`,
    met: COUNT >= 1000 && readyMs <= 20_000,
    ...(readyMs > 20_000 ? { why: readyWhy } : {}),
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
  tables: [table, costTable, ...(previousTable ? [previousTable] : [])],
  series: [],
  goals,
  raw: { count: COUNT, operatorNodeFlags: OPERATOR_FLAGS, durable: DURABLE, concurrency: CONCURRENCY ?? 'default', nodeOptions: process.env.SCALE_NODE_OPTIONS ?? '', runs: results, apiFloor: floor ?? null },
});
console.log(`\nwrote ${file}`);
