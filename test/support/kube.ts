/**
 * The run's shared Kubernetes control plane, as `with-test-env.ts --kube` (used by `make test`
 * and `make test-integration`) exports it to the tests. Everything here throws when that
 * environment is missing, so a test that needs Kubernetes fails instead of silently skipping.
 */
import path from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import { loadClientNode, loadKubeConfig, runKubectl, writeServiceAccountKubeconfig, type KubectlOptions, type KubectlResult } from './control-plane.js';

export type { KubectlOptions, KubectlResult };

const HINT = 'run through `make test` / `make test-integration`, which start a control plane (or `npx tsx test/support/with-test-env.ts --kube -- <command>`)';

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is unset: ${HINT}`);
  return value;
}

/** The admin (system:masters) kubeconfig of the run's control plane. */
export function testKubeconfigPath(): string {
  return required('REALM_OPERATOR_TEST_KUBECONFIG');
}

/** The kubectl binary matching the run's control plane. */
export function testKubectlPath(): string {
  return required('REALM_OPERATOR_TEST_KUBECTL');
}

// Loaded up front (kubeConfig() is synchronous); an unloadable client only fails testKubeConfig().
const clientNode = await loadClientNode();

/** A @kubernetes/client-node KubeConfig for the admin kubeconfig. */
export function testKubeConfig(): KubeConfig {
  return loadKubeConfig(clientNode, testKubeconfigPath());
}

/** Runs kubectl against the run's control plane, as admin unless options.kubeconfig. Never throws on a non-zero exit. */
export function kubectl(args: string[], options: KubectlOptions = {}): Promise<KubectlResult> {
  const admin = testKubeconfigPath();
  return runKubectl(testKubectlPath(), options.kubeconfig ?? admin, args, { input: options.input, cacheDir: path.join(path.dirname(admin), 'kubectl-cache') });
}

/** The API server's URL (https://127.0.0.1:<port>), from the admin kubeconfig. */
export async function testServer(): Promise<string> {
  const result = await kubectl(['config', 'view', '--minify', '-o', 'jsonpath={.clusters[0].cluster.server}']);
  if (result.code !== 0 || !result.stdout) throw new Error(`cannot read the server from ${testKubeconfigPath()}: ${result.stderr}`);
  return result.stdout.trim();
}

/**
 * A kubeconfig authenticating as service account `namespace`/`name` (token from the TokenRequest
 * API via `kubectl create token`); creates the namespace and the service account if missing.
 * The file lives in the control plane's temp dir.
 */
export async function serviceAccountKubeconfig(namespace: string, name: string): Promise<string> {
  return writeServiceAccountKubeconfig({
    kubectl,
    server: await testServer(),
    dir: path.dirname(testKubeconfigPath()),
    namespace,
    name,
  });
}
