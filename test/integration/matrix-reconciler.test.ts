/**
 * The reconciler registers a published realm's own Matrix user, against the run's real
 * kube-apiserver and PostgreSQL and a real Synapse: once on the first publish (recorded in the
 * RealmUserRegistered condition, so a restarted operator or a republish registers nothing), not at
 * all without Matrix settings (status says so, publishing still works), and a failure holds Ready
 * back with RealmUserRegistrationFailed until a retry succeeds.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { GROUP, PLURAL, VERSION, type PublishedRealm } from '../../src/api/v1alpha1/published-realm-types.js';
import { publishedRealmUsername } from '../../src/dataplane/realm-identity.js';
import { realmUserPassword, registerRealmUser, type RegisteredRealmUser } from '../../src/matrix/realm-user.js';
import { PublishedRealmKube } from '../../src/reconciler/published-realm/kube.js';
import { PublishedRealmReconciler } from '../../src/reconciler/published-realm/reconciler.js';
import { kubeRequest } from '../../src/runtime/kube-client.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { installCRD } from '../support/e2e.js';
import { testKubeConfig } from '../support/kube.js';
import { createSourceRealm, makeRealmsRoot, silentLogger } from '../support/realms.js';
import { startSynapse, synapseUsers, type SynapseServer } from '../support/synapse.js';

const kube = testKubeConfig();
const namespace = `matrix-${randomBytes(3).toString('hex')}`;
const collection = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}`;
const seed = 'the realm secret seed';

let db: TestDatabase;
let realms: Awaited<ReturnType<typeof makeRealmsRoot>>;
let synapse: SynapseServer;

beforeAll(async () => {
  [db, realms, synapse] = await Promise.all([createTestDatabase(), makeRealmsRoot(), startSynapse()]);
  await installCRD();
  await kubeRequest(kube, { method: 'POST', path: '/api/v1/namespaces', body: { metadata: { name: namespace } } });
}, 300_000);

afterAll(async () => {
  await kubeRequest(kube, { method: 'DELETE', path: `/api/v1/namespaces/${namespace}` }).catch(() => undefined);
  await Promise.allSettled([db?.drop(), realms?.cleanup(), synapse?.stop()]);
});

/** A reconciler as the operator builds it; `registrations` counts calls to the homeserver. */
function operator(
  matrix: { registrationSharedSecret: string } | undefined,
  extra: Partial<ConstructorParameters<typeof PublishedRealmReconciler>[0]> = {},
): { reconciler: PublishedRealmReconciler; registrations: string[] } {
  const registrations: string[] = [];
  const reconciler = new PublishedRealmReconciler({
    ...extra,
    kube: new PublishedRealmKube(kube, silentLogger, 'matrix-test'),
    pool: db.pool,
    layout: realms.layout,
    logger: silentLogger,
    durable: false,
    ackWaitMs: 5_000,
    ...(matrix
      ? {
          registerRealmUser: (username: string): Promise<RegisteredRealmUser> => {
            registrations.push(username);
            return registerRealmUser({ matrixURL: synapse.url, registrationSharedSecret: matrix.registrationSharedSecret, realmSecretSeed: seed, username });
          },
        }
      : {}),
  });
  return { reconciler, registrations };
}

async function apply(name: string, spec: Record<string, unknown>): Promise<void> {
  await kubeRequest(kube, { method: 'POST', path: collection, body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'PublishedRealm', metadata: { name, namespace }, spec } });
}

async function read(name: string): Promise<PublishedRealm> {
  return kubeRequest<PublishedRealm>(kube, { path: `${collection}/${name}` });
}

const condition = (realm: PublishedRealm, type: string) => realm.status?.conditions?.find((c) => c.type === type);

/** Runs reconciles as the controller would (requeues included) until the object is Ready; rethrows after 20 tries. */
async function reconcileUntilReady(reconciler: PublishedRealmReconciler, name: string): Promise<PublishedRealm> {
  for (let attempt = 0; ; attempt++) {
    const result = await reconciler.reconcile({ namespace, name });
    const realm = await read(name);
    if (condition(realm, 'Ready')?.status === 'True') return realm;
    if (attempt > 20) throw new Error(`${name} not Ready: ${JSON.stringify(realm.status)}`);
    await new Promise((resolve) => setTimeout(resolve, result.requeueAfterMs ? Math.min(result.requeueAfterMs, 500) : 100));
  }
}

async function events(name: string): Promise<Array<{ reason: string; type: string; note: string; action: string }>> {
  const list = await kubeRequest<{ items: Array<{ reason: string; type: string; note: string; action: string; regarding: { name: string } }> }>(kube, {
    path: `/apis/events.k8s.io/v1/namespaces/${namespace}/events`,
  });
  return list.items.filter((e) => e.regarding.name === name);
}

async function loginStatus(username: string, password: string): Promise<number> {
  const response = await fetch(`${synapse.url}_matrix/client/v3/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ type: 'm.login.password', identifier: { type: 'm.id.user', user: username }, password }),
  });
  return response.status;
}

describe('the realm user on Matrix (real API server, PostgreSQL and Synapse)', () => {
  test('a first publish registers realm/_published_<disk id>; a restarted operator and a republish register nothing', async () => {
    const source = 'http://localhost:4201/matrix/first/';
    const published = 'http://pub.localhost/matrix/first/';
    await createSourceRealm(db.pool, realms.layout, source, { 'index.json': '{}' });
    await apply('first', { sourceRealmURL: source, publishedRealmURL: published, revision: '1' });

    const first = operator({ registrationSharedSecret: synapse.registrationSharedSecret });
    const realm = await reconcileUntilReady(first.reconciler, 'first');
    const username = publishedRealmUsername(realm.status!.diskId!);
    expect(first.registrations).toEqual([username]);
    expect(condition(realm, 'RealmUserRegistered')).toMatchObject({ status: 'True', reason: 'RealmUserRegistered' });
    expect(condition(realm, 'RealmUserRegistered')!.message).toContain(`@${username}:localhost`);
    expect(condition(realm, 'Ready')!.message).not.toContain('not registered');
    expect(await synapseUsers(synapse)).toContain(`@${username}:localhost`);
    expect(await loginStatus(username, realmUserPassword(username, seed))).toBe(200);
    expect((await events('first')).find((e) => e.reason === 'RealmUserRegistered')).toMatchObject({ type: 'Normal', action: 'RegisterRealmUser' });

    // A new operator process (nothing in memory) reconciling the same object: no registration.
    const restarted = operator({ registrationSharedSecret: synapse.registrationSharedSecret });
    await reconcileUntilReady(restarted.reconciler, 'first');
    await reconcileUntilReady(restarted.reconciler, 'first');
    expect(restarted.registrations).toEqual([]);

    // A republish keeps the disk id, so the same realm user: nothing to register.
    await kubeRequest(kube, { method: 'PATCH', path: `${collection}/first`, contentType: 'application/merge-patch+json', body: { spec: { revision: '2' } } });
    const republished = await reconcileUntilReady(restarted.reconciler, 'first');
    expect(republished.status!.publishedRevision).toBe('2');
    expect(republished.status!.diskId).toBe(realm.status!.diskId);
    expect(restarted.registrations).toEqual([]);
  });

  test('without Matrix settings: published and Ready (no other condition), Ready says the realm user was not registered; configuring Matrix later registers it', async () => {
    const source = 'http://localhost:4201/matrix/none/';
    await createSourceRealm(db.pool, realms.layout, source, { 'index.json': '{}' });
    await apply('none', { sourceRealmURL: source, publishedRealmURL: 'http://pub.localhost/matrix/none/' });

    const realm = await reconcileUntilReady(operator(undefined).reconciler, 'none');
    const username = publishedRealmUsername(realm.status!.diskId!);
    expect(condition(realm, 'Ready')!.message).toContain('Its realm user was not registered: the operator has no Matrix settings (--matrix-url');
    expect(realm.status!.conditions!.map((c) => c.type)).toEqual(['Ready']);
    expect(await synapseUsers(synapse)).not.toContain(`@${username}:localhost`);

    const configured = operator({ registrationSharedSecret: synapse.registrationSharedSecret });
    const registered = await reconcileUntilReady(configured.reconciler, 'none');
    expect(configured.registrations).toEqual([username]);
    expect(condition(registered, 'RealmUserRegistered')).toMatchObject({ status: 'True', reason: 'RealmUserRegistered' });
    expect(condition(registered, 'Ready')!.message).not.toContain('not registered');
  });

  test('a registration failure on a first publish publishes nothing (Boxel registers before writing permissions): Reconciling, RealmUserRegistrationFailed, Warning, until a retry succeeds', async () => {
    const source = 'http://localhost:4201/matrix/failing/';
    const published = 'http://pub.localhost/matrix/failing/';
    await createSourceRealm(db.pool, realms.layout, source, { 'index.json': '{}' });
    await apply('failing', { sourceRealmURL: source, publishedRealmURL: published });

    const misconfigured = operator({ registrationSharedSecret: 'not the shared secret' });
    await expect(misconfigured.reconciler.reconcile({ namespace, name: 'failing' })).rejects.toThrow('MATRIX_REGISTRATION_SHARED_SECRET_FILE');
    const failed = await read('failing');
    expect(condition(failed, 'Ready')).toMatchObject({ status: 'False', reason: 'RealmUserRegistrationFailed' });
    expect(condition(failed, 'Reconciling')).toMatchObject({ status: 'True', reason: 'RealmUserRegistrationFailed' });
    expect(condition(failed, 'RealmUserRegistered')).toMatchObject({ status: 'False', reason: 'RealmUserRegistrationFailed' });
    expect(condition(failed, 'Ready')!.message).toMatch(
      /^Registering its realm user realm\/_published_\S+ on Matrix failed, so nothing is published yet \(Boxel registers the realm user before writing its permissions\); retried: .*HMAC incorrect/,
    );
    expect((await events('failing')).find((e) => e.reason === 'RealmUserRegistrationFailed')).toMatchObject({ type: 'Warning' });
    // Nothing was published: no epoch, no registry row, no permissions.
    expect(failed.status!.epoch).toBeUndefined();
    expect((await db.pool.query('SELECT 1 FROM realm_registry WHERE url = $1', [published])).rows).toEqual([]);
    expect((await db.pool.query('SELECT 1 FROM realm_user_permissions WHERE realm_url = $1', [published])).rows).toEqual([]);

    let copies = 0;
    const fixed = operator({ registrationSharedSecret: synapse.registrationSharedSecret }, { onStep: (step) => void (step === 'staged' && copies++) });
    const ready = await reconcileUntilReady(fixed.reconciler, 'failing');
    // The disk id reserved before the failed registration is the one published, and registered once.
    expect(fixed.registrations).toEqual([publishedRealmUsername(ready.status!.diskId!)]);
    expect(condition(ready, 'RealmUserRegistered')).toMatchObject({ status: 'True' });
    expect(copies).toBe(1);
  });

  test("the realm user is registered before its permission row is written, and a user id other than the derived one publishes nothing (Stalled, naming both)", async () => {
    const source = 'http://localhost:4201/matrix/mismatch/';
    const published = 'http://pub.localhost/matrix/mismatch/';
    await createSourceRealm(db.pool, realms.layout, source, { 'index.json': '{}' });
    await apply('mismatch', { sourceRealmURL: source, publishedRealmURL: published });

    // The operator believes the homeserver is boxel.example; Synapse's server name is localhost.
    const wrong = operator({ registrationSharedSecret: synapse.registrationSharedSecret }, { matrixServerName: 'boxel.example' });
    await wrong.reconciler.reconcile({ namespace, name: 'mismatch' });
    const stalled = await read('mismatch');
    const username = wrong.registrations[0]!;
    expect(wrong.registrations).toEqual([username]);
    const message =
      `The homeserver registered the realm user as @${username}:localhost, but its permission row would name @${username}:boxel.example (from --matrix-server-name boxel.example), so nothing is published. ` +
      'Set --matrix-server-name / MATRIX_SERVER_NAME to the homeserver\'s server name (localhost).';
    expect(condition(stalled, 'Stalled')).toMatchObject({ status: 'True', reason: 'RealmUserRegistrationFailed', message });
    expect(condition(stalled, 'RealmUserRegistered')).toMatchObject({ status: 'False', reason: 'RealmUserRegistrationFailed', message });
    expect((await db.pool.query('SELECT 1 FROM realm_user_permissions WHERE realm_url = $1', [published])).rows).toEqual([]);
    expect((await db.pool.query('SELECT 1 FROM realm_registry WHERE url = $1', [published])).rows).toEqual([]);
    // It holds the URL's claim (the disk id is reserved for it), so it keeps the finalizer.
    expect(stalled.metadata.finalizers).toEqual(['realm-operator.dev/unpublish']);

    // With the right server name: the user exists on Synapse before the publish transaction writes its row.
    let registeredWhenLocked: boolean | undefined;
    const right = operator(
      { registrationSharedSecret: synapse.registrationSharedSecret },
      {
        matrixServerName: 'localhost',
        onStep: async (step) => {
          if (step === 'locked') registeredWhenLocked = (await synapseUsers(synapse)).includes(`@${username}:localhost`);
        },
      },
    );
    const ready = await reconcileUntilReady(right.reconciler, 'mismatch');
    expect(publishedRealmUsername(ready.status!.diskId!)).toBe(username);
    expect(registeredWhenLocked).toBe(true);
    const permissions = await db.pool.query('SELECT username FROM realm_user_permissions WHERE realm_url = $1 AND realm_owner ORDER BY username', [published]);
    expect(permissions.rows.map((r) => r.username)).toContain(`@${username}:localhost`);
    expect(permissions.rows.map((r) => r.username)).not.toContain(`@${username}:boxel.example`);
    // Registered once in this reconcile (before the publish), not again after it.
    expect(right.registrations).toEqual([username]);
  });

  test('spec.publisher gets realm-owner; spec.owner no longer names the owner or the reindex user: the realm user does', async () => {
    const source = 'http://localhost:4201/matrix/publisher/';
    const published = 'http://pub.localhost/matrix/publisher/';
    await createSourceRealm(db.pool, realms.layout, source, { 'index.json': '{}' });
    await apply('publisher', { sourceRealmURL: source, publishedRealmURL: published, publisher: '@pat:localhost', owner: 'alice' });

    const realm = await reconcileUntilReady(operator({ registrationSharedSecret: synapse.registrationSharedSecret }).reconciler, 'publisher');
    const username = publishedRealmUsername(realm.status!.diskId!);
    const owner = await db.pool.query('SELECT owner_username FROM realm_registry WHERE url = $1', [published]);
    expect(owner.rows).toEqual([{ owner_username: username }]);
    const permissions = await db.pool.query('SELECT username, read, realm_owner FROM realm_user_permissions WHERE realm_url = $1 ORDER BY username', [published]);
    expect(permissions.rows).toContainEqual({ username: '@pat:localhost', read: true, realm_owner: true });
    // The realm user's permission row names the user Synapse registered.
    expect(permissions.rows).toContainEqual({ username: `@${username}:localhost`, read: true, realm_owner: true });
    expect(permissions.rows.map((r) => r.username)).not.toContain('alice');
    const jobs = await db.pool.query(`SELECT args->>'realmUsername' AS realm_username FROM jobs WHERE concurrency_group = $1`, [`indexing:${published}`]);
    expect(jobs.rows).toEqual([{ realm_username: username }]);
  });
});
