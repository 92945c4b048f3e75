/**
 * Runs the operator as a separate process (the built `dist/cli/main.js operator`), as it runs in
 * a cluster, against the run's control plane and PostgreSQL. Keeps its JSON logs for assertions
 * and for the failure message.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { nodeFlagsFor } from '../../src/cli/node-flags.js';
import { testKubeconfigPath } from './kube.js';

const REPO_ROOT = path.resolve(import.meta.dirname, '../..');
const MAIN = path.join(REPO_ROOT, 'dist/cli/main.js');

let installForOtherUsers: string | undefined;

/**
 * The built operator and its Node where another user can reach them: the checkout may sit under a
 * directory only its owner may enter (`mktemp -d` makes 0700 ones), and an operator started as
 * another uid could then not even exec Node from node_modules. Hard links where one file system
 * allows it (no bytes copied). One directory per checkout, refreshed by the first use in each test
 * process and left for the next run (Jest's sandboxed `process` never reports the real exit).
 */
function reachableInstall(): { node: string; main: string } {
  if (!installForOtherUsers) {
    const dir = path.join(os.tmpdir(), `realm-operator-install-${createHash('sha256').update(REPO_ROOT).digest('hex').slice(0, 12)}`);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir);
    fs.chmodSync(dir, 0o755);
    for (const entry of ['package.json', 'dist', 'node_modules']) {
      try {
        execFileSync('cp', ['-al', path.join(REPO_ROOT, entry), dir]);
      } catch {
        execFileSync('cp', ['-a', path.join(REPO_ROOT, entry), dir]);
      }
    }
    installForOtherUsers = dir;
  }
  const insideRepo = path.relative(REPO_ROOT, process.execPath);
  const node = insideRepo.startsWith('..') || path.isAbsolute(insideRepo) ? process.execPath : path.join(installForOtherUsers, insideRepo);
  return { node, main: path.join(installForOtherUsers, 'dist/cli/main.js') };
}

export interface OperatorProcess {
  identity: string;
  child: ChildProcess;
  healthURL: string;
  metricsURL: string;
  /** Parsed JSON log lines so far. */
  logs(): Array<Record<string, unknown>>;
  waitForLog(predicate: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Resolves with the exit code or signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface OperatorOptions {
  databaseURL: string;
  realmsRoot: string;
  identity: string;
  leaderElectionNamespace: string;
  /** Default: the run's control plane (REALM_OPERATOR_TEST_KUBECONFIG). */
  kubeconfig?: string;
  /** Watch only this namespace: suites share one API server but each has its own database. */
  namespace?: string;
  extraArgs?: string[];
  /** Extra environment for the child (e.g. REALM_OPERATOR_FAULT_CRASH_AT_STEP). */
  env?: Record<string, string>;
  /** Run as this user and group id (a test running as root can start an unprivileged operator). */
  uid?: number;
  /**
   * Node flags before main.js. Default: the operator's as shipped (OPERATOR_NODE_FLAGS, what the
   * image and bin/realm-operator pass), so the tests run the operator as it runs in production.
   */
  nodeFlags?: readonly string[];
}

export async function startOperator(options: OperatorOptions): Promise<OperatorProcess> {
  if (!fs.existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` first (make test does)`);
  const { node, main } = options.uid !== undefined ? reachableInstall() : { node: process.execPath, main: MAIN };
  const child = spawn(
    node,
    [
      ...(options.nodeFlags ?? nodeFlagsFor('operator')),
      main,
      'operator',
      '--realms-root', options.realmsRoot,
      '--identity', options.identity,
      '--leader-election-namespace', options.leaderElectionNamespace,
      // Port 0: the operator binds free ports and logs them (read below), so no port probed free
      // here can be taken by another process before the operator binds it.
      '--health-probe-bind-address', '127.0.0.1:0',
      '--metrics-bind-address', '127.0.0.1:0',
      '--leader-election-lease-duration', '4s',
      '--leader-election-renew-deadline', '3s',
      '--leader-election-retry-period', '500ms',
      '--ack-wait', '2s',
      '--ack-requeue', '300ms',
      '--stalled-retry', '1s',
      '--durable', 'false',
      '--log-level', 'debug',
      ...(options.namespace ? ['--namespace', options.namespace] : []),
      ...(options.extraArgs ?? []),
    ],
    { env: { ...process.env, ...options.env, DATABASE_URL: options.databaseURL, KUBECONFIG: options.kubeconfig ?? testKubeconfigPath() }, stdio: ['ignore', 'pipe', 'pipe'], ...(options.uid !== undefined ? { uid: options.uid, gid: options.uid } : {}) },
  );
  const lines: Array<Record<string, unknown>> = [];
  let raw = '';
  const waiters = new Set<() => void>();
  /** Resolves when the operator writes more output, or after 100 ms. */
  const moreOutput = () =>
    new Promise<void>((resolve) => {
      const wake = () => (waiters.delete(wake), resolve());
      waiters.add(wake);
      setTimeout(wake, 100);
    });
  const onData = (chunk: Buffer) => {
    raw += chunk.toString();
    let newline: number;
    while ((newline = raw.indexOf('\n')) >= 0) {
      const line = raw.slice(0, newline);
      raw = raw.slice(newline + 1);
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        lines.push({ msg: line, unparsed: true });
      }
    }
    for (const wake of waiters) wake();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const describe = () => lines.slice(-40).map((l) => JSON.stringify(l)).join('\n');
  const operator: OperatorProcess = {
    identity: options.identity,
    child,
    // Set from the operator's logs before startOperator returns (unless it exits first).
    healthURL: 'http://127.0.0.1:0',
    metricsURL: 'http://127.0.0.1:0',
    logs: () => lines,
    async waitForLog(predicate, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = lines.find(predicate);
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`operator ${options.identity} never logged the expected line; last lines:\n${describe()}`);
        await moreOutput();
      }
    },
    exited,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
  // The ports it bound, from its logs. An operator that exits first keeps port 0 in its URLs; its
  // caller learns of the exit from waitForHTTP or `exited`, as before.
  const boundPort = (msg: string) => {
    for (const line of lines) {
      if (line.msg !== msg) continue;
      const port = typeof line.port === 'number' ? line.port : (line.address as { port?: unknown } | undefined)?.port;
      if (typeof port === 'number') return port;
    }
    return undefined;
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    const [health, metrics] = [boundPort('serving /healthz, /readyz and /metrics'), boundPort('serving metrics')];
    if (health !== undefined && metrics !== undefined) {
      operator.healthURL = `http://127.0.0.1:${health}`;
      operator.metricsURL = `http://127.0.0.1:${metrics}`;
      break;
    }
    if (child.exitCode !== null || child.signalCode !== null) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`operator ${options.identity} did not log its health and metrics ports within 60 s; last lines:\n${describe()}`);
    }
    await moreOutput();
  }
  return operator;
}

/** Polls `url` until it answers 200, or throws with the operator's recent logs. */
export async function waitForHTTP(operator: OperatorProcess, url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await fetch(url).then((r) => r.ok, () => false);
    if (ok) return;
    if (operator.child.exitCode !== null) throw new Error(`operator exited (${operator.child.exitCode}): ${operator.logs().slice(-20).map((l) => JSON.stringify(l)).join('\n')}`);
    if (Date.now() > deadline) throw new Error(`${url} not OK after ${timeoutMs} ms; logs:\n${operator.logs().slice(-20).map((l) => JSON.stringify(l)).join('\n')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
