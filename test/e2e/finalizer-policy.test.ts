/**
 * deploy/base's MutatingAdmissionPolicy against the real API server, with the operator running:
 * a PublishedRealm has the unpublish finalizer from its creation, so its publish needs no finalizer
 * PATCH; nobody owns the finalizer, so re-applying the manifest keeps it; the operator still drops
 * it from an object it refuses (which then deletes at once), and a deletion unpublishes only what
 * the object published. The binding here matches this suite's namespace only (the API server is
 * shared with other suites); the policy is the shipped one.
 */
import { GROUP, PLURAL, UNPUBLISH_FINALIZER, VERSION } from '../../src/api/v1alpha1/published-realm-types.js';
import { must, setUpE2E, type E2EEnvironment } from '../support/e2e.js';
import { applyFinalizerPolicy } from '../support/finalizer-policy.js';
import { kubectl } from '../support/kube.js';
import { startOperator, waitForHTTP, type OperatorProcess } from '../support/operator-process.js';
import { createSourceRealm, eventually } from '../support/realms.js';

const RESOURCE = `${PLURAL}.${GROUP}`;
let env: E2EEnvironment;
let NS: string;
let operator: OperatorProcess;

interface Live {
  metadata: { finalizers?: string[]; resourceVersion: string; managedFields?: Array<{ manager: string; operation: string; subresource?: string; fieldsV1?: { 'f:metadata'?: Record<string, unknown> } }> };
  status?: { conditions?: Array<{ type: string; status: string; reason: string }> };
}

function manifest(name: string, spec: Record<string, unknown>, finalizers?: string[]): string {
  return JSON.stringify({ apiVersion: `${GROUP}/${VERSION}`, kind: 'PublishedRealm', metadata: { name, namespace: NS, ...(finalizers ? { finalizers } : {}) }, spec });
}

async function getRealm(name: string): Promise<Live> {
  return JSON.parse(await must(['get', RESOURCE, name, '-n', NS, '-o', 'json', '--show-managed-fields'])) as Live;
}

/** Field managers that own metadata.finalizers: any client that wrote the list (a PATCH, an apply naming it). */
function finalizerOwners(realm: Live): string[] {
  return (realm.metadata.managedFields ?? []).filter((f) => f.fieldsV1?.['f:metadata']?.['f:finalizers'] !== undefined).map((f) => `${f.manager} (${f.operation})`);
}

async function waitReady(name: string): Promise<void> {
  const result = await kubectl(['wait', `${RESOURCE}/${name}`, '-n', NS, '--for=condition=Ready', '--timeout=60s']);
  if (result.code !== 0) throw new Error(`${name} not Ready: ${result.stderr}\n${JSON.stringify((await getRealm(name)).status)}`);
}

beforeAll(async () => {
  env = await setUpE2E('finalizer-policy');
  NS = env.namespace;
  await applyFinalizerPolicy((args, input) => must(args, input), NS, { onlyNamespace: NS });
  operator = await startOperator({ databaseURL: env.db.url, realmsRoot: env.realms.root, identity: 'operator-policy', leaderElectionNamespace: env.leaseNamespace, namespace: NS });
  await waitForHTTP(operator, `${operator.healthURL}/readyz`);
}, 90_000);

afterAll(async () => {
  await operator?.stop();
  await kubectl(['delete', 'mutatingadmissionpolicybinding', `publishedrealm-unpublish-finalizer.${GROUP}.${NS}`, '--ignore-not-found']);
  await env?.cleanup();
});

test('the create carries the finalizer, keeping finalizers the manifest has', async () => {
  const created = JSON.parse(
    await must(['create', '--dry-run=server', '-o', 'json', '-f', '-'], manifest('dry', { sourceRealmURL: 'http://localhost:4201/policy/dry/', publishedRealmURL: 'http://pub.localhost/policy/dry/' }, ['example.com/keep'])),
  ) as Live;
  expect(created.metadata.finalizers).toEqual(['example.com/keep', UNPUBLISH_FINALIZER]);
});

test('publish → Ready with no finalizer PATCH; a re-apply without it keeps it; delete → unpublished', async () => {
  const src = 'http://localhost:4201/policy/blog/';
  const pub = 'http://pub.localhost/policy/blog/';
  await createSourceRealm(env.db.pool, env.realms.layout, src, { 'index.json': '{"v":1}' });
  // As a GitOps tool: server-side apply with its own field manager.
  const apply = (revision: string) => must(['apply', '--server-side', '--field-manager=e2e-gitops', '-o', 'json', '-f', '-'], manifest('blog', { sourceRealmURL: src, publishedRealmURL: pub, revision }));
  const created = JSON.parse(await apply('1')) as Live;
  expect(created.metadata.finalizers).toEqual([UNPUBLISH_FINALIZER]);
  await waitReady('blog');
  const ready = await getRealm('blog');
  expect(ready.metadata.finalizers).toEqual([UNPUBLISH_FINALIZER]);
  // Had the operator patched the finalizer on, its field manager would own metadata.finalizers.
  expect(finalizerOwners(ready)).toEqual([]);
  // The operator's writes carry its name (its User-Agent), not "unknown".
  expect((ready.metadata.managedFields ?? []).map((f) => `${f.manager} ${f.operation} ${f.subresource ?? ''}`.trim())).toEqual(expect.arrayContaining(['e2e-gitops Apply', 'realm-operator Update status']));

  // The applier never named the finalizer and owns none of it: its next apply leaves it (the
  // apply's own answer, before the operator could have put it back).
  const reapplied = JSON.parse(await apply('2')) as Live & { metadata: { generation: number } };
  expect(reapplied.metadata.finalizers).toEqual([UNPUBLISH_FINALIZER]);
  await eventually(async () => {
    const live = (await getRealm('blog')) as Live & { metadata: { generation: number }; status?: { observedGeneration?: number } };
    return live.status?.observedGeneration === reapplied.metadata.generation && (live.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false);
  }, 30_000);

  await must(['delete', RESOURCE, 'blog', '-n', NS, '--timeout=30s']);
  expect((await env.db.pool.query('SELECT 1 FROM realm_registry WHERE url = $1', [pub])).rows).toEqual([]);
});

test('an object refused before claiming its URL loses the finalizer and deletes at once, leaving the URL published', async () => {
  const src = 'http://localhost:4201/policy/dup/';
  const pub = 'http://pub.localhost/policy/dup/';
  await createSourceRealm(env.db.pool, env.realms.layout, src, { 'x.txt': 'x' });
  await must(['apply', '-f', '-'], manifest('dup-one', { sourceRealmURL: src, publishedRealmURL: pub }));
  await waitReady('dup-one');
  const second = JSON.parse(await must(['create', '-o', 'json', '-f', '-'], manifest('dup-two', { sourceRealmURL: src, publishedRealmURL: pub }))) as Live;
  expect(second.metadata.finalizers).toEqual([UNPUBLISH_FINALIZER]);
  await eventually(async () => (await getRealm('dup-two')).status?.conditions?.some((c) => c.reason === 'URLAlreadyPublished') ?? false, 20_000);
  expect((await getRealm('dup-two')).metadata.finalizers).toBeUndefined();

  // No finalizer: gone as soon as it is deleted, even with the operator stopped.
  await operator.stop();
  try {
    await must(['delete', RESOURCE, 'dup-two', '-n', NS, '--timeout=10s']);
    expect((await env.db.pool.query('SELECT kind FROM realm_registry WHERE url = $1', [pub])).rows).toEqual([{ kind: 'published' }]);
  } finally {
    operator = await startOperator({ databaseURL: env.db.url, realmsRoot: env.realms.root, identity: 'operator-policy-2', leaderElectionNamespace: env.leaseNamespace, namespace: NS });
    await waitForHTTP(operator, `${operator.healthURL}/readyz`);
  }
  await must(['delete', RESOURCE, 'dup-one', '-n', NS, '--timeout=30s']);
  expect((await env.db.pool.query('SELECT 1 FROM realm_registry WHERE url = $1', [pub])).rows).toEqual([]);
});

test('an object created suspended, never published, loses the finalizer and deletes at once', async () => {
  const created = JSON.parse(
    await must(['create', '-o', 'json', '-f', '-'], manifest('sleeper', { sourceRealmURL: 'http://localhost:4201/policy/sleeper/', publishedRealmURL: 'http://pub.localhost/policy/sleeper/', suspend: true })),
  ) as Live;
  expect(created.metadata.finalizers).toEqual([UNPUBLISH_FINALIZER]);
  await eventually(async () => (await getRealm('sleeper')).status?.conditions?.some((c) => c.type === 'Ready' && c.reason === 'Suspended') ?? false, 20_000);
  expect((await getRealm('sleeper')).metadata.finalizers).toBeUndefined();
  await must(['delete', RESOURCE, 'sleeper', '-n', NS, '--timeout=10s']);
});

test('an object created rolling back to a version nothing kept loses the finalizer (Stalled VersionNotKept) and deletes at once', async () => {
  const created = JSON.parse(
    await must(
      ['create', '-o', 'json', '-f', '-'],
      manifest('ghost-rollback', { sourceRealmURL: 'http://localhost:4201/policy/ghost/', publishedRealmURL: 'http://pub.localhost/policy/ghost/', rollbackTo: 'v1764130000000-0a1b2c3d' }),
    ),
  ) as Live;
  expect(created.metadata.finalizers).toEqual([UNPUBLISH_FINALIZER]);
  await eventually(async () => (await getRealm('ghost-rollback')).status?.conditions?.some((c) => c.type === 'Stalled' && c.status === 'True' && c.reason === 'VersionNotKept') ?? false, 20_000);
  expect((await getRealm('ghost-rollback')).metadata.finalizers).toBeUndefined();
  // Nothing of it on the database side either: no claim was ever taken.
  expect((await env.db.pool.query('SELECT 1 FROM realm_operator.realm_epochs WHERE realm_url = $1', ['http://pub.localhost/policy/ghost/'])).rows).toEqual([]);
  await must(['delete', RESOURCE, 'ghost-rollback', '-n', NS, '--timeout=10s']);
});
