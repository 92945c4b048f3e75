/**
 * The kind suite's view of a real cluster deployed with `kubectl apply -k deploy/kind`
 * (hack/kind/e2e.sh exports KUBECONFIG and runs `jest --selectProjects kind`): kubectl, the API
 * through the kubeconfig, a toolbox pod that writes the realms volume and queries PostgreSQL from
 * inside the cluster, `kubectl port-forward` to single pods, and `kill -9` of a container's process
 * from the node. Everything throws when the cluster is missing, so a test fails instead of skipping.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { kubeRequest, KubeApiError, type KubeRequest } from '../../src/runtime/kube-client.js';
import { loadKubeconfig, type StaticKubeConnection } from '../../src/runtime/kubeconfig.js';

/** Where deploy/kind puts the operator, PostgreSQL and the realm servers. */
export const SYSTEM_NAMESPACE = 'realm-operator-system';
/** The realm-server Deployment's pods (a ReplicaSet's pods carry pod-template-hash; a stray pod with the same app label does not). */
export const REALM_SERVER_PODS = 'app.kubernetes.io/name=realm-server,pod-template-hash';
export const REALM_SERVER_SERVICE = 'realm-server';
export const OPERATOR_LEASE = 'realm-operator-leader';
export const REALMS_ROOT = '/realms';

const HINT = 'run the kind suite through hack/kind/e2e.sh (or `make e2e-kind`), which creates the cluster, deploys deploy/kind and exports KUBECONFIG';

export function kindKubeconfig(): string {
  const file = process.env.KUBECONFIG?.split(path.delimiter).find(Boolean);
  if (!file) throw new Error(`KUBECONFIG is unset: ${HINT}`);
  if (!fs.existsSync(file)) throw new Error(`KUBECONFIG ${file} does not exist: ${HINT}`);
  return file;
}

/** $KUBECTL, else the kubectl hack/kube-assets.sh cached, else `kubectl` on PATH. */
export function kubectlBinary(): string {
  if (process.env.KUBECTL) return process.env.KUBECTL;
  const assets = path.join(process.env.REALM_OPERATOR_CACHE ?? path.join(os.homedir(), '.cache', 'realm-operator'), 'kube-assets');
  const cached = fs.existsSync(assets)
    ? fs.readdirSync(assets).map((dir) => path.join(assets, dir, 'kubectl')).filter((file) => fs.existsSync(file)).sort().at(-1)
    : undefined;
  return cached ?? 'kubectl';
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command; resolves with its exit code and output whatever the code (rejects only if it cannot start). */
export function run(binary: string, args: string[], options: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { stdio: ['pipe', 'pipe', 'pipe'], env: options.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(options.input ?? '');
    const timer = options.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), options.timeoutMs) : undefined;
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr: signal === 'SIGKILL' && options.timeoutMs ? `${stderr}\n(killed after ${options.timeoutMs} ms)` : stderr });
    });
  });
}

/** kubectl against the kind cluster; never throws on a non-zero exit. */
export function kubectl(args: string[], options: { input?: string; timeoutMs?: number } = {}): Promise<CommandResult> {
  return run(kubectlBinary(), [`--kubeconfig=${kindKubeconfig()}`, ...args], { timeoutMs: 300_000, ...options });
}

/** kubectl; returns stdout, throws with stderr on a non-zero exit. */
export async function must(args: string[], input?: string): Promise<string> {
  const result = await kubectl(args, input === undefined ? {} : { input });
  if (result.code !== 0) throw new Error(`kubectl ${args.join(' ').slice(0, 300)} failed (${result.code}): ${result.stderr.slice(0, 4000)}`);
  return result.stdout;
}

/** Applies objects (JSON) with kubectl. */
export async function applyObjects(...objects: unknown[]): Promise<void> {
  await must(['apply', '-f', '-'], objects.map((o) => JSON.stringify(o)).join('\n'));
}

let connection: StaticKubeConnection | undefined;

/** The API server through the kubeconfig (cheap enough to poll, unlike spawning kubectl). */
export function api<T = any>(request: KubeRequest): Promise<T> {
  connection ??= loadKubeconfig(kindKubeconfig());
  return kubeRequest<T>(connection, request);
}

/** GET, or undefined on 404. */
export async function getOrUndefined<T = any>(apiPath: string): Promise<T | undefined> {
  return api<T>({ path: apiPath }).catch((error: unknown) => {
    if (error instanceof KubeApiError && error.statusCode === 404) return undefined;
    throw error;
  });
}

export function closeApi(): void {
  connection?.destroy();
  connection = undefined;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `condition` every `intervalMs` until it returns a truthy value; throws with `describe()` after `timeoutMs`. */
export async function waitFor<T>(condition: () => Promise<T | undefined | false | null>, timeoutMs: number, describe: () => string | Promise<string>, intervalMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await condition();
      if (value) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${await describe()}${lastError ? ` (last error: ${String(lastError)})` : ''}`);
    }
    await sleep(intervalMs);
  }
}

export const randomSuffix = (): string => randomBytes(3).toString('hex');

// --- pods -----------------------------------------------------------------------------------------

export interface PodSummary {
  name: string;
  phase: string;
  ready: boolean;
  deleting: boolean;
  node: string | undefined;
  uid: string;
  /** `lastExitCode`: how the previous instance of the container ended (137: SIGKILL). */
  containers: Array<{ name: string; id: string | undefined; restarts: number; running: boolean; ready: boolean; lastExitCode: number | undefined }>;
}

export function summarizePod(pod: any): PodSummary {
  return {
    name: pod.metadata.name,
    phase: pod.status?.phase ?? 'Unknown',
    ready: (pod.status?.conditions ?? []).some((c: any) => c.type === 'Ready' && c.status === 'True'),
    deleting: Boolean(pod.metadata.deletionTimestamp),
    node: pod.spec?.nodeName,
    uid: pod.metadata.uid,
    containers: (pod.status?.containerStatuses ?? []).map((c: any) => ({
      name: c.name,
      id: typeof c.containerID === 'string' ? c.containerID.replace(/^[a-z]+:\/\//, '') : undefined,
      restarts: c.restartCount ?? 0,
      running: Boolean(c.state?.running),
      ready: Boolean(c.ready),
      lastExitCode: c.lastState?.terminated?.exitCode,
    })),
  };
}

export async function listPods(namespace: string, labelSelector: string): Promise<PodSummary[]> {
  const list = await api<{ items: any[] }>({ path: `/api/v1/namespaces/${namespace}/pods`, query: { labelSelector } });
  return list.items.map(summarizePod).sort((a, b) => a.name.localeCompare(b.name));
}

export async function getPod(namespace: string, name: string): Promise<PodSummary | undefined> {
  const pod = await getOrUndefined(`/api/v1/namespaces/${namespace}/pods/${name}`);
  return pod ? summarizePod(pod) : undefined;
}

/** The realm-server Deployment's pods that are running (terminating ones included). */
export async function realmServerPods(): Promise<PodSummary[]> {
  return (await listPods(SYSTEM_NAMESPACE, REALM_SERVER_PODS)).filter((p) => p.phase === 'Running');
}

/** The image the operator Deployment runs (what `kind load` put on the node), for helper pods. */
export async function operatorImage(): Promise<string> {
  const deployment = await api<any>({ path: `/apis/apps/v1/namespaces/${SYSTEM_NAMESPACE}/deployments/realm-operator` });
  return deployment.spec.template.spec.containers[0].image as string;
}

/** Waits until the realm-server Deployment has `replicas` updated, ready pods and no others. */
export async function waitRealmServersSettled(replicas: number, timeoutMs = 240_000): Promise<void> {
  await waitFor(
    async () => {
      const d = await api<any>({ path: `/apis/apps/v1/namespaces/${SYSTEM_NAMESPACE}/deployments/realm-server` });
      const s = d.status ?? {};
      const pods = await listPods(SYSTEM_NAMESPACE, REALM_SERVER_PODS);
      return (
        d.spec.replicas === replicas &&
        s.observedGeneration >= d.metadata.generation &&
        s.updatedReplicas === replicas &&
        s.readyReplicas === replicas &&
        s.replicas === replicas &&
        pods.length === replicas &&
        pods.every((p) => p.ready && !p.deleting)
      );
    },
    timeoutMs,
    async () => `realm-server to settle at ${replicas} ready pods; pods: ${JSON.stringify(await listPods(SYSTEM_NAMESPACE, REALM_SERVER_PODS).catch(() => []))}`,
    500,
  );
}

/** The operator pod holding the leader Lease (its identity is its pod name). */
export async function leaderPod(): Promise<string | undefined> {
  const lease = await getOrUndefined<any>(`/apis/coordination.k8s.io/v1/namespaces/${SYSTEM_NAMESPACE}/leases/${OPERATOR_LEASE}`);
  return lease?.spec?.holderIdentity || undefined;
}

/** The last lines of every operator pod's log (for failure messages). */
export async function operatorLogs(lines = 40): Promise<string> {
  const result = await kubectl(['logs', '-n', SYSTEM_NAMESPACE, '-l', 'app.kubernetes.io/component=operator', '--tail', String(lines), '--prefix', '--max-log-requests=4']);
  return result.stdout + result.stderr;
}

/**
 * When the operator decided Ready for `publishedRealm` (namespace/name) at `epoch` with `reason`:
 * the time of its info line `writing Ready`, logged just before the status write, so a lower bound
 * of the write on the pods' clock (the host's: kind nodes are containers). Every operator pod's log
 * is searched; the earliest line wins. Undefined when no pod logged it.
 */
export async function readyDecidedAt(publishedRealm: string, epoch: number, reason: string): Promise<number | undefined> {
  const result = await kubectl(['logs', '-n', SYSTEM_NAMESPACE, '-l', 'app.kubernetes.io/component=operator', '-c', 'operator', '--tail=-1', '--max-log-requests=4']);
  if (result.code !== 0) throw new Error(`kubectl logs of the operator pods failed (${result.code}): ${result.stderr.slice(0, 2000)}`);
  const times = result.stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((line) => line.msg === 'writing Ready' && line.publishedRealm === publishedRealm && line.epoch === epoch && line.reason === reason && typeof line.time === 'number')
    .map((line) => line.time as number);
  return times.length > 0 ? Math.min(...times) : undefined;
}

// --- kill -9 from the node --------------------------------------------------------------------

/**
 * SIGKILLs the main process of `container` in `pod` from the kind node (a process cannot be
 * SIGKILLed as PID 1 from inside its own PID namespace): `crictl inspect` gives its host pid.
 * Returns the container's restart count before the kill.
 */
export async function killContainerProcess(namespace: string, podName: string, container: string): Promise<{ restartsBefore: number; node: string }> {
  const pod = await getPod(namespace, podName);
  const status = pod?.containers.find((c) => c.name === container);
  if (!pod?.node || !status?.id || !status.running) throw new Error(`pod ${podName} has no running container ${container}: ${JSON.stringify(pod)}`);
  const node = process.env.KIND_NODE ?? pod.node; // kind names each node's container after the node
  const inspected = await run('docker', ['exec', node, 'crictl', 'inspect', '--output', 'json', status.id], { timeoutMs: 30_000 });
  if (inspected.code !== 0) throw new Error(`docker exec ${node} crictl inspect ${status.id} failed: ${inspected.stderr}`);
  const pid = Number(JSON.parse(inspected.stdout).info?.pid);
  if (!Number.isInteger(pid) || pid <= 1) throw new Error(`crictl inspect gave no pid for ${status.id}: ${inspected.stdout.slice(0, 300)}`);
  const killed = await run('docker', ['exec', node, 'kill', '-9', String(pid)], { timeoutMs: 30_000 });
  if (killed.code !== 0) throw new Error(`docker exec ${node} kill -9 ${pid} failed: ${killed.stderr}`);
  return { restartsBefore: status.restarts, node };
}

// --- port-forward -------------------------------------------------------------------------------

export interface PortForward {
  pod: string;
  port: number;
  child: ChildProcess;
  /** Resolves when kubectl exits (e.g. the pod is gone). */
  exited: Promise<void>;
  stop(): Promise<void>;
}

/** `kubectl port-forward pod/<pod> :<remotePort>` on 127.0.0.1; resolves once it listens. */
export function portForward(namespace: string, pod: string, remotePort: number): Promise<PortForward> {
  const child = spawn(kubectlBinary(), [`--kubeconfig=${kindKubeconfig()}`, 'port-forward', '-n', namespace, '--address', '127.0.0.1', `pod/${pod}`, `:${remotePort}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`port-forward to ${pod} did not start within 30 s: ${output}`));
    }, 30_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /Forwarding from 127\.0\.0\.1:(\d+)/.exec(output);
      if (!match) return;
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      child.stdout!.resume();
      resolve({
        pod,
        port: Number(match[1]),
        child,
        exited,
        async stop() {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(resolve, 5000)))]);
          clearTimeout(timer);
        },
      });
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`port-forward to ${pod} exited before listening: ${output}`));
    });
  });
}

/** One HTTP GET through a port-forward, with a Host header. */
export async function httpGet(port: number, host: string, urlPath: string): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: urlPath, headers: { host }, timeout: 10_000, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${host}${urlPath}: no answer within 10 s`)));
    req.on('error', reject);
    req.end();
  });
}

/** GETs `urlPath` from every realm-server pod (each through its own port-forward); results by pod. */
export async function getFromEveryRealmServer(host: string, urlPath: string): Promise<Map<string, { status: number; body: string }>> {
  const results = new Map<string, { status: number; body: string }>();
  for (const pod of await realmServerPods()) {
    const forward = await portForward(SYSTEM_NAMESPACE, pod.name, 4201);
    try {
      const { status, body } = await httpGet(forward.port, host, urlPath);
      results.set(pod.name, { status, body });
    } finally {
      await forward.stop();
    }
  }
  return results;
}
