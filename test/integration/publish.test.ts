import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { withRealmLock, withRealmLockAndFirst } from '../../src/dataplane/db.js';
import { holdStagingGuard, STAGING_LOCK_CLASS } from '../../src/dataplane/staging-guard.js';
import { checkPublishable, publishRealm, recoverPublishedRealm, unpublishRealm, type DataPlane } from '../../src/dataplane/publish.js';
import { ClaimConflictError, RealmURLOverlapError, UnsafeDatabaseValueError, URLTakenByRealmError } from '../../src/dataplane/realm-state.js';
import { enqueueReindex } from '../../src/dataplane/reindex.js';
import { JOBS_CHANNEL, MODULE_CACHE_INVALIDATED_CHANNEL, REALM_FILE_CHANGES_CHANNEL, REALM_REGISTRY_CHANNEL } from '../../src/wire/channels.js';
import { capturingLogger, createSourceRealm, eventually, insertIndexEntries, readTree, recordNotifications, writeFiles, openDataPlaneFixture, type DataPlaneFixture } from '../support/realms.js';

const ALL_CHANNELS = [REALM_FILE_CHANGES_CHANNEL, MODULE_CACHE_INVALIDATED_CHANNEL, REALM_REGISTRY_CHANNEL, JOBS_CHANNEL];

describe('publish and unpublish (real PostgreSQL, real files)', () => {
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

  test("the definitions are cleared after the swap (Boxel's order): a modules row a replica commits while the publish holds the lock, before the swap, does not survive it; nor one committed before an unpublish's unlink", async () => {
    const source = 'http://localhost:4201/alice/defs-order/';
    const published = 'http://published.localhost:4201/alice/defs-order/';
    await createSourceRealm(db.pool, layout, source, { 'index.json': '{"v":1}', 'm.gts': 'export const v = 1;' });
    // A replica computing definitions from the files still live commits its row (autocommit, no
    // realm lock, as Boxel's prerenderer writes them) at the given steps of the locked transaction:
    // 'locked' (just after the lock's round trip), 'installed' (just before the swap), 'unlinked'.
    const rowsAt = (steps: string[]): DataPlane => ({
      ...plane,
      onStep: async (step, url) => {
        if (url === published && steps.includes(step)) {
          await db.pool.query(
            `INSERT INTO modules (url, cache_scope, auth_user_id, resolved_realm_url, definitions) VALUES ($1, 'public', '', $2, '{}')`,
            [`${published}m.gts#${step}`, published],
          );
        }
      },
    });
    const leftOver = async () => (await db.pool.query('SELECT url FROM modules WHERE resolved_realm_url = $1', [published])).rows;
    await publishRealm(rowsAt(['locked', 'installed']), { sourceRealmURL: source, publishedRealmURL: published, publisher: '@alice:localhost' });
    expect(await leftOver()).toEqual([]);
    await publishRealm(rowsAt(['locked', 'installed']), { sourceRealmURL: source, publishedRealmURL: published, publisher: '@alice:localhost' });
    expect(await leftOver()).toEqual([]);
    await unpublishRealm(rowsAt(['locked', 'unlinked']), published);
    expect(await leftOver()).toEqual([]);
  });

  test('publish, republish and unpublish: files, registry, modules, epochs, jobs and every NOTIFY', async () => {
    const source = 'http://localhost:4201/alice/blog/';
    const published = 'http://published.localhost:4201/alice/blog/';
    const sourceDir = await createSourceRealm(db.pool, layout, source, { 'index.json': '{"v":1}', 'cards/post.gts': 'export const v = 1;' });
    await db.pool.query(
      `INSERT INTO modules (url, cache_scope, auth_user_id, resolved_realm_url, definitions) VALUES ($1, 'public', '', $2, '{}'), ($3, 'public', '', $4, '{}')`,
      [`${published}cards/post.gts`, published, `${source}cards/post.gts`, source],
    );
    const listener = await recordNotifications(db.url, ALL_CHANNELS);
    try {
      const first = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published, publisher: '@alice:localhost' });
      expect(first.fileCount).toBe(2);
      expect(first.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(first.diskId).toMatch(/^[0-9a-f-]{36}$/);
      const publishedDir = layout.publishedDir(first.diskId);
      expect(await readTree(publishedDir)).toEqual({ 'index.json': '{"v":1}', 'cards/post.gts': 'export const v = 1;' });

      const registry = await db.pool.query('SELECT * FROM realm_registry WHERE url = $1', [published]);
      // Owned by its own realm user, as Boxel's publish handler records it.
      const realmUsername = `realm/_published_${first.diskId}`;
      expect(registry.rows[0]).toMatchObject({ kind: 'published', disk_id: first.diskId, source_url: source, owner_username: realmUsername });
      expect(Number(registry.rows[0].last_published_at)).toBe(first.publishedAt);
      // The three permissions rows Boxel writes on a first publish; the realm user's id is on the publisher's server.
      const permissionsOf = async () =>
        (await db.pool.query('SELECT username, read, write, realm_owner FROM realm_user_permissions WHERE realm_url = $1 ORDER BY username', [published])).rows;
      const firstPermissions = [
        { username: '*', read: true, write: false, realm_owner: false },
        { username: '@alice:localhost', read: true, write: false, realm_owner: true },
        { username: `@${realmUsername}:localhost`, read: true, write: false, realm_owner: true },
      ];
      expect(await permissionsOf()).toEqual(firstPermissions);
      expect((await db.pool.query('SELECT publishable FROM realm_metadata WHERE url = $1', [published])).rows).toEqual([{ publishable: false }]);
      // Only the published realm's definitions are cleared.
      expect((await db.pool.query('SELECT resolved_realm_url FROM modules')).rows).toEqual([{ resolved_realm_url: source }]);
      const epochs = await db.pool.query('SELECT * FROM realm_operator.realm_epochs WHERE realm_url = $1', [published]);
      expect(Number(epochs.rows[0].epoch)).toBe(first.epoch);
      expect(epochs.rows[0]).toMatchObject({ content_version: first.version, previous_version: null, content_digest: first.digest, file_count: 2 });
      // The reindex is NOT part of the publish.
      expect((await db.pool.query('SELECT count(*)::int AS n FROM jobs')).rows[0].n).toBe(0);

      await listener.waitFor((n) => n.payload === `${published}:*`);
      expect(listener.received).toEqual([
        { channel: MODULE_CACHE_INVALIDATED_CHANNEL, payload: JSON.stringify({ k: 'realm', r: published }) },
        { channel: REALM_REGISTRY_CHANNEL, payload: `upsert:${published}` },
        { channel: REALM_FILE_CHANGES_CHANNEL, payload: `${published}:*` },
      ]);
      listener.clear();

      // Republish after the source changed: same disk id, new content, higher epoch.
      await writeFiles(sourceDir, { 'cards/post.gts': 'export const v = 2;', 'new.md': '# new' });
      await fs.rm(path.join(sourceDir, 'index.json'));
      const second = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
      expect(second.diskId).toBe(first.diskId);
      expect(second.epoch).toBeGreaterThan(first.epoch);
      expect(await readTree(publishedDir)).toEqual({ 'cards/post.gts': 'export const v = 2;', 'new.md': '# new' });
      expect(second.digest).not.toBe(first.digest);
      // A republish keeps the owner and does not rewrite the permissions (Boxel writes them only on a first publish).
      expect((await db.pool.query('SELECT owner_username FROM realm_registry WHERE url = $1', [published])).rows).toEqual([{ owner_username: realmUsername }]);
      expect(await permissionsOf()).toEqual(firstPermissions);
      const afterSecond = await db.pool.query('SELECT content_version, previous_version FROM realm_operator.realm_epochs WHERE realm_url = $1', [published]);
      expect(afterSecond.rows[0]).toEqual({ content_version: second.version, previous_version: first.version });
      // Exactly the current and the previous version are kept on disk.
      expect((await fs.readdir(layout.versionsDir(first.diskId))).sort()).toEqual([first.version, second.version].sort());
      await listener.waitFor((n) => n.payload === `${published}:*`);

      // The reindex enqueue, once per epoch.
      await insertIndexEntries(db.pool, [{ url: `${published}x.json`, realmURL: published, lastModified: 123 }]);
      // realmUsername comes from the registry owner when the caller gives none.
      const job = await enqueueReindex(db.pool, { realmURL: published, epoch: second.epoch });
      expect(job.created).toBe(true);
      expect(await enqueueReindex(db.pool, { realmURL: published, epoch: second.epoch })).toEqual({ jobId: job.jobId, created: false, joined: false });
      await expect(enqueueReindex(db.pool, { realmURL: published, epoch: first.epoch })).rejects.toThrow(/the realm is at epoch/);
      const jobs = await db.pool.query('SELECT * FROM jobs');
      expect(jobs.rows).toHaveLength(1);
      expect(jobs.rows[0]).toMatchObject({
        id: job.jobId,
        job_type: 'from-scratch-index',
        concurrency_group: `indexing:${published}`,
        priority: 10,
        timeout: 3600,
        status: 'unfulfilled',
        args: { realmURL: published, realmUsername, clearLastModified: true, awaitedByPublish: true },
      });
      expect((await db.pool.query('SELECT last_modified FROM boxel_index')).rows).toEqual([{ last_modified: null }]);
      await listener.waitFor((n) => n.channel === JOBS_CHANNEL);
      listener.clear();

      // Unpublish.
      await db.pool.query(`INSERT INTO realm_user_permissions (realm_url, username, read, write) VALUES ($1, 'bob', true, false)`, [published]);
      await insertIndexEntries(db.pool, [
        { url: `${published}cards/post.gts`, realmURL: published, type: 'file', generation: 3 },
        { url: `${source}cards/post.gts`, realmURL: source, type: 'instance' },
      ]);
      const gone = await unpublishRealm(plane, published);
      expect(gone.unpublished).toBe(true);
      expect(gone.epoch).toBeGreaterThan(second.epoch);
      await expect(fs.lstat(publishedDir)).rejects.toMatchObject({ code: 'ENOENT' });
      await expect(fs.stat(layout.versionsDir(first.diskId))).rejects.toMatchObject({ code: 'ENOENT' });
      expect((await db.pool.query('SELECT * FROM realm_registry WHERE url = $1', [published])).rows).toEqual([]);
      expect((await db.pool.query('SELECT * FROM realm_user_permissions WHERE realm_url = $1', [published])).rows).toEqual([]);
      // Every index entry of the published realm is tombstoned at the realm's next generation, as Boxel's unpublish leaves them; the source's are not.
      expect((await db.pool.query('SELECT url, type, is_deleted, generation FROM boxel_index ORDER BY url, type')).rows).toEqual([
        { url: `${source}cards/post.gts`, type: 'instance', is_deleted: null, generation: 1 },
        { url: `${published}cards/post.gts`, type: 'file', is_deleted: true, generation: 4 },
        { url: `${published}x.json`, type: 'instance', is_deleted: true, generation: 4 },
      ]);
      // The source realm's own permissions are untouched.
      expect((await db.pool.query('SELECT username FROM realm_user_permissions WHERE realm_url = $1', [source])).rows).toEqual([{ username: '@owner:localhost' }]);
      const after = await db.pool.query('SELECT disk_id, content_version FROM realm_operator.realm_epochs WHERE realm_url = $1', [published]);
      expect(after.rows[0]).toEqual({ disk_id: null, content_version: null });
      await listener.waitFor((n) => n.payload === `${published}:*`);
      expect(listener.received).toEqual([
        { channel: MODULE_CACHE_INVALIDATED_CHANNEL, payload: JSON.stringify({ k: 'realm', r: published }) },
        { channel: REALM_REGISTRY_CHANNEL, payload: `delete:${published}` },
        { channel: REALM_FILE_CHANGES_CHANNEL, payload: `${published}:*` },
      ]);
      // The source realm is untouched; a second unpublish is a no-op; a new first publish gets a new disk id.
      expect(await readTree(sourceDir)).toEqual({ 'cards/post.gts': 'export const v = 2;', 'new.md': '# new' });
      expect((await unpublishRealm(plane, published)).unpublished).toBe(false);
      const third = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
      expect(third.diskId).not.toBe(first.diskId);
      // Nothing is left in staging, scratch or trash.
      for (const dir of [layout.stagingRoot, layout.linkScratchDir, layout.trashDir]) {
        expect(await fs.readdir(dir).catch(() => [])).toEqual([]);
      }
    } finally {
      await listener.close();
    }
  });

  test('refuses bad input with messages that name the field', async () => {
    await expect(publishRealm(plane, { sourceRealmURL: 'http://h/a', publishedRealmURL: 'http://h/b/' })).rejects.toThrow(
      'sourceRealmURL: does not end with "/"; use "http://h/a/"',
    );
    await expect(publishRealm(plane, { sourceRealmURL: 'http://h/a/', publishedRealmURL: 'http://h/a/' })).rejects.toThrow(/must differ/);
    await expect(publishRealm(plane, { sourceRealmURL: 'http://h/missing/', publishedRealmURL: 'http://h/p/' })).rejects.toThrow(
      /source realm http:\/\/h\/missing\/ is not in realm_registry/,
    );
    const source = 'http://localhost:4201/carol/src/';
    await createSourceRealm(db.pool, layout, source, { 'a.txt': 'a' });
    const other = 'http://localhost:4201/carol/other/';
    await createSourceRealm(db.pool, layout, other, { 'b.txt': 'b' });
    const overSource = publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: other });
    await expect(overSource).rejects.toThrow(/registered as a source realm; refusing to publish over it/);
    // Its own class, so the controller reports URLTakenByRealm rather than a missing source.
    await expect(overSource).rejects.toBeInstanceOf(URLTakenByRealmError);
    expect(await fs.readdir(layout.stagingRoot)).toEqual([]);
  });

  test('nested directories, file modes, empty directories, symlinks inside and outside, and special files', async () => {
    const source = 'http://localhost:4201/dave/tree/';
    const dir = await createSourceRealm(db.pool, layout, source, { 'a/b/c/deep.txt': 'deep', 'run.sh': '#!/bin/sh\n', 'x.json': '{}' });
    await fs.chmod(path.join(dir, 'run.sh'), 0o750);
    await fs.mkdir(path.join(dir, 'empty'));
    await fs.symlink('a/b/c/deep.txt', path.join(dir, 'inside-link'));
    await fs.symlink(path.join(dir, 'x.json'), path.join(dir, 'absolute-inside'));
    await fs.symlink('/etc/passwd', path.join(dir, 'outside-link'));
    await fs.symlink('../../../', path.join(dir, 'escape'));
    await fs.symlink('nowhere', path.join(dir, 'dangling'));
    const { execFileSync } = await import('node:child_process');
    execFileSync('mkfifo', [path.join(dir, 'pipe')]);

    const result = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: 'http://pub.localhost/dave/tree/' });
    const pub = layout.publishedDir(result.diskId);
    expect(await fs.readFile(path.join(pub, 'a/b/c/deep.txt'), 'utf8')).toBe('deep');
    expect((await fs.stat(path.join(pub, 'run.sh'))).mode & 0o777).toBe(0o750);
    expect((await fs.stat(path.join(pub, 'empty'))).isDirectory()).toBe(true);
    // Links inside the realm are kept, re-pointed relatively inside the copy.
    expect(await fs.readFile(path.join(pub, 'inside-link'), 'utf8')).toBe('deep');
    expect(await fs.readFile(path.join(pub, 'absolute-inside'), 'utf8')).toBe('{}');
    const realTarget = await fs.realpath(path.join(pub, 'absolute-inside'));
    expect(realTarget.startsWith(layout.versionsDir(result.diskId))).toBe(true);
    for (const name of ['outside-link', 'escape', 'dangling', 'pipe']) {
      await expect(fs.lstat(path.join(pub, name))).rejects.toMatchObject({ code: 'ENOENT' });
    }
    expect(result.skipped.map((s) => s.path).sort()).toEqual(['dangling', 'escape', 'outside-link', 'pipe']);
    expect(result.skipped.find((s) => s.path === 'outside-link')?.reason).toMatch(/points outside the source realm/);
    expect(result.skipped.find((s) => s.path === 'pipe')?.reason).toBe('is a FIFO, not a regular file, directory or symlink');
    expect(result.fileCount).toBe(3);
  });

  test('an empty realm publishes as an empty directory', async () => {
    const source = 'http://localhost:4201/erin/empty/';
    await createSourceRealm(db.pool, layout, source, {});
    const result = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: 'http://pub.localhost/erin/empty/' });
    expect(result.fileCount).toBe(0);
    expect(await fs.readdir(layout.publishedDir(result.diskId))).toEqual([]);
  });

  test('a 10,000-file realm publishes whole', async () => {
    const source = 'http://localhost:4201/frank/big/';
    const files: Record<string, string> = {};
    for (let i = 0; i < 10_000; i++) files[`d${i % 50}/f${i}.json`] = `{"i":${i}}`;
    await createSourceRealm(db.pool, layout, source, files);
    const result = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: 'http://pub.localhost/frank/big/' });
    expect(result.fileCount).toBe(10_000);
    const tree = await readTree(layout.publishedDir(result.diskId));
    expect(Object.keys(tree)).toHaveLength(10_000);
    expect(tree['d7/f9957.json']).toBe('{"i":9957}');
  }, 120_000);

  test('two publishes of one realm serialize; publishes of two realms run in parallel', async () => {
    const sourceA = 'http://localhost:4201/gina/a/';
    const sourceB = 'http://localhost:4201/gina/b/';
    await createSourceRealm(db.pool, layout, sourceA, { 'a.txt': 'a' });
    await createSourceRealm(db.pool, layout, sourceB, { 'b.txt': 'b' });
    const pubA = 'http://pub.localhost/gina/a/';
    const pubB = 'http://pub.localhost/gina/b/';
    // Inside its lock, each publish of A waits until B's publish is inside B's lock and vice versa: a
    // rendezvous only realms locked in parallel can reach. The order of entries and exits is logged.
    const log: Array<[string, string]> = [];
    const entered = (url: string) => {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      return { url, resolve, promise };
    };
    const a = entered(pubA);
    const b = entered(pubB);
    const meet = (other: typeof a) => {
      let timer: NodeJS.Timeout | undefined;
      const bound = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${other.url} never took its lock while the other realm held its own: the realms did not publish in parallel`)), 20_000);
      });
      return Promise.race([other.promise, bound]).finally(() => clearTimeout(timer));
    };
    const slow: DataPlane = {
      ...plane,
      onStep: async (step, url) => {
        if (step !== 'locked') return;
        log.push(['enter', url]);
        const [self, other] = url === pubA ? [a, b] : [b, a];
        self.resolve();
        await meet(other);
        // Give the second publish of A every chance to enter too, were the lock not held.
        await new Promise((r) => setTimeout(r, 50));
        log.push(['exit', url]);
      },
    };
    const results = await Promise.all([
      publishRealm(slow, { sourceRealmURL: sourceA, publishedRealmURL: pubA }),
      publishRealm(slow, { sourceRealmURL: sourceA, publishedRealmURL: pubA }),
      publishRealm(slow, { sourceRealmURL: sourceB, publishedRealmURL: pubB }),
    ]);
    // The two publishes of A never were inside together.
    expect(log.filter(([, url]) => url === pubA).map(([event]) => event)).toEqual(['enter', 'exit', 'enter', 'exit']);
    // B was inside while the first publish of A was.
    const at = (event: string, url: string) => log.findIndex(([e, u]) => e === event && u === url);
    expect(at('enter', pubB)).toBeLessThan(at('exit', pubA));
    expect(at('enter', pubA)).toBeLessThan(at('exit', pubB));
    expect(new Set(results.slice(0, 2).map((r) => r.epoch)).size).toBe(2);
    expect(await readTree(layout.publishedDir(results[0]!.diskId))).toEqual({ 'a.txt': 'a' });
  });

  test('readers never see a missing, empty or half-written published realm during repeated publishes', async () => {
    const source = 'http://localhost:4201/hana/live/';
    const fileNames = Array.from({ length: 40 }, (_, i) => `cards/card-${i}.json`);
    const content = (generation: number) => Object.fromEntries(fileNames.map((f) => [f, `{"generation":${generation},"file":"${f}","pad":"${'x'.repeat(2000)}"}`]));
    const sourceDir = await createSourceRealm(db.pool, layout, source, content(0));
    const first = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: 'http://pub.localhost/hana/live/' });
    const publishedDir = layout.publishedDir(first.diskId);
    let stop = false;
    let reads = 0;
    const problems: string[] = [];
    const reader = (async () => {
      while (!stop) {
        for (const file of fileNames) {
          try {
            const text = await fs.readFile(path.join(publishedDir, file), 'utf8');
            const parsed = JSON.parse(text) as { file: string };
            if (parsed.file !== file) problems.push(`${file}: wrong content`);
          } catch (error) {
            problems.push(`${file}: ${(error as Error).message}`);
          }
          reads += 1;
        }
        const listing = await fs.readdir(path.join(publishedDir, 'cards'));
        if (listing.length !== fileNames.length) problems.push(`listing had ${listing.length} entries`);
      }
    })();
    for (let generation = 1; generation <= 15; generation++) {
      await writeFiles(sourceDir, content(generation));
      await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: 'http://pub.localhost/hana/live/' });
    }
    stop = true;
    await reader;
    expect(problems).toEqual([]);
    expect(reads).toBeGreaterThan(fileNames.length * 15);
    expect(JSON.parse(await fs.readFile(path.join(publishedDir, fileNames[0]!), 'utf8')).generation).toBe(15);
  }, 60_000);

  test('a URL claimed by one PublishedRealm can be neither republished nor unpublished by another', async () => {
    const source = 'http://localhost:4201/ivan/src/';
    const published = 'http://pub.localhost/ivan/claimed/';
    await createSourceRealm(db.pool, layout, source, { 'a.txt': 'a' });
    const first = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published, claim: { claimant: 'ns/one/uid-1' } });
    // The registry owner is the published realm's own user, not the source realm's owner.
    expect((await db.pool.query('SELECT owner_username FROM realm_registry WHERE url = $1', [published])).rows).toEqual([
      { owner_username: `realm/_published_${first.diskId}` },
    ]);
    await expect(publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published, claim: { claimant: 'ns/two/uid-2' } })).rejects.toThrow(
      'http://pub.localhost/ivan/claimed/ is already published by ns/one/uid-1',
    );
    await expect(unpublishRealm(plane, published, { claimant: 'ns/two/uid-2' })).rejects.toThrow(/already published by ns\/one\/uid-1/);
    expect(await readTree(layout.publishedDir(first.diskId))).toEqual({ 'a.txt': 'a' });
    // Once the first claimant is known to be gone, the second may take over.
    const taken = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published, claim: { claimant: 'ns/two/uid-2', takeOverFrom: 'ns/one/uid-1' } });
    expect(taken.diskId).toBe(first.diskId);
    expect((await db.pool.query('SELECT claimed_by FROM realm_operator.realm_epochs WHERE realm_url = $1', [published])).rows).toEqual([{ claimed_by: 'ns/two/uid-2' }]);
    expect((await unpublishRealm(plane, published, { claimant: 'ns/two/uid-2' })).unpublished).toBe(true);
  });

  test('withRealmLock rolls back on error and honours lockTimeoutMs', async () => {
    const url = 'http://pub.localhost/lock/test/';
    await expect(
      withRealmLock(db.pool, url, async (tx) => {
        await tx.query(`INSERT INTO realm_metadata (url, publishable) VALUES ($1, true)`, [url]);
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect((await db.pool.query('SELECT * FROM realm_metadata WHERE url = $1', [url])).rows).toEqual([]);
    let release!: () => void;
    const held = withRealmLock(db.pool, url, () => new Promise<void>((r) => (release = r)));
    await new Promise((r) => setTimeout(r, 100));
    await expect(withRealmLock(db.pool, url, async () => 'never', { lockTimeoutMs: 100 })).rejects.toThrow(/lock timeout/);
    release();
    await held;
    await expect(withRealmLock(db.pool, url, async () => 'ok', { lockTimeoutMs: 1000 })).resolves.toBe('ok');
  });

  test('withRealmLockAndFirst runs its first statement (sent with the lock) only once the lock is held, with its values exactly', async () => {
    const url = 'http://pub.localhost/lock/first/';
    // Quotes, a backslash (an E'' literal), non-ASCII and a NULL travel as literals and come back as they were.
    const odd = `it's a \\ back'slash, "quoted", ünïcødé 𝄞, $1`;
    const echo = { text: 'SELECT $1::text AS echoed, $2::text IS NULL AS was_null', values: [odd, null] };
    // Several times: the pool's connections prepare it once and then only execute it.
    for (let round = 0; round < 6; round++) {
      const { result } = await withRealmLockAndFirst(db.pool, url, echo, async (_tx, first) => first.rows[0]);
      expect(result).toEqual({ echoed: odd, was_null: true });
    }
    await expect(withRealmLockAndFirst(db.pool, url, { text: 'SELECT $1::text', values: ['a\0b'] }, async () => 'never')).rejects.toThrow(/NUL/);

    const insert = { text: 'INSERT INTO realm_metadata (url, publishable) VALUES ($1, true) RETURNING url', values: [url] };
    const rows = async () => (await db.pool.query('SELECT url FROM realm_metadata WHERE url = $1', [url])).rows;
    // With the lock held elsewhere, the statement waits behind it: a lock timeout means it never ran
    // (told by a sequence, which a rollback does not undo).
    await db.pool.query('CREATE SEQUENCE IF NOT EXISTS lock_first_probe');
    const probe = { text: "SELECT nextval('lock_first_probe') AS n, $1::text AS url", values: [url] };
    let release: (() => void) | undefined;
    const held = withRealmLock(db.pool, url, () => new Promise<void>((resolve) => (release = resolve)));
    try {
      await eventually(() => release !== undefined, 10_000, () => 'the lock held');
      await expect(withRealmLockAndFirst(db.pool, url, probe, async () => 'never', { lockTimeoutMs: 50 })).rejects.toThrow(/lock timeout/);
      expect((await db.pool.query('SELECT is_called FROM lock_first_probe')).rows).toEqual([{ is_called: false }]);
    } finally {
      release?.();
      await held;
    }
    // Its write is part of the transaction: rolled back when fn throws, committed when it resolves.
    await expect(withRealmLockAndFirst(db.pool, url, insert, async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await rows()).toEqual([]);
    const { result } = await withRealmLockAndFirst(db.pool, url, insert, async (_tx, first) => first.rows);
    expect(result).toEqual([{ url }]);
    expect(await rows()).toEqual([{ url }]);
  });

  test('withRealmLockAndFirst on a connection that lost its prepared statement (DEALLOCATE ALL, as a pooler may): that call fails, the connection is replaced, the next succeeds', async () => {
    const url = 'http://pub.localhost/lock/deallocated/';
    const single = new pg.Pool({ connectionString: db.url, max: 1 });
    try {
      const echo = { text: 'SELECT $1::text AS echoed', values: ['x'] };
      expect((await withRealmLockAndFirst(single, url, echo, async (_tx, first) => first.rows[0])).result).toEqual({ echoed: 'x' });
      const pidOf = async () => (await single.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      const before = await pidOf();
      await single.query('DEALLOCATE ALL');
      await expect(withRealmLockAndFirst(single, url, echo, async () => 'never')).rejects.toThrow(/does not exist/);
      expect((await withRealmLockAndFirst(single, url, echo, async (_tx, first) => first.rows[0])).result).toEqual({ echoed: 'x' });
      expect(await pidOf()).not.toBe(before);
    } finally {
      await single.end();
    }
  });

  test("a publish whose staging lock's connection dies while it copies is refused before the install (retried), and the content stays whole", async () => {
    const source = 'http://localhost:4201/alice/lease-lost/';
    const published = 'http://pub.localhost/alice/lease-lost/';
    const sourceDir = await createSourceRealm(db.pool, layout, source, { 'index.json': '{"v":1}' });
    const first = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
    await writeFiles(sourceDir, { 'index.json': '{"v":2}' });
    const killLease: DataPlane = {
      ...plane,
      onStep: async (step, url) => {
        if (step !== 'staged' || url !== published) return;
        const { rows } = await db.pool.query<{ pid: number }>(
          `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND classid = $1::bigint::oid AND granted`,
          [STAGING_LOCK_CLASS],
        );
        expect(rows).toHaveLength(1);
        await db.pool.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
        // Until this process has seen the connection fail: a new guard then opens a new lease.
        const leaseOf = (name: string) => name.split('-')[1];
        const held = (await fs.readdir(layout.stagingRoot)).find((name) => name.startsWith('stage-'))!;
        await eventually(async () => {
          const probe = await holdStagingGuard(plane.pool);
          await probe.release();
          return leaseOf(probe.name) !== leaseOf(held);
        }, 10_000, () => "the staging lease's connection failure to be seen");
      },
    };
    await expect(publishRealm(killLease, { sourceRealmURL: source, publishedRealmURL: published })).rejects.toThrow(/staging lock's database connection failed/);
    expect(await readTree(layout.publishedDir(first.diskId))).toEqual({ 'index.json': '{"v":1}' });
    const again = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
    expect(await readTree(layout.publishedDir(again.diskId))).toEqual({ 'index.json': '{"v":2}' });
  });

  test('every check that can refuse a publish runs before staging copies anything', async () => {
    const source = 'http://localhost:4201/jack/src/';
    const published = 'http://pub.localhost/jack/pub/';
    const sourceDir = await createSourceRealm(db.pool, layout, source, { 'a.txt': 'a', 'b/c.txt': 'c' });
    await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published, claim: { claimant: 'ns/one/uid-1' } });
    const steps: string[] = [];
    let entriesExamined = 0;
    const counting: DataPlane = { ...plane, onStep: (step) => void steps.push(step), onStagingEntry: () => void (entriesExamined += 1) };

    // A URL claimed by another PublishedRealm.
    const request = { sourceRealmURL: source, publishedRealmURL: published, claim: { claimant: 'ns/two/uid-2' } };
    await expect(checkPublishable(counting, request)).rejects.toBeInstanceOf(ClaimConflictError);
    await expect(publishRealm(counting, request)).rejects.toBeInstanceOf(ClaimConflictError);
    // A missing source realm.
    await expect(publishRealm(counting, { sourceRealmURL: 'http://localhost:4201/jack/missing/', publishedRealmURL: 'http://pub.localhost/jack/other/' })).rejects.toThrow(
      /is not in realm_registry/,
    );
    // A source realm whose directory is gone.
    await db.pool.query(`INSERT INTO realm_registry (url, kind, disk_id, owner_username) VALUES ('http://localhost:4201/jack/nodir/', 'source', 'jack/nodir', 'jack')`);
    await expect(publishRealm(counting, { sourceRealmURL: 'http://localhost:4201/jack/nodir/', publishedRealmURL: 'http://pub.localhost/jack/nodir/' })).rejects.toThrow(
      /realm_registry.disk_id "jack\/nodir" names .*jack\/nodir, which does not exist \(ENOENT\)/,
    );
    expect(steps).toEqual([]);
    expect(entriesExamined).toBe(0);
    expect(await fs.readdir(layout.stagingRoot)).toEqual([]);

    // checkPublishable returns what publishRealm needs.
    const ok = await checkPublishable(plane, { sourceRealmURL: source, publishedRealmURL: published, claim: { claimant: 'ns/one/uid-1' } });
    // The publisher defaults to the source owner's Matrix id, from its realm-owner permission row.
    expect(ok).toEqual({ sourceRealmURL: source, publishedRealmURL: published, directory: await fs.realpath(sourceDir), publisher: '@owner:localhost' });
    // A publisher that is not a Matrix user id is refused, naming the field and the form.
    await expect(checkPublishable(plane, { sourceRealmURL: source, publishedRealmURL: published, publisher: 'alice' })).rejects.toThrow(
      'publisher "alice" is not a Matrix user id; write it as @localpart:server (e.g. @alice:boxel.ai)',
    );
  });

  test('a published URL nested in, or containing, another realm\'s URL is refused unless it is already registered', async () => {
    const source = 'http://localhost:4201/kim/src/';
    await createSourceRealm(db.pool, layout, source, { 'a.txt': 'a' });
    await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: 'http://pub.localhost/kim/site/' });
    const steps: string[] = [];
    const watched: DataPlane = { ...plane, onStep: (step) => void steps.push(step) };

    const inside = await publishRealm(watched, { sourceRealmURL: source, publishedRealmURL: 'http://pub.localhost/kim/site/blog/' }).catch((e: Error) => e);
    expect(inside).toBeInstanceOf(RealmURLOverlapError);
    expect((inside as Error).message).toBe(
      'publishedRealmURL http://pub.localhost/kim/site/blog/ overlaps the registered realm URL http://pub.localhost/kim/site/; ' +
        "choose a publishedRealmURL that neither contains nor is contained in another realm's URL (delete and recreate the PublishedRealm with it)",
    );
    const around = await publishRealm(watched, { sourceRealmURL: source, publishedRealmURL: 'http://pub.localhost/kim/' }).catch((e: Error) => e);
    expect(around).toMatchObject({ name: 'RealmURLOverlapError', overlapping: ['http://pub.localhost/kim/site/'] });
    // Inside the source realm's own URL, too; a sibling that merely shares a string prefix is fine.
    await expect(publishRealm(watched, { sourceRealmURL: source, publishedRealmURL: 'http://localhost:4201/kim/src/pub/' })).rejects.toMatchObject({
      overlapping: [source],
    });
    expect(steps).toEqual([]);
    await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: 'http://pub.localhost/kim/site-2/' });

    // A layout Boxel already made is respected: republishing a registered nested URL is allowed.
    await db.pool.query(
      `INSERT INTO realm_registry (url, kind, disk_id, owner_username, source_url)
       VALUES ('http://pub.localhost/kim/site/old/', 'published', '6b1c5a0e-0000-4000-8000-000000000001', 'realm/_published_6b1c5a0e-0000-4000-8000-000000000001', $1)`,
      [source],
    );
    const republished = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: 'http://pub.localhost/kim/site/old/' });
    expect(republished.diskId).toBe('6b1c5a0e-0000-4000-8000-000000000001');

    // An overlapping realm registered while we staged is caught under the lock; nothing is left behind.
    const racing: DataPlane = {
      ...plane,
      onStep: async (step) => {
        if (step === 'staged') await db.pool.query(`INSERT INTO realm_registry (url, kind, disk_id, owner_username) VALUES ('http://pub.localhost/late/', 'source', 'late/x', 'late')`);
      },
    };
    await expect(publishRealm(racing, { sourceRealmURL: source, publishedRealmURL: 'http://pub.localhost/late/inner/' })).rejects.toBeInstanceOf(RealmURLOverlapError);
    expect((await db.pool.query(`SELECT url FROM realm_registry WHERE url = 'http://pub.localhost/late/inner/'`)).rows).toEqual([]);
    expect(await fs.readdir(layout.stagingRoot)).toEqual([]);
  });

  test('path components from the database are validated: tampered epochs and registry rows are refused and the published link is untouched', async () => {
    const source = 'http://localhost:4201/lena/src/';
    const published = 'http://pub.localhost/lena/pub/';
    await createSourceRealm(db.pool, layout, source, { 'a.txt': 'a' });
    const first = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
    await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
    const link = layout.publishedDir(first.diskId);
    const linkBefore = await fs.readlink(link);
    const original = (await db.pool.query('SELECT content_version, previous_version, disk_id FROM realm_operator.realm_epochs WHERE realm_url = $1', [published])).rows[0];

    const attempts = {
      recover: () => recoverPublishedRealm(plane, published),
      publish: () => publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published }),
      unpublish: () => unpublishRealm(plane, published),
    };
    type Attempt = keyof typeof attempts;
    const tamper = async (sql: string, column: string, value: string, refused: Attempt[] = ['recover', 'publish', 'unpublish']) => {
      await db.pool.query(sql, [published]);
      for (const name of refused) {
        const error = await attempts[name]().catch((e: Error) => e);
        expect(error).toBeInstanceOf(UnsafeDatabaseValueError);
        expect(error).toMatchObject({ column, rowURL: published, value });
        expect((error as Error).message).toContain(`${column} of the row for ${published} is ${JSON.stringify(value)}`);
        expect(await fs.readlink(link)).toBe(linkBefore);
      }
      await db.pool.query(
        'UPDATE realm_operator.realm_epochs SET content_version = $2, previous_version = $3, disk_id = $4 WHERE realm_url = $1',
        [published, original.content_version, original.previous_version, original.disk_id],
      );
      await db.pool.query('UPDATE realm_registry SET disk_id = $2 WHERE url = $1', [published, first.diskId]);
    };
    await tamper(`UPDATE realm_operator.realm_epochs SET content_version = '../../../../etc' WHERE realm_url = $1`, 'realm_operator.realm_epochs.content_version', '../../../../etc');
    await tamper(`UPDATE realm_operator.realm_epochs SET content_version = '/etc' WHERE realm_url = $1`, 'realm_operator.realm_epochs.content_version', '/etc');
    await tamper(`UPDATE realm_operator.realm_epochs SET previous_version = '..' WHERE realm_url = $1`, 'realm_operator.realm_epochs.previous_version', '..');
    // (A publish takes the disk id from the registry row and rewrites this one; recovery and unpublish read it.)
    await tamper(`UPDATE realm_operator.realm_epochs SET disk_id = '../../etc' WHERE realm_url = $1`, 'realm_operator.realm_epochs.disk_id', '../../etc', ['recover', 'unpublish']);
    // (Recovery of a committed publish goes by realm_epochs; publish and unpublish read the registry.)
    await tamper(`UPDATE realm_registry SET disk_id = '../../etc' WHERE url = $1`, 'realm_registry.disk_id', '../../etc', ['publish', 'unpublish']);
    expect(await fs.readdir(layout.stagingRoot)).toEqual([]);

    // A versions directory swapped for a symlink out of the volume is refused after realpath.
    const versions = layout.versionsDir(first.diskId);
    const elsewhere = `${realms.root}-elsewhere`;
    await fs.rename(versions, elsewhere);
    await fs.symlink(elsewhere, versions);
    try {
      await expect(recoverPublishedRealm(plane, published)).rejects.toThrow(
        `${versions} resolves to ${await fs.realpath(elsewhere)}, not ${path.join(await fs.realpath(realms.root), path.relative(realms.root, versions))}: a directory the operator manages under the realms root is a symlink`,
      );
    } finally {
      await fs.rm(versions);
      await fs.rename(elsewhere, versions);
    }
    expect(await fs.readlink(link)).toBe(linkBefore);
    expect((await recoverPublishedRealm(plane, published)).actions).toEqual([]);
  });

  test('routine clean-up after republishes and an unpublish is not logged as recovery', async () => {
    const { logger, lines } = capturingLogger();
    const logged: DataPlane = { ...plane, logger };
    const source = 'http://localhost:4201/mia/src/';
    const published = 'http://pub.localhost/mia/pub/';
    await createSourceRealm(db.pool, layout, source, { 'a.txt': 'a' });
    for (let i = 0; i < 5; i++) await publishRealm(logged, { sourceRealmURL: source, publishedRealmURL: published });
    await unpublishRealm(logged, published);
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines.filter((l) => l.level >= 40)).toEqual([]);
    // The clean-up did happen, and is at debug.
    expect(lines.filter((l) => l.msg === 'cleaned up published realm versions').length).toBeGreaterThanOrEqual(4);
    expect(lines.filter((l) => l.msg === 'published realm')).toHaveLength(5);
  });
});
