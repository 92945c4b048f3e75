import { describe, expect, test } from '@jest/globals';
import { pino } from 'pino';
import { Counter, Registry } from 'prom-client';
import { Manager, type Runnable } from '../../src/runtime/manager.js';
import { installProcessGuard } from '../../src/runtime/process-guard.js';

const logger = pino({ level: 'silent' });

/** A runnable that records its lifecycle into `log` and stops when its signal aborts. */
function recorder(name: string, log: string[], options: { needLeaderElection?: boolean; stopDelayMs?: number; synced?: () => boolean } = {}): Runnable {
  return {
    name,
    ...(options.needLeaderElection !== undefined ? { needLeaderElection: options.needLeaderElection } : {}),
    ...(options.synced ? { hasSynced: options.synced } : {}),
    async start(signal) {
      log.push(`start ${name}`);
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
      if (options.stopDelayMs) await new Promise((r) => setTimeout(r, options.stopDelayMs));
      log.push(`stop ${name}`);
    },
  };
}

async function get(port: number, path: string): Promise<{ status: number; body: string; type: string | null }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type') };
}

describe('Manager', () => {
  test('starts everything; on abort stops leader runnables (drained) before the others, then resolves', async () => {
    const log: string[] = [];
    const manager = new Manager({ server: false, logger })
      .add(recorder('controller', log, { stopDelayMs: 30 }))
      .add(recorder('informer', log, { needLeaderElection: false }));
    const abort = new AbortController();
    const running = manager.start(abort.signal);
    await new Promise((r) => setTimeout(r, 20));
    expect(log.sort()).toEqual(['start controller', 'start informer']);
    log.length = 0;
    abort.abort();
    await running;
    expect(log).toEqual(['stop controller', 'stop informer']);
  });

  test('a failing runnable stops the others and makes start reject with its error', async () => {
    const log: string[] = [];
    const manager = new Manager({ server: false, logger })
      .add(recorder('informer', log, { needLeaderElection: false }))
      .add({
        name: 'broken',
        async start() {
          throw new Error('cannot start');
        },
      });
    await expect(manager.start(new AbortController().signal)).rejects.toThrow('cannot start');
    expect(log).toEqual(['start informer', 'stop informer']);
  });

  test('serves /healthz, /readyz (synced runnables and the ready check) and /metrics', async () => {
    let synced = false;
    let checkPasses = false;
    const registry = new Registry();
    new Counter({ name: 'manager_test_total', help: 'a test counter', registers: [registry] }).inc(7);
    const manager = new Manager({ server: { host: '127.0.0.1', port: 0 }, logger, metricsRegistry: registry, readyCheck: () => checkPasses }).add(
      recorder('cache', [], { needLeaderElection: false, synced: () => synced }),
    );
    const abort = new AbortController();
    const running = manager.start(abort.signal);
    const { port } = await manager.address();
    expect(port).toBeGreaterThan(0);

    expect(await get(port, '/healthz')).toMatchObject({ status: 200, body: 'ok' });
    const notReady = await get(port, '/readyz');
    expect(notReady.status).toBe(503);
    expect(JSON.parse(notReady.body)).toEqual({ ready: false, reasons: ['cache has not synced', 'ready check failed'] });
    synced = true;
    expect(JSON.parse((await get(port, '/readyz')).body)).toEqual({ ready: false, reasons: ['ready check failed'] });
    checkPasses = true;
    expect(await get(port, '/readyz')).toMatchObject({ status: 200 });

    const metrics = await get(port, '/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.type).toContain('text/plain');
    expect(metrics.body).toContain('manager_test_total 7');
    expect((await get(port, '/nope')).status).toBe(404);

    abort.abort();
    await running;
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
  });

  test('markUnhealthy fails /readyz for good with the reason; the process guard reports unhandled rejections there and counts them', async () => {
    const registry = new Registry();
    const manager = new Manager({ server: { host: '127.0.0.1', port: 0 }, logger, metricsRegistry: registry });
    const abort = new AbortController();
    const running = manager.start(abort.signal);
    const { port } = await manager.address();
    expect((await get(port, '/readyz')).status).toBe(200);
    const logged: Array<Record<string, unknown>> = [];
    const capture = pino({ level: 'error' }, { write: (line: string) => void logged.push(JSON.parse(line) as Record<string, unknown>) });
    const listenersBefore = process.listenerCount('unhandledRejection');
    const uninstall = installProcessGuard({ logger: capture, onFault: (reason) => manager.markUnhealthy(reason), metricsRegistry: registry, metricName: 'test_unhandled_errors_total' });
    try {
      // What Node does for a rejected promise nobody handles (emitting it directly keeps Jest's own handler out of it).
      const leaked = new Error('staging lost a promise');
      process.emit('unhandledRejection', leaked, Promise.resolve());
      const report = await get(port, '/readyz');
      expect(report.status).toBe(503);
      expect(JSON.parse(report.body)).toEqual({ ready: false, reasons: ['unhandledRejection: Error: staging lost a promise'] });
      expect((await get(port, '/healthz')).status).toBe(200);
      expect((await get(port, '/metrics')).body).toContain('test_unhandled_errors_total{kind="unhandledRejection"} 1');
      expect(logged).toEqual([expect.objectContaining({ level: 50, kind: 'unhandledRejection', err: expect.objectContaining({ stack: expect.stringContaining('staging lost a promise') }) })]);
    } finally {
      uninstall();
    }
    expect(process.listenerCount('unhandledRejection')).toBe(listenersBefore);
    abort.abort();
    await running;
  });

  test('start rejects when the port is taken', async () => {
    const first = new Manager({ server: { host: '127.0.0.1', port: 0 }, logger });
    const abort = new AbortController();
    const running = first.start(abort.signal);
    const { port } = await first.address();
    const second = new Manager({ server: { host: '127.0.0.1', port }, logger });
    await expect(second.start(new AbortController().signal)).rejects.toThrow(/EADDRINUSE/);
    abort.abort();
    await running;
  });
});
