/**
 * The local Kubernetes control plane the suite runs against (with-test-env.ts --kube), and
 * startControlPlane() itself.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import https from 'node:https';
import net from 'node:net';
import YAML from 'yaml';
import { startControlPlane, type ControlPlane } from '../support/control-plane.js';
import { kubectl, serviceAccountKubeconfig } from '../support/kube.js';

const suffix = () => randomBytes(3).toString('hex');

async function eventually<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('the test control plane', () => {
  test('serves Kubernetes v1.37.2', async () => {
    const result = await kubectl(['version', '-o', 'json']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const version = JSON.parse(result.stdout) as { serverVersion: { gitVersion: string }; clientVersion: { gitVersion: string } };
    expect(version.serverVersion.gitVersion).toBe('v1.37.2');
    expect(version.clientVersion.gitVersion).toBe('v1.37.2');
  });

  test('the admin kubeconfig may do anything', async () => {
    const result = await kubectl(['auth', 'can-i', '*', '*', '--all-namespaces']);
    expect(result).toMatchObject({ code: 0, stdout: 'yes\n' });
    const whoami = JSON.parse((await kubectl(['auth', 'whoami', '-o', 'json'])).stdout) as { status: { userInfo: { username: string; groups: string[] } } };
    expect(whoami.status.userInfo.username).toBe('admin');
    expect(whoami.status.userInfo.groups).toContain('system:masters');
  });

  test('a service account is authenticated as itself and authorized only by RBAC', async () => {
    const ns = `cp-test-${suffix()}`;
    const kubeconfig = await serviceAccountKubeconfig(ns, 'bot');

    const whoami = await kubectl(['auth', 'whoami', '-o', 'json'], { kubeconfig });
    expect(whoami.code).toBe(0);
    const user = (JSON.parse(whoami.stdout) as { status: { userInfo: { username: string; groups: string[] } } }).status.userInfo;
    expect(user.username).toBe(`system:serviceaccount:${ns}:bot`);
    expect(user.groups).toEqual(expect.arrayContaining(['system:serviceaccounts', `system:serviceaccounts:${ns}`, 'system:authenticated']));

    const refused = await kubectl(['get', 'secrets', '-n', ns], { kubeconfig });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(new RegExp(`secrets is forbidden: User "system:serviceaccount:${ns}:bot" cannot list resource "secrets"`));
    expect(await kubectl(['auth', 'can-i', 'list', 'secrets', '-n', ns], { kubeconfig })).toMatchObject({ code: 1, stdout: 'no\n' });

    const grant = [
      { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: { name: 'secret-reader', namespace: ns }, rules: [{ apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch'] }] },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name: 'bot-reads-secrets', namespace: ns },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'secret-reader' },
        subjects: [{ kind: 'ServiceAccount', name: 'bot', namespace: ns }],
      },
    ].map((doc) => YAML.stringify(doc)).join('---\n');
    const applied = await kubectl(['apply', '-f', '-'], { input: grant });
    expect(applied.stderr).toBe('');
    expect(applied.code).toBe(0);

    // The RBAC authorizer reads through an informer cache: the grant takes effect shortly after.
    await eventually(async () => ((await kubectl(['auth', 'can-i', 'list', 'secrets', '-n', ns], { kubeconfig })).stdout === 'yes\n' ? true : undefined), 'the RoleBinding to apply');
    const allowed = await kubectl(['get', 'secrets', '-n', ns, '-o', 'json'], { kubeconfig });
    expect(allowed.code).toBe(0);
    expect(JSON.parse(allowed.stdout)).toMatchObject({ kind: 'List', items: [] });

    // Only in that namespace, and only reading.
    expect((await kubectl(['get', 'secrets', '-n', 'default'], { kubeconfig })).stderr).toMatch(/forbidden/);
    expect((await kubectl(['create', 'secret', 'generic', 'x', '-n', ns], { kubeconfig })).stderr).toMatch(/forbidden/);
  });

  test('serves CustomResourceDefinitions once Established', async () => {
    const group = `t${suffix()}.realm-operator.test`;
    const crd = {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: `widgets.${group}` },
      spec: {
        group,
        scope: 'Namespaced',
        names: { plural: 'widgets', singular: 'widget', kind: 'Widget', listKind: 'WidgetList' },
        versions: [{
          name: 'v1',
          served: true,
          storage: true,
          schema: { openAPIV3Schema: { type: 'object', properties: { spec: { type: 'object', properties: { size: { type: 'integer', minimum: 1 } } } } } },
        }],
      },
    };
    expect((await kubectl(['apply', '-f', '-'], { input: YAML.stringify(crd) })).code).toBe(0);
    const established = await kubectl(['wait', '--for=condition=Established', `crd/widgets.${group}`, '--timeout=30s']);
    expect(established).toMatchObject({ code: 0 });

    const widget = (size: number) => YAML.stringify({ apiVersion: `${group}/v1`, kind: 'Widget', metadata: { name: `w${size}`, namespace: 'default' }, spec: { size } });
    expect(await kubectl(['apply', '-f', '-'], { input: widget(3) })).toMatchObject({ code: 0 });
    const invalid = await kubectl(['apply', '-f', '-'], { input: widget(0) });
    expect(invalid.code).not.toBe(0);
    expect(invalid.stderr).toMatch(/spec\.size: Invalid value: 0: spec\.size in body should be greater than or equal to 1/);
    const listed = await kubectl(['get', `widgets.${group}`, '-n', 'default', '-o', 'jsonpath={.items[*].spec.size}']);
    expect(listed).toMatchObject({ code: 0, stdout: '3' });
    expect((await kubectl(['delete', 'crd', `widgets.${group}`, '--wait=false'])).code).toBe(0);
  });
});

describe('startControlPlane', () => {
  let plane: ControlPlane | undefined;
  afterAll(async () => {
    await plane?.stop();
  });

  test('starts a separate plane in under 30 s and stops it completely', async () => {
    plane = await startControlPlane();
    expect(plane.startedInMs).toBeLessThan(30_000);
    expect(plane.server).toBe(`https://127.0.0.1:${plane.ports.apiserver}`);
    expect(plane.server).not.toBe(await serverOfSharedPlane());

    const kubeconfig = YAML.parse(await fs.readFile(plane.kubeconfigPath, 'utf8')) as { users: { user: { token: string } }[] };
    const token = kubeconfig.users[0]!.user.token;
    expect(await get(`${plane.server}/readyz`, token)).toEqual({ status: 200, body: 'ok' });
    expect((await get(`${plane.server}/api/v1/namespaces`, 'wrong-token')).status).toBe(401);

    // Its own kubectl and service accounts.
    expect(await plane.kubectl(['get', 'clusterrole', 'cluster-admin', '-o', 'name'])).toMatchObject({ code: 0, stdout: 'clusterrole.rbac.authorization.k8s.io/cluster-admin\n' });
    const sa = await plane.serviceAccountKubeconfig('solo', 'agent');
    const whoami = await plane.kubectl(['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}'], { kubeconfig: sa });
    expect(whoami).toMatchObject({ code: 0, stdout: 'system:serviceaccount:solo:agent' });
    // The other plane has never heard of that namespace.
    expect((await kubectl(['get', 'namespace', 'solo'])).stderr).toMatch(/NotFound|not found/);

    const { pids, ports, dir } = plane;
    await plane.stop();
    await plane.stop(); // idempotent

    for (const pid of [pids.apiserver, pids.etcd]) expect(alive(pid)).toBe(false);
    expect(await processesMentioning(dir)).toEqual([]);
    for (const port of [ports.apiserver, ports.etcd]) expect(await connectError(port)).toBe('ECONNREFUSED');
    await expect(fs.access(dir)).rejects.toThrow(/ENOENT/);
  }, 90_000);
});

async function serverOfSharedPlane(): Promise<string> {
  return (await kubectl(['config', 'view', '--minify', '-o', 'jsonpath={.clusters[0].cluster.server}'])).stdout;
}

function get(url: string, token: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    https.get(url, { headers: { Authorization: `Bearer ${token}` }, rejectUnauthorized: false, agent: false }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Pids of processes whose command line mentions `text` (Linux /proc). */
async function processesMentioning(text: string): Promise<number[]> {
  const pids = (await fs.readdir('/proc')).filter((entry) => /^\d+$/.test(entry));
  const matching: number[] = [];
  for (const pid of pids) {
    const cmdline = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(text)) matching.push(Number(pid));
  }
  return matching;
}

function connectError(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}
