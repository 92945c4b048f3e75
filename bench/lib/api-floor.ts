/**
 * Where kube-apiserver's and etcd's CPU goes while the operator converges N PublishedRealms, told
 * apart by measuring the same requests without the operator (bench-scale's "API floor"):
 *
 * - per request kind (create, finalizer PATCH unless the create carried the finalizer, status PUT,
 *   Event POST), each kind sent for every object before the next kind starts, so each has its own CPU reading;
 * - with the floor's minimal bodies and with the operator's own (its status and Event as read
 *   back from the measured run): the difference is what the operator's request shapes cost;
 * - a status write as a PUT of the whole object beside a merge PATCH of the status alone;
 * - the same requests spread over the operator's convergence time (paced): the difference to the
 *   burst is what the API server spends per second of wall time rather than per request;
 * - the API server + etcd idle rate, with and without the operator running.
 *
 * Two watch clients receive every change, as the bench's ReadyWatcher and the operator's informer
 * do in the measured run.
 */
import { GROUP, VERSION } from '../../src/api/v1alpha1/published-realm-types.js';
import { KeepAliveConnection, kubeRequest, resourcePath, type StaticKubeConnection } from '../../src/runtime/index.js';
import { CpuMeter, RESOURCE, ReadyWatcher, createNamespace, publishedRealmManifest, type BenchCluster } from './scale-env.js';

interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace: string; resourceVersion: string; uid: string; generation: number; finalizers?: string[]; managedFields?: unknown };
  spec?: Record<string, unknown>;
  status?: { conditions?: Array<Record<string, unknown>>; [field: string]: unknown };
}

/** The bodies one floor sends: built from scratch (minimal) or from what the operator wrote. */
export interface RequestShapes {
  label: string;
  manifest(namespace: string, name: string, i: number): Record<string, unknown>;
  finalizer: string;
  /** The status to write on `object` (Ready=True for its generation). */
  status(object: KubeObject): KubeObject['status'];
  event(namespace: string, name: string, object: KubeObject, e: number): Record<string, unknown>;
}

/** What the operator wrote for one object, read back after the run: its status and one of its Events. */
export interface OperatorSample {
  object: KubeObject;
  event: Record<string, unknown>;
}

export function minimalShapes(): RequestShapes {
  return {
    label: 'minimal bodies',
    manifest: (namespace, name, i) => publishedRealmManifest(namespace, name, { sourceRealmURL: `http://localhost:4201/floor/${i}/`, publishedRealmURL: `http://pub.localhost/${namespace}/${i}/` }),
    finalizer: 'floor.example/f0',
    status: (object) => ({
      conditions: [{ type: 'Ready', status: 'True', reason: 'Published', message: 'API floor', observedGeneration: object.metadata.generation, lastTransitionTime: isoSeconds() }],
    }),
    event: (namespace, name, object, e) => ({
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: `${name}.${e}`, namespace },
      eventTime: microTime(),
      reportingController: 'realm-operator.dev/bench-floor',
      reportingInstance: 'bench',
      action: 'Floor',
      reason: `Floor${e}`,
      note: 'API floor',
      type: 'Normal',
      regarding: { apiVersion: `${GROUP}/${VERSION}`, kind: 'PublishedRealm', name, namespace, uid: object.metadata.uid },
    }),
  };
}

/** The operator's bodies: its spec shape, finalizer, whole status and Event, re-addressed to each floor object. */
export function operatorShapes(sample: OperatorSample, manifest: (namespace: string, name: string, i: number) => Record<string, unknown>): RequestShapes {
  const status = sample.object.status ?? {};
  const event = sample.event;
  return {
    label: "the operator's bodies",
    manifest,
    finalizer: sample.object.metadata.finalizers?.[0] ?? 'realm-operator.dev/unpublish',
    status: (object) => ({
      ...structuredClone(status),
      ...('observedGeneration' in status ? { observedGeneration: object.metadata.generation } : {}),
      conditions: (status.conditions ?? []).map((c) => ({ ...c, observedGeneration: object.metadata.generation })),
    }),
    event: (namespace, name, object, e) => ({
      ...structuredClone(event),
      metadata: { name: `${name}.${e}`, namespace },
      eventTime: microTime(),
      regarding: { ...(event.regarding as Record<string, unknown>), name, namespace, uid: object.metadata.uid, resourceVersion: object.metadata.resourceVersion },
    }),
  };
}

export interface PhaseCost {
  phase: string;
  requests: number;
  wallMs: number;
  apiserverCpu: number;
  etcdCpu: number;
}

export interface FloorRun {
  label: string;
  /** Created → all Ready, as the ReadyWatcher saw it (the Ready status write is the third phase). */
  readyMs: number;
  wallMs: number;
  phases: PhaseCost[];
  /** apiserver + etcd CPU over the phases the operator's convergence also has. */
  totalCpu: { apiserver: number; etcd: number };
  /** Bytes on the wire of one object's requests (JSON), by kind. */
  bodyBytes: { create: number; finalizerPatch: number; statusPut: number; statusPutWithoutManagedFields: number; statusMergePatch: number; event: number };
}

export interface FloorOptions {
  count: number;
  parallel: number;
  /** Also measure a second status write as a PUT and a third as a merge PATCH (not part of the total). */
  comparePutWithPatch?: boolean;
}

/**
 * Sends, for `count` objects, the requests of a convergence one kind at a time (`parallel` in
 * flight, kept-alive connections), with CPU of kube-apiserver and etcd read between kinds.
 */
export async function phasedFloor(cluster: BenchCluster, shapes: RequestShapes, options: FloorOptions): Promise<FloorRun> {
  const namespace = `scale-floor-${Math.random().toString(36).slice(2, 7)}`;
  await createNamespace(cluster, namespace);
  const connection = new KeepAliveConnection(cluster.connection);
  const watchers = await startWatchers(cluster.connection, namespace);
  const path = resourcePath(RESOURCE, namespace);
  const objects: KubeObject[] = new Array(options.count);
  const names = Array.from({ length: options.count }, (_, i) => `floor-${i}`);
  const meter = new CpuMeter();
  const pids = { apiserver: cluster.plane.pids.apiserver, etcd: cluster.plane.pids.etcd };
  const phases: PhaseCost[] = [];
  const bodyBytes = { create: 0, finalizerPatch: 0, statusPut: 0, statusPutWithoutManagedFields: 0, statusMergePatch: 0, event: 0 };
  const runPhase = async (phase: string, send: (i: number) => Promise<void>, requests = options.count) => {
    const before = new CpuMeter();
    await before.sample([pids.apiserver, pids.etcd]);
    const started = performance.now();
    await forEachParallel(requests, options.parallel, send);
    await before.sample([pids.apiserver, pids.etcd]);
    phases.push({ phase, requests, wallMs: Math.round(performance.now() - started), apiserverCpu: before.used([pids.apiserver]), etcdCpu: before.used([pids.etcd]) });
  };
  const bytes = (body: unknown) => Buffer.byteLength(JSON.stringify(body));
  await meter.sample([pids.apiserver, pids.etcd]);
  const started = performance.timeOrigin + performance.now();
  await runPhase('create', async (i) => {
    const body = shapes.manifest(namespace, names[i]!, i);
    bodyBytes.create = bytes(body);
    objects[i] = await kubeRequest<KubeObject>(connection, { method: 'POST', path, body });
  });
  // As the operator: no PATCH for an object created with a finalizer (deploy/base's admission
  // policy adds it), so the floor sends what the operator sends on the same API server.
  const lacking = names.flatMap((_, i) => (objects[i]!.metadata.finalizers?.length ? [] : [i]));
  if (lacking.length > 0) await runPhase('finalizer PATCH', async (j) => {
    const i = lacking[j]!;
    const body = [
      { op: 'test', path: '/metadata/resourceVersion', value: objects[i]!.metadata.resourceVersion },
      { op: 'add', path: '/metadata/finalizers', value: [shapes.finalizer] },
    ];
    bodyBytes.finalizerPatch = bytes(body);
    objects[i] = await kubeRequest<KubeObject>(connection, { method: 'PATCH', path: `${path}/${names[i]}`, contentType: 'application/json-patch+json', body });
  }, lacking.length);
  await runPhase('status PUT', async (i) => {
    // As the operator's first status write: the object as the finalizer PATCH (or the create) returned it.
    const body = { ...objects[i]!, status: shapes.status(objects[i]!) };
    bodyBytes.statusPut = bytes(body);
    objects[i] = await kubeRequest<KubeObject>(connection, { method: 'PUT', path: `${path}/${names[i]}/status`, body });
  });
  await watchers.ready.waitForReady(options.count, 600_000);
  const readyMs = Math.round(watchers.ready.lastReadyAt() - started);
  await runPhase('Event POST', async (i) => {
    const body = shapes.event(namespace, names[i]!, objects[i]!, 0);
    bodyBytes.event = bytes(body);
    await kubeRequest(connection, { method: 'POST', path: `/apis/events.k8s.io/v1/namespaces/${namespace}/events`, body });
  });
  await meter.sample([pids.apiserver, pids.etcd]);
  const wallMs = Math.round(performance.timeOrigin + performance.now() - started);
  const totalCpu = { apiserver: round2(meter.used([pids.apiserver])), etcd: round2(meter.used([pids.etcd])) };
  if (options.comparePutWithPatch) {
    // A later status write (one condition's message changes), as a PUT of the whole object and as a merge PATCH of the status alone.
    const changed = (object: KubeObject, what: string) => ({
      ...object.status,
      conditions: (object.status?.conditions ?? []).map((c) => (c.type === 'Ready' ? { ...c, message: `${String(c.message)} (${what})` } : c)),
    });
    await runPhase('status PUT, later write', async (i) => {
      const body = { ...objects[i]!, status: changed(objects[i]!, 'put') };
      objects[i] = await kubeRequest<KubeObject>(connection, { method: 'PUT', path: `${path}/${names[i]}/status`, body });
    });
    await runPhase('status PUT without managedFields, later write', async (i) => {
      // A status PUT cannot change managedFields (the server keeps its own for subresources): the bytes are only decoded.
      const { managedFields: _managed, ...metadata } = objects[i]!.metadata;
      const body = { ...objects[i]!, metadata, status: changed(objects[i]!, 'put without managedFields') };
      bodyBytes.statusPutWithoutManagedFields = bytes(body);
      objects[i] = await kubeRequest<KubeObject>(connection, { method: 'PUT', path: `${path}/${names[i]}/status`, body });
    });
    await runPhase('status merge PATCH, later write', async (i) => {
      const body = { status: changed(objects[i]!, 'patch') };
      bodyBytes.statusMergePatch = bytes(body);
      objects[i] = await kubeRequest<KubeObject>(connection, { method: 'PATCH', path: `${path}/${names[i]}/status`, contentType: 'application/merge-patch+json', body });
    });
  }
  watchers.stop();
  connection.destroy();
  return { label: shapes.label, readyMs, wallMs, phases: phases.map(roundPhase), totalCpu, bodyBytes };
}

export interface PacedFloorRun {
  label: string;
  wallMs: number;
  cpu: { apiserver: number; etcd: number };
}

/**
 * The requests per object as one chain per object (as a reconcile sends them), objects
 * started evenly over `durationMs` (the operator's convergence time) instead of all at once.
 */
export async function pacedFloor(cluster: BenchCluster, shapes: RequestShapes, options: { count: number; parallel: number; durationMs: number }): Promise<PacedFloorRun> {
  const namespace = `scale-paced-${Math.random().toString(36).slice(2, 7)}`;
  await createNamespace(cluster, namespace);
  const connection = new KeepAliveConnection(cluster.connection);
  const watchers = await startWatchers(cluster.connection, namespace);
  const path = resourcePath(RESOURCE, namespace);
  const pids = { apiserver: cluster.plane.pids.apiserver, etcd: cluster.plane.pids.etcd };
  const meter = new CpuMeter();
  await meter.sample([pids.apiserver, pids.etcd]);
  const started = performance.now();
  const interval = options.durationMs / options.count;
  await forEachParallel(options.count, options.parallel, async (i) => {
    const due = started + i * interval - performance.now();
    if (due > 0) await new Promise((resolve) => setTimeout(resolve, due));
    const name = `paced-${i}`;
    let object = await kubeRequest<KubeObject>(connection, { method: 'POST', path, body: shapes.manifest(namespace, name, i) });
    if (!object.metadata.finalizers?.length) object = await kubeRequest<KubeObject>(connection, {
      method: 'PATCH',
      path: `${path}/${name}`,
      contentType: 'application/json-patch+json',
      body: [
        { op: 'test', path: '/metadata/resourceVersion', value: object.metadata.resourceVersion },
        { op: 'add', path: '/metadata/finalizers', value: [shapes.finalizer] },
      ],
    });
    object = await kubeRequest<KubeObject>(connection, { method: 'PUT', path: `${path}/${name}/status`, body: { ...object, status: shapes.status(object) } });
    await kubeRequest(connection, { method: 'POST', path: `/apis/events.k8s.io/v1/namespaces/${namespace}/events`, body: shapes.event(namespace, name, object, 0) });
  });
  await watchers.ready.waitForReady(options.count, 600_000);
  await meter.sample([pids.apiserver, pids.etcd]);
  const wallMs = Math.round(performance.now() - started);
  watchers.stop();
  connection.destroy();
  return { label: `${shapes.label}, paced over ${Math.round(options.durationMs / 100) / 10} s`, wallMs, cpu: { apiserver: round2(meter.used([pids.apiserver])), etcd: round2(meter.used([pids.etcd])) } };
}

/** CPU seconds per second of kube-apiserver and etcd over `ms` with nothing sent by the bench. */
export async function idleRate(cluster: BenchCluster, ms: number): Promise<{ apiserver: number; etcd: number }> {
  const meter = new CpuMeter();
  const pids = [cluster.plane.pids.apiserver, cluster.plane.pids.etcd];
  await meter.sample(pids);
  const started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, ms));
  await meter.sample(pids);
  const seconds = (performance.now() - started) / 1000;
  return { apiserver: round3(meter.used([pids[0]!]) / seconds), etcd: round3(meter.used([pids[1]!]) / seconds) };
}

/** One Ready object as the operator left it (managedFields included) and one Event it recorded about it. */
export async function operatorSample(connection: StaticKubeConnection, namespace: string, name: string): Promise<OperatorSample> {
  const object = await kubeRequest<KubeObject>(connection, { path: `${resourcePath(RESOURCE, namespace)}/${name}` });
  // Any of the operator's Events will do: each floor object gets a copy re-addressed to it.
  const events = await kubeRequest<{ items: Array<Record<string, unknown>> }>(connection, { path: `/apis/events.k8s.io/v1/namespaces/${namespace}/events`, query: { limit: 1 } });
  const event = events.items[0];
  if (!event) throw new Error(`the operator recorded no Event in ${namespace}`);
  const { metadata, ...rest } = event as { metadata: Record<string, unknown> };
  return { object, event: { apiVersion: 'events.k8s.io/v1', kind: 'Event', ...rest, metadata: { name: metadata.name, namespace: metadata.namespace } } };
}

/**
 * kube-apiserver's own counters from /metrics: requests by resource and verb, and watch events
 * (count and bytes) by resource. Keys: `requests <resource> <VERB>`, `watch events <resource>`,
 * `watch bytes <resource>`.
 */
export async function apiserverCounters(connection: StaticKubeConnection): Promise<Record<string, number>> {
  const text = String(await kubeRequest<string>(connection, { path: '/metrics' }));
  const totals: Record<string, number> = {};
  const add = (key: string, value: number) => (totals[key] = (totals[key] ?? 0) + value);
  for (const line of text.split('\n')) {
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (line.startsWith('apiserver_request_total{')) {
      const resource = /resource="([^"]*)"/.exec(line)?.[1] || '(none)';
      const subresource = /subresource="([^"]+)"/.exec(line)?.[1];
      add(`requests ${resource}${subresource ? `/${subresource}` : ''} ${/verb="([A-Z]+)"/.exec(line)?.[1] ?? '?'}`, value);
    } else if (line.startsWith('apiserver_watch_events_total{')) {
      add(`watch events ${/resource="([^"]*)"/.exec(line)?.[1] ?? '?'}`, value);
    } else if (line.startsWith('apiserver_watch_events_sizes_sum{')) {
      add(`watch bytes ${/resource="([^"]*)"/.exec(line)?.[1] ?? '?'}`, value);
    }
  }
  return totals;
}

async function startWatchers(connection: StaticKubeConnection, namespace: string): Promise<{ ready: ReadyWatcher; stop(): void }> {
  const ready = new ReadyWatcher(connection, namespace);
  const informerLike = new ReadyWatcher(connection, namespace);
  await ready.start();
  await informerLike.start();
  return {
    ready,
    stop() {
      ready.stop();
      informerLike.stop();
    },
  };
}

async function forEachParallel(count: number, parallel: number, each: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < count) await each(next++);
    }),
  );
}

function roundPhase(p: PhaseCost): PhaseCost {
  return { ...p, apiserverCpu: round2(p.apiserverCpu), etcdCpu: round2(p.etcdCpu) };
}

function round2(value: number): number {
  return Math.round(value * 100) / 100;
}

function round3(value: number): number {
  return Math.round(value * 1000) / 1000;
}

function isoSeconds(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, 'Z');
}

/** A MicroTime (events.k8s.io's eventTime): microseconds, which a JS Date lacks, padded with zeros. */
function microTime(): string {
  return new Date().toISOString().replace('Z', '000Z');
}
