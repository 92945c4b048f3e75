/**
 * The Realm reconciler against the run's real kube-apiserver and PostgreSQL, with a real LISTEN
 * client: creating leaves exactly what Boxel's create-realm leaves (rows, files, the index job,
 * NOTIFYs); a URL already taken is refused naming the field; adopting touches no file; deleting a
 * Realm with three published realms leaves Boxel's delete-realm end state and sends its NOTIFYs in
 * its order; Retain keeps everything.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { REALM_FINALIZER, REALM_KIND, type Realm } from '../../src/api/v1alpha1/realm-types.js';
import { publishRealm } from '../../src/dataplane/publish.js';
import { deleteSourceRealmRows, INITIAL_INDEX_JSON, initialRealmJSON } from '../../src/dataplane/realm-lifecycle.js';
import { RealmReconciler } from '../../src/reconciler/realm/reconciler.js';
import { kubeRequest } from '../../src/runtime/kube-client.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { kubectl, testKubeConfig } from '../support/kube.js';
import { realmKube, realmObjects, setUpRealmNamespace } from '../support/realm-objects.js';
import { createSourceRealm, dataPlane, eventually, insertIndexEntries, makeRealmsRoot, readTree, recordNotifications, silentLogger, writeFiles } from '../support/realms.js';

const kube = testKubeConfig();
const namespace = `realm-life-${randomBytes(3).toString('hex')}`;
const SERVER = 'http://realms.test:4201/';
const OWNER = '@alice:localhost';

let db: TestDatabase;
let realms: Awaited<ReturnType<typeof makeRealmsRoot>>;
let reconciler: RealmReconciler;

beforeAll(async () => {
  db = await createTestDatabase();
  realms = await makeRealmsRoot();
  await setUpRealmNamespace(namespace);
  reconciler = new RealmReconciler({
    kube: realmKube('realm-lifecycle-test'),
    plane: dataPlane(db.pool, realms.layout),
    logger: silentLogger,
    defaultServerURL: SERVER,
    ackWaitMs: 2_000,
  });
}, 60_000);

afterAll(async () => {
  await kubectl(['delete', 'namespace', namespace, '--wait=false']);
  await db?.drop();
  await realms?.cleanup();
});

const objects = realmObjects(namespace);
const apply = objects.create;
const read = objects.read;

async function reconcile(name: string) {
  return reconciler.reconcile({ namespace, name });
}

/** Deletes the object and reconciles until it is gone (the finalizer released). */
async function deleteAndFinalize(name: string): Promise<void> {
  await objects.remove(name);
  for (let attempt = 0; attempt < 10 && (await read(name)); attempt++) await reconcile(name);
  expect(await read(name)).toBeUndefined();
}

function condition(realm: Realm | undefined, type: string) {
  return realm?.status?.conditions?.find((c) => c.type === type);
}

async function rowsFor(url: string) {
  const q = async (sql: string) => (await db.pool.query(sql, [url])).rows;
  return {
    registry: await q('SELECT url, kind, disk_id, owner_username, source_url, pinned FROM realm_registry WHERE url = $1'),
    permissions: await q('SELECT username, read, write, realm_owner FROM realm_user_permissions WHERE realm_url = $1 ORDER BY username'),
    metadata: await q('SELECT publishable, show_as_catalog FROM realm_metadata WHERE url = $1'),
    index: await q('SELECT url FROM boxel_index WHERE realm_url = $1'),
    jobs: await q(`SELECT job_type, args, concurrency_group, priority, timeout, status FROM jobs WHERE concurrency_group = 'indexing:' || $1 ORDER BY id`),
  };
}

/** The events.k8s.io Events about a Realm, as `reason/type`. */
async function eventsOf(name: string): Promise<string[]> {
  const list = await kubeRequest<{ items: Array<{ reason: string; type: string; regarding: { name: string; kind: string } }> }>(kube, {
    path: `/apis/events.k8s.io/v1/namespaces/${namespace}/events`,
  });
  return list.items.filter((e) => e.regarding.kind === REALM_KIND && e.regarding.name === name).map((e) => `${e.reason}/${e.type}`);
}

const exists = (target: string) => fs.lstat(target).then(() => true, () => false);

describe('creating a Realm', () => {
  test('writes exactly what Boxel\'s create-realm writes, with its NOTIFYs, once', async () => {
    const listener = await recordNotifications(db.url, ['realm_registry', 'jobs']);
    try {
      await apply('notes', { owner: OWNER, endpoint: 'notes', name: 'My Notes', iconURL: 'https://icons.test/n.png', backgroundURL: 'https://bg.test/b.jpg' });
      await reconcile('notes');
      const url = `${SERVER}alice/notes/`;
      const object = await read('notes');
      expect(condition(object, 'Ready')).toMatchObject({ status: 'True', reason: 'Created' });
      expect(object?.status).toMatchObject({ url, diskId: 'alice/notes', adopted: false });
      expect(object?.metadata.finalizers).toEqual([REALM_FINALIZER]);

      expect(await rowsFor(url)).toEqual({
        registry: [{ url, kind: 'source', disk_id: 'alice/notes', owner_username: 'alice', source_url: null, pinned: false }],
        permissions: [{ username: OWNER, read: true, write: true, realm_owner: true }],
        metadata: [{ publishable: true, show_as_catalog: null }],
        index: [],
        jobs: [
          {
            job_type: 'from-scratch-index',
            args: { realmURL: url, realmUsername: 'alice', clearLastModified: false },
            concurrency_group: `indexing:${url}`,
            priority: 10,
            timeout: 3600,
            status: 'unfulfilled',
          },
        ],
      });
      // Byte for byte what fs-extra's writeJSONSync writes for Boxel.
      const dir = path.join(realms.root, 'alice', 'notes');
      expect(await readTree(dir)).toEqual({
        'realm.json':
          '{"data":{"type":"card","attributes":{"cardInfo":{"name":"My Notes"},"iconURL":"https://icons.test/n.png","backgroundURL":"https://bg.test/b.jpg"},"meta":{"adoptsFrom":{"module":"@cardstack/base/realm-config","name":"RealmConfig"}}}}\n',
        'index.json': '{"data":{"type":"card","meta":{"adoptsFrom":{"module":"@cardstack/base/workspace","name":"Workspace"}}}}\n',
      });
      expect(object?.status?.indexJobId).toEqual(expect.any(Number));
      await listener.waitFor((n) => n.channel === 'realm_registry' && n.payload === `upsert:${url}`);
      await listener.waitFor((n) => n.channel === 'jobs');

      // A second reconcile (a restart, a resync) writes nothing and enqueues nothing.
      listener.clear();
      await reconcile('notes');
      expect((await rowsFor(url)).jobs).toHaveLength(1);
      expect(listener.received).toEqual([]);
    } finally {
      await listener.close();
    }
  });

  test('name defaults to the endpoint; publishable false is written to realm_metadata', async () => {
    await apply('drafts', { owner: OWNER, endpoint: 'drafts', publishable: false });
    await reconcile('drafts');
    const url = `${SERVER}alice/drafts/`;
    expect((await rowsFor(url)).metadata).toEqual([{ publishable: false, show_as_catalog: null }]);
    expect(await fs.readFile(path.join(realms.root, 'alice', 'drafts', 'realm.json'), 'utf8')).toBe(initialRealmJSON({ name: 'drafts' }));
    expect(await fs.readFile(path.join(realms.root, 'alice', 'drafts', 'index.json'), 'utf8')).toBe(INITIAL_INDEX_JSON);
  });

  test('a URL where a realm already exists is refused: Stalled URLTaken naming spec.endpoint; deleting the object leaves the realm', async () => {
    const url = `${SERVER}alice/taken/`;
    const dir = await createSourceRealm(db.pool, realms.layout, url, { 'card.json': '{"x":1}' }, 'alice/taken');
    const before = { rows: await rowsFor(url), files: await readTree(dir) };
    await apply('taken', { owner: OWNER, endpoint: 'taken' });
    const result = await reconcile('taken');
    const object = await read('taken');
    expect(condition(object, 'Stalled')).toMatchObject({ status: 'True', reason: 'URLTaken' });
    expect(condition(object, 'Stalled')?.message).toContain('spec.endpoint');
    expect(condition(object, 'Stalled')?.message).toContain('spec.adopt');
    expect(result.requeueAfterMs).toBeGreaterThan(0);
    await deleteAndFinalize('taken');
    expect({ rows: await rowsFor(url), files: await readTree(dir) }).toEqual(before);
  });

  test('without spec.serverURL or an operator default: Stalled ServerURLUnknown', async () => {
    const bare = new RealmReconciler({
      kube: realmKube('realm-lifecycle-test'),
      plane: dataPlane(db.pool, realms.layout),
      logger: silentLogger,
    });
    await apply('no-server', { owner: OWNER, endpoint: 'no-server' });
    await bare.reconcile({ namespace, name: 'no-server' });
    expect(condition(await read('no-server'), 'Stalled')).toMatchObject({ reason: 'ServerURLUnknown' });
    expect(await exists(path.join(realms.root, 'alice', 'no-server'))).toBe(false);
  });
});

describe('Events', () => {
  test('creating records RealmCreated; a refusal records a Warning with the Stalled reason; deleting records RealmDeleted', async () => {
    await eventually(async () => (await eventsOf('notes')).includes('RealmCreated/Normal'), 10_000, () => 'RealmCreated for notes');
    await eventually(async () => (await eventsOf('taken')).includes('URLTaken/Warning'), 10_000, () => 'URLTaken for taken');
    await deleteAndFinalize('notes');
    await eventually(async () => (await eventsOf('notes')).includes('RealmDeleted/Normal'), 10_000, () => 'RealmDeleted for notes');
  });
});

describe('adopting a Realm', () => {
  test('leaves the files byte-identical and the rows as they were; deleting it (Retain by default) keeps everything', async () => {
    const url = `${SERVER}bob/legacy/`;
    const dir = await createSourceRealm(db.pool, realms.layout, url, { 'realm.json': '{ "pretty": true }\n', 'cards/a.json': '{"a":1}' }, 'bob/legacy');
    await db.pool.query(`UPDATE realm_registry SET owner_username = 'bob' WHERE url = $1`, [url]);
    const mtimes = async () => Promise.all(['realm.json', 'cards/a.json'].map(async (f) => (await fs.stat(path.join(dir, f))).mtimeMs));
    const before = { rows: await rowsFor(url), files: await readTree(dir), mtimes: await mtimes() };
    await apply('legacy', { owner: '@bob:localhost', endpoint: 'legacy', adopt: true });
    await reconcile('legacy');
    const object = await read('legacy');
    expect(condition(object, 'Ready')).toMatchObject({ status: 'True', reason: 'Adopted' });
    expect(object?.status).toMatchObject({ url, diskId: 'bob/legacy', adopted: true });
    expect({ rows: await rowsFor(url), files: await readTree(dir), mtimes: await mtimes() }).toEqual(before);
    await deleteAndFinalize('legacy');
    expect({ rows: await rowsFor(url), files: await readTree(dir), mtimes: await mtimes() }).toEqual(before);
  });

  test('nothing to adopt: Stalled RealmNotFound naming spec.adopt', async () => {
    await apply('ghost', { owner: OWNER, endpoint: 'ghost', adopt: true });
    await reconcile('ghost');
    const stalled = condition(await read('ghost'), 'Stalled');
    expect(stalled).toMatchObject({ reason: 'RealmNotFound' });
    expect(stalled?.message).toContain('spec.adopt');
  });
});

describe('deleting a Realm', () => {
  test('with three published realms leaves exactly Boxel\'s end state, with its NOTIFYs in its order', async () => {
    await apply('site', { owner: OWNER, endpoint: 'site' });
    await reconcile('site');
    const source = `${SERVER}alice/site/`;
    const sourceDir = path.join(realms.root, 'alice', 'site');
    await writeFiles(sourceDir, { 'page.json': '{"title":"hello"}' });
    const plane = dataPlane(db.pool, realms.layout);
    // Two published by the operator, one by Boxel itself (a plain directory and its rows).
    const published = [`http://pub-a.test/`, `http://pub-b.test/`, `http://pub-c.test/`];
    for (const url of published.slice(0, 2)) await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: url });
    const boxelId = randomUUID();
    await writeFiles(path.join(realms.layout.publishedRoot, boxelId), { 'page.json': '{"title":"hello"}' });
    await db.pool.query(
      `INSERT INTO realm_registry (url, kind, disk_id, owner_username, source_url, last_published_at) VALUES ($1, 'published', $2, $3, $4, 1)`,
      [published[2], boxelId, `realm/_published_${boxelId}`, source],
    );
    await db.pool.query(`INSERT INTO realm_user_permissions (realm_url, username, read, write, realm_owner) VALUES ($1, '*', true, false, false)`, [published[2]]);
    await db.pool.query(`INSERT INTO realm_metadata (url, publishable) VALUES ($1, false)`, [published[2]]);
    await insertIndexEntries(db.pool, [...published, source].map((realmURL) => ({ url: `${realmURL}page.json`, realmURL })));
    await db.pool.query(`INSERT INTO jobs (job_type, args, concurrency_group) VALUES ('from-scratch-index', '{}', $1)`, [`indexing:${published[0]}`]);
    const publishedDirs = (await db.pool.query<{ disk_id: string }>(`SELECT disk_id FROM realm_registry WHERE source_url = $1`, [source])).rows.map((r) =>
      path.join(realms.layout.publishedRoot, r.disk_id),
    );
    expect(publishedDirs).toHaveLength(3);
    for (const dir of publishedDirs) expect(await exists(dir)).toBe(true);
    // An unrelated realm stays.
    const other = `${SERVER}alice/other/`;
    const otherDir = await createSourceRealm(db.pool, realms.layout, other, { 'x.json': '{}' }, 'alice/other');
    const otherBefore = { rows: await rowsFor(other), files: await readTree(otherDir) };

    const listener = await recordNotifications(db.url, ['realm_registry', 'realm_file_changes']);
    try {
      await deleteAndFinalize('site');
      for (const url of [source, ...published]) {
        expect(await rowsFor(url)).toEqual({ registry: [], permissions: [], metadata: [], index: [], jobs: [] });
      }
      expect(await exists(sourceDir)).toBe(false);
      for (const dir of publishedDirs) expect(await exists(dir)).toBe(false);
      // The operator's content versions of the two it published went too.
      const versions = await fs.readdir(path.join(realms.layout.operatorDir, 'versions')).catch(() => []);
      for (const entry of versions) expect(await fs.readdir(path.join(realms.layout.operatorDir, 'versions', entry))).toEqual([]);
      expect({ rows: await rowsFor(other), files: await readTree(otherDir) }).toEqual(otherBefore);

      await listener.waitFor((n) => n.payload === `${source}:*`);
      const registry = listener.received.filter((n) => n.channel === 'realm_registry').map((n) => n.payload);
      // Boxel's deletePublishedRowsBySourceUrl and deleteRegistryRowByUrl both NOTIFY 'delete:<source>' in
      // the one transaction; PostgreSQL delivers identical notifications of a transaction once.
      expect(registry).toEqual([`delete:${source}`]);
      const wildcards = listener.received.filter((n) => n.channel === 'realm_file_changes').map((n) => n.payload);
      expect(wildcards.slice(0, 3).sort()).toEqual(published.map((url) => `${url}:*`).sort());
      expect(wildcards).toHaveLength(4);
      expect(wildcards[3]).toBe(`${source}:*`);
    } finally {
      await listener.close();
    }
  });

  test('a deletion whose database part committed before the operator died is finished by the next reconcile, published realms included', async () => {
    await apply('crashy', { owner: OWNER, endpoint: 'crashy' });
    await reconcile('crashy');
    const url = `${SERVER}alice/crashy/`;
    const dir = path.join(realms.root, 'alice', 'crashy');
    const published = ['http://crashy-a.test/', 'http://crashy-b.test/'];
    for (const publishedURL of published) await publishRealm(dataPlane(db.pool, realms.layout), { sourceRealmURL: url, publishedRealmURL: publishedURL });
    const publishedDirs = (await db.pool.query<{ disk_id: string }>(`SELECT disk_id FROM realm_registry WHERE source_url = $1`, [url])).rows.map((r) =>
      path.join(realms.layout.publishedRoot, r.disk_id),
    );
    expect(publishedDirs).toHaveLength(2);
    expect(await exists(dir)).toBe(true);
    await objects.remove('crashy');
    // The committed transaction of a reconcile that died before recording it in status.
    expect((await deleteSourceRealmRows(dataPlane(db.pool, realms.layout), url)).map((r) => r.url).sort()).toEqual([...published, url].sort());
    const listener = await recordNotifications(db.url, ['realm_file_changes']);
    try {
      for (let attempt = 0; attempt < 10 && (await read('crashy')); attempt++) await reconcile('crashy');
      expect(await read('crashy')).toBeUndefined();
      expect(await exists(dir)).toBe(false);
      for (const publishedDir of publishedDirs) expect(await exists(publishedDir)).toBe(false);
      for (const realmURL of [...published, url]) await listener.waitFor((n) => n.payload === `${realmURL}:*`);
      expect((await db.pool.query('SELECT realm_url FROM realm_operator.pending_realm_removals WHERE source_url = $1', [url])).rows).toEqual([]);
    } finally {
      await listener.close();
    }
  });

  test('deletionPolicy Retain keeps the realm\'s rows and files', async () => {
    await apply('keep', { owner: OWNER, endpoint: 'keep', deletionPolicy: 'Retain' });
    await reconcile('keep');
    const url = `${SERVER}alice/keep/`;
    const dir = path.join(realms.root, 'alice', 'keep');
    const before = { rows: await rowsFor(url), files: await readTree(dir) };
    expect(before.rows.registry).toHaveLength(1);
    await deleteAndFinalize('keep');
    expect({ rows: await rowsFor(url), files: await readTree(dir) }).toEqual(before);
  });
});
