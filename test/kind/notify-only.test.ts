/**
 * An unmodified realm server in the realm-server Service: a pod that serves HTTP on the Service's
 * port but never registers with the listener (the reference realm server cannot run without its
 * listener, so a plain Node HTTP server from the same image stands in for an unmodified Boxel
 * server). The operator sees it through the Service's real EndpointSlice and reports the publish
 * `PublishedNotifyOnly`, naming the pod, instead of waiting for it; once it is gone, publishes are
 * acknowledged by every pod again.
 */
import { realmContent } from '../consistency/content.js';
import { api, applyObjects, closeApi, kubectl, operatorImage, randomSuffix, realmServerPods, REALM_SERVER_SERVICE, SYSTEM_NAMESPACE, waitFor } from '../support/kind.js';
import { KindRealm, readyCondition } from '../support/kind-realm.js';
import { Toolbox } from '../support/kind-toolbox.js';

let toolbox: Toolbox;
let realm: KindRealm;
const unmodified = `unmodified-realm-server-${randomSuffix()}`;

/** Whether the realm-server Service's EndpointSlices list `pod` as a ready endpoint (`present`) or not at all (`absent`). */
async function endpointState(pod: string): Promise<'ready' | 'not-ready' | 'absent'> {
  const slices = await api<{ items: any[] }>({
    path: `/apis/discovery.k8s.io/v1/namespaces/${SYSTEM_NAMESPACE}/endpointslices`,
    query: { labelSelector: `kubernetes.io/service-name=${REALM_SERVER_SERVICE}` },
  });
  const endpoint = slices.items.flatMap((s) => s.endpoints ?? []).find((e: any) => e.targetRef?.name === pod);
  if (!endpoint) return 'absent';
  return endpoint.conditions?.ready ? 'ready' : 'not-ready';
}

beforeAll(async () => {
  toolbox = await Toolbox.start('notify');
  realm = new KindRealm(toolbox, { name: 'notify', host: 'notify.localhost', content: realmContent });
  await realm.prepare();
  await realm.create();
}, 240_000);

afterAll(async () => {
  await kubectl(['delete', 'pod', '-n', SYSTEM_NAMESPACE, unmodified, '--ignore-not-found', '--timeout=60s']);
  await realm?.close();
  await toolbox?.delete();
  closeApi();
}, 180_000);

test('a ready pod in the realm-server Service without the listener makes the publish PublishedNotifyOnly, naming the pod', async () => {
  const before = await realm.get();
  expect(before?.status?.replicas?.mode).toBe('Acknowledged');

  await applyObjects({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: unmodified,
      namespace: SYSTEM_NAMESPACE,
      // In the Service's selector; no pod-template-hash, so no ReplicaSet of realm-server adopts it.
      labels: { 'app.kubernetes.io/name': 'realm-server', 'realm-operator.dev/kind-test': 'unmodified-realm-server' },
    },
    spec: {
      automountServiceAccountToken: false,
      terminationGracePeriodSeconds: 2,
      securityContext: { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, seccompProfile: { type: 'RuntimeDefault' } },
      containers: [
        {
          name: 'http',
          image: await operatorImage(),
          imagePullPolicy: 'Never',
          command: [
            'node',
            '-e',
            "process.on('SIGTERM', () => process.exit(0)); require('node:http').createServer((req, res) => res.end('an unmodified realm server\\n')).listen(4201);",
          ],
          // The Service targets the port by name.
          ports: [{ name: 'http', containerPort: 4201 }],
          readinessProbe: { httpGet: { path: '/', port: 'http' }, periodSeconds: 2 },
          securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
          resources: { requests: { cpu: '10m', memory: '32Mi' } },
        },
      ],
    },
  });
  await waitFor(async () => (await endpointState(unmodified)) === 'ready', 120_000, () => `${unmodified} to be a ready endpoint of the realm-server Service`, 500);

  await realm.publish(1);
  const notifyOnly = (await realm.get())!;
  const listening = (await realmServerPods()).filter((p) => p.ready && !p.deleting).map((p) => p.name);
  expect(notifyOnly.status?.replicas).toMatchObject({ mode: 'NotifyOnly', unregistered: [unmodified], acknowledged: listening.length });
  const ready = readyCondition(notifyOnly)!;
  expect(ready).toMatchObject({ status: 'True', reason: 'PublishedNotifyOnly' });
  expect(ready.message).toContain(`1 ready realm-server pod does not run the acknowledging listener (${unmodified})`);

  // Without it, every pod acknowledges again.
  await kubectl(['delete', 'pod', '-n', SYSTEM_NAMESPACE, unmodified, '--timeout=60s']);
  await waitFor(async () => (await endpointState(unmodified)) === 'absent', 60_000, () => `${unmodified} to leave the realm-server Service's EndpointSlices`, 500);
  await realm.publish(2);
  const acknowledged = (await realm.get())!;
  expect(acknowledged.status?.replicas?.mode).toBe('Acknowledged');
  expect(acknowledged.status?.replicas?.unregistered ?? []).toEqual([]);
  expect(readyCondition(acknowledged)).toMatchObject({ status: 'True', reason: 'Published' });
}, 300_000);
