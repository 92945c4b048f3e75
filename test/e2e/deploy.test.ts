/**
 * The manifests in deploy/ against the real API server: they apply (server-side dry run, then for
 * real), and the operator's service account is allowed exactly what it needs (`kubectl auth can-i`).
 */
import path from 'node:path';
import { installCRD, must } from '../support/e2e.js';
import { kubectl, serviceAccountKubeconfig } from '../support/kube.js';

const DEPLOY = path.resolve(import.meta.dirname, '../../deploy');
const OPERATOR_NS = 'realm-operator-system';


beforeAll(async () => {
  // A namespaced dry run needs the namespace and the CRD to exist; create those two for real first.
  await installCRD();
  await must(['apply', '-f', path.join(DEPLOY, 'base/namespace.yaml')]);
}, 60_000);

test.each([['base'], ['realm-server'], ['kind'], ['samples']])('deploy/%s passes `kubectl apply --dry-run=server`', async (dir) => {
  const rendered = await must(['kustomize', path.join(DEPLOY, dir)]);
  expect(rendered.length).toBeGreaterThan(100);
  const result = await kubectl(['apply', '--dry-run=server', '-f', '-'], { input: rendered });
  // Warnings (e.g. about a CRD another suite applied server-side) are fine; errors are not.
  expect(result.stderr).not.toMatch(/error/i);
  expect(result.code).toBe(0);
  expect(result.stdout).toMatch(/\(server dry run\)/);
});

describe('RBAC of the operator service account', () => {
  let asOperator: string;
  beforeAll(async () => {
    await must(['apply', '-k', path.join(DEPLOY, 'base')]);
    asOperator = await serviceAccountKubeconfig(OPERATOR_NS, 'realm-operator');
    // Prove the identity first, so a "no" below means RBAC said no.
    const whoami = JSON.parse(await must(['auth', 'whoami', '-o', 'json', '--kubeconfig', asOperator]));
    expect(whoami.status.userInfo.username).toBe(`system:serviceaccount:${OPERATOR_NS}:realm-operator`);
  }, 60_000);

  async function canI(verb: string, resource: string, namespace?: string): Promise<boolean> {
    const [name, subresource] = resource.split('/');
    const args = [
      'auth', 'can-i', verb, name!,
      ...(subresource ? [`--subresource=${subresource}`] : []),
      '--kubeconfig', asOperator,
      ...(namespace ? ['-n', namespace] : ['--all-namespaces']),
    ];
    const result = await kubectl(args);
    return result.stdout.trim() === 'yes';
  }

  test.each([
    ['watch', 'publishedrealms.realm-operator.dev', undefined],
    ['list', 'publishedrealms.realm-operator.dev', undefined],
    ['get', 'publishedrealms.realm-operator.dev', 'team-a'],
    ['patch', 'publishedrealms.realm-operator.dev', 'team-a'],
    ['update', 'publishedrealms.realm-operator.dev/status', 'team-a'],
    ['update', 'publishedrealms.realm-operator.dev/finalizers', 'team-a'],
    ['create', 'events', 'team-a'],
    ['watch', 'endpointslices.discovery.k8s.io', 'boxel'],
    ['get', 'leases.coordination.k8s.io', OPERATOR_NS],
    ['create', 'leases.coordination.k8s.io', OPERATOR_NS],
    ['update', 'leases.coordination.k8s.io', OPERATOR_NS],
  ])('allowed: %s %s (namespace %s)', async (verb, resource, namespace) => {
    expect(await canI(verb, resource, namespace)).toBe(true);
  });

  test.each([
    ['create', 'publishedrealms.realm-operator.dev', 'team-a'],
    ['delete', 'publishedrealms.realm-operator.dev', 'team-a'],
    ['update', 'publishedrealms.realm-operator.dev', 'team-a'],
    ['get', 'secrets', OPERATOR_NS],
    ['list', 'secrets', undefined],
    ['create', 'pods', OPERATOR_NS],
    ['delete', 'deployments.apps', OPERATOR_NS],
    ['update', 'leases.coordination.k8s.io', 'kube-system'],
    ['update', 'publishedrealms.realm-operator.dev/scale', 'team-a'],
    ['create', 'customresourcedefinitions.apiextensions.k8s.io', undefined],
    ['escalate', 'clusterroles.rbac.authorization.k8s.io', undefined],
  ])('refused: %s %s (namespace %s)', async (verb, resource, namespace) => {
    expect(await canI(verb, resource, namespace)).toBe(false);
  });
});
