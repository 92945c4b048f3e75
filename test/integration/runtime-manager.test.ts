/**
 * The manager with a real informer, controller and leader election against the run's API server:
 * probes and metrics, standby replicas, graceful hand-over, and exiting when the lease is lost.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { Controller, type ObjectKey, type Reconciler } from '../../src/runtime/controller.js';
import { Informer } from '../../src/runtime/informer.js';
import { kubeRequest } from '../../src/runtime/kube-client.js';
import { loadKubeconfig, StaticKubeConnection } from '../../src/runtime/kubeconfig.js';
import { LeaderElector, LeadershipLostError } from '../../src/runtime/leader-election.js';
import { Manager } from '../../src/runtime/manager.js';
import { formatKey } from '../../src/runtime/object-key.js';
import { testKubeConfig, testKubeconfigPath } from '../support/kube.js';

const logger = pino({ level: process.env.RUNTIME_TEST_LOG ?? 'silent' });
const suffix = randomBytes(3).toString('hex');
const kube = testKubeConfig();
const direct = loadKubeconfig(testKubeconfigPath()); // for the proxied connection
const namespace = `rt-manager-${suffix}`;
const TIMING = { leaseDurationMs: 3_000, renewDeadlineMs: 2_000, retryPeriodMs: 200 };

const createCM = (name: string) => kubeRequest(kube, { method: 'POST', path: `/api/v1/namespaces/${namespace}/configmaps`, body: { metadata: { name } } });
const readLease = (name: string) =>
  kubeRequest<{ spec: { holderIdentity?: string } }>(kube, { path: `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases/${name}` });

async function eventually(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

/** A reconciler that records keys (and the signals it was given); `block` makes it wait for its signal. */
class RecordingReconciler implements Reconciler {
  readonly keys: string[] = [];
  readonly signals: AbortSignal[] = [];
  constructor(private readonly block = false) {}
  async reconcile(key: ObjectKey, signal: AbortSignal): Promise<void> {
    this.keys.push(formatKey(key));
    this.signals.push(signal);
    if (this.block) await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
  }
}

/** One operator replica: informer + controller + elector + manager on 127.0.0.1:0. */
function replica(identity: string, lease: string, options: { kubeConfig?: StaticKubeConnection; block?: boolean; readyCheck?: () => boolean } = {}) {
  const registry = new Registry();
  const informer = new Informer({
    kubeConfig: options.kubeConfig ?? kube,
    resource: { version: 'v1', plural: 'configmaps' },
    namespace,
    name: 'configmaps',
    backoff: { initialMs: 50, maxMs: 300 },
    logger,
    metricsRegistry: registry,
  });
  const reconciler = new RecordingReconciler(options.block);
  const controller = new Controller({ name: 'cms', reconciler, source: informer, concurrency: 2, drainTimeoutMs: 20_000, logger, metricsRegistry: registry });
  const elector = new LeaderElector({ kubeConfig: kube, namespace, name: lease, identity, ...TIMING, logger, metricsRegistry: registry });
  const manager = new Manager({
    server: { host: '127.0.0.1', port: 0 },
    leaderElector: elector,
    ...(options.readyCheck ? { readyCheck: options.readyCheck } : {}),
    gracefulShutdownTimeoutMs: 30_000,
    logger,
    metricsRegistry: registry,
  })
    .add(informer)
    .add(controller);
  const abort = new AbortController();
  const running = manager.start(abort.signal);
  running.catch(() => undefined); // asserted by the tests that expect a rejection
  return { manager, elector, reconciler, registry, running, abort, port: async () => (await manager.address()).port };
}

/** A TCP proxy that starts closed; `open()` forwards to the API server. */
class GatedProxy {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  constructor(
    private readonly target: { host: string; port: number },
    readonly port: number,
  ) {}
  static async reserve(target: { host: string; port: number }): Promise<GatedProxy> {
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', () => resolve()));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    return new GatedProxy(target, port);
  }
  async open(): Promise<void> {
    this.server = net.createServer((client) => {
      const upstream = net.connect(this.target);
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on('close', () => this.sockets.delete(socket));
        socket.on('error', () => (client.destroy(), upstream.destroy()));
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', () => resolve()));
  }
  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const socket of this.sockets) socket.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

beforeAll(async () => {
  await kubeRequest(kube, { method: 'POST', path: '/api/v1/namespaces', body: { metadata: { name: namespace } } });
});

afterAll(async () => {
  await kubeRequest(kube, { method: 'DELETE', path: `/api/v1/namespaces/${namespace}` }).catch(() => undefined);
  direct.destroy();
});

describe('Manager (real API server)', () => {
  test('serves /healthz at once, /readyz once the informer synced and the check passes, and /metrics; releases the lease on abort', async () => {
    const target = new URL(direct.settings.server);
    const proxy = await GatedProxy.reserve({ host: target.hostname, port: Number(target.port) });
    const viaProxy = new StaticKubeConnection({ ...direct.settings, server: `https://127.0.0.1:${proxy.port}` });
    let checkPasses = true;
    const r = replica('only', 'probes', { kubeConfig: viaProxy, readyCheck: () => checkPasses });
    try {
      const port = await r.port();
      expect(await get(port, '/healthz')).toEqual({ status: 200, body: 'ok' });
      // The informer cannot reach the API server yet.
      const notReady = await get(port, '/readyz');
      expect(notReady.status).toBe(503);
      expect(JSON.parse(notReady.body)).toEqual({ ready: false, reasons: ['configmaps has not synced'] });

      await proxy.open();
      await eventually(async () => (await get(port, '/readyz')).status === 200, '/readyz to turn 200');
      checkPasses = false;
      expect(JSON.parse((await get(port, '/readyz')).body)).toEqual({ ready: false, reasons: ['ready check failed'] });
      checkPasses = true;

      await createCM('probed');
      await eventually(() => r.reconciler.keys.includes(`${namespace}/probed`), 'the controller to reconcile the new ConfigMap');
      const metrics = (await get(port, '/metrics')).body;
      expect(metrics).toMatch(/^controller_runtime_reconcile_total\{controller="cms",result="success"\} [1-9]\d*$/m);
      expect(metrics).toMatch(/^controller_runtime_reconcile_errors_total\{controller="cms"\} 0$/m);
      expect(metrics).toMatch(/^controller_runtime_max_concurrent_reconciles\{controller="cms"\} 2$/m);
      expect(metrics).toMatch(/^controller_runtime_active_workers\{controller="cms"\} 0$/m);
      expect(metrics).toMatch(/^controller_runtime_reconcile_time_seconds_count\{controller="cms"\} [1-9]\d*$/m);
      expect(metrics).toMatch(/^workqueue_depth\{name="cms"\} 0$/m);
      expect(metrics).toMatch(/^workqueue_adds_total\{name="cms"\} [1-9]\d*$/m);
      expect(metrics).toMatch(/^workqueue_queue_duration_seconds_count\{name="cms"\} [1-9]\d*$/m);
      expect(metrics).toMatch(/^workqueue_unfinished_work_seconds\{name="cms"\} 0$/m);
      expect(metrics).toMatch(/^workqueue_longest_running_processor_seconds\{name="cms"\} 0$/m);
      expect(metrics).toMatch(/^leader_election_master_status\{name="probes"\} 1$/m);
      expect(metrics).toMatch(/^runtime_informer_synced\{informer="configmaps"\} 1$/m);

      r.abort.abort();
      await r.running;
      expect((await readLease('probes')).spec.holderIdentity).toBe('');
      await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
    } finally {
      r.abort.abort();
      await r.running.catch(() => undefined);
      await proxy.close();
      viaProxy.destroy();
    }
  });

  test('a standby replica is ready but does not reconcile; it takes over when the leader shuts down', async () => {
    const a = replica('a', 'standby');
    await eventually(() => a.elector.isLeader(), 'a to lead');
    const b = replica('b', 'standby');
    try {
      const [portA, portB] = [await a.port(), await b.port()];
      await eventually(async () => (await get(portB, '/readyz')).status === 200, 'the standby to be ready');
      await createCM('standby-1');
      await eventually(() => a.reconciler.keys.includes(`${namespace}/standby-1`), 'the leader to reconcile');
      await new Promise((r) => setTimeout(r, 500));
      expect(b.reconciler.keys).toEqual([]);
      expect((await get(portB, '/metrics')).body).toMatch(/^leader_election_master_status\{name="standby"\} 0$/m);
      expect((await get(portA, '/metrics')).body).toMatch(/^leader_election_master_status\{name="standby"\} 1$/m);

      a.abort.abort();
      await a.running;
      await eventually(() => b.reconciler.keys.includes(`${namespace}/standby-1`), 'the standby to take over and reconcile', 3_000);
      expect((await readLease('standby')).spec.holderIdentity).toBe('b');
    } finally {
      a.abort.abort();
      b.abort.abort();
      await Promise.allSettled([a.running, b.running]);
    }
  });

  test('losing the lease stops the controllers at once and makes start reject, so the process exits', async () => {
    await createCM('blocker');
    const r = replica('victim', 'lost', { block: true });
    await eventually(() => r.reconciler.keys.length > 0, 'a reconcile to be in flight');
    // A merge patch without a resourceVersion: a renewal landing meanwhile cannot turn it into a 409.
    await kubeRequest(kube, {
      method: 'PATCH',
      path: `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases/lost`,
      contentType: 'application/merge-patch+json',
      body: { spec: { holderIdentity: 'usurper', leaseDurationSeconds: 60 } },
    });
    const stolenAt = performance.now();
    await expect(r.running).rejects.toBeInstanceOf(LeadershipLostError);
    // About the renew deadline after the theft, not after the controller's 20 s drain timeout.
    expect(performance.now() - stolenAt).toBeLessThan(TIMING.renewDeadlineMs + 3_000);
    expect(r.reconciler.signals.every((s) => s.aborted)).toBe(true);
    expect((await readLease('lost')).spec.holderIdentity).toBe('usurper');
  });
});
