/**
 * File-system steps of publishing: install a staged copy as a version, swap the published
 * symlink to it atomically, and remove versions nobody points at. Every step is idempotent and
 * safe to repeat after a crash; which version is *committed* is recorded in the database.
 */
import { randomBytes } from 'node:crypto';
import { lstatSync, readdirSync, readlinkSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { RealmsLayout } from './layout.js';
import { fsyncPath, removeTree } from './staging.js';

export type PublishedLinkState =
  | { kind: 'missing' }
  | { kind: 'version'; version: string }
  /** A real directory: published by Boxel itself before the operator managed this realm. */
  | { kind: 'directory' }
  /** A symlink that is not one of ours. */
  | { kind: 'foreign-link'; target: string };

/**
 * The names in one of the operator's own directories (staging root, link scratch, trash; none when
 * it is missing or unreadable). Synchronous, like readVersionsDir, readPublishedLink and the
 * manifests listing: each holds a handful of entries (one per publish in flight or per kept
 * version), so the read takes microseconds of the event loop, where a thread-pool round trip cost
 * ~80 µs of the operator's CPU (six to ten of these per publish). Source realms, whose listings
 * can be long, are still listed asynchronously (staging.ts).
 */
export function listOperatorDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

export function newVersionName(now = Date.now()): string {
  return `v${now}-${randomBytes(4).toString('hex')}`;
}

export async function readPublishedLink(layout: RealmsLayout, diskId: string): Promise<PublishedLinkState> {
  const link = layout.publishedDir(diskId);
  // Synchronous: see listOperatorDir (a metadata read of the operator's own link).
  let stat;
  try {
    stat = lstatSync(link);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
    throw error;
  }
  if (stat.isDirectory()) return { kind: 'directory' };
  if (!stat.isSymbolicLink()) throw new Error(`${link} is neither a directory nor a symlink`);
  const target = readlinkSync(link);
  const version = layout.versionFromLinkTarget(diskId, target);
  return version ? { kind: 'version', version } : { kind: 'foreign-link', target };
}

/**
 * Moves a staged copy into the versions directory (one rename on the same volume).
 * `versionsDirExists`: the caller just saw `versions/<diskId>/` (it holds the committed version),
 * so the rename is tried first and the directory made only if it turns out missing after all.
 */
export async function installStagedVersion(layout: RealmsLayout, stagedDir: string, diskId: string, version: string, { versionsDirExists = false } = {}): Promise<void> {
  const target = layout.versionDir(diskId, version);
  if (versionsDirExists) {
    try {
      return await fs.rename(stagedDir, target);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
  await fs.mkdir(layout.versionsDir(diskId), { recursive: true });
  await fs.rename(stagedDir, target);
}

export async function versionExists(layout: RealmsLayout, diskId: string, version: string): Promise<boolean> {
  return fs.stat(layout.versionDir(diskId, version)).then(
    (s) => s.isDirectory(),
    () => false,
  );
}

/**
 * Points `_published/<diskId>` at `version` by renaming a fresh symlink over it: readers see the
 * old or the new content, never neither. A real directory left by Boxel is first moved into the
 * versions directory; that one-time adoption has a sub-millisecond gap, logged as a warning.
 */
export async function swapPublishedLink(
  layout: RealmsLayout,
  diskId: string,
  version: string,
  logger?: Logger,
  /** What the caller read of the link under the same realm lock (recovery does): not read again. */
  known?: PublishedLinkState,
): Promise<{ adopted?: string }> {
  const link = layout.publishedDir(diskId);
  const scratch = path.join(layout.linkScratchDir, `${diskId}.${randomBytes(4).toString('hex')}`);
  const target = layout.linkTarget(diskId, version);
  // The scratch directory exists after the first publish: made only when the symlink says it is missing.
  await fs.symlink(target, scratch).catch(async (error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
    await fs.mkdir(layout.linkScratchDir, { recursive: true });
    await fs.symlink(target, scratch);
  });
  let adopted: string | undefined;
  try {
    // A directory put there since by someone not holding the realm lock makes the rename below fail (EISDIR): never replaced unseen.
    const current = known ?? (await readPublishedLink(layout, diskId));
    if (current.kind === 'directory') {
      adopted = `adopted-${Date.now()}`;
      logger?.warn({ link, adopted }, 'adopting a published realm directory the operator did not create; readers may see it missing for an instant');
      await fs.rename(link, layout.versionDir(diskId, adopted));
    }
    await fs.rename(scratch, link);
  } catch (error) {
    await fs.rm(scratch, { force: true });
    throw error;
  }
  await fsyncPath(layout.publishedRoot);
  // The adopted directory is the content that was published: a version that was committed, by Boxel.
  return adopted ? { adopted } : {};
}

/** Removes the published symlink (unpublish): one atomic unlink. */
export async function removePublishedLink(layout: RealmsLayout, diskId: string): Promise<void> {
  const link = layout.publishedDir(diskId);
  const state = await readPublishedLink(layout, diskId);
  if (state.kind === 'directory') await removeTree(link);
  else if (state.kind !== 'missing') await fs.rm(link, { force: true });
}

/** The names in `diskId`'s versions directory (none when it does not exist). */
export async function listVersions(layout: RealmsLayout, diskId: string): Promise<string[]> {
  return (await readVersionsDir(layout, diskId)) ?? [];
}

/** The names in `diskId`'s versions directory, sorted; undefined when the directory does not exist. */
export async function readVersionsDir(layout: RealmsLayout, diskId: string): Promise<string[] | undefined> {
  try {
    return readdirSync(layout.versionsDir(diskId)).sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * Moves every version of `diskId` except `keep` to the trash (renames only, so it is cheap under
 * the realm lock); returns the names moved. Nothing in the trash is ever needed again.
 * `listed`: the directory's names as the caller read them under the same realm lock
 * ({@link readVersionsDir}; undefined there: no directory), instead of a listing of its own.
 */
export async function trashVersionsExcept(layout: RealmsLayout, diskId: string, keep: ReadonlySet<string>, listed?: { names: string[] | undefined }): Promise<string[]> {
  const dir = layout.versionsDir(diskId);
  const names = listed ? listed.names : await readVersionsDir(layout, diskId);
  if (names === undefined) return [];
  const moved = names.filter((name) => !keep.has(name));
  for (const name of moved) await moveToTrash(layout, path.join(dir, name));
  if (keep.size === 0) await fs.rmdir(dir).catch(() => undefined);
  return moved;
}

/**
 * Deletes the staging manifests of `diskId` except those of `keep` (a manifest only speeds up the
 * next publish, so losing one is harmless); returns the versions whose manifests were removed.
 */
export async function removeManifestsExcept(layout: RealmsLayout, diskId: string, keep: ReadonlySet<string>): Promise<string[]> {
  const dir = layout.manifestsDir(diskId);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return []; // no directory (a first publish): nothing to remove, nor to rmdir
  }
  // `<version>.json`, and the scratch file it is written through (`<version>.json.<hex>.tmp`): a
  // kept version's manifest being written while this runs must not lose its scratch file.
  const removed = names.filter((name) => !keep.has(name.replace(/\.json(?:\.[0-9a-f]+\.tmp)?$/, '')));
  await Promise.all(removed.map((name) => fs.rm(path.join(dir, name), { force: true })));
  if (keep.size === 0) await fs.rmdir(dir).catch(() => undefined);
  return removed;
}

export async function moveToTrash(layout: RealmsLayout, target: string): Promise<void> {
  const trashed = path.join(layout.trashDir, `${path.basename(target)}.${randomBytes(4).toString('hex')}`);
  // The trash exists after its first use: made only when the rename says it is missing (ENOENT
  // also when `target` is: then the second rename throws it).
  await fs.rename(target, trashed).catch(async (error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
    await fs.mkdir(layout.trashDir, { recursive: true });
    await fs.rename(target, trashed);
  });
}

/** Deletes everything in the trash. Safe to run anywhere, by several processes at once. */
export async function emptyTrash(layout: RealmsLayout, logger?: Logger): Promise<void> {
  const names = listOperatorDir(layout.trashDir);
  for (const name of names) {
    await removeTree(path.join(layout.trashDir, name)).catch((error: Error) =>
      logger?.warn({ err: error, entry: name }, 'could not empty a trash entry; the next publish retries'),
    );
  }
}
