/**
 * The rows and files a publish, republish, take-over and unpublish leave, compared with what
 * Boxel's own handlers write (cardstack/boxel packages/realm-server/handlers/handle-publish-realm.ts,
 * handle-unpublish-realm.ts, lib/realm-registry-writes.ts; the queue in packages/postgres/pg-queue.ts
 * and packages/runtime-common/jobs/reindex-realm.ts, tasks/indexer.ts). Real PostgreSQL, real files.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { publishRealm, unpublishRealm, type DataPlane } from '../../src/dataplane/publish.js';
import { matrixServerNameOf, matrixUserId, publishedRealmUsername } from '../../src/dataplane/realm-identity.js';
import { adoptsDefaultRealmIndex, withPrerenderedDefaultIndexOptIn } from '../../src/dataplane/realm-json.js';
import { chooseFromScratchCoalesce, enqueueReindex, indexingConcurrencyGroup } from '../../src/dataplane/reindex.js';
import { createSourceRealm, insertIndexEntries, readTree, writeFiles, openDataPlaneFixture, type DataPlaneFixture } from '../support/realms.js';

describe('publishing writes what Boxel writes (real PostgreSQL, real files)', () => {
  let fixture: DataPlaneFixture;
  let db: DataPlaneFixture['db'];
  let realms: DataPlaneFixture['realms'];
  let layout: DataPlaneFixture['layout'];
  let plane: DataPlaneFixture['plane'];

  beforeAll(async () => {
    fixture = await openDataPlaneFixture();
    ({ db, realms, layout, plane } = fixture);
  });
  afterAll(() => fixture.close());

  const permissionsOf = async (url: string) =>
    (await db.pool.query('SELECT username, read, write, realm_owner FROM realm_user_permissions WHERE realm_url = $1 ORDER BY username', [url])).rows;
  const jobsOf = async (url: string) =>
    (await db.pool.query('SELECT id, job_type, concurrency_group, priority, timeout, status, args FROM jobs WHERE concurrency_group = $1 ORDER BY id', [indexingConcurrencyGroup(url)]))
      .rows;

  test('publishedRealmUsername is realm/_published_<disk id> and refuses anything but one segment', () => {
    expect(publishedRealmUsername('0f8a4c2e-1b2d-4e5f-8a9b-0c1d2e3f4a5b')).toBe('realm/_published_0f8a4c2e-1b2d-4e5f-8a9b-0c1d2e3f4a5b');
    expect(() => publishedRealmUsername('a/b')).toThrow(/not a single path segment/);
    expect(() => publishedRealmUsername('')).toThrow(/not a single path segment/);
  });

  test('first publish: owner is the realm user; permissions for the realm user, the publisher and everyone; the matrix server name can be configured', async () => {
    const source = 'http://localhost:4201/owner/identity/';
    const published = 'https://identity.boxel.site/';
    await createSourceRealm(db.pool, layout, source, { 'a.txt': 'a' });
    const configured: DataPlane = { ...plane, matrixServerName: 'boxel.ai' };
    const first = await publishRealm(configured, { sourceRealmURL: source, publishedRealmURL: published, publisher: '@bob:boxel.ai' });
    const realmUsername = `realm/_published_${first.diskId}`;
    expect((await db.pool.query('SELECT owner_username, disk_id, source_url FROM realm_registry WHERE url = $1', [published])).rows).toEqual([
      { owner_username: realmUsername, disk_id: first.diskId, source_url: source },
    ]);
    expect(await permissionsOf(published)).toEqual([
      { username: '*', read: true, write: false, realm_owner: false },
      { username: '@bob:boxel.ai', read: true, write: false, realm_owner: true },
      { username: `@${realmUsername}:boxel.ai`, read: true, write: false, realm_owner: true },
    ]);
    // No publisher given: the source owner's Matrix id (its realm-owner row), on its own server.
    const other = 'https://identity-2.boxel.site/';
    const second = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: other });
    expect(await permissionsOf(other)).toEqual([
      { username: '*', read: true, write: false, realm_owner: false },
      { username: '@owner:localhost', read: true, write: false, realm_owner: true },
      { username: `@realm/_published_${second.diskId}:localhost`, read: true, write: false, realm_owner: true },
    ]);
  });

  test('taking over a realm Boxel published keeps its owner and its permissions', async () => {
    const source = 'http://localhost:4201/owner/boxel-made/';
    const published = 'https://boxel-made.boxel.site/';
    await createSourceRealm(db.pool, layout, source, { 'index.json': '{"new":true}' });
    // What Boxel's publish leaves: a registry row owned by its realm user, a plain directory, three permissions rows.
    const diskId = randomUUID();
    const boxelOwner = `realm/_published_${diskId}`;
    await db.pool.query(
      `INSERT INTO realm_registry (url, kind, disk_id, owner_username, source_url, last_published_at) VALUES ($1, 'published', $2, $3, $4, 1000)`,
      [published, diskId, boxelOwner, source],
    );
    const boxelPermissions = [
      { username: '*', read: true, write: false, realm_owner: false },
      { username: '@carol:boxel.ai', read: true, write: false, realm_owner: true },
      { username: `@${boxelOwner}:boxel.ai`, read: true, write: false, realm_owner: true },
    ];
    for (const p of boxelPermissions) {
      await db.pool.query('INSERT INTO realm_user_permissions (realm_url, username, read, write, realm_owner) VALUES ($1, $2, $3, $4, $5)', [
        published,
        p.username,
        p.read,
        p.write,
        p.realm_owner,
      ]);
    }
    await writeFiles(path.join(layout.root, '_published', diskId), { 'index.json': '{"old":true}' });

    const taken = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published, publisher: '@mallory:localhost' });
    expect(taken.diskId).toBe(diskId);
    expect(await readTree(layout.publishedDir(diskId))).toEqual({ 'index.json': '{"new":true}' });
    const row = (await db.pool.query('SELECT owner_username, last_published_at FROM realm_registry WHERE url = $1', [published])).rows[0];
    expect(row.owner_username).toBe(boxelOwner);
    expect(Number(row.last_published_at)).toBe(taken.publishedAt);
    expect(await permissionsOf(published)).toEqual(boxelPermissions);
    // The reindex is indexed as Boxel's realm user, read from the registry.
    const job = await enqueueReindex(db.pool, { realmURL: published, epoch: taken.epoch });
    expect((await jobsOf(published)).map((j) => j.args.realmUsername)).toEqual([boxelOwner]);
    expect(job.joined).toBe(false);
  });

  test("a republish from another source records that source (Boxel's upsert keeps the first; docs/authorization.md), keeps the owner and disk id, advances last_published_at", async () => {
    const first = 'http://localhost:4201/owner/moved-from/';
    const second = 'http://localhost:4201/owner/moved-to/';
    const published = 'https://moved.boxel.site/';
    await createSourceRealm(db.pool, layout, first, { 'a.txt': 'first' });
    await createSourceRealm(db.pool, layout, second, { 'a.txt': 'second' });
    const before = await publishRealm(plane, { sourceRealmURL: first, publishedRealmURL: published });
    const row = async () => (await db.pool.query('SELECT disk_id, owner_username, source_url, last_published_at FROM realm_registry WHERE url = $1', [published])).rows[0];
    const recorded = await row();
    expect(recorded).toMatchObject({ disk_id: before.diskId, source_url: first, owner_username: `realm/_published_${before.diskId}` });
    const after = await publishRealm(plane, { sourceRealmURL: second, publishedRealmURL: published });
    expect(await readTree(layout.publishedDir(after.diskId))).toEqual({ 'a.txt': 'second' });
    expect(await row()).toEqual({ ...recorded, source_url: second, last_published_at: String(after.publishedAt) });
  });

  test('two quick publishes leave ONE pending from-scratch job: args merged, priority and timeout raised', async () => {
    const source = 'http://localhost:4201/owner/twice/';
    const published = 'https://twice.boxel.site/';
    const sourceDir = await createSourceRealm(db.pool, layout, source, { 'a.txt': '1' });
    await insertIndexEntries(db.pool, [
      { url: `${published}a.txt`, realmURL: published, type: 'file', lastModified: 99 },
      { url: `${source}a.txt`, realmURL: source, type: 'file', lastModified: 99 },
    ]);
    const first = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
    const realmUsername = publishedRealmUsername(first.diskId);
    const firstJob = await enqueueReindex(db.pool, { realmURL: published, epoch: first.epoch, priority: 1, timeout: 60 });
    expect(firstJob).toMatchObject({ created: true, joined: false });
    await writeFiles(sourceDir, { 'a.txt': '2' });
    const second = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
    const secondJob = await enqueueReindex(db.pool, { realmURL: published, epoch: second.epoch });
    expect(secondJob).toEqual({ jobId: firstJob.jobId, created: true, joined: true });
    expect(await jobsOf(published)).toEqual([
      {
        id: firstJob.jobId,
        job_type: 'from-scratch-index',
        concurrency_group: `indexing:${published}`,
        priority: 10,
        timeout: 3600,
        status: 'unfulfilled',
        // Boxel's from-scratch coalesce: incoming args over the pending job's, coalescedCallers merged.
        args: { realmURL: published, realmUsername, clearLastModified: true, awaitedByPublish: true, coalescedCallers: [] },
      },
    ]);
    // The recorded job is the epoch's, and the last_modified clear touched only the published realm.
    expect((await db.pool.query('SELECT reindex_epoch, reindex_job_id FROM realm_operator.realm_epochs WHERE realm_url = $1', [published])).rows).toEqual([
      { reindex_epoch: String(second.epoch), reindex_job_id: String(firstJob.jobId) },
    ]);
    expect((await db.pool.query('SELECT realm_url, last_modified FROM boxel_index ORDER BY realm_url')).rows).toEqual([
      { realm_url: source, last_modified: '99' },
      { realm_url: published, last_modified: null },
    ]);

    // Once a worker has finished it, the next publish's enqueue inserts a new job.
    await db.pool.query(`UPDATE jobs SET status = 'resolved', finished_at = now() WHERE id = $1`, [firstJob.jobId]);
    const third = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
    const thirdJob = await enqueueReindex(db.pool, { realmURL: published, epoch: third.epoch });
    expect(thirdJob).toMatchObject({ created: true, joined: false });
    expect((await jobsOf(published)).map((j) => [j.id, j.status])).toEqual([
      [firstJob.jobId, 'resolved'],
      [thirdJob.jobId, 'unfulfilled'],
    ]);
  });

  test("a job a worker holds (a live job_reservations row) is never joined, as Boxel's queue skips in-flight jobs", async () => {
    const source = 'http://localhost:4201/owner/held/';
    const published = 'https://held.boxel.site/';
    await createSourceRealm(db.pool, layout, source, { 'a.txt': '1' });
    const first = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
    const held = await enqueueReindex(db.pool, { realmURL: published, epoch: first.epoch });
    // A worker reserves it (Boxel's worker: INSERT INTO job_reservations (job_id, locked_until, worker_id)).
    await db.pool.query(`INSERT INTO job_reservations (job_id, locked_until, worker_id) VALUES ($1, now() + interval '1 hour', 'worker-1')`, [held.jobId]);
    const second = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
    const next = await enqueueReindex(db.pool, { realmURL: published, epoch: second.epoch });
    expect(next).toMatchObject({ created: true, joined: false });
    expect(next.jobId).not.toBe(held.jobId);
    // Once the reservation has lapsed (a crashed worker) the pending job is joinable again.
    await db.pool.query(`UPDATE job_reservations SET locked_until = now() - interval '1 second' WHERE job_id = $1`, [held.jobId]);
    const third = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
    expect(await enqueueReindex(db.pool, { realmURL: published, epoch: third.epoch })).toEqual({ jobId: held.jobId, created: true, joined: true });
    expect((await jobsOf(published)).map((j) => [j.id, j.status])).toEqual([
      [held.jobId, 'unfulfilled'],
      [next.jobId, 'unfulfilled'],
    ]);
  });

  test('default-index detection and the Matrix id helpers follow Boxel exactly', () => {
    const index = (adoptsFrom: unknown) => ({ data: { meta: { adoptsFrom } } });
    expect(adoptsDefaultRealmIndex(index({ module: 'https://cardstack.com/base/cards-grid', name: 'CardsGrid' }))).toBe(true);
    expect(adoptsDefaultRealmIndex(index({ module: '@cardstack/base/cards-grid', name: 'CardsGrid' }))).toBe(true);
    expect(adoptsDefaultRealmIndex(index({ module: 'https://cardstack.com/base/workspace', name: 'Workspace' }))).toBe(true);
    // Exact module strings only (no trailing slash, no .gts, no other realm), and a string name.
    expect(adoptsDefaultRealmIndex(index({ module: 'https://cardstack.com/base/cards-grid.gts', name: 'CardsGrid' }))).toBe(false);
    expect(adoptsDefaultRealmIndex(index({ module: 'https://example.com/base/cards-grid', name: 'CardsGrid' }))).toBe(false);
    expect(adoptsDefaultRealmIndex(index({ module: 'https://cardstack.com/base/cards-grid' }))).toBe(false);
    expect(adoptsDefaultRealmIndex({ data: [] })).toBe(false);
    expect(adoptsDefaultRealmIndex(null)).toBe(false);
    // Already opted in, or not an object: nothing to write. Missing data/attributes are created.
    expect(withPrerenderedDefaultIndexOptIn({ data: { attributes: { includePrerenderedDefaultRealmIndex: true } } })).toBeUndefined();
    expect(withPrerenderedDefaultIndexOptIn([])).toBeUndefined();
    expect(withPrerenderedDefaultIndexOptIn({})).toEqual({ data: { attributes: { includePrerenderedDefaultRealmIndex: true } } });
    expect(matrixServerNameOf('@alice:boxel.ai')).toBe('boxel.ai');
    expect(matrixServerNameOf('@realm/_published_x:localhost:8008')).toBe('localhost:8008');
    for (const notAnId of ['alice', '@alice', '@:server', '@alice:', 'realm/_published_x']) expect(matrixServerNameOf(notAnId)).toBeUndefined();
    expect(matrixUserId('realm/_published_x', 'boxel.ai')).toBe('@realm/_published_x:boxel.ai');
  });

  test('the coalesce rule joins the oldest pending job of the same type only, keeping other args and callers', () => {
    const incoming = { jobType: 'from-scratch-index', priority: 10, timeout: 3600, args: { realmURL: 'u', realmUsername: 'r', clearLastModified: true } };
    expect(chooseFromScratchCoalesce(incoming, [{ id: 1, jobType: 'incremental-index', priority: 10, timeout: 600, args: {} }])).toEqual({ type: 'insert' });
    const caller = { waiterId: 'w1', clientRequestId: null };
    expect(
      chooseFromScratchCoalesce(incoming, [
        { id: 1, jobType: 'incremental-index', priority: 99, timeout: 1, args: {} },
        { id: 2, jobType: 'from-scratch-index', priority: 20, timeout: 60, args: { extra: 'kept', realmUsername: 'old', coalescedCallers: [caller, { bogus: 1 }] } },
        { id: 3, jobType: 'from-scratch-index', priority: 0, timeout: 0, args: {} },
      ]),
    ).toEqual({
      type: 'join',
      jobId: 2,
      update: { priority: 20, timeout: 3600, args: { extra: 'kept', realmURL: 'u', realmUsername: 'r', clearLastModified: true, coalescedCallers: [caller] } },
    });
  });

  test('a serialization failure is retried: an enqueue that raced a committed job insert joins that job', async () => {
    const source = 'http://localhost:4201/owner/race/';
    const published = 'https://race.boxel.site/';
    await createSourceRealm(db.pool, layout, source, { 'a.txt': 'a' });
    const done = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
    const group = indexingConcurrencyGroup(published);
    // Hold the queue's group lock so the enqueue stops inside its SERIALIZABLE transaction, its snapshot already taken.
    const holder = new pg.Client({ connectionString: db.url });
    const racer = new pg.Client({ connectionString: db.url });
    await holder.connect();
    await racer.connect();
    try {
      await holder.query('SELECT pg_advisory_lock(hashtext($1))', [group]);
      const enqueue = enqueueReindex(db.pool, { realmURL: published, epoch: done.epoch });
      for (;;) {
        const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`);
        if (rows[0].n > 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      // Meanwhile another serializable publisher reads the group and commits a pending job into it.
      await racer.query('BEGIN ISOLATION LEVEL SERIALIZABLE');
      await racer.query(`SELECT id FROM jobs WHERE concurrency_group = $1`, [group]);
      const { rows } = await racer.query<{ id: number }>(
        `INSERT INTO jobs (job_type, args, concurrency_group, timeout, priority) VALUES ('from-scratch-index', $1, $2, 60, 1) RETURNING id`,
        [JSON.stringify({ realmURL: published, realmUsername: 'someone', clearLastModified: true }), group],
      );
      await racer.query('COMMIT');
      await holder.query('SELECT pg_advisory_unlock(hashtext($1))', [group]);
      // The first attempt could not see the racer's job and fails to serialize; the retry joins it.
      const job = await enqueue;
      expect(job).toEqual({ jobId: rows[0]!.id, created: true, joined: true });
      const jobs = await jobsOf(published);
      expect(jobs).toHaveLength(1);
      expect(jobs[0]).toMatchObject({
        priority: 10,
        timeout: 3600,
        args: { realmURL: published, realmUsername: publishedRealmUsername(done.diskId), clearLastModified: true, awaitedByPublish: true, coalescedCallers: [] },
      });
    } finally {
      await holder.end();
      await racer.end();
    }
  });

  test('concurrent enqueues for many realms all land, one job each', async () => {
    const epochs: Array<{ url: string; epoch: number }> = [];
    for (let i = 0; i < 6; i++) {
      const source = `http://localhost:4201/owner/many-${i}/`;
      const published = `https://many-${i}.boxel.site/`;
      await createSourceRealm(db.pool, layout, source, { 'a.txt': String(i) });
      epochs.push({ url: published, epoch: (await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published })).epoch });
    }
    const results = await Promise.all(epochs.flatMap(({ url, epoch }) => [enqueueReindex(db.pool, { realmURL: url, epoch }), enqueueReindex(db.pool, { realmURL: url, epoch })]));
    expect(results.every((r) => r.jobId > 0)).toBe(true);
    for (const { url } of epochs) expect(await jobsOf(url)).toHaveLength(1);
  });

  test('realm.json opt-in: written into the published copy when index.json adopts CardsGrid or Workspace, never into the source', async () => {
    const realmJson = { data: { type: 'card', attributes: { name: 'Blog', publishable: true }, meta: { adoptsFrom: { module: 'https://cardstack.com/base/realm-config', name: 'RealmConfig' } } } };
    const cases: Array<{ name: string; adoptsFrom: unknown; optIn: boolean }> = [
      { name: 'cards-grid-url', adoptsFrom: { module: 'https://cardstack.com/base/cards-grid', name: 'CardsGrid' }, optIn: true },
      { name: 'workspace-prefix', adoptsFrom: { module: '@cardstack/base/workspace', name: 'Workspace' }, optIn: true },
      { name: 'bespoke', adoptsFrom: { module: '../landing', name: 'Landing' }, optIn: false },
      { name: 'mismatched', adoptsFrom: { module: 'https://cardstack.com/base/cards-grid', name: 'Workspace' }, optIn: false },
    ];
    for (const c of cases) {
      const source = `http://localhost:4201/owner/optin-${c.name}/`;
      const published = `https://optin-${c.name}.boxel.site/`;
      const indexJson = JSON.stringify({ data: { type: 'card', meta: { adoptsFrom: c.adoptsFrom } } });
      const sourceText = JSON.stringify(realmJson);
      const sourceDir = await createSourceRealm(db.pool, layout, source, { 'index.json': indexJson, 'realm.json': sourceText });
      const result = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
      const publishedText = await fs.readFile(path.join(layout.publishedDir(result.diskId), 'realm.json'), 'utf8');
      expect(await fs.readFile(path.join(sourceDir, 'realm.json'), 'utf8')).toBe(sourceText);
      if (c.optIn) {
        // As Boxel's writeJson(…, { spaces: 2 }) leaves it.
        const expected = { data: { ...realmJson.data, attributes: { ...realmJson.data.attributes, includePrerenderedDefaultRealmIndex: true } } };
        expect(publishedText).toBe(`${JSON.stringify(expected, null, 2)}\n`);
        expect(result.totalBytes).toBe(Buffer.byteLength(indexJson) + Buffer.byteLength(publishedText));
      } else {
        expect(publishedText).toBe(sourceText);
      }
      // The digest is recorded, and the same published content always digests the same.
      const epochs = await db.pool.query('SELECT content_digest FROM realm_operator.realm_epochs WHERE realm_url = $1', [published]);
      expect(epochs.rows[0].content_digest).toBe(result.digest);
      const plainSource = `http://localhost:4201/owner/optin-${c.name}-plain/`;
      await createSourceRealm(db.pool, layout, plainSource, { 'index.json': indexJson, 'realm.json': sourceText });
      const again = await publishRealm(plane, { sourceRealmURL: plainSource, publishedRealmURL: `https://optin-${c.name}-again.boxel.site/` });
      expect(again.digest).toBe(result.digest);
    }
  });

  /** The index columns a tombstone writes or keeps. */
  const indexRowsOf = async (pool: pg.Pool, realmURLs: string[]) =>
    (
      await pool.query(
        `SELECT url, type, is_deleted, generation, has_error, error_doc, diagnostics, last_modified, file_alias FROM boxel_index
          WHERE realm_url = ANY($1::text[]) ORDER BY url COLLATE "C", type`,
        [realmURLs],
      )
    ).rows;

  test("unpublish removes the registry row and permissions and tombstones every index entry as Boxel's index writer does", async () => {
    const source = 'http://localhost:4201/owner/gone/';
    const published = 'https://gone.boxel.site/';
    await createSourceRealm(db.pool, layout, source, { 'a.json': '{}' });
    await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
    await insertIndexEntries(db.pool, [
      { url: `${published}a.json`, realmURL: published, isDeleted: false, generation: 2, lastModified: 5, hasError: true, errorDoc: { message: 'boom' } },
      { url: `${published}a.json`, realmURL: published, type: 'file', generation: 2 },
      { url: `${published}old.json`, realmURL: published, isDeleted: true, generation: 1 },
      { url: `${source}a.json`, realmURL: source, isDeleted: false, generation: 9 },
    ]);
    const before = Date.now();
    expect((await unpublishRealm(plane, published)).unpublished).toBe(true);
    expect((await db.pool.query('SELECT * FROM realm_registry WHERE url = $1', [published])).rows).toEqual([]);
    expect(await permissionsOf(published)).toEqual([]);
    const rows = await indexRowsOf(db.pool, [published, source]);
    // tombstoneEntries (packages/runtime-common/index-writer.ts): the next generation (here the realm's
    // highest + 1: a standalone database has no realm_generations), is_deleted, errors cleared, one
    // invalidation's diagnostics; last_modified and file_alias kept. An entry already deleted is left.
    const diagnostics = rows.find((r) => r.url === `${published}a.json` && r.type === 'instance')?.diagnostics as { invalidationId: string; indexedAt: number };
    expect(diagnostics.invalidationId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(diagnostics.indexedAt).toBeGreaterThanOrEqual(before);
    const tombstone = { is_deleted: true, generation: 3, has_error: false, error_doc: null, diagnostics };
    expect(rows).toEqual([
      { url: `${source}a.json`, type: 'instance', is_deleted: false, generation: 9, has_error: false, error_doc: null, diagnostics: null, last_modified: null, file_alias: `${source}a` },
      { url: `${published}a.json`, type: 'file', ...tombstone, last_modified: null, file_alias: `${published}a` },
      { url: `${published}a.json`, type: 'instance', ...tombstone, last_modified: '5', file_alias: `${published}a` },
      { url: `${published}old.json`, type: 'instance', is_deleted: true, generation: 1, has_error: false, error_doc: null, diagnostics: null, last_modified: null, file_alias: `${published}old` },
    ]);
  });

  test("in a Boxel database the tombstones take realm_generations' next generation, record it there and cover prerendered_html", async () => {
    const boxel = await openDataPlaneFixture();
    try {
      // realm_generations as Boxel's migrations leave it (1783004110683_rename-realm-version-to-generation.js,
      // 1783531609198_add-loader-epoch-to-realm-generations.js); migrate does not create it.
      await boxel.db.pool.query(`CREATE UNLOGGED TABLE realm_generations (
        realm_url varchar NOT NULL PRIMARY KEY, current_generation integer NOT NULL, loader_epoch text NOT NULL DEFAULT '0')`);
      // prerendered_html's columns a tombstone touches, as 1783182911063_prerendered-html-tables-backfill-dual-write.js
      // and 1783637823505_add-diagnostics-to-prerendered-html.js leave them.
      await boxel.db.pool.query(`CREATE TABLE prerendered_html (
        url varchar NOT NULL, file_alias varchar NOT NULL, realm_url varchar NOT NULL, type varchar NOT NULL, isolated_html varchar,
        generation integer NOT NULL, is_deleted boolean, error_doc jsonb, rendered_at bigint, diagnostics jsonb, PRIMARY KEY (url, realm_url, type))`);
      const source = 'http://localhost:4201/owner/gens/';
      const published = 'https://gens.boxel.site/';
      const other = 'https://gens-other.boxel.site/';
      await createSourceRealm(boxel.db.pool, boxel.layout, source, { 'a.json': '{}' });
      await publishRealm(boxel.plane, { sourceRealmURL: source, publishedRealmURL: published });
      await publishRealm(boxel.plane, { sourceRealmURL: source, publishedRealmURL: other });
      await boxel.db.pool.query(`INSERT INTO realm_generations (realm_url, current_generation, loader_epoch) VALUES ($1, 41, 'e7')`, [published]);
      await insertIndexEntries(boxel.db.pool, [
        { url: `${published}a.json`, realmURL: published, generation: 41 },
        { url: `${other}a.json`, realmURL: other, generation: 5 },
      ]);
      await boxel.db.pool.query(
        `INSERT INTO prerendered_html (url, file_alias, realm_url, type, isolated_html, generation, is_deleted, error_doc, rendered_at, diagnostics)
         VALUES ($1, $2, $3, 'instance', '<p>a</p>', 41, false, '{"message":"x"}', 1, '{"renderMs":3}')`,
        [`${published}a.json`, `${published}a`, published],
      );
      const before = Date.now();
      await unpublishRealm(boxel.plane, published);
      // tombstonePrerenderedHtmlEntries: the same generation, deleted, error and diagnostics cleared, rendered now; the HTML kept.
      const [html] = (await boxel.db.pool.query('SELECT isolated_html, generation, is_deleted, error_doc, diagnostics, rendered_at FROM prerendered_html')).rows;
      expect(html).toEqual({ isolated_html: '<p>a</p>', generation: 42, is_deleted: true, error_doc: null, diagnostics: null, rendered_at: expect.any(String) });
      expect(Number(html.rendered_at)).toBeGreaterThanOrEqual(before);
      // Boxel's setNextGeneration: current_generation + 1, or 1 for a realm without a row (then recorded).
      await unpublishRealm(boxel.plane, other);
      expect((await indexRowsOf(boxel.db.pool, [published, other])).map((r) => [r.url, r.is_deleted, r.generation])).toEqual([
        [`${other}a.json`, true, 1],
        [`${published}a.json`, true, 42],
      ]);
      expect((await boxel.db.pool.query('SELECT realm_url, current_generation, loader_epoch FROM realm_generations ORDER BY realm_url COLLATE "C"')).rows).toEqual([
        { realm_url: other, current_generation: 1, loader_epoch: '0' },
        { realm_url: published, current_generation: 42, loader_epoch: 'e7' },
      ]);
    } finally {
      await boxel.close();
    }
  });
});
