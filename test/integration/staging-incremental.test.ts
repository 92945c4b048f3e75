/**
 * Incremental republish (real PostgreSQL, real files): unchanged files are hard-linked from the
 * version published now, changed ones copied — including an edit that keeps the size and sets the
 * mtime back — and a publisher killed in the middle of such a staging leaves the live version whole.
 */
import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { publishRealm, recoverPublishedRealm, type DataPlane, type PublishResult } from '../../src/dataplane/publish.js';
import { readPublishedLink } from '../../src/dataplane/published-content.js';
import { RealmTooLargeError } from '../../src/dataplane/realm-state.js';
import { filesLinkedInBatches } from '../../src/dataplane/staging/link-unchanged.js';
import { readManifestFile } from '../../src/dataplane/staging-manifest.js';
import { stageRealmFiles, type PreviousVersion } from '../../src/dataplane/staging.js';
import { createSourceRealm, dataPlane, eventually, openDataPlaneFixture, readTree, type DataPlaneFixture } from '../support/realms.js';

/** The racy margin these tests use, and how long they wait after writing for files to be trusted. */
const MARGIN_MS = 20;
const settle = () => new Promise((resolve) => setTimeout(resolve, MARGIN_MS * 5));

let fixture: DataPlaneFixture;
let plane: DataPlane;

beforeAll(async () => {
  fixture = await openDataPlaneFixture();
  plane = dataPlane(fixture.db.pool, fixture.layout, { racyMarginMs: MARGIN_MS });
});
afterAll(() => fixture.close());

let counter = 0;
function urls(name: string): { source: string; published: string } {
  counter += 1;
  return { source: `http://localhost:4201/incr/${name}-${counter}/`, published: `http://pub.localhost/incr/${name}-${counter}/` };
}

/** Inode of every regular file readers see in the published realm, by realm path. */
async function publishedInodes(diskId: string): Promise<Record<string, bigint>> {
  const root = fixture.layout.publishedDir(diskId);
  const inodes: Record<string, bigint> = {};
  for (const rel of Object.keys(await readTree(root))) {
    const stat = await fs.lstat(path.join(root, rel), { bigint: true });
    if (stat.isFile()) inodes[rel] = stat.ino;
  }
  return inodes;
}

test('a republish hard-links unchanged files from the live version and copies changed and new ones', async () => {
  const { source, published } = urls('links');
  const dir = await createSourceRealm(fixture.db.pool, fixture.layout, source, { 'index.json': '{}', 'cards/a.gts': 'a1', 'cards/b.gts': 'b1', 'deep/x/y.json': 'y' });
  await settle();
  const first = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
  expect(first).toMatchObject({ linkedFiles: 0, copiedFiles: 4 });
  const before = await publishedInodes(first.diskId);

  await fs.writeFile(path.join(dir, 'cards/a.gts'), 'a2 changed');
  await fs.writeFile(path.join(dir, 'cards/new.gts'), 'new');
  const second = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
  expect(second).toMatchObject({ linkedFiles: 3, copiedFiles: 2, fileCount: 5 });
  expect(await readTree(fixture.layout.publishedDir(second.diskId))).toEqual({
    'index.json': '{}',
    'cards/a.gts': 'a2 changed',
    'cards/b.gts': 'b1',
    'cards/new.gts': 'new',
    'deep/x/y.json': 'y',
  });
  const after = await publishedInodes(second.diskId);
  for (const rel of ['index.json', 'cards/b.gts', 'deep/x/y.json']) expect(after[rel]).toBe(before[rel]);
  expect(after['cards/a.gts']).not.toBe(before['cards/a.gts']);
  // The previous version, kept for roll-back, still holds exactly what it published.
  const previous = fixture.layout.versionDir(first.diskId, first.version);
  expect(await readTree(previous)).toEqual({ 'index.json': '{}', 'cards/a.gts': 'a1', 'cards/b.gts': 'b1', 'deep/x/y.json': 'y' });
  // A linked file's digest contribution is the recorded hash: the digest equals a full copy's.
  const full = await publishRealm({ ...plane, incremental: false }, { sourceRealmURL: source, publishedRealmURL: published });
  expect(full).toMatchObject({ linkedFiles: 0, copiedFiles: 5, digest: second.digest });
});

test('an edit that keeps the size and sets the mtime back is still copied (ctime decides)', async () => {
  const { source, published } = urls('same-size');
  const dir = await createSourceRealm(fixture.db.pool, fixture.layout, source, { 'index.json': '{}', 'card.gts': 'AAAA' });
  const file = path.join(dir, 'card.gts');
  // Whole seconds, so setting it back restores the very same nanoseconds.
  await fs.utimes(file, 1_700_000_000, 1_700_000_000);
  await settle();
  const first = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
  const original = await fs.stat(file, { bigint: true });

  await fs.writeFile(file, 'BBBB');
  await fs.utimes(file, 1_700_000_000, 1_700_000_000);
  const edited = await fs.stat(file, { bigint: true });
  expect([edited.size, edited.mtimeNs, edited.ino]).toEqual([original.size, original.mtimeNs, original.ino]);
  expect(edited.ctimeNs).not.toBe(original.ctimeNs);

  const second = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
  expect(second).toMatchObject({ linkedFiles: 1, copiedFiles: 1 });
  expect(await readTree(fixture.layout.publishedDir(second.diskId))).toEqual({ 'index.json': '{}', 'card.gts': 'BBBB' });
  expect(await readTree(fixture.layout.versionDir(first.diskId, first.version))).toEqual({ 'index.json': '{}', 'card.gts': 'AAAA' });
});

test('a file written just before a publish is not trusted: the next republish copies it again', async () => {
  const { source, published } = urls('racy');
  const dir = await createSourceRealm(fixture.db.pool, fixture.layout, source, { 'index.json': '{}' });
  await settle();
  await fs.writeFile(path.join(dir, 'fresh.gts'), 'fresh');
  // A margin far longer than the test: the file's ctime is inside it.
  const first = await publishRealm({ ...plane, racyMarginMs: 60_000 }, { sourceRealmURL: source, publishedRealmURL: published });
  expect(first).toMatchObject({ copiedFiles: 2 });
  const second = await publishRealm({ ...plane, racyMarginMs: 60_000 }, { sourceRealmURL: source, publishedRealmURL: published });
  expect(second).toMatchObject({ linkedFiles: 0, copiedFiles: 2 });
});

test('a mode change is copied, never applied to the inode the live version shares', async () => {
  const { source, published } = urls('mode');
  const dir = await createSourceRealm(fixture.db.pool, fixture.layout, source, { 'index.json': '{}', 'run.sh': 'echo' });
  await settle();
  const first = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
  await fs.chmod(path.join(dir, 'run.sh'), 0o600);
  const second = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
  expect(second).toMatchObject({ linkedFiles: 1, copiedFiles: 1 });
  const live = await fs.stat(path.join(fixture.layout.publishedDir(second.diskId), 'run.sh'));
  const previous = await fs.stat(path.join(fixture.layout.versionDir(first.diskId, first.version), 'run.sh'));
  expect([live.mode & 0o777, previous.mode & 0o777]).toEqual([0o600, 0o644]);
});

test('a previous version tampered with (a file replaced by a symlink) is copied from the source, never linked', async () => {
  const { source, published } = urls('tampered');
  await createSourceRealm(fixture.db.pool, fixture.layout, source, { 'index.json': '{}', 'card.gts': 'card' });
  await settle();
  const first = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
  const victim = path.join(fixture.layout.versionDir(first.diskId, first.version), 'card.gts');
  await fs.rm(victim);
  await fs.symlink('/etc/passwd', victim);
  const second = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
  expect(second).toMatchObject({ linkedFiles: 1, copiedFiles: 1 });
  const live = path.join(fixture.layout.publishedDir(second.diskId), 'card.gts');
  expect((await fs.lstat(live)).isFile()).toBe(true);
  expect(await fs.readFile(live, 'utf8')).toBe('card');
});

/** The version `result` published, as a republish links from it. */
async function previousVersionOf(result: PublishResult): Promise<PreviousVersion> {
  const manifest = await readManifestFile(fixture.layout.manifestPath(result.diskId, result.version));
  expect(manifest).toBeDefined();
  return { dir: fixture.layout.versionDir(result.diskId, result.version), manifest: manifest! };
}

test('unchanged files are linked in batches by the worker thread, in every directory, the root included', async () => {
  const { source, published } = urls('batch');
  const files: Record<string, string> = { 'index.json': '{}' };
  for (let i = 0; i < 50; i++) files[`d${i % 3}/sub/c-${i}.gts`] = `card ${i}`;
  const dir = await createSourceRealm(fixture.db.pool, fixture.layout, source, files);
  await settle();
  await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
  await fs.writeFile(path.join(dir, 'd1/sub/c-1.gts'), 'card 1 changed');
  const before = filesLinkedInBatches();
  const second = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
  expect(second).toMatchObject({ linkedFiles: 50, copiedFiles: 1, fileCount: 51 });
  expect(filesLinkedInBatches() - before).toBe(50);
  expect(await readTree(fixture.layout.publishedDir(second.diskId))).toEqual({ ...files, 'd1/sub/c-1.gts': 'card 1 changed' });
});

test('entries changed at the hook points of a batch are handled as the walk handles them: never anything from outside the realm', async () => {
  const { source, published } = urls('batch-hooks');
  const outside = await fs.mkdtemp(path.join(os.tmpdir(), 'outside-batch-'));
  await fs.writeFile(path.join(outside, 'secret.txt'), 'OUTSIDE-SECRET');
  const dir = await createSourceRealm(fixture.db.pool, fixture.layout, source, {
    'index.json': '{}',
    'cards/examine-symlink.gts': 'e1',
    'cards/open-symlink.gts': 'o1',
    'cards/examine-edit.gts': 'x1',
    'cards/throws.gts': 't1',
    'cards/kept.gts': 'k1',
  });
  await settle();
  await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
  const calls: string[] = [];
  const onStagingEntry: DataPlane['onStagingEntry'] = async ({ path: rel, phase }) => {
    calls.push(`${phase} ${rel}`);
    const once = calls.filter((c) => c === `${phase} ${rel}`).length === 1;
    if (!once) return;
    const file = path.join(dir, rel);
    if (rel === 'cards/examine-symlink.gts' && phase === 'examine') {
      await fs.rm(file);
      await fs.symlink(path.join(outside, 'secret.txt'), file);
    }
    // After lstat saw it unchanged: the link brings in the realm's own bytes as they were then.
    if (rel === 'cards/open-symlink.gts' && phase === 'open') {
      await fs.rm(file);
      await fs.symlink(path.join(outside, 'secret.txt'), file);
    }
    if (rel === 'cards/examine-edit.gts' && phase === 'examine') await fs.writeFile(file, 'x2');
    if (rel === 'cards/throws.gts' && phase === 'examine') throw new Error('hook failed once');
  };
  try {
    const second = await publishRealm({ ...plane, onStagingEntry }, { sourceRealmURL: source, publishedRealmURL: published });
    expect(second.skipped).toEqual([{ path: 'cards/examine-symlink.gts', reason: expect.stringMatching(/^is a symlink that points outside the source realm/) }]);
    expect(await readTree(fixture.layout.publishedDir(second.diskId))).toEqual({
      'index.json': '{}',
      'cards/open-symlink.gts': 'o1',
      'cards/examine-edit.gts': 'x2',
      'cards/throws.gts': 't1',
      'cards/kept.gts': 'k1',
    });
    expect(second).toMatchObject({ linkedFiles: 4, copiedFiles: 1 });
    // The hooks ran at the walk's points: a linked file was examined, then "opened" (linked), once each.
    expect(calls.filter((c) => c.endsWith(' cards/kept.gts'))).toEqual(['examine cards/kept.gts', 'open cards/kept.gts']);
    // An entry the batch passed on is examined again by the walk, hooks included.
    expect(calls.filter((c) => c.endsWith(' cards/throws.gts'))).toEqual(['examine cards/throws.gts', 'examine cards/throws.gts', 'open cards/throws.gts']);
  } finally {
    await fs.rm(outside, { recursive: true, force: true });
  }
});

test('files linked in a batch count against the size limits: staging stops at the limit and leaves nothing behind', async () => {
  const { source, published } = urls('batch-limits');
  const files: Record<string, string> = {};
  for (let i = 0; i < 20; i++) files[`cards/c-${i}.gts`] = 'x'.repeat(100);
  const dir = await createSourceRealm(fixture.db.pool, fixture.layout, source, files);
  await settle();
  const first = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
  const previous = await previousVersionOf(first);
  const stage = (limits: { maxFiles?: number; maxBytes?: number }) =>
    stageRealmFiles(dir, fixture.layout.stagingRoot, randomInt(1, 2 ** 31 - 1), { durable: false, previous, limits, racyMarginMs: MARGIN_MS });
  await expect(stage({ maxFiles: 19 })).rejects.toThrow(RealmTooLargeError);
  await expect(stage({ maxBytes: 1999 })).rejects.toThrow(RealmTooLargeError);
  expect(await fs.readdir(fixture.layout.stagingRoot)).toEqual([]);
  const fits = await stage({ maxFiles: 20, maxBytes: 2000 });
  try {
    expect(fits).toMatchObject({ fileCount: 20, totalBytes: 2000, linkedFiles: 20, copiedFiles: 0 });
  } finally {
    await fs.rm(fits.dir, { recursive: true, force: true });
  }
});

test('a publisher killed mid-way through an incremental staging leaves the live version whole; the next publish completes', async () => {
  const { source, published } = urls('crash');
  const files: Record<string, string> = { 'index.json': '{"v":1}' };
  for (let i = 0; i < 60; i++) files[`cards/c-${i}.gts`] = `card ${i} v1`;
  const dir = await createSourceRealm(fixture.db.pool, fixture.layout, source, files);
  await settle();
  const first = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
  const liveBefore = await readTree(fixture.layout.publishedDir(first.diskId));
  const inodesBefore = await publishedInodes(first.diskId);
  for (let i = 0; i < 60; i += 2) await fs.writeFile(path.join(dir, `cards/c-${i}.gts`), `card ${i} v2!`);
  await settle();

  const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'staging-incremental-child.ts')], {
    env: { ...process.env, DATABASE_URL: fixture.db.url, REALMS_ROOT: fixture.realms.root, SOURCE_URL: source, PUBLISHED_URL: published, CRASH_AFTER_FILES: '20' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, s) => resolve(s)));
  expect({ signal, output }).toEqual({ signal: 'SIGKILL', output: '' });
  // It died with a half-built staging copy holding links into the live version.
  const [stage] = await fs.readdir(fixture.layout.stagingRoot);
  expect(stage).toBeDefined();
  const staged = await fs.readdir(path.join(fixture.layout.stagingRoot, stage!, 'cards'));
  expect(staged.length).toBeGreaterThan(0);
  expect(staged.length).toBeLessThan(60);

  expect(await readPublishedLink(fixture.layout, first.diskId)).toEqual({ kind: 'version', version: first.version });
  expect(await readTree(fixture.layout.publishedDir(first.diskId))).toEqual(liveBefore);
  expect(await publishedInodes(first.diskId)).toEqual(inodesBefore);

  await eventually(async () => {
    const { rows } = await fixture.db.pool.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'crash-child' AND datname = current_database()`);
    return rows[0].n === 0;
  }, 10_000, () => "the crashed publisher's backends to exit");
  await recoverPublishedRealm(plane, published);
  expect(await fs.readdir(fixture.layout.stagingRoot)).toEqual([]);
  expect(await readTree(fixture.layout.publishedDir(first.diskId))).toEqual(liveBefore);

  const next = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
  expect(next).toMatchObject({ linkedFiles: 31, copiedFiles: 30 });
  expect(await readTree(fixture.layout.publishedDir(next.diskId))).toEqual(await readTree(dir));
  expect(await readTree(fixture.layout.versionDir(first.diskId, first.version))).toEqual(liveBefore);
});
