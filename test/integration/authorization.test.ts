/**
 * Boxel's publish authorization rules against real PostgreSQL (data plane) and the real
 * kube-apiserver (reconciler): every refusal names the rule and the fix, and nothing is staged,
 * registered or copied; a publisher that lost realm-owner cannot unpublish.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { GROUP, PLURAL, VERSION, type PublishedRealm } from '../../src/api/v1alpha1/published-realm-types.js';
import type { PublishAuthorization } from '../../src/dataplane/authorization.js';
import { checkPublishable, publishRealm, unpublishRealm, type DataPlane } from '../../src/dataplane/publish.js';
import { PublishNotAuthorizedError } from '../../src/dataplane/realm-state.js';
import { PublishedRealmKube } from '../../src/reconciler/published-realm/kube.js';
import { PublishedRealmReconciler } from '../../src/reconciler/published-realm/reconciler.js';
import { kubeRequest } from '../../src/runtime/kube-client.js';
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
    expect(condition(await read('hostile'), 'Stalled')).toMatchObject({ status: 'True', reason: 'SourceRealmUnavailable' });
    await kubeRequest(kube, { method: 'DELETE', path: `${collection}/hostile` });
    await reconciler.reconcile({ namespace, name: 'hostile' });
    // Boxel's site is untouched: registry row, permissions, no epoch of ours.
    expect(await rowsFor(url)).toMatchObject({ registry: 1, permissions: 1, epochs: 0 });
    expect((await eventsOf('hostile')).filter((e) => e.reason === 'NotUnpublished')).toEqual([
      expect.objectContaining({ type: 'Warning', note: `${url} was not published by this PublishedRealm; left it published.` }),
    ]);
    await expect(read('hostile')).rejects.toThrow();
  });

  test('deleting a PublishedRealm whose publisher no longer holds realm-owner leaves it published with a NotUnpublished Warning', async () => {
    const source = await newSource();
    const url = 'https://revoked.boxel.site/';
    await apply('revoked', { sourceRealmURL: source, publishedRealmURL: url, publisher: SOURCE_OWNER_USER_ID });
    await reconciler.reconcile({ namespace, name: 'revoked' });
    expect((await rowsFor(url)).registry).toBe(1);
    expect(copies).toBe(1);
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
