import { describe, expect, test } from '@jest/globals';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { Controller, TerminalError, type ObjectKey, type ReconcileResult, type Reconciler } from '../../src/runtime/controller.js';
import type { InformerEventHandler, ObjectSource } from '../../src/runtime/informer.js';
import { LeadershipLostError } from '../../src/runtime/leader-election.js';
import { formatKey, type KubeObject } from '../../src/runtime/object-key.js';
import { specOrLifecycleChanged, type Predicate } from '../../src/runtime/predicates.js';

const logger = pino({ level: 'silent' });
const fastBackoff = { initialMs: 2, maxMs: 4 };

/** An informer stand-in: a map of objects whose changes the test drives. */
class FakeSource implements ObjectSource {
  readonly name = 'fake';
  private readonly objects = new Map<string, KubeObject>();
  private readonly handlers = new Set<InformerEventHandler<KubeObject>>();
  private synced = false;
  private readonly syncWaiters: Array<() => void> = [];

  constructor(names: string[] = [], synced = true) {
    for (const name of names) this.objects.set(`ns/${name}`, obj(name));
    this.synced = synced;
  }

  addEventHandler(handler: InformerEventHandler<KubeObject>): () => void {
    this.handlers.add(handler);
    for (const o of this.objects.values()) handler.onAdd?.(o);
    return () => this.handlers.delete(handler);
  }

  keys(): string[] {
    return [...this.objects.keys()];
  }

  hasSynced(): boolean {
    return this.synced;
  }

  async waitForSync(signal?: AbortSignal): Promise<void> {
    if (this.synced) return;
    await new Promise<void>((resolve, reject) => {
      this.syncWaiters.push(resolve);
      signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
  }

  markSynced(): void {
    this.synced = true;
    for (const resolve of this.syncWaiters.splice(0)) resolve();
  }

  upsert(name: string, extra: Record<string, unknown> = {}): void {
    const key = `ns/${name}`;
    const old = this.objects.get(key);
    const next = { ...obj(name), ...extra };
    this.objects.set(key, next);
    for (const h of this.handlers) {
      if (old) h.onUpdate?.(old, next);
      else h.onAdd?.(next);
    }
  }

  remove(name: string): void {
    const key = `ns/${name}`;
    const old = this.objects.get(key);
    this.objects.delete(key);
    if (old) for (const h of this.handlers) h.onDelete?.(old, false);
  }

  get handlerCount(): number {
    return this.handlers.size;
  }
}

function obj(name: string): KubeObject {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'ns' } };
}

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** A reconciler driven by a per-call script; records calls, concurrency and signals. */
class ScriptedReconciler implements Reconciler {
  readonly calls: string[] = [];
  readonly signals: AbortSignal[] = [];
  readonly active = new Map<string, number>();
  maxActivePerKey = 0;
  maxActive = 0;
  private activeTotal = 0;
  private readonly waiters: Array<{ count: number; key?: string; resolve: () => void }> = [];

  constructor(private readonly script: (key: string, call: number, signal: AbortSignal) => Promise<ReconcileResult> | ReconcileResult = () => undefined) {}

  async reconcile(key: ObjectKey, signal: AbortSignal): Promise<ReconcileResult> {
    const k = formatKey(key);
    this.calls.push(k);
    this.signals.push(signal);
    const call = this.calls.filter((c) => c === k).length;
    this.active.set(k, (this.active.get(k) ?? 0) + 1);
    this.activeTotal += 1;
    this.maxActivePerKey = Math.max(this.maxActivePerKey, this.active.get(k)!);
    this.maxActive = Math.max(this.maxActive, this.activeTotal);
    this.wake();
    try {
      return await this.script(k, call, signal);
    } finally {
      this.active.set(k, this.active.get(k)! - 1);
      this.activeTotal -= 1;
    }
  }

  /** Resolves once there have been `count` calls (for `key`, if given). */
  async waitForCalls(count: number, key?: string, timeoutMs = 5_000): Promise<void> {
    if (this.count(key) >= count) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${this.count(key)} of ${count} calls${key ? ` for ${key}` : ''}: ${this.calls.join(',')}`)), timeoutMs);
      this.waiters.push({ count, ...(key ? { key } : {}), resolve: () => (clearTimeout(timer), resolve()) });
    });
  }

  count(key?: string): number {
    return key ? this.calls.filter((c) => c === key).length : this.calls.length;
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) {
      if (this.count(waiter.key) >= waiter.count) {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
  }
}

async function metricValue(registry: Registry, name: string, labels: Record<string, string>): Promise<number | undefined> {
  // Histograms are one family (`x`) whose values are named `x_bucket`, `x_sum` and `x_count`.
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name || m.name === name.replace(/_(count|sum|bucket)$/, ''));
  const match = (metric?.values as Array<{ value: number; labels: Record<string, string | number>; metricName?: string }> | undefined)?.find(
    (v) => (v.metricName === undefined || v.metricName === name) && Object.entries(labels).every(([k, val]) => String(v.labels[k]) === val),
  );
  return match?.value;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function setup(options: {
  source?: FakeSource;
  reconciler: ScriptedReconciler;
  concurrency?: number;
  resyncPeriodMs?: number;
  drainTimeoutMs?: number;
  cacheSyncTimeoutMs?: number;
  predicates?: Predicate[];
}) {
  const registry = new Registry();
  const source = options.source ?? new FakeSource();
  const controller = new Controller({
    name: 'widgets',
    reconciler: options.reconciler,
    source,
    concurrency: options.concurrency ?? 1,
    resyncPeriodMs: options.resyncPeriodMs ?? 0,
    drainTimeoutMs: options.drainTimeoutMs ?? 1_000,
    abortGraceMs: 500,
    cacheSyncTimeoutMs: options.cacheSyncTimeoutMs ?? 5_000,
    ...(options.predicates ? { predicates: options.predicates } : {}),
    backoff: fastBackoff,
    logger,
    metricsRegistry: registry,
  });
  const abort = new AbortController();
  const running = controller.start(abort.signal);
  return { registry, source, controller, abort, running };
}

describe('Controller', () => {
  test('reconciles every cached key once after sync, then each changed key; counts successes', async () => {
    const reconciler = new ScriptedReconciler();
    const { registry, source, abort, running } = setup({ source: new FakeSource(['a', 'b']), reconciler });
    await reconciler.waitForCalls(2);
    source.upsert('c');
    source.upsert('a', { data: { x: '1' } });
    source.remove('b'); // deletes are reconciled too: the reconciler sees the object gone
    await reconciler.waitForCalls(5);
    abort.abort();
    await running;
    expect(reconciler.calls.slice(0, 2).sort()).toEqual(['ns/a', 'ns/b']);
    expect(reconciler.calls.slice(2).sort()).toEqual(['ns/a', 'ns/b', 'ns/c']);
    expect(await metricValue(registry, 'controller_runtime_reconcile_total', { controller: 'widgets', result: 'success' })).toBe(5);
    expect(await metricValue(registry, 'controller_runtime_reconcile_total', { controller: 'widgets', result: 'error' })).toBe(0);
    expect(await metricValue(registry, 'workqueue_adds_total', { name: 'widgets' })).toBe(5);
    expect(await metricValue(registry, 'controller_runtime_max_concurrent_reconciles', { controller: 'widgets' })).toBe(1);
    expect(await metricValue(registry, 'controller_runtime_reconcile_time_seconds_count', { controller: 'widgets' })).toBe(5);
    expect(await metricValue(registry, 'workqueue_work_duration_seconds_count', { name: 'widgets' })).toBe(5);
    expect(source.handlerCount).toBe(0); // unsubscribed on stop
  });

  test('does not reconcile before the source has synced', async () => {
    const reconciler = new ScriptedReconciler();
    const source = new FakeSource(['a'], false);
    const { abort, running } = setup({ source, reconciler });
    await sleep(30);
    expect(reconciler.count()).toBe(0);
    source.markSynced();
    await reconciler.waitForCalls(1);
    abort.abort();
    await running;
  });

  test('start rejects when the source does not sync within the cache sync timeout', async () => {
    const reconciler = new ScriptedReconciler();
    const { running } = setup({ source: new FakeSource(['a'], false), reconciler, cacheSyncTimeoutMs: 50 });
    await expect(running).rejects.toThrow(/caches did not sync within 50 ms \(fake\)/);
    expect(reconciler.count()).toBe(0);
  });

  test('an error is retried with backoff until it succeeds, then the backoff is forgotten', async () => {
    const reconciler = new ScriptedReconciler((_key, call) => {
      if (call <= 3) throw new Error(`transient ${call}`);
    });
    const { registry, controller, abort, running } = setup({ source: new FakeSource(['a']), reconciler });
    await reconciler.waitForCalls(4);
    await sleep(20);
    abort.abort();
    await running;
    expect(reconciler.count()).toBe(4);
    expect(controller.queue.numRequeues('ns/a')).toBe(0);
    expect(await metricValue(registry, 'controller_runtime_reconcile_total', { controller: 'widgets', result: 'error' })).toBe(3);
    expect(await metricValue(registry, 'controller_runtime_reconcile_total', { controller: 'widgets', result: 'success' })).toBe(1);
    expect(await metricValue(registry, 'controller_runtime_reconcile_errors_total', { controller: 'widgets' })).toBe(3);
    expect(await metricValue(registry, 'controller_runtime_terminal_reconcile_errors_total', { controller: 'widgets' })).toBe(0);
    expect(await metricValue(registry, 'workqueue_retries_total', { name: 'widgets' })).toBe(3);
  });

  test('a TerminalError is counted and not retried', async () => {
    const reconciler = new ScriptedReconciler(() => {
      throw new TerminalError('spec is invalid');
    });
    const { registry, controller, abort, running } = setup({ source: new FakeSource(['a']), reconciler });
    await reconciler.waitForCalls(1);
    await sleep(50); // several backoff periods: a retry would have happened
    abort.abort();
    await running;
    expect(reconciler.count()).toBe(1);
    expect(controller.queue.numRequeues('ns/a')).toBe(0);
    expect(await metricValue(registry, 'controller_runtime_reconcile_total', { controller: 'widgets', result: 'error' })).toBe(1);
    expect(await metricValue(registry, 'controller_runtime_reconcile_errors_total', { controller: 'widgets' })).toBe(1);
    expect(await metricValue(registry, 'controller_runtime_terminal_reconcile_errors_total', { controller: 'widgets' })).toBe(1);
    expect(await metricValue(registry, 'workqueue_retries_total', { name: 'widgets' })).toBe(0);
  });

  test('requeueAfterMs reconciles again after that delay, without an event; requeue: true goes through the backoff', async () => {
    const times: number[] = [];
    const reconciler = new ScriptedReconciler((key, call) => {
      times.push(performance.now());
      if (key === 'ns/poll' && call === 1) return { requeueAfterMs: 80 };
      if (key === 'ns/again' && call === 1) return { requeue: true };
      return undefined;
    });
    const { registry, controller, abort, running } = setup({ source: new FakeSource(['poll', 'again']), reconciler, concurrency: 2 });
    await reconciler.waitForCalls(2, 'ns/poll');
    await reconciler.waitForCalls(2, 'ns/again');
    abort.abort();
    await running;
    const pollCalls = reconciler.calls.map((c, i) => [c, times[i]!] as const).filter(([c]) => c === 'ns/poll');
    expect(pollCalls[1]![1] - pollCalls[0]![1]).toBeGreaterThanOrEqual(75);
    expect(controller.queue.numRequeues('ns/poll')).toBe(0);
    expect(await metricValue(registry, 'controller_runtime_reconcile_total', { controller: 'widgets', result: 'requeue_after' })).toBe(1);
    expect(await metricValue(registry, 'controller_runtime_reconcile_total', { controller: 'widgets', result: 'requeue' })).toBe(1);
    expect(await metricValue(registry, 'controller_runtime_reconcile_total', { controller: 'widgets', result: 'success' })).toBe(2);
    expect(await metricValue(registry, 'workqueue_retries_total', { name: 'widgets' })).toBe(1);
  });

  test('one key is never reconciled twice at once; events during a reconcile coalesce into one more', async () => {
    const gates = new Map<string, Deferred>([['ns/a', deferred()], ['ns/b', deferred()]]);
    const reconciler = new ScriptedReconciler(async (key, call) => {
      if (call === 1) await gates.get(key)?.promise;
    });
    const { registry, source, abort, running } = setup({ source: new FakeSource(['a', 'b']), reconciler, concurrency: 4 });
    await reconciler.waitForCalls(2);
    // Two workers busy, on different keys, at the same time.
    expect(await metricValue(registry, 'controller_runtime_active_workers', { controller: 'widgets' })).toBe(2);
    expect(await metricValue(registry, 'workqueue_longest_running_processor_seconds', { name: 'widgets' })).toBeGreaterThanOrEqual(0);
    for (let i = 0; i < 5; i++) source.upsert('a', { data: { i: String(i) } });
    await sleep(30); // idle workers are free; none may take ns/a
    expect(reconciler.count('ns/a')).toBe(1);
    expect(await metricValue(registry, 'workqueue_depth', { name: 'widgets' })).toBe(0); // held back, not queued
    gates.get('ns/a')!.resolve();
    await reconciler.waitForCalls(2, 'ns/a');
    gates.get('ns/b')!.resolve();
    await sleep(30);
    abort.abort();
    await running;
    expect(reconciler.maxActivePerKey).toBe(1);
    expect(reconciler.maxActive).toBe(2);
    expect(reconciler.count('ns/a')).toBe(2);
    expect(reconciler.count('ns/b')).toBe(1);
  });

  test('with specOrLifecycleChanged, status-only updates do not enqueue; spec, deletion and finalizer changes do', async () => {
    const reconciler = new ScriptedReconciler();
    const source = new FakeSource([]);
    const { abort, running } = setup({ source, reconciler, predicates: [specOrLifecycleChanged()] });
    const meta = (extra: Record<string, unknown> = {}) => ({ metadata: { name: 'a', namespace: 'ns', generation: 1, ...extra } });
    source.upsert('a', meta());
    await reconciler.waitForCalls(1, 'ns/a');
    // The queue is FIFO with one worker: once the marker key was reconciled, anything enqueued
    // for `a` before it would have been reconciled first.
    let markers = 0;
    const settle = async () => {
      source.upsert(`marker${++markers}`);
      await reconciler.waitForCalls(1, `ns/marker${markers}`);
    };
    source.upsert('a', { ...meta({ resourceVersion: '2' }), status: { phase: 'Stalled' } });
    source.upsert('a', { ...meta({ resourceVersion: '3', labels: { team: 'x' } }), status: { phase: 'Stalled' } });
    await settle();
    expect(reconciler.count('ns/a')).toBe(1);
    source.upsert('a', meta({ generation: 2 }));
    await settle();
    expect(reconciler.count('ns/a')).toBe(2);
    source.upsert('a', meta({ generation: 2, finalizers: ['x/y'] }));
    await settle();
    expect(reconciler.count('ns/a')).toBe(3);
    source.upsert('a', meta({ generation: 2, finalizers: ['x/y'], deletionTimestamp: '2026-01-01T00:00:00Z' }));
    await settle();
    expect(reconciler.count('ns/a')).toBe(4);
    source.remove('a');
    await reconciler.waitForCalls(5, 'ns/a');
    abort.abort();
    await running;
  });

  test('a resync re-enqueues every cached key periodically', async () => {
    const reconciler = new ScriptedReconciler();
    const { abort, running } = setup({ source: new FakeSource(['a', 'b']), reconciler, resyncPeriodMs: 40 });
    await reconciler.waitForCalls(2, 'ns/a', 2_000);
    await reconciler.waitForCalls(2, 'ns/b', 2_000);
    abort.abort();
    await running;
  });

  test('secondary sources enqueue the keys their map returns (both old and new owner on update)', async () => {
    const reconciler = new ScriptedReconciler();
    const registry = new Registry();
    const primary = new FakeSource([]);
    const owned = new FakeSource([]);
    const ownerOf = (o: KubeObject) => [{ namespace: 'ns', name: String((o as { owner?: string }).owner ?? 'none') }];
    const controller = new Controller({
      name: 'owners',
      reconciler,
      source: primary,
      watches: [{ source: owned, map: ownerOf }],
      resyncPeriodMs: 0,
      backoff: fastBackoff,
      logger,
      metricsRegistry: registry,
    });
    const abort = new AbortController();
    const running = controller.start(abort.signal);
    await sleep(10);
    owned.upsert('child', { owner: 'p1' });
    await reconciler.waitForCalls(1, 'ns/p1');
    owned.upsert('child', { owner: 'p2' });
    await reconciler.waitForCalls(2, 'ns/p1');
    await reconciler.waitForCalls(1, 'ns/p2');
    abort.abort();
    await running;
  });

  test('start resolves only after abort AND the in-flight reconcile finished; its signal stays un-aborted while draining', async () => {
    const gate = deferred();
    const reconciler = new ScriptedReconciler(async () => gate.promise);
    const { source, abort, running } = setup({ source: new FakeSource(['a']), reconciler, drainTimeoutMs: 5_000 });
    await reconciler.waitForCalls(1);
    abort.abort();
    source.upsert('b'); // after abort: not reconciled
    expect(await Promise.race([running.then(() => 'resolved'), sleep(50).then(() => 'pending')])).toBe('pending');
    expect(reconciler.signals[0]!.aborted).toBe(false);
    gate.resolve();
    await running;
    expect(reconciler.calls).toEqual(['ns/a']);
  });

  test('after the drain timeout the reconcile signal is aborted and start resolves', async () => {
    const reconciler = new ScriptedReconciler(
      (_key, _call, signal) => new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true })),
    );
    const { abort, running } = setup({ source: new FakeSource(['a']), reconciler, drainTimeoutMs: 60 });
    await reconciler.waitForCalls(1);
    const stopped = performance.now();
    abort.abort();
    await running;
    expect(performance.now() - stopped).toBeGreaterThanOrEqual(55);
    expect(reconciler.signals[0]!.aborted).toBe(true);
  });

  test('when leadership is lost, in-flight reconciles are aborted at once instead of drained', async () => {
    const reconciler = new ScriptedReconciler(
      (_key, _call, signal) => new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true })),
    );
    const { abort, running } = setup({ source: new FakeSource(['a']), reconciler, drainTimeoutMs: 10_000 });
    await reconciler.waitForCalls(1);
    const stopped = performance.now();
    abort.abort(new LeadershipLostError('lost'));
    await running;
    expect(performance.now() - stopped).toBeLessThan(1_000);
    expect(reconciler.signals[0]!.aborted).toBe(true);
  });
});
