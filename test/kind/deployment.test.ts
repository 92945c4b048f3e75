/**
 * What deploy/kind runs in the real cluster is what the README promises users: the operator as two
 * pods from its image with leader election on a Lease, authenticated in cluster as its own
 * ServiceAccount with deploy/base's RBAC; realm servers as the deploy/realm-server Deployment,
 * three or more pods sharing the operator's realms volume, each registered with the listener under
 * its pod name; the namespace enforcing restricted Pod Security, every container with a read-only
 * root file system, and every image the one loaded into the node (never pulled).
 */
import { closeApi, api, kubectl, leaderPod, listPods, realmServerPods, SYSTEM_NAMESPACE } from '../support/kind.js';
import { Toolbox } from '../support/kind-toolbox.js';

const OPERATOR_SA = `system:serviceaccount:${SYSTEM_NAMESPACE}:realm-operator`;
let toolbox: Toolbox | undefined;

afterAll(async () => {
  await toolbox?.delete();
  closeApi();
}, 60_000);

test('the namespace enforces restricted Pod Security: a pod running as root is refused, every pod deploy/kind made is admitted and runs', async () => {
  const namespace = await api<any>({ path: `/api/v1/namespaces/${SYSTEM_NAMESPACE}` });
  expect(namespace.metadata.labels).toMatchObject({ 'pod-security.kubernetes.io/enforce': 'restricted' });
  const rootPod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'runs-as-root', namespace: SYSTEM_NAMESPACE }, spec: { containers: [{ name: 'c', image: 'realm-operator:dev', imagePullPolicy: 'Never' }] } };
  const refused = await kubectl(['apply', '--dry-run=server', '-f', '-'], { input: JSON.stringify(rootPod) });
  expect(refused.code).not.toBe(0);
  expect(refused.stderr).toMatch(/violates PodSecurity "restricted:/);

  const pods = (await api<{ items: any[] }>({ path: `/api/v1/namespaces/${SYSTEM_NAMESPACE}/pods` })).items;
  // The operator's two, the realm servers, PostgreSQL, the seed Job's (the suite's own pods are gone by now).
  const workloads = pods.filter((p) => !p.metadata.name.startsWith('kind-toolbox-'));
  expect(workloads.length).toBeGreaterThanOrEqual(7);
  for (const pod of workloads) {
    expect({ pod: pod.metadata.name, phase: ['Running', 'Succeeded'].includes(pod.status.phase) }).toEqual({ pod: pod.metadata.name, phase: true });
    for (const container of [...(pod.spec.initContainers ?? []), ...pod.spec.containers]) {
      const where = `${pod.metadata.name}/${container.name}`;
      expect({ where, readOnlyRootFilesystem: container.securityContext?.readOnlyRootFilesystem }).toEqual({ where, readOnlyRootFilesystem: true });
      // Loaded with `kind load`, never pulled, never :latest.
      expect({ where, pull: container.imagePullPolicy, latest: /:latest$|^[^:]+$/.test(container.image) }).toEqual({ where, pull: 'Never', latest: false });
    }
  }
});

test('the operator: two pods of its image, one holding the leader Lease, in cluster as its ServiceAccount with deploy/base RBAC', async () => {
  const operators = (await listPods(SYSTEM_NAMESPACE, 'app.kubernetes.io/name=realm-operator,app.kubernetes.io/component=operator')).filter((p) => !p.deleting);
  expect(operators.map((p) => p.ready)).toEqual([true, true]);
  const leader = await leaderPod();
  expect(operators.map((p) => p.name)).toContain(leader);
  const pod = await api<any>({ path: `/api/v1/namespaces/${SYSTEM_NAMESPACE}/pods/${leader}` });
  expect(pod.spec.serviceAccountName).toBe('realm-operator');
  // No kubeconfig: the only way it reaches the API server is the mounted ServiceAccount token.
  const env = pod.spec.containers[0].env.map((e: { name: string }) => e.name);
  expect(env).not.toContain('KUBECONFIG');
  expect(pod.spec.volumes.some((v: any) => v.projected?.sources?.some((s: any) => s.serviceAccountToken))).toBe(true);
  const canI = async (...args: string[]) => (await kubectl(['auth', 'can-i', `--as=${OPERATOR_SA}`, ...args])).stdout.trim();
  expect(await canI('update', 'publishedrealms.realm-operator.dev', '--subresource=status', '-n', 'default')).toBe('yes');
  expect(await canI('update', 'leases.coordination.k8s.io', '-n', SYSTEM_NAMESPACE)).toBe('yes');
  expect(await canI('watch', 'endpointslices.discovery.k8s.io', '-n', SYSTEM_NAMESPACE)).toBe('yes');
  expect(await canI('create', 'publishedrealms.realm-operator.dev', '-n', 'default')).toBe('no');
  expect(await canI('get', 'secrets', '-n', SYSTEM_NAMESPACE)).toBe('no');
});

test('realm servers: the deploy/realm-server Deployment, 3+ ready pods sharing the operator\'s realms volume, each registered under its pod name', async () => {
  const deployment = await api<any>({ path: `/apis/apps/v1/namespaces/${SYSTEM_NAMESPACE}/deployments/realm-server` });
  expect(deployment.spec.replicas).toBeGreaterThanOrEqual(3);
  const operator = await api<any>({ path: `/apis/apps/v1/namespaces/${SYSTEM_NAMESPACE}/deployments/realm-operator` });
  const claimOf = (d: any) => d.spec.template.spec.volumes.find((v: any) => v.name === 'realms')?.persistentVolumeClaim?.claimName;
  expect(claimOf(deployment)).toBe('realms');
  expect(claimOf(operator)).toBe('realms');
  // Realm servers only read it.
  expect(deployment.spec.template.spec.containers[0].volumeMounts.find((m: any) => m.name === 'realms')).toMatchObject({ mountPath: '/realms', readOnly: true });

  const pods = (await realmServerPods()).filter((p) => p.ready && !p.deleting).map((p) => p.name);
  expect(pods.length).toBe(deployment.spec.replicas);
  toolbox = await Toolbox.start('deployment');
  const replicas = await toolbox.sql<{ replica_id: string }>('SELECT replica_id FROM realm_operator.replicas WHERE lease_expires_at > now() ORDER BY replica_id');
  expect(replicas.map((r) => r.replica_id)).toEqual(expect.arrayContaining(pods));
}, 180_000);
