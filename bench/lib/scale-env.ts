/**
 * What the scale and controller-runtime benchmarks share: a real kube-apiserver (+ etcd) with the
 * PublishedRealm CRD, many objects created at once through the API, a watch client that times
 * when each object turns Ready=True for its generation, and peak memory of a process (VmHWM).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { build } from 'esbuild';
import { GROUP, PLURAL, VERSION } from '../../src/api/v1alpha1/published-realm-types.js';
import { kubeRequest, kubeWatch, loadKubeconfig, resourcePath, type StaticKubeConnection } from '../../src/runtime/index.js';
import { startControlPlane, type ControlPlane } from '../../test/support/control-plane.js';
import { CRD_FILE } from '../../test/support/e2e.js';
import { applyFinalizerPolicy } from '../../test/support/finalizer-policy.js';

export const RESOURCE = { group: GROUP, version: VERSION, plural: PLURAL } as const;

export interface BenchCluster {
  plane: ControlPlane;
  connection: StaticKubeConnection;
  /** kubectl that throws with stderr on a non-zero exit. */
  kubectl(args: string[], input?: string): Promise<string>;
  stop(): Promise<void>;
}

const POLICY_PROBE_NAMESPACE = 'finalizer-policy-probe';

/**
 * A fresh control plane with the PublishedRealm CRD established; with `finalizerPolicy`, also
 * deploy/base's admission policy that adds the unpublish finalizer on create (as installed).
 */
export async function startBenchCluster(options: { finalizerPolicy?: boolean } = {}): Promise<BenchCluster> {
  const plane = await startControlPlane();
  const kubectl = async (args: string[], input?: string) => {
    const result = await plane.kubectl(args, { input });
    if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${result.code}): ${result.stderr.slice(0, 2000)}`);
    return result.stdout;
  };
  try {
    await kubectl(['apply', '--server-side', '-f', CRD_FILE]);
    await kubectl(['wait', '--for=condition=Established', `crd/${PLURAL}.${GROUP}`, '--timeout=60s']);
    if (options.finalizerPolicy) {
      // As deploy/base installs the operator: the API server adds the finalizer on create.
      await kubectl(['create', 'namespace', POLICY_PROBE_NAMESPACE]);
      await applyFinalizerPolicy(kubectl, POLICY_PROBE_NAMESPACE);
    }
  } catch (error) {
    await plane.stop();
    throw error;
  }
  const connection = loadKubeconfig(plane.kubeconfigPath);
  return {
    plane,
    connection,
    kubectl,
    async stop() {
      connection.destroy();
      await plane.stop();
    },
  };
}

export async function createNamespace(cluster: BenchCluster, name: string): Promise<void> {
  await kubeRequest(cluster.connection, { method: 'POST', path: '/api/v1/namespaces', body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name } } });
}

/** Creates every object through the API, `parallel` requests at a time (as `kubectl apply` of a big list would, but faster). */
export async function createAll(connection: StaticKubeConnection, namespace: string, objects: Array<Record<string, unknown>>, parallel = 32): Promise<void> {
  const path = resourcePath(RESOURCE, namespace);
  let next = 0;
  const worker = async () => {
    while (next < objects.length) {
      const object = objects[next++]!;
      await kubeRequest(connection, { method: 'POST', path, body: object });
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
}

export function publishedRealmManifest(namespace: string, name: string, spec: Record<string, unknown>): Record<string, unknown> {
  return { apiVersion: `${GROUP}/${VERSION}`, kind: 'PublishedRealm', metadata: { name, namespace }, spec };
}

interface WatchedObject {
  metadata: { name: string; generation?: number; resourceVersion?: string };
  status?: { conditions?: Array<{ type: string; status: string; observedGeneration?: number }> };
}

function readyForGeneration(object: WatchedObject): boolean {
  const generation = object.metadata.generation ?? 0;
  return object.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True' && c.observedGeneration === generation) ?? false;
}

/**
 * A watch client inside the bench: records the wall time at which each object in `namespace`
 * first reads Ready=True with observedGeneration = its generation. Starts from a list so objects
 * already Ready count at once.
 */
export class ReadyWatcher {
  readonly readyAt = new Map<string, number>();
  private abort: AbortController | undefined;
  private waiters: Array<{ count: number; resolve: () => void }> = [];
  private stopped = false;

  constructor(
    private readonly connection: StaticKubeConnection,
    private readonly namespace: string,
  ) {}

  async start(): Promise<void> {
    const path = resourcePath(RESOURCE, this.namespace);
    const list = await kubeRequest<{ metadata: { resourceVersion: string }; items: WatchedObject[] }>(this.connection, { path });
    for (const item of list.items) this.observe(item);
    await this.watchFrom(path, list.metadata.resourceVersion);
  }

  private async watchFrom(path: string, resourceVersion: string): Promise<void> {
    let lastVersion = resourceVersion;
    this.abort = await kubeWatch(this.connection).watch(
      path,
      { resourceVersion, allowWatchBookmarks: true, timeoutSeconds: 3600 },
      (type, object: WatchedObject) => {
        if (object?.metadata?.resourceVersion) lastVersion = object.metadata.resourceVersion;
        if (type === 'ADDED' || type === 'MODIFIED') this.observe(object);
      },
      (error) => {
        // A bench run is short; a dropped watch is resumed from the last version seen.
        if (this.stopped) return;
        if (error) process.stderr.write(`ready watcher: watch ended (${(error as Error).message}); resuming\n`);
        void this.watchFrom(path, lastVersion);
      },
    );
  }

  private observe(object: WatchedObject): void {
    if (this.readyAt.has(object.metadata.name) || !readyForGeneration(object)) return;
    this.readyAt.set(object.metadata.name, performance.timeOrigin + performance.now());
    this.waiters = this.waiters.filter((w) => {
      if (this.readyAt.size < w.count) return true;
      w.resolve();
      return false;
    });
  }

  /** Resolves once `count` objects are Ready; rejects after `timeoutMs`. */
  waitForReady(count: number, timeoutMs: number): Promise<void> {
    if (this.readyAt.size >= count) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${this.readyAt.size} of ${count} objects Ready after ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({ count, resolve: () => (clearTimeout(timer), resolve()) });
    });
  }

  /** Wall time of the last object to turn Ready. */
  lastReadyAt(): number {
    return Math.max(...this.readyAt.values());
  }

  stop(): void {
    this.stopped = true;
    this.abort?.abort();
  }
}

/** Peak resident set size of a live process in MB (VmHWM from /proc/<pid>/status). */
export async function peakRssMB(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  const match = /^VmHWM:\s+(\d+) kB/m.exec(status);
  if (!match) throw new Error(`no VmHWM in /proc/${pid}/status`);
  return Math.round(Number(match[1]) / 1024);
}

/** Parses a Prometheus text exposition into `name{labels}` → value. */
export function parseMetrics(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    values.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return values;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** CPU seconds (user + system) a live process has used so far, from /proc/<pid>/stat. */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (!stat) return 0;
  // Fields after the command name (which may hold spaces) start at field 3; utime and stime are 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** The PostgreSQL server's processes (postmaster and its children) serving `pool`'s database. */
export async function postgresPids(query: (sql: string) => Promise<{ rows: Array<{ pid: number }> }>): Promise<number[]> {
  const { rows } = await query('SELECT pg_backend_pid() AS pid');
  const backend = rows[0]!.pid;
  const stat = await fs.readFile(`/proc/${backend}/stat`, 'utf8').catch(() => undefined);
  if (!stat) return []; // a server on another host or in a container namespace we cannot see
  const postmaster = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  const pids = [postmaster];
  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const s = await fs.readFile(`/proc/${entry}/stat`, 'utf8').catch(() => undefined);
    if (s && Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]) === postmaster) pids.push(Number(entry));
  }
  return pids;
}

/** CPU seconds used by a set of processes, sampled now; processes that exited meanwhile count what they had when last sampled. */
export class CpuMeter {
  private readonly last = new Map<number, number>();
  private readonly first = new Map<number, number>();

  async sample(pids: number[]): Promise<void> {
    for (const pid of pids) {
      const seconds = await cpuSeconds(pid);
      if (!this.first.has(pid)) this.first.set(pid, seconds);
      if (seconds > 0) this.last.set(pid, seconds);
    }
  }

  /** CPU seconds used since each process was first sampled. */
  used(pids: number[]): number {
    return pids.reduce((total, pid) => total + ((this.last.get(pid) ?? 0) - (this.first.get(pid) ?? 0)), 0);
  }
}

/** `apiserver_request_total` summed by verb for one resource, from the API server's /metrics. */
export async function apiRequestsByVerb(connection: StaticKubeConnection, resource: string): Promise<Record<string, number>> {
  const text = await kubeRequest<string>(connection, { path: '/metrics' });
  const totals: Record<string, number> = {};
  for (const line of String(text).split('\n')) {
    if (!line.startsWith('apiserver_request_total{') || !line.includes(`resource="${resource}"`)) continue;
    const verb = /verb="([A-Z]+)"/.exec(line)?.[1] ?? '?';
    totals[verb] = (totals[verb] ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return totals;
}

export function diffCounts(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [key, value] of Object.entries(after)) {
    const delta = value - (before[key] ?? 0);
    if (delta > 0) out[key] = delta;
  }
  return out;
}

/**
 * Bundles bench/lib/scale-status-only-operator.ts into `outfile` with esbuild (packages external,
 * so it resolves pino, prom-client… from the repository's node_modules: put `outfile` under it), to
 * be run by plain node as dist/ is, with no tsx loader in its memory.
 */
export async function bundleStatusOnlyOperator(outfile: string): Promise<void> {
  await build({
    entryPoints: [path.join(import.meta.dirname, 'scale-status-only-operator.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    logLevel: 'warning',
  });
}
