/**
 * A real, local Kubernetes control plane for tests (envtest style): `etcd` and `kube-apiserver`
 * from `hack/kube-assets.sh`, on free loopback ports, in a temporary directory that is removed
 * on stop. There is no controller-manager, scheduler or kubelet: API objects are stored and
 * validated (CRDs, RBAC, admission, TokenRequest all work) but nothing reconciles them — no
 * pods run, no namespace is ever finalized, no garbage collection, and no `default` service
 * account appears in new namespaces by itself.
 *
 * Teardown is guaranteed: `stop()`, the parent's 'exit', SIGINT and SIGTERM all kill both
 * processes, and a detached watchdog kills them (and removes the directory) if the parent dies
 * without running any handler (SIGKILL, a force-exited Jest worker).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import YAML from 'yaml';
import { distinctFreePorts } from './embedded-postgres.js';

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface KubectlOptions {
  /** Written to kubectl's stdin (e.g. a manifest for `apply -f -`). */
  input?: string;
  /** Kubeconfig to use instead of the admin one. */
  kubeconfig?: string;
}

export interface ControlPlane {
  /** https://127.0.0.1:<port> */
  server: string;
  /** Admin kubeconfig (user `admin`, group `system:masters`), inside the plane's temp dir. */
  kubeconfigPath: string;
  /** Directory holding etcd, kube-apiserver and kubectl. */
  assets: string;
  /** Path of the kubectl binary. */
  kubectlPath: string;
  /** The plane's temp dir (logs: etcd.log, kube-apiserver.log). Removed by stop(). */
  dir: string;
  ports: { etcd: number; apiserver: number };
  pids: { etcd: number; apiserver: number };
  /** A @kubernetes/client-node KubeConfig loaded from kubeconfigPath. */
  kubeConfig(): KubeConfig;
  /** Runs kubectl against this plane (as admin unless options.kubeconfig). Never throws on a non-zero exit. */
  kubectl(args: string[], options?: KubectlOptions): Promise<KubectlResult>;
  /**
   * A kubeconfig authenticating as a service account (token from the TokenRequest API via
   * `kubectl create token`, valid 24 h). Creates the namespace and the service account if missing.
   */
  serviceAccountKubeconfig(namespace: string, name: string): Promise<string>;
  /** Wall-clock time from startControlPlane() to ready, in ms. */
  startedInMs: number;
  /** Kills kube-apiserver, then etcd, and removes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

export interface StartControlPlaneOptions {
  /** Receives every log line of both processes, prefixed `[etcd]` / `[kube-apiserver]`. */
  log?: (line: string) => void;
  /** Directory holding the binaries; default: what `hack/kube-assets.sh` prints. */
  assets?: string;
}

const REPO_ROOT = path.resolve(import.meta.dirname, '../..');

/**
 * @kubernetes/client-node, loaded on demand so that a client that cannot load (2.x needs
 * undici 8, which needs Node >= 22.19) breaks only kubeConfig(), not the control plane.
 */
let clientNode: Promise<typeof import('@kubernetes/client-node') | Error> | undefined;
export function loadClientNode(): Promise<typeof import('@kubernetes/client-node') | Error> {
  clientNode ??= (async () => {
    // On a Node the installed undici does not support, importing it throws *and* leaves an
    // uncaught exception behind (a CJS module failing under an ESM import), so check first.
    const unsupported = unsupportedUndici();
    if (unsupported) return new Error(`@kubernetes/client-node cannot be loaded: ${unsupported}`);
    return import('@kubernetes/client-node').catch((error: unknown) =>
      new Error(`@kubernetes/client-node cannot be loaded on Node ${process.version}: ${error instanceof Error ? error.message : String(error)}`));
  })();
  return clientNode;
}

/** Why the undici that @kubernetes/client-node would load cannot run on this Node, if it cannot. */
function unsupportedUndici(): string | undefined {
  try {
    const clientEntry = createRequire(import.meta.url).resolve('@kubernetes/client-node');
    let dir = path.dirname(createRequire(clientEntry).resolve('undici'));
    while (!fs.existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version?: string; engines?: { node?: string } };
    const minimum = /^>=\s*v?(\d+)\.(\d+)\.(\d+)$/.exec(pkg.engines?.node?.trim() ?? '');
    if (!minimum) return undefined;
    const want = minimum.slice(1).map(Number);
    const have = process.versions.node.split('.').map(Number);
    for (let i = 0; i < 3; i++) {
      if ((have[i] ?? 0) > want[i]!) return undefined;
      if ((have[i] ?? 0) < want[i]!) {
        return `it uses undici ${pkg.version}, which needs Node ${pkg.engines!.node} (this is ${process.version}); ` +
          'use a Node that new, or pin @kubernetes/client-node / undici to versions that support this Node';
      }
    }
    return undefined;
  } catch {
    return undefined; // no undici (client-node 1.x) or an unusual layout: just try the import
  }
}

/** Loads a kubeconfig file into a @kubernetes/client-node KubeConfig (the module must have been loaded by loadClientNode()). */
export function loadKubeConfig(module: typeof import('@kubernetes/client-node') | Error, file: string): KubeConfig {
  if (module instanceof Error) throw module;
  const kc = new module.KubeConfig();
  kc.loadFromFile(file);
  return kc;
}
const READY_TIMEOUT_MS = 60_000;

/** Runs hack/kube-assets.sh (its progress on stderr goes to ours) and returns the binaries' directory. */
export async function kubeAssets(): Promise<string> {
  const script = path.join(REPO_ROOT, 'hack', 'kube-assets.sh');
  const proc = spawn('bash', [script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  proc.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const code = await new Promise<number>((resolve, reject) => {
    proc.once('error', reject);
    // 'close', not 'exit': 'exit' can come before the last stdout chunk, leaving the directory unread.
    proc.once('close', (c, signal) => resolve(c ?? (signal ? 128 : 1)));
  });
  const dir = stdout.trim().split('\n').at(-1)?.trim();
  if (code !== 0 || !dir) throw new Error(`hack/kube-assets.sh failed (exit ${code}); see its output above`);
  for (const binary of ['etcd', 'kube-apiserver', 'kubectl']) {
    await fsp.access(path.join(dir, binary), fs.constants.X_OK).catch(() => {
      throw new Error(`hack/kube-assets.sh printed ${dir}, which has no executable ${binary}`);
    });
  }
  return dir;
}

/** Runs `kubectl --kubeconfig <kubeconfig> <args>`; resolves with its exit code and output, whatever the code. */
export function runKubectl(binary: string, kubeconfig: string, args: string[], options: { input?: string; cacheDir?: string } = {}): Promise<KubectlResult> {
  const flags = [`--kubeconfig=${kubeconfig}`];
  if (options.cacheDir) flags.push(`--cache-dir=${options.cacheDir}`);
  return new Promise((resolve, reject) => {
    const proc = spawn(binary, [...flags, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, KUBECONFIG: kubeconfig } });
    let stdout = '';
    let stderr = '';
    proc.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    proc.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    proc.stdin!.on('error', () => undefined); // kubectl may exit before reading its input
    proc.stdin!.end(options.input ?? '');
    proc.once('error', reject);
    proc.once('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
  });
}

/** A kubeconfig for one bearer token against `server`, TLS verification off (the serving cert is self-signed). */
export function kubeconfigYAML(server: string, user: string, token: string, namespace = 'default'): string {
  return YAML.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'realm-test', cluster: { server, 'insecure-skip-tls-verify': true } }],
    users: [{ name: user, user: { token } }],
    contexts: [{ name: 'realm-test', context: { cluster: 'realm-test', user, namespace } }],
    'current-context': 'realm-test',
  });
}

/**
 * Ensures `namespace` and service account `name` exist, requests a token for it and writes a
 * kubeconfig using it into `dir`; returns the kubeconfig's path.
 */
export async function writeServiceAccountKubeconfig(opts: {
  kubectl: (args: string[], options?: KubectlOptions) => Promise<KubectlResult>;
  server: string;
  dir: string;
  namespace: string;
  name: string;
}): Promise<string> {
  const { namespace, name } = opts;
  const manifest = YAML.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } }) +
    '---\n' +
    YAML.stringify({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace } });
  const applied = await opts.kubectl(['apply', '--server-side', '--field-manager=realm-operator-tests', '-f', '-'], { input: manifest });
  if (applied.code !== 0) throw new Error(`creating service account ${namespace}/${name} failed: ${applied.stderr}`);
  const token = await opts.kubectl(['create', 'token', name, '-n', namespace, '--duration=24h']);
  if (token.code !== 0) throw new Error(`kubectl create token ${namespace}/${name} failed: ${token.stderr}`);
  const file = path.join(opts.dir, `sa-${namespace}-${name}-${randomBytes(3).toString('hex')}.kubeconfig`);
  await fsp.writeFile(file, kubeconfigYAML(opts.server, `system:serviceaccount:${namespace}:${name}`, token.stdout.trim(), namespace), { mode: 0o600 });
  return file;
}

class RetryableStartError extends Error {}

export async function startControlPlane(options: StartControlPlaneOptions = {}): Promise<ControlPlane> {
  const started = performance.now();
  const assets = options.assets ?? (await kubeAssets());
  void loadClientNode(); // in the background, for kubeConfig()
  // Ports come from freePort(), which cannot reserve them: if another process takes one
  // between our probe and the server's bind, try again with new ports.
  for (let attempt = 1; ; attempt++) {
    try {
      return await attemptStart(assets, started, options);
    } catch (error) {
      if (!(error instanceof RetryableStartError) || attempt >= 3) throw error;
      options.log?.(`[control-plane] port conflict, retrying: ${error.message.split('\n')[0]}`);
    }
  }
}

async function attemptStart(assets: string, started: number, options: StartControlPlaneOptions): Promise<ControlPlane> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'realm-operator-kube-'));
  const [etcdPort, apiPort] = await distinctFreePorts(2);
  const server = `https://127.0.0.1:${apiPort}`;
  const token = randomBytes(24).toString('hex');
  const { publicKey, privateKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  await Promise.all([
    fsp.writeFile(path.join(dir, 'sa.pub'), publicKey),
    fsp.writeFile(path.join(dir, 'sa.key'), privateKey, { mode: 0o600 }),
    fsp.writeFile(path.join(dir, 'tokens.csv'), `${token},admin,admin-uid,system:masters\n`, { mode: 0o600 }),
    fsp.writeFile(path.join(dir, 'admin.kubeconfig'), kubeconfigYAML(server, 'admin', token), { mode: 0o600 }),
  ]);
  const kubeconfigPath = path.join(dir, 'admin.kubeconfig');
  const kubectlPath = path.join(assets, 'kubectl');
  const cacheDir = path.join(dir, 'kubectl-cache');

  const etcd = launch(path.join(assets, 'etcd'), [
    '--name=default',
    `--data-dir=${path.join(dir, 'etcd-data')}`,
    `--listen-client-urls=http://127.0.0.1:${etcdPort}`,
    `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
    '--listen-peer-urls=http://127.0.0.1:0',
    '--unsafe-no-fsync=true',
    '--log-level=warn',
  ], path.join(dir, 'etcd.log'), '[etcd]', options.log);
  const apiserver = launch(path.join(assets, 'kube-apiserver'), [
    `--etcd-servers=http://127.0.0.1:${etcdPort}`,
    '--bind-address=127.0.0.1',
    `--secure-port=${apiPort}`,
    '--advertise-address=127.0.0.1',
    '--endpoint-reconciler-type=none',
    `--cert-dir=${path.join(dir, 'certs')}`,
    '--service-cluster-ip-range=10.0.0.0/24',
    '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
    `--service-account-key-file=${path.join(dir, 'sa.pub')}`,
    `--service-account-signing-key-file=${path.join(dir, 'sa.key')}`,
    '--authorization-mode=RBAC',
    `--token-auth-file=${path.join(dir, 'tokens.csv')}`,
    '--allow-privileged=true',
  ], path.join(dir, 'kube-apiserver.log'), '[kube-apiserver]', options.log);

  // Kills both processes and removes `dir` if this process dies without running any handler.
  const watchdog = spawn('sh', ['-c', 'cat >/dev/null 2>&1; kill -TERM "$1" "$2" 2>/dev/null; sleep 3; kill -KILL "$1" "$2" 2>/dev/null; rm -rf "$3"', 'sh',
    String(apiserver.proc.pid ?? 0), String(etcd.proc.pid ?? 0), dir], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
  watchdog.on('error', () => undefined);
  watchdog.stdin!.on('error', () => undefined);
  watchdog.unref();
  (watchdog.stdin as unknown as { unref?: () => void }).unref?.();

  let stopping: Promise<void> | undefined;
  const killNow = () => {
    for (const p of [apiserver.proc, etcd.proc]) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      // the watchdog retries
    }
  };
  const onSignal = (signal: NodeJS.Signals) => {
    void stop().finally(() => {
      process.off(signal, onSignal);
      // Re-raise for the default action unless someone else handles this signal.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    });
  };
  process.on('exit', killNow);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  function stop(): Promise<void> {
    stopping ??= (async () => {
      process.off('exit', killNow);
      await terminate(apiserver.proc, 5_000);
      await terminate(etcd.proc, 5_000);
      try {
        process.kill(-watchdog.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
      watchdog.stdin!.destroy();
      await Promise.all([apiserver.closeLog(), etcd.closeLog()]);
      await fsp.rm(dir, { recursive: true, force: true });
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    })();
    return stopping;
  }

  try {
    await waitUntilReady({ server, token, etcd, apiserver, dir });
  } catch (error) {
    await stop();
    throw error;
  }

  const client = await loadClientNode();
  const kubectl = (args: string[], opts: KubectlOptions = {}) =>
    runKubectl(kubectlPath, opts.kubeconfig ?? kubeconfigPath, args, { input: opts.input, cacheDir });
  return {
    server,
    kubeconfigPath,
    assets,
    kubectlPath,
    dir,
    ports: { etcd: etcdPort!, apiserver: apiPort! },
    pids: { etcd: etcd.proc.pid!, apiserver: apiserver.proc.pid! },
    kubeConfig: () => loadKubeConfig(client, kubeconfigPath),
    kubectl,
    serviceAccountKubeconfig: (namespace, name) => writeServiceAccountKubeconfig({ kubectl, server, dir, namespace, name }),
    startedInMs: Math.round(performance.now() - started),
    stop,
  };
}

interface Launched {
  name: string;
  proc: ChildProcess;
  logFile: string;
  /** Rejects when the process exits (it should run until stopped). */
  exited: Promise<never>;
  closeLog(): Promise<void>;
}

function launch(binary: string, args: string[], logFile: string, prefix: string, log?: (line: string) => void): Launched {
  const name = path.basename(binary);
  let proc: ChildProcess;
  let closeLog: () => Promise<void>;
  if (log) {
    // Tee through us so the caller sees lines as they come.
    const out = fs.createWriteStream(logFile);
    proc = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let partial = '';
    const onData = (chunk: Buffer) => {
      out.write(chunk);
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) log(`${prefix} ${line}`);
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    for (const stream of [proc.stdout, proc.stderr]) (stream as unknown as { unref?: () => void }).unref?.();
    closeLog = () => new Promise((resolve) => out.end(() => resolve()));
  } else {
    // Straight to the file: the process never depends on us draining a pipe.
    const fd = fs.openSync(logFile, 'a');
    proc = spawn(binary, args, { stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    closeLog = async () => undefined;
  }
  proc.unref(); // a plane someone forgot to stop must not keep the process alive ('exit' kills it)
  const exited = new Promise<never>((_, reject) => {
    proc.once('error', (error) => reject(new Error(`${name} failed to start: ${error.message}`)));
    proc.once('exit', (code, signal) => reject(new Error(`${name} exited (${signal ?? `code ${code}`})`)));
  });
  exited.catch(() => undefined);
  return { name, proc, logFile, exited, closeLog };
}

async function terminate(proc: ChildProcess, graceMs: number): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null || proc.pid === undefined) return;
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

async function tail(file: string, lines = 30): Promise<string> {
  const text = await fsp.readFile(file, 'utf8').catch(() => '');
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

async function waitUntilReady(p: { server: string; token: string; etcd: Launched; apiserver: Launched; dir: string }): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  const failure = async (reason: string) => {
    const logs = `--- ${p.etcd.name} (last lines of ${p.etcd.logFile}) ---\n${await tail(p.etcd.logFile)}\n` +
      `--- ${p.apiserver.name} (last lines of ${p.apiserver.logFile}) ---\n${await tail(p.apiserver.logFile)}`;
    const message = `local control plane did not start: ${reason}\n${logs}`;
    return /address already in use/i.test(logs) ? new RetryableStartError(message) : new Error(message);
  };
  const died = Promise.race([p.etcd.exited, p.apiserver.exited]);
  // /readyz covers etcd and the RBAC bootstrap roles; the namespaces come from a controller
  // that runs after it, so wait for those (and cluster-admin, to be explicit) too.
  const checks = ['/readyz', '/api/v1/namespaces/default', '/api/v1/namespaces/kube-system', '/apis/rbac.authorization.k8s.io/v1/clusterroles/cluster-admin'];
  let last = 'no answer yet';
  for (const check of checks) {
    for (;;) {
      let result: { status: number; body: string } | undefined;
      try {
        result = await Promise.race([get(p.server + check, p.token), died]);
      } catch (error) {
        if (error instanceof Error && / exited |failed to start/.test(error.message)) throw await failure(error.message);
        last = error instanceof Error ? error.message : String(error);
      }
      if (result?.status === 200) break;
      if (result) last = `GET ${check}: ${result.status} ${result.body.slice(0, 500)}`;
      if (Date.now() > deadline) throw await failure(`not ready within ${READY_TIMEOUT_MS / 1000} s (${last})`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function get(url: string, token: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { headers: { Authorization: `Bearer ${token}` }, rejectUnauthorized: false, timeout: 5_000, agent: false }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
  });
}

