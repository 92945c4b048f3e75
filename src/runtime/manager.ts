/**
 * Runs the operator's long-running parts ("runnables") under one `start(signal)`, with leader
 * election and the `/healthz`, `/readyz` and `/metrics` endpoints: controller-runtime's manager.
 *
 * Expected flow: `start(signal)` binds the HTTP server, starts every runnable that does not need
 * leader election (informers) at once, and the others (controllers) once the lease is ours — or
 * at once when no elector is configured. It then waits for `signal` to abort.
 *
 * Guarantees:
 * - Shutdown order: leader runnables are stopped and drained first, then the lease is released
 *   (so no successor starts while we still reconcile), then the other runnables are stopped, then
 *   the server closes. The whole shutdown is bounded by `gracefulShutdownTimeoutMs`.
 * - Losing the lease stops the leader runnables and makes `start` reject with
 *   {@link LeadershipLostError}: the process is expected to exit and be restarted by Kubernetes,
 *   as controller-runtime does, rather than campaign again with possibly stale state.
 * - A runnable that rejects makes `start` stop everything and reject with that error.
 * - `/healthz` answers 200 while the process serves HTTP. `/readyz` answers 200 only when every
 *   runnable with `hasSynced()` has synced, the optional `readyCheck` passes and nothing called
 *   {@link Manager.markUnhealthy}, else 503 with the reasons. `/metrics` serves the injected registry.
 *
 * Signals (SIGTERM) belong to the CLI, which aborts the signal it passes to `start`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import { Registry } from 'prom-client';
import { LeadershipLostError, type LeaderElector } from './leader-election.js';

/** Anything long-running: it runs until `signal` aborts, then cleans up and resolves. */
export interface Runnable {
  start(signal: AbortSignal): Promise<void>;
  /** For logs. */
  readonly name?: string;
  /** Whether it may run only on the leader. Default true (controller-runtime's default). */
  readonly needLeaderElection?: boolean;
  /** When present, `/readyz` fails until it returns true. */
  hasSynced?(): boolean;
}

export interface ManagerOptions {
  /** Where to serve the probes and metrics; `false` for no server. Default 0.0.0.0:8081. */
  server?: { host?: string; port?: number } | false;
  /** Without one, leader runnables start at once (a single replica, or tests). */
  leaderElector?: LeaderElector;
  /** An extra readiness condition; a throw or `false` means not ready. */
  readyCheck?: () => boolean | Promise<boolean>;
  /** Bound on the whole shutdown. Default 30 s. */
  gracefulShutdownTimeoutMs?: number;
  logger?: Logger;
  metricsRegistry?: Registry;
  /** `false`: `/metrics` answers 404 here (served elsewhere, e.g. behind authentication). Default true. */
  serveMetrics?: boolean;
}

export interface ReadinessReport {
  ready: boolean;
  /** Why not, when not ready. */
  reasons: string[];
}

export class Manager {
  private readonly options: ManagerOptions;
  private readonly runnables: Runnable[] = [];
  private readonly logger: Logger;
  private readonly registry: Registry;
  private readonly listening: Promise<{ host: string; port: number }>;
  private resolveListening!: (address: { host: string; port: number }) => void;
  private rejectListening!: (error: Error) => void;
  private started = false;
  private readonly unhealthy: string[] = [];

  constructor(options: ManagerOptions = {}) {
    this.options = options;
    this.logger = options.logger ?? pino({ name: 'manager' });
    this.registry = options.metricsRegistry ?? new Registry();
    this.listening = new Promise((resolve, reject) => {
      this.resolveListening = resolve;
      this.rejectListening = reject;
    });
    this.listening.catch(() => undefined); // surfaced through start() and address(); never unhandled
  }

  add(runnable: Runnable): this {
    if (this.started) throw new Error('cannot add runnables to a started manager');
    this.runnables.push(runnable);
    return this;
  }

  /** The bound address once the server listens (use port 0 to let the OS pick one). */
  address(): Promise<{ host: string; port: number }> {
    return this.listening;
  }

  /**
   * Fails readiness for good, with `reason` in `/readyz`: for faults the process survives but
   * should not be trusted after (an unhandled rejection, say). Keeps the first 10 reasons.
   */
  markUnhealthy(reason: string): void {
    if (this.unhealthy.length < 10) this.unhealthy.push(reason);
  }

  async readiness(): Promise<ReadinessReport> {
    const reasons: string[] = [...this.unhealthy];
    for (const runnable of this.runnables) {
      if (runnable.hasSynced && !runnable.hasSynced()) reasons.push(`${runnable.name ?? 'runnable'} has not synced`);
    }
    if (this.options.readyCheck) {
      try {
        if (!(await this.options.readyCheck())) reasons.push('ready check failed');
      } catch (error) {
        reasons.push(`ready check threw: ${(error as Error).message}`);
      }
    }
    return { ready: reasons.length === 0, reasons };
  }

  /** Runs everything until `signal` aborts (resolves) or something fails (rejects); see the module comment. */
  async start(signal: AbortSignal): Promise<void> {
    if (this.started) throw new Error('a manager can be started once');
    this.started = true;
    const server = this.options.server === false ? undefined : await this.listen(this.options.server ?? {});
    const leaderStop = new AbortController();
    const othersStop = new AbortController();
    let failure: unknown;
    let notifyFailed!: () => void;
    const failed = new Promise<void>((resolve) => (notifyFailed = resolve));
    const fail = (error: unknown) => {
      if (failure === undefined) failure = error;
      notifyFailed();
    };
    const leaders = this.runnables.filter((r) => r.needLeaderElection !== false);
    const others = this.runnables.filter((r) => r.needLeaderElection === false);
    const othersDone = Promise.allSettled(others.map((r) => this.runOne(r, othersStop.signal, fail)));
    const runLeaders = (leaderSignal: AbortSignal) => Promise.allSettled(leaders.map((r) => this.runOne(r, leaderSignal, fail))).then(() => undefined);
    const elector = this.options.leaderElector;
    const leadersDone = elector
      ? elector
          .run(leaderStop.signal, {
            onStartedLeading: runLeaders,
            onStoppedLeading: () => {
              if (!leaderStop.signal.aborted) fail(new LeadershipLostError('leader election lost'));
            },
            onNewLeader: (identity) => this.logger.info({ leader: identity }, 'new leader observed'),
          })
          .catch((error: unknown) => fail(error))
      : runLeaders(leaderStop.signal);

    const onAbort = () => notifyFailed();
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) onAbort();
    await failed;
    signal.removeEventListener('abort', onAbort);

    const deadline = performance.now() + (this.options.gracefulShutdownTimeoutMs ?? 30_000);
    if (failure !== undefined) this.logger.error({ err: failure }, 'stopping the manager after a failure');
    else this.logger.info('stopping the manager');
    leaderStop.abort(failure instanceof LeadershipLostError ? failure : signal.reason);
    if (!(await settlesBefore(leadersDone, deadline))) this.logger.error('leader runnables did not stop in time');
    othersStop.abort(signal.reason);
    if (!(await settlesBefore(othersDone, deadline))) this.logger.error('runnables did not stop in time');
    if (server) await closeServer(server);
    if (failure !== undefined) throw failure;
  }

  private async runOne(runnable: Runnable, signal: AbortSignal, fail: (error: unknown) => void): Promise<void> {
    const name = runnable.name ?? 'runnable';
    try {
      await runnable.start(signal);
      if (!signal.aborted) this.logger.info({ runnable: name }, 'runnable returned before shutdown');
    } catch (error) {
      this.logger.error({ err: error, runnable: name }, 'runnable failed');
      fail(error);
    }
  }

  private listen(config: { host?: string; port?: number }): Promise<Server> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((error: unknown) => {
        this.logger.error({ err: error, url: req.url }, 'probe handler failed');
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
    });
    const host = config.host ?? '0.0.0.0';
    return new Promise((resolve, reject) => {
      server.once('error', (error) => {
        this.rejectListening(error);
        reject(error);
      });
      server.listen(config.port ?? 8081, host, () => {
        const address = server.address() as AddressInfo;
        this.logger.info({ host: address.address, port: address.port }, 'serving /healthz, /readyz and /metrics');
        this.resolveListening({ host: address.address, port: address.port });
        resolve(server);
      });
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    switch (path) {
      case '/healthz':
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
        return;
      case '/readyz': {
        const report = await this.readiness();
        res.writeHead(report.ready ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(report));
        return;
      }
      case '/metrics': {
        if (this.options.serveMetrics === false) {
          res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
          return;
        }
        const body = await this.registry.metrics();
        res.writeHead(200, { 'content-type': this.registry.contentType }).end(body);
        return;
      }
      default:
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    }
  }
}

async function settlesBefore(promise: Promise<unknown>, deadline: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.max(0, deadline - performance.now()));
  });
  try {
    return await Promise.race([promise.then(() => true as const, () => true as const), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    // Scrapers and probes keep connections alive; without this close() would wait for them.
    server.closeAllConnections();
  });
}
