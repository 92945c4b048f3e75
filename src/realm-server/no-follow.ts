/**
 * Reading a file below a realm directory without following any symlink below it.
 *
 * Every component is opened relative to the directory opened before it (through
 * `/proc/self/fd/<fd>/<name>`, Linux's stand-in for `openat`) with `O_NOFOLLOW`, so a symlink
 * anywhere below the realm directory — even one swapped in while we walk — is refused, not
 * followed. Where `/proc/self/fd` is missing (not Linux) each directory is `lstat`ed before it is
 * used and the file is opened with `O_NOFOLLOW`: that refuses symlinks that are there when we
 * look, but cannot close the race with a concurrent swap.
 *
 * Errors never carry a file-system path: a refusal is `undefined` (the caller answers 404), and
 * an unexpected failure is a {@link FileReadError} with the errno code only.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

const { O_RDONLY, O_NOFOLLOW, O_DIRECTORY, O_NONBLOCK } = fs.constants;
const HAVE_PROC_FD = fs.existsSync('/proc/self/fd');

/** Errno codes that mean "no such regular file here (or not one we may follow)". */
const NOT_FOUND = new Set(['ENOENT', 'ENOTDIR', 'ELOOP', 'EISDIR', 'EACCES', 'EPERM', 'ENAMETOOLONG', 'EMLINK']);

export class FileReadError extends Error {
  constructor(readonly code: string) {
    super(`reading a realm file failed (${code})`);
    this.name = 'FileReadError';
  }
}

/** Where a realm's files are: an absolute directory, and whether that directory itself may be a symlink. */
export interface RealmDirectory {
  path: string;
  /**
   * The published realm directory is a symlink to its content version: followed on purpose, and
   * only after `checkLink` accepts its text. Nothing below it is followed.
   */
  followLink?: { checkLink(target: string): boolean };
}

/**
 * The bytes of `segments` (decoded, already free of `.`, `..`, `/` and NUL) below `realm`, or
 * `undefined` when there is no regular file there that can be reached without a symlink.
 */
export async function readFileNoFollow(realm: RealmDirectory, segments: readonly string[]): Promise<Buffer | undefined> {
  const opened: fsp.FileHandle[] = [];
  try {
    const root = await openRealmDirectory(realm);
    if (!root) return undefined;
    opened.push(root);
    if (!HAVE_PROC_FD) return await readWithLstat(realm.path, segments);
    let dir = root;
    for (const segment of segments.slice(0, -1)) {
      dir = await fsp.open(`/proc/self/fd/${dir.fd}/${segment}`, O_RDONLY | O_NOFOLLOW | O_DIRECTORY);
      opened.push(dir);
    }
    // O_NONBLOCK: a FIFO must not hang the request; it is refused below as not a regular file.
    const file = await fsp.open(`/proc/self/fd/${dir.fd}/${segments.at(-1)!}`, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    opened.push(file);
    if (!(await file.stat()).isFile()) return undefined;
    return await file.readFile();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'UNKNOWN';
    if (NOT_FOUND.has(code)) return undefined;
    throw new FileReadError(code);
  } finally {
    await Promise.all(opened.map((handle) => handle.close().catch(() => undefined)));
  }
}

async function openRealmDirectory(realm: RealmDirectory): Promise<fsp.FileHandle | undefined> {
  if (!realm.followLink) return fsp.open(realm.path, O_RDONLY | O_NOFOLLOW | O_DIRECTORY);
  const handle = await fsp.open(realm.path, O_RDONLY | O_DIRECTORY);
  try {
    const stat = await fsp.lstat(realm.path);
    // A swap between the open and this check replaces one of our links with another: both fine.
    if (stat.isSymbolicLink() && !realm.followLink.checkLink(await fsp.readlink(realm.path))) {
      await handle.close();
      return undefined;
    }
    return handle;
  } catch (error) {
    await handle.close().catch(() => undefined);
    throw error;
  }
}

async function readWithLstat(realmPath: string, segments: readonly string[]): Promise<Buffer | undefined> {
  let current = realmPath;
  for (const segment of segments.slice(0, -1)) {
    current = path.join(current, segment);
    if (!(await fsp.lstat(current)).isDirectory()) return undefined;
  }
  const file = await fsp.open(path.join(current, segments.at(-1)!), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  try {
    if (!(await file.stat()).isFile()) return undefined;
    return await file.readFile();
  } finally {
    await file.close();
  }
}
