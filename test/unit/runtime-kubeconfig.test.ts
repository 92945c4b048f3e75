import fs from 'node:fs';
import type https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, test } from '@jest/globals';
import type { KubeConfig } from '@kubernetes/client-node';
import type { KubeConnection } from '../../src/runtime/kube-client.js';
import { loadDefaultConnection, loadKubeconfig, parseKubeconfig, StaticKubeConnection, TOKEN_FILE_MAX_AGE_MS } from '../../src/runtime/kubeconfig.js';

// Type-level: a client-node KubeConfig is a KubeConnection as it is (checked by tsc, no runtime import).
export const clientNodeKubeConfigFits = (kc: KubeConfig): KubeConnection => kc;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runtime-kubeconfig-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const b64 = (text: string) => Buffer.from(text).toString('base64');

async function applied(connection: KubeConnection): Promise<https.RequestOptions & { headers: Record<string, string> }> {
  const options: https.RequestOptions & { headers: Record<string, string> } = { headers: {} };
  await connection.applyToHTTPSOptions(options);
  return options;
}

describe('parseKubeconfig', () => {
  test('uses the current context: server, inline CA and client certificate, token', async () => {
    const connection = parseKubeconfig(
      `
apiVersion: v1
kind: Config
current-context: b
clusters:
  - { name: ca, cluster: { server: 'https://a.example:6443' } }
  - { name: cb, cluster: { server: 'https://b.example:6443/', certificate-authority-data: ${b64('CA')}, tls-server-name: api.b } }
users:
  - { name: ub, user: { token: t0ken, client-certificate-data: ${b64('CERT')}, client-key-data: ${b64('KEY')} } }
contexts:
  - { name: a, context: { cluster: ca, user: ub } }
  - { name: b, context: { cluster: cb, user: ub, namespace: team } }
`,
      dir,
    );
    expect(connection.getCurrentCluster()).toEqual({ server: 'https://b.example:6443/' });
    expect(connection.settings.namespace).toBe('team');
    const options = await applied(connection);
    expect(options.headers.authorization).toBe('Bearer t0ken');
    expect(options.ca?.toString()).toBe('CA');
    expect(options.cert?.toString()).toBe('CERT');
    expect(options.key?.toString()).toBe('KEY');
    expect(options.servername).toBe('api.b');
    expect(options.rejectUnauthorized).toBeUndefined();
    expect(options.agent).toBeDefined();
    connection.destroy();
  });

  test('reads files relative to the kubeconfig, and the token file again once the token read is 50 s old (rotation)', async () => {
    fs.writeFileSync(path.join(dir, 'ca.crt'), 'FILE-CA');
    fs.writeFileSync(path.join(dir, 'token'), 'first\n');
    const file = path.join(dir, 'config');
    fs.writeFileSync(
      file,
      `
current-context: x
clusters: [{ name: c, cluster: { server: 'https://x:1', certificate-authority: ca.crt, insecure-skip-tls-verify: true } }]
users: [{ name: u, user: { tokenFile: token } }]
contexts: [{ name: x, context: { cluster: c, user: u } }]
`,
    );
    const loaded = loadKubeconfig(file);
    let clock = 1_000;
    const connection = new StaticKubeConnection(loaded.settings, () => clock);
    loaded.destroy();
    const first = await applied(connection);
    expect(first.ca?.toString()).toBe('FILE-CA');
    expect(first.rejectUnauthorized).toBe(false);
    expect(first.headers.authorization).toBe('Bearer first');
    fs.writeFileSync(path.join(dir, 'token'), 'second\n');
    clock += TOKEN_FILE_MAX_AGE_MS - 1;
    expect((await applied(connection)).headers.authorization).toBe('Bearer first');
    clock += 1;
    expect((await applied(connection)).headers.authorization).toBe('Bearer second');
    // A read that fails is not kept: the next request reads the file again.
    fs.rmSync(path.join(dir, 'token'));
    clock += TOKEN_FILE_MAX_AGE_MS;
    await expect(applied(connection)).rejects.toMatchObject({ code: 'ENOENT' });
    fs.writeFileSync(path.join(dir, 'token'), 'third\n');
    expect((await applied(connection)).headers.authorization).toBe('Bearer third');
    connection.destroy();
  });

  test('refuses what it cannot do instead of connecting unauthenticated', () => {
    const config = (user: string) => `
current-context: x
clusters: [{ name: c, cluster: { server: 'https://x:1' } }]
users: [{ name: u, user: ${user} }]
contexts: [{ name: x, context: { cluster: c, user: u } }]
`;
    expect(() => parseKubeconfig(config('{ exec: { command: aws } }'), dir)).toThrow(/exec and auth-provider/);
    expect(() => parseKubeconfig(config('{}'), dir, 'missing')).toThrow(/no context "missing"/);
  });
});

describe('loadDefaultConnection', () => {
  const config = (server: string, user = '{ token: t }') => `
apiVersion: v1
kind: Config
current-context: a
clusters: [{ name: c, cluster: { server: '${server}' } }]
users: [{ name: u, user: ${user} }]
contexts: [{ name: a, context: { cluster: c, user: u } }]
`;

  test('$KUBECONFIG first, then ~/.kube/config; nothing found, several files or exec credentials: undefined (client-node handles those)', () => {
    const home = fs.mkdtempSync(path.join(dir, 'home-'));
    const explicit = path.join(dir, 'explicit.yaml');
    fs.writeFileSync(explicit, config('https://explicit:6443'));
    expect(loadDefaultConnection({ KUBECONFIG: explicit }, home)?.getCurrentCluster().server).toBe('https://explicit:6443');
    expect(loadDefaultConnection({}, home)).toBeUndefined();
    fs.mkdirSync(path.join(home, '.kube'));
    fs.writeFileSync(path.join(home, '.kube', 'config'), config('https://home:6443'));
    expect(loadDefaultConnection({}, home)?.getCurrentCluster().server).toBe('https://home:6443');
    expect(loadDefaultConnection({ KUBECONFIG: `${explicit}${path.delimiter}${explicit}` }, home)).toBeUndefined();
    const exec = path.join(dir, 'exec.yaml');
    fs.writeFileSync(exec, config('https://exec:6443', '{ exec: { command: get-token, apiVersion: client.authentication.k8s.io/v1 } }'));
    expect(loadDefaultConnection({ KUBECONFIG: exec }, home)).toBeUndefined();
  });
});
