/**
 * Runs the reference realm server as a separate process (the built `dist/cli/main.js
 * realm-server`), as a replica runs in a cluster. Binds free loopback ports (`--listen
 * 127.0.0.1:0`, `--management-listen 127.0.0.1:0`) and learns them from the `listening` and
 * `management listening` log lines. Keeps the most recent JSON log lines
 * (bounded) for failure messages and evidence.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

const MAIN = path.resolve(import.meta.dirname, '../../dist/cli/main.js');
/** The deliberately faulty test replica: the same server with its caches or its fence broken. */
const FAULTY_MAIN = path.resolve(import.meta.dirname, 'faulty-realm-server.ts');

/**
 * How a deliberately faulty test replica misbehaves (test/support/faulty-realm-server.ts): the
 * consistency checker must catch each of these.
 * - `dropCacheLateMs`: a realm's cache drop returns (so the listener acknowledges at once) but
 *   the cache is emptied only this many ms later;
 * - `ignoreLease`: the replica trusts its cache whether or not its lease could be renewed.
 */
export interface Misbehaviour {
  dropCacheLateMs?: number;
  ignoreLease?: boolean;
}
const KEEP_LINES = 5000;

export type ExitStatus = { code: number | null; signal: NodeJS.Signals | null };

export interface RealmServerProcess {
  replicaId: string;
  port: number;
  /** The management port: `/_readyz`, `/_healthz`, `/_metrics`. */
  managementPort: number;
  child: ChildProcess;
  /** Resolves with the exit code or signal. */
  exited: Promise<ExitStatus>;
  /** True until the process has exited. */
  alive(): boolean;
  /** Sends `signal` (SIGTERM: graceful, deregisters; SIGKILL: crash) and waits for the exit. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<ExitStatus>;
  /** Polls `GET /_readyz` until 200 (listener connected and resynced). */
  waitReady(timeoutMs?: number): Promise<void>;
  /** The most recent parsed JSON log lines (at most 5,000). */
  logs(): Array<Record<string, unknown>>;
  waitForLog(predicate: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
}

export interface RealmServerOptions {
  databaseURL: string;
  realmsRoot: string;
  replicaId: string;
  /** Default 3s / 300ms: a killed replica stops counting for acknowledgements within 3 s. */
  leaseDuration?: string;
  heartbeatInterval?: string;
  logLevel?: string;
  extraArgs?: string[];
  /** Time allowed for the `listening` line. Default 30 s. */
  startTimeoutMs?: number;
  /** Run the deliberately faulty test replica instead (never for anything but proving the checker can fail). */
  misbehave?: Misbehaviour;
}

export async function startRealmServer(options: RealmServerOptions): Promise<RealmServerProcess> {
  if (!fs.existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` first (make test does)`);
  const misbehave = options.misbehave;
  const child = spawn(
    process.execPath,
    [
      ...(misbehave ? ['--import', 'tsx', FAULTY_MAIN] : [MAIN]),
      'realm-server',
      '--database-url', options.databaseURL,
      '--realms-root', options.realmsRoot,
      '--listen', '127.0.0.1:0',
      '--management-listen', '127.0.0.1:0',
      '--replica-id', options.replicaId,
      '--lease-duration', options.leaseDuration ?? '3s',
      '--heartbeat-interval', options.heartbeatInterval ?? '300ms',
      '--log-level', options.logLevel ?? 'info',
      ...(options.extraArgs ?? []),
    ],
    {
      env: {
        ...process.env,
        DATABASE_URL: options.databaseURL,
        ...(misbehave ? { REALM_TEST_MISBEHAVE: JSON.stringify(misbehave) } : {}),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let lines: Array<Record<string, unknown>> = [];
  let raw = '';
  const waiters = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    raw += chunk.toString();
    let newline: number;
    while ((newline = raw.indexOf('\n')) >= 0) {
      const line = raw.slice(0, newline);
      raw = raw.slice(newline + 1);
      if (!line.trim()) continue;
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        lines.push({ msg: line, unparsed: true, time: Date.now() });
      }
    }
    if (lines.length > KEEP_LINES * 1.2) lines = lines.slice(-KEEP_LINES);
    for (const wake of waiters) wake();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<ExitStatus>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const alive = () => child.exitCode === null && child.signalCode === null;
  const describe = () => lines.slice(-30).map((l) => JSON.stringify(l)).join('\n');

  async function waitForLog(predicate: (line: Record<string, unknown>) => boolean, timeoutMs = 20_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = lines.find(predicate);
      if (found) return found;
      if (!alive()) throw new Error(`realm server ${options.replicaId} exited (${child.exitCode ?? child.signalCode}) before logging the expected line; last lines:\n${describe()}`);
      if (Date.now() > deadline) throw new Error(`realm server ${options.replicaId} never logged the expected line within ${timeoutMs} ms; last lines:\n${describe()}`);
      await new Promise<void>((resolve) => {
        const wake = () => (waiters.delete(wake), clearTimeout(timer), resolve());
        const timer = setTimeout(wake, 100);
        waiters.add(wake);
      });
    }
  }

  async function stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000): Promise<ExitStatus> {
    if (alive()) {
      child.kill(signal);
      // A paused (SIGSTOPped) process acts on nothing but SIGKILL until it is continued.
      if (signal !== 'SIGKILL') child.kill('SIGCONT');
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
    const result = await Promise.race([exited, timeout]);
    clearTimeout(timer);
    if (result !== 'timeout') return result;
    // A graceful stop that hangs must not leave an orphan behind.
    if (alive()) child.kill('SIGKILL');
    return exited;
  }

  let port: number;
  let managementPort: number;
  try {
    const listening = await waitForLog((l) => l.msg === 'listening' && typeof l.port === 'number', options.startTimeoutMs ?? 30_000);
    port = listening.port as number;
    managementPort = (await waitForLog((l) => l.msg === 'management listening' && typeof l.port === 'number', 5_000)).port as number;
  } catch (error) {
    await stop('SIGKILL');
    throw error;
  }

  return {
    replicaId: options.replicaId,
    port,
    managementPort,
    child,
    exited,
    alive,
    stop,
    logs: () => lines,
    waitForLog,
    async waitReady(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        if (await readyz(managementPort)) return;
        if (!alive()) throw new Error(`realm server ${options.replicaId} exited (${child.exitCode ?? child.signalCode}) before it was ready; last lines:\n${describe()}`);
        if (Date.now() > deadline) throw new Error(`realm server ${options.replicaId} not ready within ${timeoutMs} ms; last lines:\n${describe()}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}

/** `GET /_readyz` on a management port → whether it answered 200 (any error is "not ready"). */
export function readyz(port: number, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/_readyz', method: 'GET', timeout: timeoutMs, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
      res.on('error', () => resolve(false));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(false));
    req.end();
  });
}
