/**
 * Staging under hostile or careless source realms (real PostgreSQL, real files): unreadable entries,
 * entries that vanish or turn into symlinks mid-copy, setuid bits, hard links, a symlinked source
 * root, size limits — and a randomized race against a concurrent mutator. No case may crash the
 * process (an unhandledRejection), leak a file from outside the realm, or leave a staging copy.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { checkPublishable, publishRealm, type DataPlane } from '../../src/dataplane/publish.js';
import { PublishError, RealmTooLargeError, UnsafeDatabaseValueError } from '../../src/dataplane/realm-state.js';
import { measureSourceRealm, stageRealmFiles, type StageOptions } from '../../src/dataplane/staging.js';
import type { RealmsLayout } from '../../src/dataplane/layout.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { createSourceRealm, dataPlane, makeRealmsRoot, readTree, writeFiles } from '../support/realms.js';

const OUTSIDE_SECRET = 'OUTSIDE-SECRET';

let db: TestDatabase;
let realms: Awaited<ReturnType<typeof makeRealmsRoot>>;
let layout: RealmsLayout;
let plane: DataPlane;
/** A directory outside the realms root, holding what must never be copied. */
let outside: string;
const unhandled: unknown[] = [];
const recordUnhandled = (reason: unknown) => unhandled.push(reason);

beforeAll(async () => {
  process.on('unhandledRejection', recordUnhandled);
  db = await createTestDatabase();
  realms = await makeRealmsRoot();
  layout = realms.layout;
  plane = dataPlane(db.pool, layout);
  outside = await fs.mkdtemp(path.join(os.tmpdir(), 'outside-'));
  await writeFiles(outside, { 'secret.txt': OUTSIDE_SECRET, 'a.txt': OUTSIDE_SECRET, 'sub/a.txt': OUTSIDE_SECRET });
});
afterEach(() => {
  expect(unhandled).toEqual([]);
});
afterAll(async () => {
  process.off('unhandledRejection', recordUnhandled);
  await db.drop();
  await realms.cleanup();
  await fs.rm(outside, { recursive: true, force: true });
});

let counter = 0;
function urls(name: string): { source: string; published: string } {
  counter += 1;
  return { source: `http://localhost:4201/stage/${name}-${counter}/`, published: `http://pub.localhost/stage/${name}-${counter}/` };
}

async function stagingEntries(): Promise<string[]> {
  return fs.readdir(layout.stagingRoot).catch(() => []);
}

/** Every file and link in a published tree, and whether any symlink in it resolves outside `dir`. */
async function expectNothingFromOutside(dir: string): Promise<void> {
  const realDir = await fs.realpath(dir);
  const tree = await readTree(dir);
  for (const [rel, content] of Object.entries(tree)) {
    expect(`${rel}: ${content}`).not.toContain(OUTSIDE_SECRET);
    if (rel.endsWith('@')) {
      const resolved = await fs.realpath(path.join(dir, rel.slice(0, -1))).catch(() => undefined);
      if (resolved) expect(resolved === realDir || resolved.startsWith(realDir + path.sep)).toBe(true);
    }
  }
}

describe('unreadable entries (as an unprivileged process)', () => {
  test('a mode-000 file in a sub-directory and a mode-000 sub-directory are skipped with reasons; the rest publishes', async () => {
    // A realms root the child can use once it has dropped to uid 65534.
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'realms-nobody-'));
    try {
      const { RealmsLayout } = await import('../../src/dataplane/layout.js');
      const nobodyLayout = new RealmsLayout(root);
      const { source, published } = urls('unreadable');
      const dir = await createSourceRealm(db.pool, nobodyLayout, source, {
        'index.json': '{}',
        'cards/ok.gts': 'ok',
        'cards/secret.gts': 'secret',
        'locked/inside.txt': 'inside',
      });
      if (process.getuid?.() === 0) await chownTree(root, 65534, 65534);
      await fs.chmod(path.join(dir, 'cards/secret.gts'), 0o000);
      await fs.chmod(path.join(dir, 'locked'), 0o000);

      const child = await runChild({ DATABASE_URL: db.url, REALMS_ROOT: root, SOURCE_URL: source, PUBLISHED_URL: published });
      expect(child.exitCode).toBe(0);
      const report = JSON.parse(child.stdout.trim().split('\n').pop()!) as {
        ok: boolean;
        uid: number;
        unhandled: string[];
        error?: string;
        result: { diskId: string; fileCount: number; skipped: Array<{ path: string; reason: string }> };
        warnings: Array<{ msg: string; path?: string }>;
      };
      expect(report).toMatchObject({ ok: true, unhandled: [] });
      expect(report.uid).not.toBe(0);
      expect(byPath(report.result.skipped)).toEqual([
        { path: 'cards/secret.gts', reason: 'is not readable by the operator (EACCES)' },
        { path: 'locked', reason: 'is not readable by the operator (EACCES)' },
      ]);
      // Each skip is logged with its reason.
      expect(report.warnings.filter((w) => w.msg === 'skipped a source realm entry').map((w) => w.path).sort()).toEqual(['cards/secret.gts', 'locked']);
      expect(report.result.fileCount).toBe(2);
      expect(await readTree(nobodyLayout.publishedDir(report.result.diskId))).toEqual({ 'index.json': '{}', 'cards/ok.gts': 'ok' });
      expect(await fs.readdir(nobodyLayout.stagingRoot)).toEqual([]);
    } finally {
      await fs.chmod(path.join(root, 'owner'), 0o755).catch(() => undefined);
      for (const name of await fs.readdir(path.join(root, 'owner')).catch(() => [] as string[])) {
        await fs.chmod(path.join(root, 'owner', name, 'locked'), 0o755).catch(() => undefined);
      }
      await fs.rm(root, { recursive: true, force: true });
    }
  });
});

describe('entries that change while staging', () => {
  async function stageWith(sourceDir: string, onEntry: StageOptions['onEntry'], extra: StageOptions = {}) {
    const token = randomInt(1, 2 ** 31 - 1);
    return stageRealmFiles(await fs.realpath(sourceDir), layout.stagingRoot, token, { durable: false, onEntry, ...extra });
  }

  test('a file and a whole directory deleted mid-copy are skipped as vanished', async () => {
    const { source } = urls('vanish');
    const dir = await createSourceRealm(db.pool, layout, source, { 'keep.txt': 'keep', 'gone.txt': 'gone', 'folder/a.txt': 'a', 'folder/b.txt': 'b' });
    const staged = await stageWith(dir, async ({ path: rel, phase }) => {
      if (phase !== 'examine') return;
      if (rel === 'gone.txt') await fs.rm(path.join(dir, 'gone.txt'));
      // The folder was listed; now the user deletes it with everything in it.
      if (rel === 'folder/a.txt') await fs.rm(path.join(dir, 'folder'), { recursive: true });
    }, { concurrency: 1 });
    try {
      expect(byPath(staged.skipped)).toEqual([
        { path: 'folder/a.txt', reason: 'disappeared while staging (ENOENT)' },
        { path: 'folder/b.txt', reason: 'disappeared while staging (ENOENT)' },
        { path: 'gone.txt', reason: 'disappeared while staging (ENOENT)' },
      ]);
      expect(await readTree(staged.dir)).toEqual({ 'keep.txt': 'keep' });
    } finally {
      await fs.rm(staged.dir, { recursive: true, force: true });
    }
  });

  test('a directory swapped for a symlink after it was listed: its entries come from the directory that was listed, never from the symlink target', async () => {
    const { source } = urls('swap-parent');
    const dir = await createSourceRealm(db.pool, layout, source, { 'sub/a.txt': 'realm a', 'sub/secret.txt': 'realm secret' });
    const staged = await stageWith(dir, async ({ path: rel, phase }) => {
      if (rel === 'sub/a.txt' && phase === 'examine') {
        await fs.rename(path.join(dir, 'sub'), path.join(dir, 'sub-moved'));
        await fs.symlink(outside, path.join(dir, 'sub'));
      }
    });
    try {
      expect(staged.skipped).toEqual([]);
      const tree = await readTree(staged.dir);
      expect(tree).toEqual({ 'sub/a.txt': 'realm a', 'sub/secret.txt': 'realm secret' });
    } finally {
      await fs.rm(staged.dir, { recursive: true, force: true });
    }
  });

  test('a directory or file swapped for a symlink between lstat and open is skipped (O_NOFOLLOW), and a file swapped for another is skipped (fstat)', async () => {
    const { source } = urls('swap-open');
    const dir = await createSourceRealm(db.pool, layout, source, { 'd/x.txt': 'x', 'f.txt': 'f', 'g.txt': 'g', 'ok.txt': 'ok' });
    const replacement = path.join(realms.root, `replacement-${counter}.txt`);
    await fs.writeFile(replacement, OUTSIDE_SECRET);
    const staged = await stageWith(dir, async ({ path: rel, phase }) => {
      if (phase !== 'open') return;
      if (rel === 'd') {
        await fs.rename(path.join(dir, 'd'), path.join(outside, `moved-${counter}`));
        await fs.symlink(path.join(outside, 'sub'), path.join(dir, 'd'));
      }
      if (rel === 'f.txt') {
        await fs.rm(path.join(dir, 'f.txt'));
        await fs.symlink(path.join(outside, 'secret.txt'), path.join(dir, 'f.txt'));
      }
      // Another inode renamed over it (it existed alongside, so its inode number differs).
      if (rel === 'g.txt') await fs.rename(replacement, path.join(dir, 'g.txt'));
    });
    try {
      expect(byPath(staged.skipped)).toEqual([
        { path: 'd', reason: 'was replaced by a symlink or another non-directory while staging (ENOTDIR)' },
        { path: 'f.txt', reason: 'was replaced by a symlink while staging (ELOOP)' },
        { path: 'g.txt', reason: 'was replaced while staging' },
      ]);
      expect(await readTree(staged.dir)).toEqual({ 'ok.txt': 'ok' });
    } finally {
      await fs.rm(staged.dir, { recursive: true, force: true });
    }
  });

  test('a write error on the staging volume fails the publish cleanly (no skip, nothing left)', async () => {
    const { source } = urls('volume');
    const dir = await createSourceRealm(db.pool, layout, source, { 'a/b.txt': 'b', 'c.txt': 'c' });
    let stagedDir = '';
    await expect(
      stageWith(dir, async ({ path: rel, phase }) => {
        // Take the staged copy's directory away: every later write into it fails with ENOENT.
        if (rel === 'a/b.txt' && phase === 'open') {
          stagedDir = (await fs.readdir(layout.stagingRoot)).map((name) => path.join(layout.stagingRoot, name))[0]!;
          await fs.rm(path.join(stagedDir, 'a'), { recursive: true });
        }
      }, { concurrency: 1 }),
    ).rejects.toMatchObject({ name: 'StagingVolumeError', message: expect.stringMatching(/^could not stage the copy on the published volume \(ENOENT\)/) });
    expect(stagedDir).not.toBe('');
    expect(await stagingEntries()).toEqual([]);
  });

  test('randomized: 100 publishes against a concurrent mutator never crash, leak or leave staging behind', async () => {
    const { source, published } = urls('race');
    const dir = await createSourceRealm(db.pool, layout, source, {});
    // Its own outside directory: the mutator's recursive rm races with its own symlink swaps, and a
    // path-based rm that descends into a directory just swapped for a symlink deletes the target's
    // files, which would break later tests that rely on the shared one.
    const outside = await fs.mkdtemp(path.join(os.tmpdir(), 'outside-race-'));
    await writeFiles(outside, { 'secret.txt': OUTSIDE_SECRET, 'a.txt': OUTSIDE_SECRET, 'sub/a.txt': OUTSIDE_SECRET });
    const shape = () => Object.fromEntries(Array.from({ length: 4 }, (_, d) => Array.from({ length: 4 }, (_, f) => [`d${d}/e/f${f}.txt`, `realm ${d}/${f}`])).flat());
    let outcomes = { ok: 0, skippedSome: 0, failed: 0 };
    for (let run = 0; run < 100; run++) {
      await fs.rm(dir, { recursive: true, force: true });
      await fs.mkdir(dir, { recursive: true });
      await writeFiles(dir, shape());
      let stop = false;
      const mutate = async () => {
        const d = `d${randomInt(0, 4)}`;
        const f = `f${randomInt(0, 4)}.txt`;
        switch (randomInt(0, 6)) {
          case 0:
            return fs.rm(path.join(dir, d), { recursive: true, force: true });
          case 1:
            return fs.rm(path.join(dir, d, 'e', f), { force: true });
          case 2: // a directory swapped for a symlink to outside
            await fs.rename(path.join(dir, d, 'e'), path.join(dir, `${d}-old-${run}-${randomInt(0, 1e9)}`));
            return fs.symlink(outside, path.join(dir, d, 'e'));
          case 3: // a file swapped for a symlink to outside
            await fs.rm(path.join(dir, d, 'e', f), { force: true });
            return fs.symlink(path.join(outside, 'secret.txt'), path.join(dir, d, 'e', f));
          case 4: // the directory itself swapped for a symlink to outside
            await fs.rename(path.join(dir, d), path.join(dir, `${d}-gone-${run}-${randomInt(0, 1e9)}`));
            return fs.symlink(outside, path.join(dir, d));
          default:
            return fs.chmod(path.join(dir, d), 0o000);
        }
      };
      const mutator = (async () => {
        while (!stop) {
          await mutate().catch(() => undefined);
          await new Promise((resolve) => setImmediate(resolve));
        }
      })();
      const racy: DataPlane = { ...plane, onStagingEntry: async () => (randomInt(0, 10) === 0 ? mutate().catch(() => undefined) : undefined) };
      try {
        const result = await publishRealm(racy, { sourceRealmURL: source, publishedRealmURL: published });
        outcomes = { ...outcomes, ok: outcomes.ok + 1, skippedSome: outcomes.skippedSome + (result.skipped.length > 0 ? 1 : 0) };
        await expectNothingFromOutside(layout.publishedDir(result.diskId));
      } catch (error) {
        outcomes.failed += 1;
        expect(error).toBeInstanceOf(PublishError);
      } finally {
        stop = true;
        await mutator;
      }
      expect(await stagingEntries()).toEqual([]);
      await fs.chmod(dir, 0o755);
      for (const name of await fs.readdir(dir)) await fs.chmod(path.join(dir, name), 0o755).catch(() => undefined);
    }
    await fs.chmod(outside, 0o755); // a chmod through a swapped-in symlink may have reached it
    await fs.rm(outside, { recursive: true, force: true });
    expect(unhandled).toEqual([]);
    expect(outcomes.ok + outcomes.failed).toBe(100);
    // Races happened: some publishes saw entries vanish or change.
    expect(outcomes.skippedSome).toBeGreaterThan(0);
  }, 240_000);
});

describe('modes, hard links and the source root', () => {
  test('setuid, setgid and sticky bits are masked: a 6777 file is staged 0777, a 3777 directory 0777', async () => {
    const { source, published } = urls('modes');
    const dir = await createSourceRealm(db.pool, layout, source, { 'suid.sh': '#!/bin/sh\n', 'shared/x.txt': 'x' });
    await fs.chmod(path.join(dir, 'suid.sh'), 0o6777);
    await fs.chmod(path.join(dir, 'shared'), 0o3777);
    expect((await fs.stat(path.join(dir, 'suid.sh'))).mode & 0o7777).toBe(0o6777);
    const result = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
    const pub = layout.publishedDir(result.diskId);
    expect((await fs.stat(path.join(pub, 'suid.sh'))).mode & 0o7777).toBe(0o777);
    expect((await fs.stat(path.join(pub, 'shared'))).mode & 0o7777).toBe(0o777);
  });

  test('a hard-linked file is skipped with the reason, and copied with copyHardLinkedFiles', async () => {
    const { source, published } = urls('hardlink');
    const dir = await createSourceRealm(db.pool, layout, source, { 'own.txt': 'own' });
    const secret = path.join(realms.root, `outside-${counter}.txt`);
    await fs.writeFile(secret, OUTSIDE_SECRET);
    await fs.link(secret, path.join(dir, 'linked.txt'));
    const skipped = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
    expect(skipped.skipped).toEqual([
      {
        path: 'linked.txt',
        reason: 'is a regular file with 2 hard links, which could bring in a file from outside the realm (the operator copies such files only with copyHardLinkedFiles)',
      },
    ]);
    expect(await readTree(layout.publishedDir(skipped.diskId))).toEqual({ 'own.txt': 'own' });
    const copied = await publishRealm({ ...plane, copyHardLinkedFiles: true }, { sourceRealmURL: source, publishedRealmURL: published });
    expect(copied.skipped).toEqual([]);
    expect(await readTree(layout.publishedDir(copied.diskId))).toEqual({ 'own.txt': 'own', 'linked.txt': OUTSIDE_SECRET });
  });

  test('a source realm directory that is a symlink out of the realms root is refused, naming the realm, disk_id and fix; nothing is copied', async () => {
    const { source, published } = urls('linked-root');
    const diskId = `owner/linked-root-${counter}`;
    await fs.mkdir(path.join(realms.root, 'owner'), { recursive: true });
    await fs.symlink(outside, path.join(realms.root, diskId));
    await db.pool.query(`INSERT INTO realm_registry (url, kind, disk_id, owner_username) VALUES ($1, 'source', $2, 'owner')`, [source, diskId]);
    const steps: string[] = [];
    const error = await publishRealm({ ...plane, onStep: (step) => void steps.push(step) }, { sourceRealmURL: source, publishedRealmURL: published }).catch((e: Error) => e);
    expect(error).toBeInstanceOf(PublishError);
    expect((error as Error).message).toBe(
      `source realm ${source}: realm_registry.disk_id "${diskId}" resolves through a symlink to ${await fs.realpath(outside)}, outside the realms root ${await fs.realpath(realms.root)}; ` +
        'the source realm must be a directory under the realms root (not a symlink out of it): fix realm_registry.disk_id or the directory, or fix sourceRealmURL',
    );
    expect(steps).toEqual([]);
    expect(await stagingEntries()).toEqual([]);
  });

  test('a symlinked parent of the source directory, and one into _published/, are refused too', async () => {
    const parentLinked = urls('linked-parent');
    await fs.symlink(outside, path.join(realms.root, `evil-${counter}`));
    await db.pool.query(`INSERT INTO realm_registry (url, kind, disk_id, owner_username) VALUES ($1, 'source', $2, 'owner')`, [parentLinked.source, `evil-${counter}/sub`]);
    await expect(publishRealm(plane, { sourceRealmURL: parentLinked.source, publishedRealmURL: parentLinked.published })).rejects.toThrow(
      /resolves through a symlink to .*, outside the realms root/,
    );
    const intoPublished = urls('into-published');
    await fs.mkdir(layout.publishedRoot, { recursive: true });
    await fs.symlink(layout.publishedRoot, path.join(realms.root, `pub-${counter}`));
    await db.pool.query(`INSERT INTO realm_registry (url, kind, disk_id, owner_username) VALUES ($1, 'source', $2, 'owner')`, [intoPublished.source, `pub-${counter}`]);
    await expect(publishRealm(plane, { sourceRealmURL: intoPublished.source, publishedRealmURL: intoPublished.published })).rejects.toThrow(
      /resolves through a symlink to .*_published, inside .*_published, where published realms live/,
    );
  });

  test.each([
    ['../../etc', 'has a ".." path segment'],
    ['/etc', 'is an absolute path'],
    ['_published/x', 'is inside _published/, where published realms live'],
    ['owner//x', 'has an empty path segment'],
    ['owner/x\u0000y', 'contains a NUL or control character'],
  ])('a source disk_id of %j is refused before any file is touched (%s)', async (diskId, problem) => {
    const { source, published } = urls('bad-disk-id');
    await db.pool.query(`INSERT INTO realm_registry (url, kind, disk_id, owner_username) VALUES ($1, 'source', $2, 'owner')`, [source, diskId.replace('\u0000', '\u0001')]);
    const error = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published }).catch((e: Error) => e);
    expect(error).toBeInstanceOf(UnsafeDatabaseValueError);
    expect((error as UnsafeDatabaseValueError).column).toBe('realm_registry.disk_id');
    expect((error as Error).message).toContain(`realm_registry.disk_id of the row for ${source} is `);
    expect((error as Error).message).toContain(problem);
    expect(await stagingEntries()).toEqual([]);
  });
});

describe('per-realm size limits', () => {
  test('a realm over maxFiles or maxBytes is refused before anything is copied, naming the limit, the count and the fix', async () => {
    const { source, published } = urls('too-many');
    await createSourceRealm(db.pool, layout, source, { 'a.txt': '1', 'b.txt': '22', 'c/d.txt': '333', 'c/e.txt': '4444', 'f.txt': '55555' });
    const steps: string[] = [];
    const limited = (limits: DataPlane['limits']): DataPlane => ({ ...plane, limits, onStep: (step) => void steps.push(step) });

    const files = await publishRealm(limited({ maxFiles: 3 }), { sourceRealmURL: source, publishedRealmURL: published }).catch((e: Error) => e);
    expect(files).toBeInstanceOf(RealmTooLargeError);
    expect(files).toBeInstanceOf(PublishError);
    expect(files).toMatchObject({ files: 4, limit: { kind: 'files', max: 3 } });
    expect((files as Error).message).toBe(
      `source realm ${source} is over the per-realm limit of 3 files (counted 4 files before stopping); raise --max-realm-files on the operator or remove files from the source realm`,
    );
    const bytes = await checkPublishable(limited({ maxBytes: 6 }), { sourceRealmURL: source, publishedRealmURL: published }).catch((e: Error) => e);
    expect(bytes).toBeInstanceOf(RealmTooLargeError);
    expect((bytes as RealmTooLargeError).limit).toEqual({ kind: 'bytes', max: 6 });
    expect((bytes as RealmTooLargeError).bytes).toBeGreaterThan(6);
    expect((bytes as Error).message).toMatch(/is over the per-realm limit of 6 bytes \(counted \d+ bytes before stopping\); raise --max-realm-bytes on the operator or remove large files from the source realm$/);
    expect(steps).toEqual([]);
    expect(await stagingEntries()).toEqual([]);

    // Within the limits it publishes; the limit counts regular files only.
    const ok = await publishRealm(limited({ maxFiles: 5, maxBytes: 15 }), { sourceRealmURL: source, publishedRealmURL: published });
    expect(ok).toMatchObject({ fileCount: 5, totalBytes: 15 });
  });

  test('the check before copying counts exactly what staging copies: regular files in subdirectories, not symlinks, FIFOs or hard-linked files', async () => {
    const { source } = urls('measure');
    const dir = await createSourceRealm(db.pool, layout, source, { 'a.txt': 'aa', 'sub/b.txt': 'bbb', 'sub/deeper/c.txt': 'c'.repeat(10), 'twice.txt': 'hard' });
    await fs.link(path.join(dir, 'twice.txt'), path.join(dir, 'sub/twice-again.txt'));
    await fs.symlink('a.txt', path.join(dir, 'link.txt'));
    await fs.symlink(path.join(outside, 'secret.txt'), path.join(dir, 'sub/escape.txt'));
    spawnSyncMkfifo(path.join(dir, 'sub/pipe'));
    const root = await fs.realpath(dir);
    for (const copyHardLinkedFiles of [false, true]) {
      const measured = await measureSourceRealm(root, { copyHardLinkedFiles, realmName: source });
      const token = randomInt(1, 2 ** 31 - 1);
      const staged = await stageRealmFiles(root, layout.stagingRoot, token, { durable: false, copyHardLinkedFiles, realmName: source });
      await fs.rm(staged.dir, { recursive: true, force: true });
      expect(measured).toEqual({ fileCount: staged.fileCount, totalBytes: staged.totalBytes });
      expect(measured).toEqual(copyHardLinkedFiles ? { fileCount: 5, totalBytes: 2 + 3 + 10 + 4 + 4 } : { fileCount: 3, totalBytes: 2 + 3 + 10 });
    }
    // The limit is enforced on those counts: 3 files fit, the fourth (hard-linked ones copied) does not.
    await expect(measureSourceRealm(root, { limits: { maxFiles: 3 }, realmName: source })).resolves.toEqual({ fileCount: 3, totalBytes: 15 });
    await expect(measureSourceRealm(root, { limits: { maxFiles: 4 }, copyHardLinkedFiles: true, realmName: source })).rejects.toThrow(RealmTooLargeError);
    await expect(measureSourceRealm(root, { limits: { maxBytes: 14 }, realmName: source })).rejects.toThrow(RealmTooLargeError);
  });

  test('the check before copying counts alike on long listings (measured in the staging worker) and short ones (on the calling thread)', async () => {
    const { source } = urls('measure-long');
    const files = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`many/f${i}.txt`, 'x'.repeat(i + 1)]));
    const dir = await createSourceRealm(db.pool, layout, source, { ...files, 'few/a.txt': 'aa', 'few/twice.txt': 'hard' });
    // In each listing: a symlink, a hard-linked file and a FIFO, none of which the check counts.
    await fs.link(path.join(dir, 'few/twice.txt'), path.join(dir, 'many/twice-again.txt'));
    await fs.symlink('f0.txt', path.join(dir, 'many/link.txt'));
    spawnSyncMkfifo(path.join(dir, 'many/pipe'));
    await fs.symlink('a.txt', path.join(dir, 'few/link.txt'));
    spawnSyncMkfifo(path.join(dir, 'few/pipe'));
    const root = await fs.realpath(dir);
    for (const copyHardLinkedFiles of [false, true]) {
      const measured = await measureSourceRealm(root, { copyHardLinkedFiles, realmName: source });
      const staged = await stageRealmFiles(root, layout.stagingRoot, randomInt(1, 2 ** 31 - 1), { durable: false, copyHardLinkedFiles, realmName: source });
      await fs.rm(staged.dir, { recursive: true, force: true });
      expect(measured).toEqual({ fileCount: staged.fileCount, totalBytes: staged.totalBytes });
      expect(measured).toEqual({ fileCount: 21 + (copyHardLinkedFiles ? 2 : 0), totalBytes: 210 + 2 + (copyHardLinkedFiles ? 8 : 0) });
    }
  });

  test('staging itself stops at the limit (files added after the check) and leaves nothing behind', async () => {
    const { source } = urls('grows');
    const dir = await createSourceRealm(db.pool, layout, source, { 'a.txt': 'a', 'b.txt': 'b' });
    const token = randomInt(1, 2 ** 31 - 1);
    await writeFiles(dir, { 'c.txt': 'c', 'd.txt': 'd' });
    const error = await stageRealmFiles(await fs.realpath(dir), layout.stagingRoot, token, { durable: false, limits: { maxFiles: 3 }, realmName: source, concurrency: 1 }).catch(
      (e: Error) => e,
    );
    expect(error).toBeInstanceOf(RealmTooLargeError);
    expect(error).toMatchObject({ files: 4, limit: { kind: 'files', max: 3 } });
    expect(await stagingEntries()).toEqual([]);
  });
});

function spawnSyncMkfifo(target: string): void {
  const result = spawnSync('mkfifo', [target]);
  if (result.status !== 0) throw new Error(`mkfifo ${target} failed: ${result.stderr}`);
}

function byPath<T extends { path: string }>(entries: T[]): T[] {
  return [...entries].sort((a, b) => a.path.localeCompare(b.path));
}

async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  await fs.chown(dir, uid, gid);
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) await chownTree(full, uid, gid);
    else await fs.lchown(full, uid, gid);
  }
}

async function runChild(env: Record<string, string>): Promise<{ exitCode: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, '../support/staging-child.ts')], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exitCode = await new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  if (exitCode !== 0) throw new Error(`staging child exited ${exitCode}: ${stdout}${stderr}`);
  return { exitCode, stdout, stderr };
}
