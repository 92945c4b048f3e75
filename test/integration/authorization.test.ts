/**
 * Boxel's publish authorization rules against real PostgreSQL (data plane) and the real
 * kube-apiserver (reconciler): every refusal names the rule and the fix, and nothing is staged,
 * registered or copied; a publisher that lost realm-owner cannot unpublish.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { GROUP, PLURAL, UNPUBLISH_FINALIZER, VERSION, type PublishedRealm } from '../../src/api/v1alpha1/published-realm-types.js';
import type { PublishAuthorization } from '../../src/dataplane/authorization.js';
import { checkPublishable, publishRealm, unpublishRealm, type DataPlane } from '../../src/dataplane/publish.js';
import { PublishNotAuthorizedError } from '../../src/dataplane/realm-state.js';
import { PublishedRealmKube } from '../../src/reconciler/published-realm/kube.js';
import { PublishedRealmReconciler } from '../../src/reconciler/published-realm/reconciler.js';
import { kubeRequest } from '../../src/runtime/kube-client.js';
import { readPublishedLink } from '../../src/dataplane/published-content.js';
import { installCRD } from '../support/e2e.js';
import { testKubeConfig } from '../support/kube.js';
import { createSourceRealm, dataPlane, openDataPlaneFixture, silentLogger, SOURCE_OWNER_USER_ID, type DataPlaneFixture } from '../support/realms.js';

const policy: PublishAuthorization = { publishedRealmDomains: ['boxel.site', 'boxel.space'], spaceDomain: 'boxel.space' };

let fixture: DataPlaneFixture;
let plane: DataPlane;
let steps: string[];
let counter = 0;

beforeAll(async () => {
  fixture = await openDataPlaneFixture();
  steps = [];
  plane = dataPlane(fixture.db.pool, fixture.layout, { authorization: policy, onStep: (step) => void steps.push(step) });
});
afterAll(() => fixture.close());

async function newSource(files: Record<string, string> = { 'index.json': '{}' }): Promise<string> {
  counter += 1;
  const url = `http://localhost:4201/owner/src-${counter}/`;
  await createSourceRealm(fixture.db.pool, fixture.layout, url, files);
  return url;
}

async function rowsFor(url: string) {
  const q = (sql: string) => fixture.db.pool.query(sql, [url]).then((r) => r.rows.length);
  return {
    registry: await q('SELECT 1 FROM realm_registry WHERE url = $1'),
    permissions: await q('SELECT 1 FROM realm_user_permissions WHERE realm_url = $1'),
    metadata: await q('SELECT 1 FROM realm_metadata WHERE url = $1'),
    epochs: await q('SELECT 1 FROM realm_operator.realm_epochs WHERE realm_url = $1'),
  };
}

const nothing = { registry: 0, permissions: 0, metadata: 0, epochs: 0 };

/** Refused by checkPublishable and by publishRealm with the rule named, and nothing written or staged. */
async function expectRefused(request: { sourceRealmURL: string; publishedRealmURL: string; publisher?: string }, rule: string, message: string): Promise<void> {
  steps.length = 0;
  await expect(checkPublishable(plane, request)).rejects.toMatchObject({ name: 'PublishNotAuthorizedError', rule, message });
  const error = await publishRealm(plane, request).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(PublishNotAuthorizedError);
  expect(error).toMatchObject({ rule, message });
  expect(steps).toEqual([]);
  expect(await rowsFor(request.publishedRealmURL)).toEqual(nothing);
  expect(await fs.readdir(fixture.layout.stagingRoot).catch(() => [])).toEqual([]);
}

describe('publish authorization in the data plane (real PostgreSQL)', () => {
  test('the source owner publishes under a configured domain', async () => {
    const source = await newSource();
    const result = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: 'https://owner.boxel.site/' });
    expect(result.fileCount).toBe(1);
    expect((await rowsFor('https://owner.boxel.site/')).registry).toBe(1);
  });

  test('a host outside the configured domains is refused, also one that only ends with the domain (no dot boundary)', async () => {
    const source = await newSource();
    for (const url of ['https://evilboxel.site/', 'https://owner.evilboxel.site/r/', 'https://boxel.site.evil.example/']) {
      await expectRefused(
        { sourceRealmURL: source, publishedRealmURL: url },
        'published-realm-domain',
        `publishedRealmURL ${url} is not under a published-realm domain (boxel.site, boxel.space); use a host that is one of them or ends with "." and one of them, or add its domain to --published-realm-domains`,
      );
    }
  });

  test('a publisher without realm-owner on the source is refused; a read/write row or the * row does not count', async () => {
    const source = await newSource();
    await fixture.db.pool.query(`INSERT INTO realm_user_permissions (realm_url, username, read, write, realm_owner) VALUES ($1, '@eve:localhost', true, true, false), ($1, '*', true, true, true)`, [source]);
    await expectRefused(
      { sourceRealmURL: source, publishedRealmURL: 'https://eve.boxel.site/', publisher: '@eve:localhost' },
      'realm-owner',
      `@eve:localhost does not hold realm-owner on the source realm ${source}, so may not publish it; set spec.publisher to a Matrix user id that owns the source realm, or grant that user realm-owner on it in Boxel`,
    );
    // Another owner of the same source may publish it.
    await fixture.db.pool.query(`UPDATE realm_user_permissions SET realm_owner = true WHERE realm_url = $1 AND username = '@eve:localhost'`, [source]);
    await expect(publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: 'https://eve.boxel.site/', publisher: '@eve:localhost' })).resolves.toMatchObject({ fileCount: 1 });
  });

  test('a source that is not publishable (false, NULL or no realm_metadata row) is refused', async () => {
    for (const state of ['false', 'null', 'missing'] as const) {
      const source = await newSource();
      if (state === 'missing') await fixture.db.pool.query('DELETE FROM realm_metadata WHERE url = $1', [source]);
      else await fixture.db.pool.query(`UPDATE realm_metadata SET publishable = ${state} WHERE url = $1`, [source]);
      await expectRefused(
        { sourceRealmURL: source, publishedRealmURL: `https://site-${state}.boxel.site/` },
        'publishable',
        `source realm ${source} is not publishable (realm_metadata.publishable is not true); mark it publishable in Boxel (fix what its publishability check reports) and the publish is retried`,
      );
    }
  });

  test("own space: only the realm's name or its unlisted slug (read from Boxel's unlisted_realm_paths)", async () => {
    const source = await newSource();
    const name = new URL(source).pathname.split('/').filter(Boolean).pop()!;
    await expectRefused(
      { sourceRealmURL: source, publishedRealmURL: 'https://owner.boxel.space/chosen/' },
      'own-space-path',
      `publishedRealmURL https://owner.boxel.space/chosen/ is on ${SOURCE_OWNER_USER_ID}'s own space owner.boxel.space, where the path must be the source realm's name or its server-issued unlisted link; use https://owner.boxel.space/${name}/`,
    );
    await fixture.db.pool.query('CREATE TABLE IF NOT EXISTS unlisted_realm_paths (source_realm_url varchar PRIMARY KEY, slug varchar NOT NULL, owner_user_id varchar NOT NULL)');
    await fixture.db.pool.query(`INSERT INTO unlisted_realm_paths VALUES ($1, 'k3y9slug', $2)`, [source, SOURCE_OWNER_USER_ID]);
    await expect(publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: 'https://owner.boxel.space/k3y9slug/' })).resolves.toMatchObject({ fileCount: 1 });
    await expect(publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: `https://owner.boxel.space/${name}/` })).resolves.toMatchObject({ fileCount: 1 });
    // Someone else's space host is not the own-space rule's business (realm-owner still is).
    await expect(publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: 'https://anna.boxel.space/anything/' })).resolves.toMatchObject({ fileCount: 1 });
  });

  test("a URL Boxel published from another source is adopted only by an owner of that source; nothing of it changes otherwise", async () => {
    const alices = await newSource();
    const eves = await newSource();
    await fixture.db.pool.query(`INSERT INTO realm_user_permissions (realm_url, username, read, write, realm_owner) VALUES ($1, '@eve:localhost', true, true, true)`, [eves]);
    const url = 'https://alice.boxel.site/';
    const diskId = '6b1c5a0e-0000-4000-8000-0000000000aa';
    await fixture.db.pool.query(
      `INSERT INTO realm_registry (url, kind, disk_id, owner_username, source_url, last_published_at) VALUES ($1, 'published', $2, $3, $4, 1000)`,
      [url, diskId, `realm/_published_${diskId}`, alices],
    );
    steps.length = 0;
    await expect(publishRealm(plane, { sourceRealmURL: eves, publishedRealmURL: url, publisher: '@eve:localhost' })).rejects.toMatchObject({
      rule: 'realm-owner',
      message: `${url} is already published from ${alices}, on which @eve:localhost does not hold realm-owner, so may not replace it; choose another publishedRealmURL, or have an owner of ${alices} unpublish it first`,
    });
    expect(steps).toEqual([]);
    expect((await fixture.db.pool.query('SELECT source_url, last_published_at FROM realm_registry WHERE url = $1', [url])).rows).toEqual([{ source_url: alices, last_published_at: '1000' }]);
    // The owner of both sources may move it to the other source.
    await expect(publishRealm(plane, { sourceRealmURL: eves, publishedRealmURL: url })).resolves.toMatchObject({ diskId });
  });

  test('checked again under the lock: realm-owner revoked while staging refuses the publish and writes nothing', async () => {
    const source = await newSource();
    const url = 'https://late.boxel.site/';
    const revoking: DataPlane = {
      ...plane,
      onStep: async (step) => {
        if (step === 'staged') await fixture.db.pool.query(`UPDATE realm_user_permissions SET realm_owner = false WHERE realm_url = $1`, [source]);
      },
    };
    await expect(publishRealm(revoking, { sourceRealmURL: source, publishedRealmURL: url })).rejects.toMatchObject({ rule: 'realm-owner' });
    const written = await rowsFor(url);
    // The disk id reservation may leave an epochs row; nothing Boxel reads is written.
    expect({ registry: written.registry, permissions: written.permissions, metadata: written.metadata }).toEqual({ registry: 0, permissions: 0, metadata: 0 });
  });

  test('unpublish: refused for a publisher without realm-owner on the source (left published), allowed for the owner', async () => {
    const source = await newSource();
    const url = 'https://keep.boxel.site/';
    await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: url });
    const refused = await unpublishRealm(plane, url, {}, '@eve:localhost').catch((e: unknown) => e);
    expect(refused).toMatchObject({
      name: 'PublishNotAuthorizedError',
      rule: 'realm-owner',
      message: `@eve:localhost does not hold realm-owner on the source realm ${source}, so may not unpublish it; set spec.publisher to a Matrix user id that owns the source realm, or grant that user realm-owner on it in Boxel`,
    });
    expect((await rowsFor(url)).registry).toBe(1);
    expect((await fs.readdir(fixture.layout.publishedRoot)).length).toBeGreaterThan(0);
    // Without a publisher, the source owner acts: allowed.
    await expect(unpublishRealm(plane, url)).resolves.toMatchObject({ unpublished: true });
    expect((await rowsFor(url)).registry).toBe(0);
  });

  test("PUBLISHED_REALM_DOMAIN_OVERRIDES: a publisher with write (not realm-owner) publishes the listed source on its custom host only; without write the host is refused naming the override", async () => {
    const source = await newSource();
    const other = await newSource();
    const custom: DataPlane = { ...plane, authorization: { ...policy, domainOverrides: { [source]: 'www.custom.example' } } };
    // A writer, not an owner, with no space or site domain of its own: Boxel's override applies.
    await fixture.db.pool.query(`INSERT INTO realm_user_permissions (realm_url, username, read, write, realm_owner) VALUES ($1, '@writer:localhost', true, true, false)`, [source]);
    await expect(publishRealm(custom, { sourceRealmURL: source, publishedRealmURL: 'https://www.custom.example/', publisher: '@writer:localhost' })).resolves.toMatchObject({ fileCount: 1 });
    // Not a subdomain of the override host, and not for another source: the ordinary rules apply.
    await expect(checkPublishable(custom, { sourceRealmURL: source, publishedRealmURL: 'https://x.www.custom.example/', publisher: '@writer:localhost' })).rejects.toMatchObject({
      rule: 'published-realm-domain',
    });
    await expect(checkPublishable(custom, { sourceRealmURL: other, publishedRealmURL: 'https://www.custom.example:8443/' })).rejects.toMatchObject({ rule: 'published-realm-domain' });
    // Read only: refused with the override named.
    await fixture.db.pool.query(`INSERT INTO realm_user_permissions (realm_url, username, read, write, realm_owner) VALUES ($1, '@reader:localhost', true, false, false)`, [source]);
    await expect(checkPublishable(custom, { sourceRealmURL: source, publishedRealmURL: 'http://www.custom.example/', publisher: '@reader:localhost' })).rejects.toMatchObject({
      rule: 'published-realm-domain',
      message: `publishedRealmURL http://www.custom.example/ is on www.custom.example, the PUBLISHED_REALM_DOMAIN_OVERRIDES host of ${source}, which only a publisher with write on that source may use, and @reader:localhost has none; grant @reader:localhost write on ${source} in Boxel, or use a host under a published-realm domain`,
    });
    // Publishable still applies on the override host, as in Boxel.
    await fixture.db.pool.query('UPDATE realm_metadata SET publishable = false WHERE url = $1', [source]);
    await expect(checkPublishable(custom, { sourceRealmURL: source, publishedRealmURL: 'https://www.custom.example/', publisher: '@writer:localhost' })).rejects.toMatchObject({ rule: 'publishable' });
  });

  test('a data plane without authorization settings checks none of the rules', async () => {
    const source = await newSource();
    await fixture.db.pool.query('UPDATE realm_metadata SET publishable = false WHERE url = $1', [source]);
    const open = dataPlane(fixture.db.pool, fixture.layout);
    await expect(publishRealm(open, { sourceRealmURL: source, publishedRealmURL: 'https://evilboxel.site/x/', publisher: '@eve:localhost' })).resolves.toMatchObject({ fileCount: 1 });
  });
});

describe('publish authorization in the reconciler (real API server)', () => {
  const kube = testKubeConfig();
  const namespace = `authz-${randomBytes(3).toString('hex')}`;
  const collection = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}`;
  let reconciler: PublishedRealmReconciler;
  let copies: number;

  beforeAll(async () => {
    await installCRD();
    await kubeRequest(kube, { method: 'POST', path: '/api/v1/namespaces', body: { metadata: { name: namespace } } });
    copies = 0;
    reconciler = new PublishedRealmReconciler({
      kube: new PublishedRealmKube(kube, silentLogger, 'authorization-test'),
      pool: fixture.db.pool,
      layout: fixture.layout,
      logger: silentLogger,
      durable: false,
      ackWaitMs: 1_000,
      authorization: policy,
      onStep: (step) => {
        if (step === 'staged') copies += 1;
      },
    });
  }, 60_000);
  afterAll(async () => {
    await kubeRequest(kube, { method: 'DELETE', path: `/api/v1/namespaces/${namespace}` }).catch(() => undefined);
  });

  const apply = (name: string, spec: Record<string, unknown>) =>
    kubeRequest(kube, { method: 'POST', path: collection, body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'PublishedRealm', metadata: { name, namespace }, spec } });
  const read = (name: string) => kubeRequest<PublishedRealm>(kube, { path: `${collection}/${name}` });
  const condition = (realm: PublishedRealm, type: string) => realm.status?.conditions?.find((c) => c.type === type);
  /** Reconciles as the controller would (requeues included) until Ready; throws after 20 tries. */
  const reconcileUntilReady = async (name: string): Promise<PublishedRealm> => {
    for (let attempt = 0; ; attempt++) {
      await reconciler.reconcile({ namespace, name });
      const realm = await read(name);
      if (condition(realm, 'Ready')?.status === 'True') return realm;
      if (attempt > 20) throw new Error(`${name} not Ready: ${JSON.stringify(realm.status)}`);
    }
  };
  const eventsOf = async (name: string) =>
    (await kubeRequest<{ items: { reason: string; type: string; note: string; regarding: { name: string } }[] }>(kube, { path: `/apis/events.k8s.io/v1/namespaces/${namespace}/events` })).items.filter(
      (e) => e.regarding.name === name,
    );

  test('a publisher without realm-owner is Stalled NotAuthorized with the rule and the fix; nothing is copied', async () => {
    const source = await newSource();
    await apply('eve', { sourceRealmURL: source, publishedRealmURL: 'https://eve-r.boxel.site/', publisher: '@eve:localhost' });
    await reconciler.reconcile({ namespace, name: 'eve' });
    const realm = await read('eve');
    expect(condition(realm, 'Stalled')).toMatchObject({
      status: 'True',
      reason: 'NotAuthorized',
      message: `@eve:localhost does not hold realm-owner on the source realm ${source}, so may not publish it; set spec.publisher to a Matrix user id that owns the source realm, or grant that user realm-owner on it in Boxel.`,
    });
    expect(copies).toBe(0);
    expect(await rowsFor('https://eve-r.boxel.site/')).toEqual(nothing);
    // Refused before it claimed the URL: no finalizer, so deleting it is instant.
    expect(realm.metadata.finalizers).toBeUndefined();
    await kubeRequest(kube, { method: 'DELETE', path: `${collection}/eve` });
    await expect(read('eve')).rejects.toThrow(/404/);
  });

  test("an object whose publish never went through (no source, no publisher) cannot unpublish the site Boxel published at its URL by being deleted", async () => {
    const carols = await newSource();
    const url = 'https://carol.boxel.site/';
    const diskId = '6b1c5a0e-0000-4000-8000-0000000000cc';
    await fixture.db.pool.query(
      `INSERT INTO realm_registry (url, kind, disk_id, owner_username, source_url, last_published_at) VALUES ($1, 'published', $2, $3, $4, 1000)`,
      [url, diskId, `realm/_published_${diskId}`, carols],
    );
    await fixture.db.pool.query(`INSERT INTO realm_user_permissions (realm_url, username, read, write, realm_owner) VALUES ($1, '*', true, false, false)`, [url]);
    await apply('hostile', { sourceRealmURL: 'http://localhost:4201/nobody/missing/', publishedRealmURL: url });
    await reconciler.reconcile({ namespace, name: 'hostile' });
    const stalled = await read('hostile');
    expect(condition(stalled, 'Stalled')).toMatchObject({ status: 'True', reason: 'SourceRealmUnavailable' });
    // It never held the URL's claim, so it never got the finalizer: the API server deletes it at once.
    expect(stalled.metadata.finalizers).toBeUndefined();
    await kubeRequest(kube, { method: 'DELETE', path: `${collection}/hostile` });
    await expect(read('hostile')).rejects.toThrow(/404/);
    // Boxel's site is untouched: registry row, permissions, no epoch of ours.
    expect(await rowsFor(url)).toMatchObject({ registry: 1, permissions: 1, epochs: 0 });
  });

  test('a refused object carrying the finalizer an earlier version added up front loses it, so it too deletes at once', async () => {
    await kubeRequest(kube, {
      method: 'POST',
      path: collection,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'PublishedRealm',
        metadata: { name: 'legacy-finalizer', namespace, finalizers: [UNPUBLISH_FINALIZER] },
        spec: { sourceRealmURL: 'http://localhost:4201/nobody/missing-too/', publishedRealmURL: 'https://legacy.boxel.site/' },
      },
    });
    await reconciler.reconcile({ namespace, name: 'legacy-finalizer' });
    const realm = await read('legacy-finalizer');
    expect(condition(realm, 'Stalled')).toMatchObject({ status: 'True', reason: 'SourceRealmUnavailable' });
    expect(realm.metadata.finalizers).toBeUndefined();
    await kubeRequest(kube, { method: 'DELETE', path: `${collection}/legacy-finalizer` });
    await expect(read('legacy-finalizer')).rejects.toThrow(/404/);
  });

  test('re-checked on every reconcile: a publisher that loses realm-owner, or a source no longer publishable, is Stalled NotAuthorized; the live content stays, nothing is republished, and it recovers once fixed', async () => {
    const source = await newSource();
    const url = 'https://recheck.boxel.site/';
    await apply('recheck', { sourceRealmURL: source, publishedRealmURL: url, publisher: SOURCE_OWNER_USER_ID });
    const before = copies;
    const ready = await reconcileUntilReady('recheck');
    expect(copies).toBe(before + 1);
    // It holds the URL's claim and published: it has the finalizer.
    expect(ready.metadata.finalizers).toEqual([UNPUBLISH_FINALIZER]);
    const epoch = ready.status!.epoch;

    await fixture.db.pool.query('UPDATE realm_user_permissions SET realm_owner = false WHERE realm_url = $1 AND username = $2', [source, SOURCE_OWNER_USER_ID]);
    await reconciler.reconcile({ namespace, name: 'recheck' });
    let realm = await read('recheck');
    expect(condition(realm, 'Ready')).toMatchObject({ status: 'False', reason: 'NotAuthorized' });
    expect(condition(realm, 'Stalled')).toMatchObject({
      status: 'True',
      reason: 'NotAuthorized',
      message:
        `${SOURCE_OWNER_USER_ID} does not hold realm-owner on the source realm ${source}, so may not publish it; set spec.publisher to a Matrix user id that owns the source realm, or grant that user realm-owner on it in Boxel. ` +
        `Re-checked after publishing: epoch ${epoch} stays served as it is, and nothing is republished until the rule passes again. ` +
        'The operator does not unpublish on its own initiative (that would take the site down and lose what it serves); ' +
        'fix the rule, or delete this PublishedRealm to unpublish it (which needs realm-owner on the source realm).',
    });
    expect(realm.metadata.finalizers).toEqual([UNPUBLISH_FINALIZER]);
    // Still published, same epoch; a new revision is not copied either.
    expect(await rowsFor(url)).toMatchObject({ registry: 1, permissions: 3 });
    await kubeRequest(kube, { method: 'PATCH', path: `${collection}/recheck`, contentType: 'application/merge-patch+json', body: { spec: { revision: '2' } } });
    await reconciler.reconcile({ namespace, name: 'recheck' });
    expect(condition(await read('recheck'), 'Stalled')).toMatchObject({ reason: 'NotAuthorized' });
    expect(copies).toBe(before + 1);
    await kubeRequest(kube, { method: 'PATCH', path: `${collection}/recheck`, contentType: 'application/merge-patch+json', body: { spec: { revision: null } } });
    expect((await fixture.db.pool.query('SELECT epoch FROM realm_operator.realm_epochs WHERE realm_url = $1', [url])).rows).toEqual([{ epoch: String(epoch) }]);

    // realm-owner restored: Ready again without a copy. Then the source stops being publishable.
    await fixture.db.pool.query('UPDATE realm_user_permissions SET realm_owner = true WHERE realm_url = $1 AND username = $2', [source, SOURCE_OWNER_USER_ID]);
    await reconcileUntilReady('recheck');
    expect(copies).toBe(before + 1);
    await fixture.db.pool.query('UPDATE realm_metadata SET publishable = false WHERE url = $1', [source]);
    await reconciler.reconcile({ namespace, name: 'recheck' });
    realm = await read('recheck');
    expect(condition(realm, 'Stalled')).toMatchObject({ status: 'True', reason: 'NotAuthorized' });
    expect(condition(realm, 'Stalled')!.message).toMatch(/^source realm \S+ is not publishable .*Re-checked after publishing: epoch \d+ stays served as it is/);
    expect((await rowsFor(url)).registry).toBe(1);
    await fixture.db.pool.query('UPDATE realm_metadata SET publishable = true WHERE url = $1', [source]);
    await reconcileUntilReady('recheck');
    expect(copies).toBe(before + 1);
  });

  test('rollback is authorized like a publish: a publisher that lost realm-owner cannot switch the served version (Stalled NotAuthorized, the live version stays); restored, it rolls back', async () => {
    const source = await newSource({ 'index.json': '{"v":1}' });
    const url = 'https://rollback-auth.boxel.site/';
    await apply('rollback-auth', { sourceRealmURL: source, publishedRealmURL: url, publisher: SOURCE_OWNER_USER_ID, revision: 1 });
    const first = await reconcileUntilReady('rollback-auth');
    const v1 = first.status!.liveVersion!;
    await kubeRequest(kube, { method: 'PATCH', path: `${collection}/rollback-auth`, contentType: 'application/merge-patch+json', body: { spec: { revision: 2 } } });
    const second = await reconcileUntilReady('rollback-auth');
    const v2 = second.status!.liveVersion!;
    expect(second.status!.versions!.map((v) => v.version)).toEqual([v2, v1]);

    await fixture.db.pool.query('UPDATE realm_user_permissions SET realm_owner = false WHERE realm_url = $1 AND username = $2', [source, SOURCE_OWNER_USER_ID]);
    await kubeRequest(kube, { method: 'PATCH', path: `${collection}/rollback-auth`, contentType: 'application/merge-patch+json', body: { spec: { rollbackTo: v1 } } });
    await reconciler.reconcile({ namespace, name: 'rollback-auth' });
    const refused = await read('rollback-auth');
    expect(condition(refused, 'Stalled')).toMatchObject({ status: 'True', reason: 'NotAuthorized' });
    expect(condition(refused, 'Stalled')!.message).toContain(`does not hold realm-owner on the source realm ${source}`);
    expect(await readPublishedLink(fixture.layout, second.status!.diskId!)).toEqual({ kind: 'version', version: v2 });
    expect((await fixture.db.pool.query('SELECT epoch FROM realm_operator.realm_epochs WHERE realm_url = $1', [url])).rows).toEqual([{ epoch: String(second.status!.epoch) }]);

    await fixture.db.pool.query('UPDATE realm_user_permissions SET realm_owner = true WHERE realm_url = $1 AND username = $2', [source, SOURCE_OWNER_USER_ID]);
    const rolled = await reconcileUntilReady('rollback-auth');
    expect(condition(rolled, 'Ready')).toMatchObject({ status: 'True', reason: 'RolledBack' });
    expect(await readPublishedLink(fixture.layout, second.status!.diskId!)).toEqual({ kind: 'version', version: v1 });
  });

  test('deleting a PublishedRealm whose publisher no longer holds realm-owner leaves it published with a NotUnpublished Warning', async () => {
    const source = await newSource();
    const url = 'https://revoked.boxel.site/';
    const before = copies;
    await apply('revoked', { sourceRealmURL: source, publishedRealmURL: url, publisher: SOURCE_OWNER_USER_ID });
    await reconciler.reconcile({ namespace, name: 'revoked' });
    expect((await rowsFor(url)).registry).toBe(1);
    expect(copies).toBe(before + 1);
    expect((await read('revoked')).metadata.finalizers).toEqual([UNPUBLISH_FINALIZER]);
    // Ownership of the source moves away from the publisher in Boxel.
    await fixture.db.pool.query('UPDATE realm_user_permissions SET realm_owner = false WHERE realm_url = $1 AND username = $2', [source, SOURCE_OWNER_USER_ID]);
    await kubeRequest(kube, { method: 'DELETE', path: `${collection}/revoked` });
    await reconciler.reconcile({ namespace, name: 'revoked' });
    expect((await rowsFor(url)).registry).toBe(1);
    const warnings = (await eventsOf('revoked')).filter((e) => e.reason === 'NotUnpublished');
    expect(warnings).toEqual([
      expect.objectContaining({
        type: 'Warning',
        note: `${SOURCE_OWNER_USER_ID} does not hold realm-owner on the source realm ${source}, so may not unpublish it; set spec.publisher to a Matrix user id that owns the source realm, or grant that user realm-owner on it in Boxel; left it published.`,
      }),
    ]);
    // The finalizer is released: the object is gone, the realm stays published.
    await expect(read('revoked')).rejects.toThrow();
  });
});
