/**
 * deploy/tenancy against the real API server: its ValidatingAdmissionPolicy binds each opted-in
 * namespace to the publishers and published domains its annotations allow, and the API server
 * itself refuses anything else, with a message naming the field, the allowed values and the fix.
 */
import path from 'node:path';
import { GROUP } from '../../src/api/v1alpha1/published-realm-types.js';
import { installCRD, must, RESOURCE } from '../support/e2e.js';
import { kubectl, serviceAccountKubeconfig, type KubectlResult } from '../support/kube.js';

const TENANCY = path.resolve(import.meta.dirname, '../../deploy/tenancy');
const POLICY = `publishedrealm-tenancy.${GROUP}`;
const suffix = Math.random().toString(36).slice(2, 8);
const teamA = `tenant-a-${suffix}`;
const teamB = `tenant-b-${suffix}`;
const unannotated = `tenant-none-${suffix}`;
const ungoverned = `not-a-tenant-${suffix}`;
const ALICE = '@alice:boxel.ai';
const BOB = '@bob:boxel.ai';
const SOURCE = 'http://localhost:4201/alice/blog/';

type Spec = { sourceRealmURL?: string; publishedRealmURL?: string; publisher?: string; revision?: string };

function manifest(namespace: string, spec: Spec, name = `r-${Math.random().toString(36).slice(2, 8)}`): string {
  return JSON.stringify({ apiVersion: `${GROUP}/v1alpha1`, kind: 'PublishedRealm', metadata: { name, namespace }, spec: { sourceRealmURL: SOURCE, ...spec } });
}

/** `kubectl apply --dry-run=server`: admission (and so the policy) runs, nothing is stored. */
function dryRun(namespace: string, spec: Spec, kubeconfig?: string): Promise<KubectlResult> {
  return kubectl(['apply', '--dry-run=server', '-f', '-'], { input: manifest(namespace, spec), kubeconfig });
}

function expectDenied(result: KubectlResult, message: string): void {
  expect(result.code).not.toBe(0);
  expect(result.stderr).toContain(`ValidatingAdmissionPolicy '${POLICY}' with binding '${POLICY}' denied request`);
  expect(result.stderr).toContain(message);
}

function expectAdmitted(result: KubectlResult): void {
  expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
}

const publisherFix = 'Set spec.publisher to one of them, or ask a cluster admin to add it to the namespace annotation realm-operator.dev/allowed-publishers.';
const domainFix = 'Publish under one of them, or ask a cluster admin to add the domain to the namespace annotation realm-operator.dev/allowed-domains.';

/**
 * Creates a namespace, labelled as a tenant unless `label` is false, with `annotations`: imperatively,
 * as an admin would with `kubectl label` / `kubectl annotate` (a client-side `kubectl apply` would
 * hand the label to the next server-side apply of the Namespace, which then drops it).
 */
async function tenantNamespace(name: string, annotations: Record<string, string>, label = true): Promise<void> {
  await must(['create', 'namespace', name]);
  if (label) await must(['label', 'namespace', name, 'realm-operator.dev/tenant=true']);
  const pairs = Object.entries(annotations).map(([key, value]) => `${key}=${value}`);
  if (pairs.length > 0) await must(['annotate', 'namespace', name, ...pairs]);
}

beforeAll(async () => {
  await installCRD();
  await must(['apply', '-k', TENANCY]);
  await tenantNamespace(teamA, { 'realm-operator.dev/allowed-publishers': `${ALICE}, @carol:boxel.ai`, 'realm-operator.dev/allowed-domains': 'alice.boxel.site,example.com' });
  await tenantNamespace(teamB, { 'realm-operator.dev/allowed-publishers': BOB, 'realm-operator.dev/allowed-domains': 'bob.boxel.site' });
  await tenantNamespace(unannotated, {});
  await tenantNamespace(ungoverned, {}, false);
  // The API server loads a new policy and binding asynchronously: wait until it refuses what it must.
  for (let attempt = 0; ; attempt++) {
    const probe = await dryRun(teamA, { publishedRealmURL: 'https://bob.boxel.site/probe/', publisher: BOB });
    if (probe.code !== 0 && probe.stderr.includes(POLICY)) break;
    if (attempt >= 300) throw new Error(`the tenancy policy never took effect; last apply: ${probe.code} ${probe.stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}, 90_000);

afterAll(async () => {
  // Other suites share this API server: leave no policy behind.
  await kubectl(['delete', '-k', TENANCY, '--ignore-not-found']);
  for (const ns of [teamA, teamB, unannotated, ungoverned]) {
    const names = (await kubectl(['get', RESOURCE, '-n', ns, '-o', 'name'])).stdout.split('\n').filter(Boolean);
    for (const name of names) await kubectl(['patch', name, '-n', ns, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
  }
  // Without a controller-manager a deleted namespace never finishes terminating: do not wait.
  await kubectl(['delete', 'namespace', teamA, teamB, unannotated, ungoverned, '--wait=false']);
}, 60_000);

describe('tenant A', () => {
  test('cannot publish as tenant B\'s publisher', async () => {
    expectDenied(
      await dryRun(teamA, { publishedRealmURL: 'https://alice.boxel.site/blog/', publisher: BOB }),
      `spec.publisher "${BOB}" is not allowed in namespace ${teamA}; allowed publishers: ${ALICE}, @carol:boxel.ai. ${publisherFix}`,
    );
  });

  test('cannot omit the publisher (it would publish on behalf of the source realm\'s owner, whoever that is)', async () => {
    expectDenied(
      await dryRun(teamA, { publishedRealmURL: 'https://alice.boxel.site/blog/' }),
      `spec.publisher is required in namespace ${teamA} (without it the realm would be published on behalf of the source realm's owner); allowed publishers: ${ALICE}, @carol:boxel.ai. ${publisherFix}`,
    );
  });

  test.each([
    ['tenant B\'s domain (so it can neither take B\'s URL nor unpublish it by deleting its own claim)', 'https://bob.boxel.site/blog/', 'bob.boxel.site'],
    ['a subdomain of tenant B\'s domain', 'https://x.bob.boxel.site/blog/', 'x.bob.boxel.site'],
    ['a parent of its own domain', 'https://boxel.site/blog/', 'boxel.site'],
    ['a host that merely ends in its domain (no dot boundary)', 'https://evilexample.com/blog/', 'evilexample.com'],
    ['a host that merely ends in its subdomain (no dot boundary)', 'http://evilalice.boxel.site:4201/blog/', 'evilalice.boxel.site'],
    ['a host that starts with its domain', 'https://example.com.evil.test/blog/', 'example.com.evil.test'],
  ])('cannot publish at %s', async (_what, url, host) => {
    expectDenied(
      await dryRun(teamA, { publishedRealmURL: url, publisher: ALICE }),
      `spec.publishedRealmURL host "${host}" is not allowed in namespace ${teamA}; allowed domains (and their subdomains): alice.boxel.site, example.com. ${domainFix}`,
    );
  });

  test.each([
    ['https://alice.boxel.site/blog/', ALICE],
    ['https://www.alice.boxel.site/blog/', '@carol:boxel.ai'],
    ['https://example.com:8443/docs/', ALICE],
    ['http://a.b.example.com/x/', ALICE],
  ])('can publish at %s as %s', async (url, publisher) => {
    expectAdmitted(await dryRun(teamA, { publishedRealmURL: url, publisher }));
  });
});

test('tenant B is held to its own rules, not A\'s', async () => {
  expectAdmitted(await dryRun(teamB, { publishedRealmURL: 'https://bob.boxel.site/blog/', publisher: BOB }));
  expectDenied(await dryRun(teamB, { publishedRealmURL: 'https://bob.boxel.site/blog/', publisher: ALICE }), `allowed publishers: ${BOB}.`);
  expectDenied(await dryRun(teamB, { publishedRealmURL: 'https://alice.boxel.site/blog/', publisher: BOB }), 'allowed domains (and their subdomains): bob.boxel.site.');
});

test('an opted-in namespace without annotations allows nothing (fail closed)', async () => {
  expectDenied(
    await dryRun(unannotated, { publishedRealmURL: 'https://alice.boxel.site/blog/', publisher: ALICE }),
    `spec.publisher "${ALICE}" is not allowed in namespace ${unannotated}; allowed publishers: none.`,
  );
  // The API server reports the first failing rule only: allow the publisher to reach the domain rule.
  await must(['annotate', 'namespace', unannotated, `realm-operator.dev/allowed-publishers=${ALICE}`]);
  expectDenied(
    await dryRun(unannotated, { publishedRealmURL: 'https://alice.boxel.site/blog/', publisher: ALICE }),
    `spec.publishedRealmURL host "alice.boxel.site" is not allowed in namespace ${unannotated}; allowed domains (and their subdomains): none.`,
  );
  // Entries that are not bare domains match nothing rather than something unexpected.
  await must(['annotate', 'namespace', unannotated, 'realm-operator.dev/allowed-domains=.alice.boxel.site,*.alice.boxel.site']);
  expectDenied(
    await dryRun(unannotated, { publishedRealmURL: 'https://www.alice.boxel.site/blog/', publisher: ALICE }),
    'host "www.alice.boxel.site" is not allowed in namespace',
  );
});

test('a namespace without the tenant label is not governed', async () => {
  expectAdmitted(await dryRun(ungoverned, { publishedRealmURL: 'https://bob.boxel.site/blog/', publisher: BOB }));
});

describe('updates', () => {
  const name = `blog-${suffix}`;
  const stored = { publishedRealmURL: 'https://alice.boxel.site/updated/', publisher: ALICE, revision: '1' };

  beforeAll(async () => {
    await must(['apply', '--server-side', '--field-manager=tenant-a', '-f', '-'], manifest(teamA, stored, name));
  });

  test('changing spec.publisher to a publisher the namespace does not allow is refused, and nothing is stored', async () => {
    const result = await kubectl(['apply', '--server-side', '--field-manager=tenant-a', '-f', '-'], { input: manifest(teamA, { ...stored, publisher: BOB }, name) });
    expectDenied(result, `spec.publisher "${BOB}" is not allowed in namespace ${teamA}`);
    expect(await must(['get', RESOURCE, name, '-n', teamA, '-o', 'jsonpath={.spec.publisher}'])).toBe(ALICE);
  });

  test('removing spec.publisher is refused', async () => {
    const result = await kubectl(['patch', RESOURCE, name, '-n', teamA, '--type=json', '-p', '[{"op":"remove","path":"/spec/publisher"}]']);
    expectDenied(result, `spec.publisher is required in namespace ${teamA}`);
  });

  test('changing spec.publisher to another allowed publisher, or the revision, is admitted', async () => {
    expectAdmitted(await kubectl(['patch', RESOURCE, name, '-n', teamA, '--type=merge', '-p', '{"spec":{"publisher":"@carol:boxel.ai","revision":"2"}}']));
    expect(await must(['get', RESOURCE, name, '-n', teamA, '-o', 'jsonpath={.spec.publisher} {.spec.revision}'])).toBe('@carol:boxel.ai 2');
  });

  test('after an admin revokes the publisher, spec changes are refused but finalizers can still be removed (a deletion can finish)', async () => {
    const revoked = `revoked-${suffix}`;
    await must(['apply', '--server-side', '--field-manager=tenant-a', '-f', '-'], manifest(teamA, { ...stored, publisher: '@carol:boxel.ai' }, revoked));
    await must(['patch', RESOURCE, revoked, '-n', teamA, '--type=merge', '-p', '{"metadata":{"finalizers":["realm-operator.dev/test"]}}']);
    await must(['annotate', 'namespace', teamA, '--overwrite', `realm-operator.dev/allowed-publishers=${ALICE}`]);
    try {
      expectDenied(
        await kubectl(['patch', RESOURCE, revoked, '-n', teamA, '--type=merge', '-p', '{"spec":{"revision":"2"}}']),
        `spec.publisher "@carol:boxel.ai" is not allowed in namespace ${teamA}; allowed publishers: ${ALICE}.`,
      );
      await must(['delete', RESOURCE, revoked, '-n', teamA, '--wait=false']);
      await must(['patch', RESOURCE, revoked, '-n', teamA, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
      const gone = await kubectl(['get', RESOURCE, revoked, '-n', teamA]);
      expect(gone.stderr).toContain('NotFound');
    } finally {
      await must(['annotate', 'namespace', teamA, '--overwrite', `realm-operator.dev/allowed-publishers=${ALICE}, @carol:boxel.ai`]);
    }
  });
});

describe('as tenant A\'s own identity (a service account allowed everything on PublishedRealms in its namespace)', () => {
  let asTenantA: string;
  beforeAll(async () => {
    asTenantA = await serviceAccountKubeconfig(teamA, 'publisher');
    await must(['create', 'role', 'publishedrealms-editor', '-n', teamA, '--verb=*', `--resource=${RESOURCE}`]);
    await must(['create', 'rolebinding', 'publishedrealms-editor', '-n', teamA, '--role=publishedrealms-editor', `--serviceaccount=${teamA}:publisher`]);
  });

  test('RBAC lets it create PublishedRealms; the policy still refuses B\'s publisher and B\'s domain', async () => {
    expectDenied(await dryRun(teamA, { publishedRealmURL: 'https://alice.boxel.site/rbac/', publisher: BOB }, asTenantA), `spec.publisher "${BOB}" is not allowed`);
    expectDenied(await dryRun(teamA, { publishedRealmURL: 'https://bob.boxel.site/rbac/', publisher: ALICE }, asTenantA), 'spec.publishedRealmURL host "bob.boxel.site" is not allowed');
    const created = await kubectl(['apply', '--server-side', '--field-manager=tenant-a', '-f', '-'], { input: manifest(teamA, { publishedRealmURL: 'https://alice.boxel.site/rbac/', publisher: ALICE }, `rbac-${suffix}`), kubeconfig: asTenantA });
    expect({ code: created.code, stderr: created.stderr }).toEqual({ code: 0, stderr: '' });
  });

  test('it cannot widen its own allowances: the Namespace (and its annotations) is the cluster admin\'s', async () => {
    const patch = JSON.stringify({ metadata: { annotations: { 'realm-operator.dev/allowed-publishers': BOB } } });
    const result = await kubectl(['patch', 'namespace', teamA, '--type=merge', '-p', patch], { kubeconfig: asTenantA });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(new RegExp(`User "system:serviceaccount:${teamA}:publisher" cannot \\w+ resource "namespaces"`));
    for (const verb of ['patch', 'update']) {
      expect((await kubectl(['auth', 'can-i', verb, `namespace/${teamA}`], { kubeconfig: asTenantA })).stdout.trim()).toBe('no');
    }
    expect(await must(['get', 'namespace', teamA, '-o', "jsonpath={.metadata.annotations['realm-operator\\.dev/allowed-publishers']}"])).toBe(`${ALICE}, @carol:boxel.ai`);
  });
});
