/**
 * The informer against the run's real kube-apiserver: list + watch, recovery from a dropped
 * connection (through a TCP proxy the test cuts), 410 Expired, the silence watchdog, and watches
 * the server ends.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterAll, describe, expect, test } from '@jest/globals';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { Informer, type InformerOptions } from '../../src/runtime/informer.js';
import { kubeRequest, kubeWatch, type WatchLike } from '../../src/runtime/kube-client.js';
import { loadKubeconfig, StaticKubeConnection } from '../../src/runtime/kubeconfig.js';
import type { KubeObject } from '../../src/runtime/object-key.js';
import { testKubeConfig, testKubeconfigPath } from '../support/kube.js';

const logger = pino({ level: process.env.RUNTIME_TEST_LOG ?? 'silent' });
const suffix = randomBytes(3).toString('hex');
// The run's admin credentials as a client-node KubeConfig (what the operator passes in), and the
// same through the runtime's own loader, for the proxied connections.
const kube = testKubeConfig();
const direct = loadKubeconfig(testKubeconfigPath());
const fastBackoff = { initialMs: 50, maxMs: 400 };

interface ConfigMap extends KubeObject {
  data?: Record<string, string>;
}

interface Seen {
  type: 'add' | 'update' | 'delete';
  name: string;
  data?: Record<string, string> | undefined;
  oldData?: Record<string, string> | undefined;
  finalStateUnknown?: boolean;
}

let namespaceCount = 0;
const namespaces: string[] = [];

async function freshNamespace(): Promise<string> {
  const name = `rt-informer-${suffix}-${++namespaceCount}`;
  await kubeRequest(kube, { method: 'POST', path: '/api/v1/namespaces', body: { metadata: { name } } });
  namespaces.push(name);
  return name;
}

const cmPath = (ns: string, name?: string) => `/api/v1/namespaces/${ns}/configmaps${name ? `/${name}` : ''}`;
const createCM = (ns: string, name: string, data: Record<string, string> = {}) =>
  kubeRequest(kube, { method: 'POST', path: cmPath(ns), body: { metadata: { name }, data } });
const patchCM = (ns: string, name: string, data: Record<string, string>) =>
  kubeRequest(kube, { method: 'PATCH', path: cmPath(ns, name), body: { data }, contentType: 'application/merge-patch+json' });
const deleteCM = (ns: string, name: string) => kubeRequest(kube, { method: 'DELETE', path: cmPath(ns, name) });

async function eventually(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Starts an informer that records every event; `stop()` aborts it and waits for it to return. */
function startInformer(options: Partial<InformerOptions> & Pick<InformerOptions, 'resource'>) {
  const informer = new Informer<ConfigMap>({ kubeConfig: kube, backoff: fastBackoff, logger, metricsRegistry: new Registry(), ...options });
  const seen: Seen[] = [];
  informer.addEventHandler({
    onAdd: (o) => seen.push({ type: 'add', name: o.metadata!.name!, data: o.data }),
    onUpdate: (old, o) => seen.push({ type: 'update', name: o.metadata!.name!, data: o.data, oldData: old.data }),
    onDelete: (o, finalStateUnknown) => seen.push({ type: 'delete', name: o.metadata!.name!, finalStateUnknown }),
  });
  const abort = new AbortController();
  const running = informer.start(abort.signal);
  return {
    informer,
    seen,
    running,
    async stop() {
      abort.abort();
      await running;
    },
  };
}

async function serverNames(ns: string): Promise<string[]> {
  const list = await kubeRequest<{ items: ConfigMap[] }>(kube, { path: cmPath(ns) });
  return list.items.map((i) => i.metadata!.name!).sort();
}

const cachedNames = (informer: Informer<ConfigMap>) => informer.list().map((o) => o.metadata!.name!).sort();

/** A TCP proxy in front of the API server that the test can cut (drop every connection, refuse new ones) and restore. */
class TcpProxy {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  async listen(): Promise<void> {
    const server = net.createServer((client) => {
      const upstream = net.connect(this.target);
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on('close', () => this.sockets.delete(socket));
        socket.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as net.AddressInfo).port;
    this.server = server;
  }

  async cut(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }
}


afterAll(async () => {
  // No namespace controller runs in the test plane, so deleting is just tidiness; objects stay.
  await Promise.allSettled(namespaces.map((name) => kubeRequest(kube, { method: 'DELETE', path: `/api/v1/namespaces/${name}` })));
  direct.destroy();
});

describe('Informer (real API server)', () => {
  test('lists, then turns watch events into cache updates and add/update/delete callbacks', async () => {
    const ns = await freshNamespace();
    await createCM(ns, 'a', { v: '1' });
    await createCM(ns, 'b', { v: '1' });
    const run = startInformer({ resource: { version: 'v1', plural: 'configmaps' }, namespace: ns });
    try {
      await run.informer.waitForSync(AbortSignal.timeout(10_000));
      expect(run.informer.hasSynced()).toBe(true);
      expect(run.seen).toEqual([
        { type: 'add', name: 'a', data: { v: '1' } },
        { type: 'add', name: 'b', data: { v: '1' } },
      ]);
      // Listed objects get the kind and apiVersion that list items lack, like watched ones.
      expect(run.informer.get(`${ns}/a`)).toMatchObject({ apiVersion: 'v1', kind: 'ConfigMap', data: { v: '1' } });
      expect(run.informer.get({ namespace: ns, name: 'b' })?.metadata?.name).toBe('b');

      await createCM(ns, 'c', { v: '1' });
      await patchCM(ns, 'a', { v: '2' });
      await deleteCM(ns, 'b');
      await eventually(() => run.seen.length === 5, 'three more events');
      expect(run.seen.slice(2)).toEqual([
        { type: 'add', name: 'c', data: { v: '1' } },
        { type: 'update', name: 'a', data: { v: '2' }, oldData: { v: '1' } },
        { type: 'delete', name: 'b', finalStateUnknown: false },
      ]);
      expect(cachedNames(run.informer)).toEqual(['a', 'c']);
      expect(run.informer.get(`${ns}/a`)?.data).toEqual({ v: '2' });
      expect(run.informer.get(`${ns}/b`)).toBeUndefined();

      // A handler added late first hears about everything cached.
      const late: string[] = [];
      run.informer.addEventHandler({ onAdd: (o) => late.push(o.metadata!.name!) });
      expect(late.sort()).toEqual(['a', 'c']);

      expect(run.informer.status()).toMatchObject({ lists: 1, watches: 1, restarts: { closed: 0, error: 0, gone: 0, watchdog: 0 } });
    } finally {
      await run.stop();
    }
  });

  test('a dropped connection is retried with backoff, and the re-list reports what changed meanwhile (deletes included)', async () => {
    const ns = await freshNamespace();
    const target = new URL(direct.settings.server);
    const proxy = new TcpProxy({ host: target.hostname, port: Number(target.port) });
    await proxy.listen();
    const viaProxy = new StaticKubeConnection({ ...direct.settings, server: `https://127.0.0.1:${proxy.port}` });
    for (const name of ['x', 'y', 'z']) await createCM(ns, name, { v: '1' });
    const run = startInformer({ kubeConfig: viaProxy, resource: { version: 'v1', plural: 'configmaps' }, namespace: ns });
    try {
      await run.informer.waitForSync(AbortSignal.timeout(10_000));
      expect(cachedNames(run.informer)).toEqual(['x', 'y', 'z']);

      await proxy.cut();
      // The watch fails, and so do the reconnect attempts while the proxy refuses connections.
      await eventually(() => run.informer.status().restarts.error >= 2, 'failed reconnect attempts');
      await deleteCM(ns, 'x');
      await patchCM(ns, 'y', { v: '2' });
      await createCM(ns, 'w', { v: '1' });
      await new Promise((r) => setTimeout(r, 200));
      expect(cachedNames(run.informer)).toEqual(['x', 'y', 'z']); // stale while disconnected, as documented
      run.seen.length = 0;

      await proxy.listen();
      await eventually(() => run.seen.length >= 3, 'the re-list diff');
      expect(run.seen).toEqual(
        expect.arrayContaining([
          { type: 'delete', name: 'x', finalStateUnknown: true },
          { type: 'update', name: 'y', data: { v: '2' }, oldData: { v: '1' } },
          { type: 'add', name: 'w', data: { v: '1' } },
        ]),
      );
      expect(run.seen).toHaveLength(3); // z did not change: no event
      expect(cachedNames(run.informer)).toEqual(await serverNames(ns));
      expect(run.informer.status().lists).toBeGreaterThanOrEqual(2);
      expect(run.informer.status().lastError).toBeDefined();

      // And it is watching again.
      await createCM(ns, 'v', { v: '1' });
      await eventually(() => run.informer.get(`${ns}/v`) !== undefined, 'a live event after recovery');
    } finally {
      await run.stop();
      await proxy.cut();
      viaProxy.destroy();
    }
  });

  test('a watch answered with 410 Expired (too old resourceVersion) makes the informer re-list', async () => {
    // A custom resource's watch cache starts when the CRD is established, so any resourceVersion
    // from before that is "too old" for it: the server answers with an ERROR event, code 410.
    const group = `rt${suffix}.example.com`;
    const crd = {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: `widgets.${group}` },
      spec: {
        group,
        scope: 'Namespaced',
        names: { plural: 'widgets', singular: 'widget', kind: 'Widget', listKind: 'WidgetList' },
        versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } }],
      },
    };
    await kubeRequest(kube, { method: 'POST', path: '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', body: crd });
    try {
      const ns = await freshNamespace();
      const widgets = `/apis/${group}/v1/namespaces/${ns}/widgets`;
      const createWidget = (name: string) => kubeRequest(kube, { method: 'POST', path: widgets, body: { apiVersion: `${group}/v1`, kind: 'Widget', metadata: { name } } });
      await eventually(async () => (await createWidget('a').then(() => true, () => false)), 'the CRD to be served');
      await createWidget('b');

      // The first watch starts from resourceVersion 1 instead of the list's, after deleting `a`
      // behind the informer's back: only a re-list can notice that deletion.
      const real = kubeWatch(kube);
      const serverErrors: unknown[] = [];
      let calls = 0;
      const tooOld: WatchLike = {
        async watch(path, query, callback, done) {
          calls += 1;
          if (calls > 1) return real.watch(path, query, callback, done);
          await kubeRequest(kube, { method: 'DELETE', path: `${widgets}/a` });
          return real.watch(path, { ...query, resourceVersion: '1' }, (type, object, event) => {
            if (type === 'ERROR') serverErrors.push(object);
            callback(type, object, event);
          }, done);
        },
      };
      const run = startInformer({ resource: { group, version: 'v1', plural: 'widgets' }, namespace: ns, watch: tooOld });
      try {
        await run.informer.waitForSync(AbortSignal.timeout(10_000));
        await eventually(() => run.informer.status().lists >= 2, 'the re-list');
        expect(serverErrors).toEqual([expect.objectContaining({ kind: 'Status', code: 410, reason: 'Expired', message: expect.stringContaining('too old resource version') })]);
        expect(run.informer.status().restarts).toMatchObject({ gone: 1, error: 0 });
        expect(run.seen).toEqual([
          { type: 'add', name: 'a', data: undefined },
          { type: 'add', name: 'b', data: undefined },
          { type: 'delete', name: 'a', finalStateUnknown: true },
        ]);
        expect(run.informer.keys()).toEqual([`${ns}/b`]);
        await createWidget('c');
        await eventually(() => run.informer.get(`${ns}/c`)?.kind === 'Widget', 'a watch event after the re-list');
      } finally {
        await run.stop();
      }
    } finally {
      await kubeRequest(kube, { method: 'DELETE', path: `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.${group}` });
    }
  });

  test('the silence watchdog restarts (and re-lists) a watch that delivers nothing, but not one that is busy', async () => {
    const quiet = await freshNamespace();
    const busy = await freshNamespace();
    await createCM(quiet, 'q', { v: '1' });
    // Bookmarks come about once a minute, so a quiet watch says nothing for 2 s; the busy one gets
    // an event every ~100 ms plus a POST (2 s leaves room for a POST slowed by a loaded machine).
    const options = { resource: { version: 'v1', plural: 'configmaps' }, silenceTimeoutMs: 2_000, watchTimeoutSeconds: 600 } as const;
    const silent = startInformer({ ...options, namespace: quiet });
    const chatty = startInformer({ ...options, namespace: busy });
    try {
      await silent.informer.waitForSync(AbortSignal.timeout(10_000));
      await chatty.informer.waitForSync(AbortSignal.timeout(10_000));
      const started = performance.now();
      for (let i = 0; performance.now() - started < 6_000; i++) {
        await createCM(busy, `c${i}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(silent.informer.status().restarts.watchdog).toBeGreaterThanOrEqual(2);
      expect(silent.informer.status().lists).toBeGreaterThanOrEqual(3);
      expect(chatty.informer.status().restarts.watchdog).toBe(0);
      expect(chatty.informer.status().lists).toBe(1);
      expect(cachedNames(chatty.informer)).toEqual(await serverNames(busy));
      // Restarted, the quiet one still sees what happens, and its cache stayed right through the re-lists.
      expect(silent.seen).toEqual([{ type: 'add', name: 'q', data: { v: '1' } }]);
      await createCM(quiet, 'r', { v: '1' });
      await eventually(() => silent.informer.get(`${quiet}/r`) !== undefined, 'an event on the restarted watch');
    } finally {
      await Promise.all([silent.stop(), chatty.stop()]);
    }
  });

  test('cached objects drop managedFields (listed and watched), and a PUT of one leaves the server its managedFields', async () => {
    const ns = await freshNamespace();
    await createCM(ns, 'listed', { v: '1' });
    const run = startInformer({ resource: { version: 'v1', plural: 'configmaps' }, namespace: ns });
    const keeping = startInformer({ resource: { version: 'v1', plural: 'configmaps' }, namespace: ns, keepManagedFields: true });
    try {
      await Promise.all([run.informer.waitForSync(AbortSignal.timeout(10_000)), keeping.informer.waitForSync(AbortSignal.timeout(10_000))]);
      await createCM(ns, 'watched', { v: '1' });
      await eventually(() => run.informer.get(`${ns}/watched`) !== undefined && keeping.informer.get(`${ns}/watched`) !== undefined, 'the watched object in both caches');
      for (const name of ['listed', 'watched']) {
        expect(run.informer.get(`${ns}/${name}`)?.metadata).not.toHaveProperty('managedFields');
        expect(keeping.informer.get(`${ns}/${name}`)?.metadata?.managedFields).toEqual(expect.arrayContaining([expect.objectContaining({ operation: 'Update' })]));
      }
      const cached = run.informer.get(`${ns}/watched`)!;
      const written = await kubeRequest<ConfigMap>(kube, { method: 'PUT', path: cmPath(ns, 'watched'), body: { ...cached, data: { v: '2' } } });
      expect(written.data).toEqual({ v: '2' });
      expect((written.metadata?.managedFields as unknown[] | undefined)?.length).toBeGreaterThan(0);
    } finally {
      await Promise.all([run.stop(), keeping.stop()]);
    }
  });

  test('a watch the server ends (timeoutSeconds) resumes from its resourceVersion without a re-list', async () => {
    const ns = await freshNamespace();
    const run = startInformer({ resource: { version: 'v1', plural: 'configmaps' }, namespace: ns, watchTimeoutSeconds: 1 });
    try {
      await run.informer.waitForSync(AbortSignal.timeout(10_000));
      await eventually(() => run.informer.status().restarts.closed >= 2, 'the server to end two watches', 15_000);
      await createCM(ns, 'after', { v: '1' });
      await eventually(() => run.seen.some((s) => s.name === 'after'), 'an event on a resumed watch');
      expect(run.informer.status()).toMatchObject({ lists: 1, restarts: { error: 0, gone: 0, watchdog: 0 } });
    } finally {
      await run.stop();
    }
  });
});
