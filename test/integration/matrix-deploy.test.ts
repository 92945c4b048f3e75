/**
 * deploy/components/matrix: added to deploy/base, the operator's Matrix settings come from the
 * Secret as the operator reads them (URL from the Secret, the two secrets as mounted files), the
 * manifests pass the real API server's dry run, and deploy/base alone configures no Matrix.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { parseAllDocuments } from 'yaml';
import { loadOperatorConfig } from '../../src/cli/operator-config.js';
import { installCRD, must } from '../support/e2e.js';
import { kubectl } from '../support/kube.js';

const DEPLOY = path.resolve(import.meta.dirname, '../../deploy');
let overlay: string;

type Doc = { kind: string; metadata: { name: string; namespace?: string }; spec?: any; stringData?: Record<string, string> };

async function render(dir: string): Promise<Doc[]> {
  return parseAllDocuments(await must(['kustomize', dir])).map((d) => d.toJS() as Doc);
}

beforeAll(async () => {
  // An overlay as a user writes one: deploy/base plus the component (kustomize wants relative paths).
  overlay = await fs.mkdtemp(path.join(os.tmpdir(), 'matrix-overlay-'));
  const relative = (to: string) => path.relative(overlay, path.join(DEPLOY, to));
  await fs.writeFile(
    path.join(overlay, 'kustomization.yaml'),
    `apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ${relative('base')}\ncomponents:\n  - ${relative('components/matrix')}\n`,
  );
  await installCRD();
  await must(['apply', '-f', path.join(DEPLOY, 'base/namespace.yaml')]);
}, 60_000);

afterAll(async () => {
  await fs.rm(overlay, { recursive: true, force: true });
});

test('the operator reads its Matrix settings from the Secret: URL from a key, the secrets from the mounted files', async () => {
  const docs = await render(overlay);
  const secret = docs.find((d) => d.kind === 'Secret' && d.metadata.name === 'realm-operator-matrix')!;
  expect(secret.metadata.namespace).toBe('realm-operator-system');
  const deployment = docs.find((d) => d.kind === 'Deployment' && d.metadata.name === 'realm-operator')!;
  const pod = deployment.spec.template.spec;
  const container = pod.containers[0];
  const env: Record<string, any> = Object.fromEntries(container.env.map((e: any) => [e.name, e.value ?? e.valueFrom]));
  expect(env.MATRIX_URL).toEqual({ secretKeyRef: { name: 'realm-operator-matrix', key: 'url' } });
  expect(env.MATRIX_SERVER_NAME).toEqual({ secretKeyRef: { name: 'realm-operator-matrix', key: 'server-name' } });

  // Materialize the volume as the kubelet would, then load the configuration from the env as given.
  const mount = container.volumeMounts.find((m: any) => m.name === 'matrix');
  expect(mount).toMatchObject({ readOnly: true });
  const volume = pod.volumes.find((v: any) => v.name === 'matrix');
  expect(volume.secret.secretName).toBe('realm-operator-matrix');
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'matrix-mount-'));
  try {
    for (const item of volume.secret.items) {
      const file = path.join(root, mount.mountPath, item.path);
      await fs.mkdir(path.dirname(file), { recursive: true });
      await fs.writeFile(file, secret.stringData![item.key]!);
    }
    const inMount = (file: string) => path.join(root, file);
    const config = loadOperatorConfig(
      {},
      {
        DATABASE_URL: 'postgres://x@h/db',
        REALMS_ROOT: '/realms',
        MATRIX_URL: secret.stringData!.url,
        MATRIX_SERVER_NAME: secret.stringData!['server-name'],
        MATRIX_REGISTRATION_SHARED_SECRET_FILE: inMount(env.MATRIX_REGISTRATION_SHARED_SECRET_FILE),
        REALM_SECRET_SEED_FILE: inMount(env.REALM_SECRET_SEED_FILE),
      },
    );
    expect(config.matrix).toEqual({
      matrixURL: secret.stringData!.url,
      registrationSharedSecret: secret.stringData!['registration-shared-secret'],
      realmSecretSeed: secret.stringData!['realm-secret-seed'],
    });
    expect(config.matrixServerName).toBe(secret.stringData!['server-name']);
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
  // The NetworkPolicy lets the operator reach the homeserver's port.
  const policy = docs.find((d) => d.kind === 'NetworkPolicy' && d.metadata.name === 'realm-operator')!;
  expect(policy.spec.egress.flatMap((rule: any) => (rule.ports ?? []).map((p: any) => p.port))).toContain(Number(new URL(secret.stringData!.url!).port));
});

test('deploy/base with the component passes `kubectl apply --dry-run=server`', async () => {
  const rendered = await must(['kustomize', overlay]);
  const result = await kubectl(['apply', '--dry-run=server', '-f', '-'], { input: rendered });
  expect(result.stderr).not.toMatch(/error/i);
  expect(result.code).toBe(0);
  expect(result.stdout).toMatch(/secret\/realm-operator-matrix created \(server dry run\)/);
});

test('deploy/base alone configures no Matrix: publishing works without it', async () => {
  const docs = await render(path.join(DEPLOY, 'base'));
  const container = docs.find((d) => d.kind === 'Deployment' && d.metadata.name === 'realm-operator')!.spec.template.spec.containers[0];
  expect(container.env.map((e: any) => e.name).filter((name: string) => /MATRIX|REALM_SECRET/.test(name))).toEqual([]);
});
