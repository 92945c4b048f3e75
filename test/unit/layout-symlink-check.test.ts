/**
 * RealmsLayout.assertNoSymlinkedOperatorDirs on a real temporary directory: every directory the
 * operator manages is refused when it is a symlink (the highest one named), missing ones are
 * fine, nothing is remembered between calls (a symlink swapped in after a passing check fails the
 * next one), and an error below a symlinked parent does not hide the parent's refusal.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { RealmsLayout } from '../../src/dataplane/layout.js';

const DISK_ID = 'b5a3c8e2-0000-4000-8000-000000000001';
let scratch: string;
let layout: RealmsLayout;
let outside: string;

beforeEach(async () => {
  scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'layout-check-'));
  layout = new RealmsLayout(path.join(scratch, 'realms'));
  outside = path.join(scratch, 'outside');
  await fs.mkdir(outside);
  await fs.mkdir(layout.root);
});

afterEach(async () => {
  await fs.rm(scratch, { recursive: true, force: true });
});

async function makeAll(): Promise<string[]> {
  const dirs = [layout.stagingRoot, layout.trashDir, layout.linkScratchDir, layout.manifestsDir(DISK_ID), layout.versionsDir(DISK_ID)];
  for (const dir of dirs) await fs.mkdir(dir, { recursive: true });
  return dirs;
}

/** Replaces `dir` by a symlink to a directory outside the realms root. */
async function swapForSymlink(dir: string): Promise<void> {
  const target = path.join(outside, path.basename(dir));
  await fs.mkdir(target, { recursive: true });
  await fs.rm(dir, { recursive: true });
  await fs.symlink(target, dir);
}

const refusal = (dir: string) => `${dir} resolves to `;

test('nothing created yet, or everything in place: no refusal, with and without a disk id', async () => {
  await expect(layout.assertNoSymlinkedOperatorDirs()).resolves.toBeUndefined();
  await expect(layout.assertNoSymlinkedOperatorDirs(DISK_ID)).resolves.toBeUndefined();
  await fs.mkdir(layout.operatorDir, { recursive: true });
  await expect(layout.assertNoSymlinkedOperatorDirs(DISK_ID)).resolves.toBeUndefined();
  await makeAll();
  await expect(layout.assertNoSymlinkedOperatorDirs()).resolves.toBeUndefined();
  await expect(layout.assertNoSymlinkedOperatorDirs(DISK_ID)).resolves.toBeUndefined();
});

test.each([
  ['_published', (l: RealmsLayout) => l.publishedRoot, false],
  ['.realm-operator', (l: RealmsLayout) => l.operatorDir, false],
  ['staging', (l: RealmsLayout) => l.stagingRoot, false],
  ['trash', (l: RealmsLayout) => l.trashDir, false],
  ['links', (l: RealmsLayout) => l.linkScratchDir, false],
  ['manifests', (l: RealmsLayout) => l.manifestsRoot, false],
  ['versions', (l: RealmsLayout) => path.dirname(l.versionsDir(DISK_ID)), true],
  ['versions/<disk id>', (l: RealmsLayout) => l.versionsDir(DISK_ID), true],
  ['manifests/<disk id>', (l: RealmsLayout) => l.manifestsDir(DISK_ID), true],
])('%s swapped for a symlink out of the volume is refused, naming it and the fix', async (_name, dirOf, needsDiskId) => {
  await makeAll();
  const dir = dirOf(layout);
  await swapForSymlink(dir);
  const expected = path.join(await fs.realpath(layout.root), path.relative(layout.root, dir));
  const message = `${refusal(dir)}${await fs.realpath(path.join(outside, path.basename(dir)))}, not ${expected}`;
  await expect(layout.assertNoSymlinkedOperatorDirs(DISK_ID)).rejects.toThrow(message);
  await expect(layout.assertNoSymlinkedOperatorDirs(DISK_ID)).rejects.toThrow('remove the symlink (the operator recreates the directory)');
  // The disk id's own directories are checked only for that disk id.
  if (needsDiskId) await expect(layout.assertNoSymlinkedOperatorDirs()).resolves.toBeUndefined();
  else await expect(layout.assertNoSymlinkedOperatorDirs()).rejects.toThrow(refusal(dir));
});

test('a symlink swapped in after a passing check is refused by the next check (nothing is remembered)', async () => {
  await makeAll();
  for (let i = 0; i < 3; i++) await layout.assertNoSymlinkedOperatorDirs(DISK_ID);
  await swapForSymlink(layout.versionsDir(DISK_ID));
  await expect(layout.assertNoSymlinkedOperatorDirs(DISK_ID)).rejects.toThrow(refusal(layout.versionsDir(DISK_ID)));
  // Put back: passes again.
  await fs.rm(layout.versionsDir(DISK_ID));
  await fs.mkdir(layout.versionsDir(DISK_ID));
  await expect(layout.assertNoSymlinkedOperatorDirs(DISK_ID)).resolves.toBeUndefined();
});

test('the highest symlinked directory is named, even when what lies below it cannot be looked at', async () => {
  await makeAll();
  await swapForSymlink(layout.operatorDir);
  // Below the symlink's target, `versions` is a symlink to itself: an lstat of `versions/<disk id>`
  // through it fails with ELOOP, an error that is not a missing path.
  const target = path.join(outside, path.basename(layout.operatorDir));
  await fs.symlink('versions', path.join(target, 'versions'));
  await expect(fs.lstat(layout.versionsDir(DISK_ID))).rejects.toMatchObject({ code: 'ELOOP' });
  await expect(layout.assertNoSymlinkedOperatorDirs(DISK_ID)).rejects.toThrow(refusal(layout.operatorDir));
});

test('a directory below a missing one is not looked at, and an error that is not a missing path is thrown', async () => {
  await fs.mkdir(layout.publishedRoot);
  // `_published/.realm-operator` is a file: everything below it is ENOTDIR (missing), no refusal.
  await fs.writeFile(layout.operatorDir, 'not a directory');
  await expect(layout.assertNoSymlinkedOperatorDirs(DISK_ID)).resolves.toBeUndefined();
  await fs.rm(layout.operatorDir);
  // A name too long for the file system is neither missing nor a symlink.
  const tooLong = new RealmsLayout(path.join(layout.root, 'x'.repeat(300)));
  await expect(tooLong.assertNoSymlinkedOperatorDirs()).rejects.toMatchObject({ code: 'ENAMETOOLONG' });
});
