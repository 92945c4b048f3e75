/**
 * The manifests in deploy/ against the real API server: they apply (server-side dry run, then for
 * real), and the operator's service account is allowed exactly what it needs (`kubectl auth can-i`).
 */
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { GROUP, parsePublishedRealmSpec, realmURLRules } from '../../src/api/v1alpha1/published-realm-types.js';
import { loadOperatorConfig } from '../../src/cli/operator-config.js';
import { REPLICA_ROLE } from '../../src/dataplane/migrations.js';
import { MAX_REALM_URL_BYTES } from '../../src/wire/realm-url.js';
import { installCRD, must } from '../support/e2e.js';
import { kubectl, serviceAccountKubeconfig } from '../support/kube.js';

const DEPLOY = path.resolve(import.meta.dirname, '../../deploy');
const OPERATOR_NS = 'realm-operator-system';


beforeAll(async () => {
  // A namespaced dry run needs the namespace and the CRD to exist; create those two for real first.
  await installCRD();
  await must(['apply', '-f', path.join(DEPLOY, 'base/namespace.yaml')]);
}, 60_000);

test.each([['base'], ['realm-server'], ['kind'], ['samples'], ['tenancy']])('deploy/%s passes `kubectl apply --dry-run=server`', async (dir) => {
  const rendered = await must(['kustomize', path.join(DEPLOY, dir)]);
  expect(rendered.length).toBeGreaterThan(100);
  const result = await kubectl(['apply', '--dry-run=server', '-f', '-'], { input: rendered });
  // Warnings (e.g. about a CRD another suite applied server-side) are fine; errors are not.
  expect(result.stderr).not.toMatch(/error/i);
  expect({ code: result.code, stderr: result.stderr }).toMatchObject({ code: 0 });
  expect(result.stdout).toMatch(/\(server dry run\)/);
});

describe('RBAC of the operator service account', () => {
  let asOperator: string;
  beforeAll(async () => {
    await must(['apply', '-k', path.join(DEPLOY, 'base')]);
    await must(['apply', '-k', path.join(DEPLOY, 'realm-server')]); // the EndpointSlice Role in the realm servers' namespace
    asOperator = await serviceAccountKubeconfig(OPERATOR_NS, 'realm-operator');
    // Prove the identity first, so a "no" below means RBAC said no.
    const whoami = JSON.parse(await must(['auth', 'whoami', '-o', 'json', '--kubeconfig', asOperator]));
    expect(whoami.status.userInfo.username).toBe(`system:serviceaccount:${OPERATOR_NS}:realm-operator`);
  }, 60_000);

  // deploy/base's admission policy binding matches every namespace of this shared API server: other
  // suites create PublishedRealms with no operator watching them, which must still delete at once.
  afterAll(async () => {
    await must(['delete', 'mutatingadmissionpolicybinding', 'publishedrealm-unpublish-finalizer.realm-operator.dev', '--ignore-not-found']);
  });

  async function canI(verb: string, resource: string, namespace?: string): Promise<boolean> {
    if (resource.startsWith('/')) return (await kubectl(['auth', 'can-i', verb, resource, '--kubeconfig', asOperator])).stdout.trim() === 'yes';
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

  // Exactly the calls in src/: PublishedRealmKube, the informers, leader election, secure metrics.
  test.each([
    ['watch', 'publishedrealms.realm-operator.dev', undefined],
    ['list', 'publishedrealms.realm-operator.dev', undefined],
    ['get', 'publishedrealms.realm-operator.dev', 'team-a'],
    ['patch', 'publishedrealms.realm-operator.dev', 'team-a'],
    ['update', 'publishedrealms.realm-operator.dev/status', 'team-a'],
    ['create', 'events.events.k8s.io', 'team-a'],
    ['patch', 'events.events.k8s.io', 'team-a'],
    ['list', 'endpointslices.discovery.k8s.io', OPERATOR_NS],
    ['watch', 'endpointslices.discovery.k8s.io', OPERATOR_NS],
    ['get', 'leases.coordination.k8s.io', OPERATOR_NS],
    ['create', 'leases.coordination.k8s.io', OPERATOR_NS],
    ['update', 'leases.coordination.k8s.io', OPERATOR_NS],
    ['create', 'tokenreviews.authentication.k8s.io', undefined],
    ['create', 'subjectaccessreviews.authorization.k8s.io', undefined],
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
    // Granted once and never used: removed.
    ['get', 'publishedrealms.realm-operator.dev/status', 'team-a'],
    ['patch', 'publishedrealms.realm-operator.dev/status', 'team-a'],
    ['update', 'publishedrealms.realm-operator.dev/finalizers', 'team-a'],
    ['create', 'events', 'team-a'], // core/v1 Events: the recorder writes events.k8s.io/v1
    ['patch', 'events', 'team-a'],
    ['list', 'leases.coordination.k8s.io', OPERATOR_NS],
    ['watch', 'leases.coordination.k8s.io', OPERATOR_NS],
    ['patch', 'leases.coordination.k8s.io', OPERATOR_NS],
    ['get', 'endpointslices.discovery.k8s.io', OPERATOR_NS],
    // EndpointSlices only in the realm-server Service's namespace.
    ['watch', 'endpointslices.discovery.k8s.io', 'boxel'],
    ['list', 'endpointslices.discovery.k8s.io', undefined],
    // The operator authenticates scrapers; it is not one.
    ['get', '/metrics', undefined],
  ])('refused: %s %s (namespace %s)', async (verb, resource, namespace) => {
    expect(await canI(verb, resource, namespace)).toBe(false);
  });
});

describe('the API server\'s CEL rules refuse the URL aliases and forms zod refuses', () => {
  const manifest = (spec: Record<string, unknown>) =>
    JSON.stringify({ apiVersion: `${GROUP}/v1alpha1`, kind: 'PublishedRealm', metadata: { name: `cel-${Math.random().toString(36).slice(2, 8)}`, namespace: 'default' }, spec });
  const dryRun = (spec: Record<string, unknown>) => kubectl(['apply', '--dry-run=server', '-f', '-'], { input: manifest(spec) });
  const source = 'http://localhost:4201/a/';
  /** The CRD's message for the rule whose text includes `fragment` (so the table names rules, not copies of messages). */
  const message = (fragment: string) => realmURLRules('publishedRealmURL').find((rule) => rule.message.includes(fragment))!.message;

  test.each([
    ['HTTP://pub.localhost/a/', 'must use http:// or https:// (in lower case)'],
    ['http://pub.localhost/a/./b/', 'path segments'],
    ['http://pub.localhost/a/%2e%2E/b/', 'path segments'],
    ['http://pub.localhost:80/a/', 'default port'],
    ['https://pub.localhost:443/a/', 'default port'],
    ['http://pub.localhost:04201/a/', 'leading zeros'],
    ['http://localhost.:4201/a/', 'end its host with "."'],
    ['http://p%75b.localhost/a/', 'percent-encode the host'],
    ['http://0x7f.1/a/', 'IPv4 address'],
    ['http://pub.localhost/a\\b/', 'between path segments'],
    ['http://pub.localhost/a{b}/', 'must percent-encode the characters'],
    ['http://pub.localhost/%61lice/', 'must not percent-encode letters'],
    ['http://pub.localhost/caf%c3%a9/', 'upper case (%C3%A9'],
    ['https://h.example/u/:r/', 'must not contain "/:"'],
  ])('%s is refused by the API server with the rule\'s message, and by zod', async (url, rule) => {
    const result = await dryRun({ sourceRealmURL: source, publishedRealmURL: url });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(message(rule));
    expect(parsePublishedRealmSpec({ sourceRealmURL: source, publishedRealmURL: url })).toMatchObject({ ok: false });
  });

  test.each([['http://pub.localhost/a/'], ['https://pub.localhost:4201/a/b/'], ['http://127.0.0.1:8080/x/'], ['http://[::1]:4201/a/'], ['http://pub.localhost/caf%C3%A9/a%2Fb/'], ['http://pub.localhost/a:b/.well-known/']])(
    '%s is admitted by the API server and accepted by zod',
    async (url) => {
      const result = await dryRun({ sourceRealmURL: source, publishedRealmURL: url });
      expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
      expect(parsePublishedRealmSpec({ sourceRealmURL: source, publishedRealmURL: url })).toMatchObject({ ok: true });
    },
  );

  test('spec.publisher: a Matrix user id is admitted, anything else refused with the fix', async () => {
    expect((await dryRun({ sourceRealmURL: source, publishedRealmURL: 'http://pub.localhost/p/', publisher: '@realm/_published_1:localhost' })).code).toBe(0);
    const refused = await dryRun({ sourceRealmURL: source, publishedRealmURL: 'http://pub.localhost/p/', publisher: 'alice' });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('publisher must be a Matrix user id "@localpart:server"');
  });
});

describe('the CRD\'s URL length limit agrees with zod\'s byte limit', () => {
  const prefix = 'http://h.localhost/';
  const manifest = (publishedRealmURL: string) =>
    JSON.stringify({
      apiVersion: `${GROUP}/v1alpha1`,
      kind: 'PublishedRealm',
      metadata: { name: `url-${Math.random().toString(36).slice(2, 8)}`, namespace: 'default' },
      spec: { sourceRealmURL: 'http://localhost:4201/a/', publishedRealmURL },
    });
  const dryRun = (url: string) => kubectl(['apply', '--dry-run=server', '-f', '-'], { input: manifest(url) });

  test('the longest URL the API server admits is one zod accepts', async () => {
    const longest = `${prefix}${'a'.repeat(MAX_REALM_URL_BYTES - prefix.length - 1)}/`;
    const admitted = await dryRun(longest);
    expect(admitted.stderr).toBe('');
    expect(admitted.code).toBe(0);
    expect(parsePublishedRealmSpec({ sourceRealmURL: 'http://localhost:4201/a/', publishedRealmURL: longest })).toMatchObject({ ok: true });
    const oneMore = await dryRun(`${prefix}${'a'.repeat(MAX_REALM_URL_BYTES - prefix.length)}/`);
    expect(oneMore.code).not.toBe(0);
    expect(oneMore.stderr).toContain(`spec.publishedRealmURL: Too long: may not be more than ${MAX_REALM_URL_BYTES}`);
  });

  test('a 4,076-byte URL of 2,048 characters is refused at admission, not admitted and then Stalled', async () => {
    const multibyte = `${prefix}${'é'.repeat(MAX_REALM_URL_BYTES - prefix.length - 1)}/`;
    expect(Buffer.byteLength(multibyte)).toBe(4_076);
    const result = await dryRun(multibyte);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('publishedRealmURL must be ASCII: percent-encode other characters in the path');
    expect(parsePublishedRealmSpec({ sourceRealmURL: 'http://localhost:4201/a/', publishedRealmURL: multibyte })).toMatchObject({ ok: false });
  });

  test('a short non-ASCII URL is refused with the fix; its canonical form is admitted', async () => {
    const refused = await dryRun('http://h.localhost/café/');
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('publishedRealmURL must be ASCII');
    const canonical = new URL('http://h.localhost/café/').href;
    expect(canonical).toBe('http://h.localhost/caf%C3%A9/');
    expect((await dryRun(canonical)).code).toBe(0);
  });
});

describe('the manifests agree with the code', () => {
  type Doc = { kind: string; metadata: { name: string }; spec?: any; stringData?: Record<string, string> };
  async function render(dir: string): Promise<Doc[]> {
    return parseAllDocuments(await must(['kustomize', path.join(DEPLOY, dir)])).map((d) => d.toJS() as Doc);
  }
  const find = (docs: Doc[], kind: string, name: string) => docs.find((d) => d.kind === kind && d.metadata.name === name)!;
  const envOf = (container: any) => Object.fromEntries((container.env ?? []).map((e: any) => [e.name, e.value ?? e.valueFrom]));
  const portOf = (container: any, name: string) => container.ports.find((p: any) => p.name === name)?.containerPort;

  test('the operator serves metrics over HTTPS on the port its Service, probes and NetworkPolicy name; a PDB keeps one of two', async () => {
    const docs = await render('base');
    const deployment = find(docs, 'Deployment', 'realm-operator');
    const container = deployment.spec.template.spec.containers[0];
    const env = envOf(container);
    const plainEnv = Object.fromEntries(Object.entries(env).filter(([, v]) => typeof v === 'string')) as Record<string, string>;
    const config = loadOperatorConfig({}, { ...plainEnv, DATABASE_URL: 'postgres://x@h/db' });
    expect(config).toMatchObject({ metricsSecure: true, metricsBindAddress: ':8443' });
    expect(portOf(container, 'metrics')).toBe(8443);
    expect(portOf(container, 'probes')).toBe(Number(config.healthProbeBindAddress.split(':').at(-1)));
    expect(find(docs, 'Service', 'realm-operator-metrics').spec.ports).toEqual([expect.objectContaining({ port: 8443, targetPort: 'metrics' })]);
    expect(find(docs, 'NetworkPolicy', 'realm-operator').spec.ingress[0].ports.map((p: any) => p.port).sort()).toEqual(['metrics', 'probes']);
    expect(deployment.spec.replicas).toBe(2);
    expect(find(docs, 'PodDisruptionBudget', 'realm-operator').spec).toMatchObject({ minAvailable: 1, selector: { matchLabels: deployment.spec.selector.matchLabels } });
  });

  test('realm servers probe the management port, and connect with their own Secret, not the operator\'s', async () => {
    const docs = await render('kind');
    const deployment = find(docs, 'Deployment', 'realm-server');
    const container = deployment.spec.template.spec.containers[0];
    const env = envOf(container);
    expect(env.MANAGEMENT_LISTEN_ADDRESS).toBe(':9090');
    expect(portOf(container, 'management')).toBe(9090);
    expect(container.readinessProbe.httpGet).toEqual({ path: '/_readyz', port: 'management' });
    expect(container.livenessProbe.httpGet).toEqual({ path: '/_healthz', port: 'management' });
    expect(env.DATABASE_URL).toEqual({ secretKeyRef: { name: 'realm-server-database', key: 'url' } });
    const login = new URL(find(docs, 'Secret', 'realm-server-database').stringData!.url!).username;
    const operatorLogin = new URL(find(docs, 'Secret', 'realm-operator-database').stringData!.url!).username;
    expect(login).not.toBe(operatorLogin);
    // The kind PostgreSQL creates that login in the replica group role that migrate grants.
    const init = (find(docs, 'ConfigMap', 'postgres-init') as Doc & { data: Record<string, string> }).data['realm-server-login.sql'];
    expect(init).toMatch(new RegExp(`CREATE ROLE ${login} LOGIN PASSWORD '[^']+' IN ROLE ${REPLICA_ROLE};`));
    expect(find(docs, 'PodDisruptionBudget', 'realm-server').spec.selector.matchLabels).toEqual(deployment.spec.selector.matchLabels);
    expect(find(docs, 'NetworkPolicy', 'realm-server').spec.ingress[0].ports.map((p: any) => p.port).sort()).toEqual(['http', 'management']);
  });
});
