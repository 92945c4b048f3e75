/**
 * Copies a source realm into a private staging directory on the published volume, outside the
 * realm lock, computing the content digest on the way. Only regular files, directories and
 * symlinks that stay inside the source realm are copied; everything else is skipped with a reason.
 */
import { createHash, randomInt } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';

export interface SkippedEntry {
  /** Realm-local path, `/`-separated. */
  path: string;
  reason: string;
}

export interface StagedRealm {
  /** The staging directory, `<stagingRoot>/stage-<token>`. */
  dir: string;
  /** The token in the directory name; its owner holds an advisory lock on it while staging. */
  token: number;
  fileCount: number;
  totalBytes: number;
  /** `sha256:<hex>` over every entry's path, type, mode and content, in path order. */
  digest: string;
  skipped: SkippedEntry[];
}

export interface StageOptions {
  logger?: Logger;
  /** fsync every file and directory before returning, so a power loss after the swap cannot leave empty files. */
  durable?: boolean;
  /** Files copied at once. */
  concurrency?: number;
}

export const STAGING_DIR_PREFIX = 'stage-';

export function newStagingToken(): number {
  return randomInt(1, 2 ** 31 - 1);
}

/**
 * Copies `sourceDir` into `<stagingRoot>/stage-<token>`. The caller owns the result and must
 * either rename it into place or remove it.
 */
export async function stageRealmFiles(
  sourceDir: string,
  stagingRoot: string,
  token: number,
  options: StageOptions = {},
): Promise<StagedRealm> {
  const durable = options.durable ?? true;
  const limit = createLimiter(options.concurrency ?? 16);
  let sourceRoot: string;
  try {
    sourceRoot = await fs.realpath(sourceDir);
    if (!(await fs.stat(sourceRoot)).isDirectory()) throw new Error('not a directory');
  } catch (error) {
    throw new Error(`source realm directory ${sourceDir} is missing or not a directory (${(error as Error).message})`, { cause: error });
  }
  await fs.mkdir(stagingRoot, { recursive: true });
  const dir = path.join(stagingRoot, `${STAGING_DIR_PREFIX}${token}`);
  await fs.mkdir(dir, { mode: 0o700 });

  const digestLines: string[] = [];
  const skipped: SkippedEntry[] = [];
  let fileCount = 0;
  let totalBytes = 0;
  const skip = (relPath: string, reason: string) => {
    skipped.push({ path: relPath, reason });
    options.logger?.warn({ path: relPath, reason, sourceDir }, 'skipped a source realm entry');
  };

  // Directories get their real modes after their children are written (a 0555 directory
  // could not be filled otherwise), deepest first.
  const directoryModes: Array<{ dest: string; mode: number }> = [];

  async function copyDirectory(srcDir: string, destDir: string, relDir: string): Promise<void> {
    const entries = await fs.readdir(srcDir, { withFileTypes: true });
    const work: Promise<void>[] = [];
    for (const entry of entries) {
      const src = path.join(srcDir, entry.name);
      const dest = path.join(destDir, entry.name);
      const rel = relDir ? `${relDir}/${entry.name}` : entry.name;
      const stat = await fs.lstat(src);
      if (stat.isDirectory()) {
        await fs.mkdir(dest, { mode: 0o700 });
        digestLines.push(`d ${JSON.stringify(rel)} ${modeBits(stat.mode)}`);
        directoryModes.push({ dest, mode: stat.mode & 0o7777 });
        work.push(copyDirectory(src, dest, rel));
      } else if (stat.isFile()) {
        work.push(
          limit(async () => {
            const contentHash = await copyFile(src, dest, stat.mode & 0o7777, durable);
            fileCount += 1;
            totalBytes += stat.size;
            digestLines.push(`f ${JSON.stringify(rel)} ${modeBits(stat.mode)} ${contentHash}`);
          }),
        );
      } else if (stat.isSymbolicLink()) {
        const target = await insideTarget(src, sourceRoot);
        if (typeof target !== 'string') {
          skip(rel, target.reason);
          continue;
        }
        // Re-point at the same entry inside the copy, relatively, so it never leads back to the source.
        const link = path.relative(path.dirname(dest), path.join(dir, target)) || '.';
        await fs.symlink(link, dest);
        digestLines.push(`l ${JSON.stringify(rel)} ${JSON.stringify(target)}`);
      } else {
        skip(rel, `is a ${entryKind(stat)}, not a regular file, directory or symlink`);
      }
    }
    await Promise.all(work);
  }

  try {
    await copyDirectory(sourceRoot, dir, '');
    directoryModes.sort((a, b) => b.dest.length - a.dest.length);
    for (const { dest, mode } of directoryModes) {
      if (durable) await fsyncPath(dest);
      await fs.chmod(dest, mode);
    }
    await fs.chmod(dir, 0o755);
    if (durable) await fsyncPath(dir);
  } catch (error) {
    await removeTree(dir);
    throw error;
  }
  digestLines.sort();
  const digest = `sha256:${createHash('sha256').update(digestLines.join('\n')).digest('hex')}`;
  return { dir, token, fileCount, totalBytes, digest, skipped };
}

async function copyFile(src: string, dest: string, mode: number, durable: boolean): Promise<string> {
  const hash = createHash('sha256');
  const input = await fs.open(src, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  const output = await fs.open(dest, 'wx', 0o600);
  try {
    const buffer = Buffer.allocUnsafe(256 * 1024);
    for (;;) {
      const { bytesRead } = await input.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      const chunk = buffer.subarray(0, bytesRead);
      hash.update(chunk);
      await output.write(chunk);
    }
    await output.chmod(mode);
    if (durable) await output.sync();
  } finally {
    await Promise.all([input.close(), output.close()]);
  }
  return hash.digest('hex');
}

/** The link's target as a realm-relative path, or why it may not be copied. */
async function insideTarget(link: string, sourceRoot: string): Promise<string | { reason: string }> {
  let resolved: string;
  try {
    resolved = await fs.realpath(link);
  } catch {
    return { reason: `is a symlink to ${JSON.stringify(await fs.readlink(link))}, which does not exist` };
  }
  const rel = path.relative(sourceRoot, resolved);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) {
    return { reason: `is a symlink that points outside the source realm (${JSON.stringify(await fs.readlink(link))})` };
  }
  return rel.split(path.sep).join('/');
}

function modeBits(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0');
}

function entryKind(stat: { isBlockDevice(): boolean; isCharacterDevice(): boolean; isFIFO(): boolean; isSocket(): boolean }): string {
  if (stat.isBlockDevice()) return 'block device';
  if (stat.isCharacterDevice()) return 'character device';
  if (stat.isFIFO()) return 'FIFO';
  if (stat.isSocket()) return 'socket';
  return 'special file';
}

export async function fsyncPath(target: string): Promise<void> {
  const handle = await fs.open(target, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Removes a tree, first making read-only directories writable so removal cannot fail on modes. */
export async function removeTree(target: string): Promise<void> {
  try {
    await fs.rm(target, { recursive: true, force: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EACCES' && (error as NodeJS.ErrnoException).code !== 'EPERM') throw error;
    await makeWritable(target);
    await fs.rm(target, { recursive: true, force: true });
  }
}

async function makeWritable(dir: string): Promise<void> {
  const stat = await fs.lstat(dir).catch(() => undefined);
  if (!stat?.isDirectory()) return;
  await fs.chmod(dir, 0o700);
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) await makeWritable(path.join(dir, entry.name));
  }
}

/** At most `n` of the returned function's tasks run at once. */
function createLimiter(n: number): <T>(task: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: Array<() => void> = [];
  return async <T>(task: () => Promise<T>): Promise<T> => {
    if (active >= n) await new Promise<void>((resolve) => waiting.push(resolve));
    active += 1;
    try {
      return await task();
    } finally {
      active -= 1;
      waiting.shift()?.();
    }
  };
}
