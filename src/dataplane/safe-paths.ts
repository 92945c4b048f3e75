/**
 * Rules for path components that come from the database, and containment checks that resolve
 * symlinks. Realm-server pods hold database credentials, so a row is not trusted to name a path:
 * every component is checked as a plain segment before use, and the directory it lands in is
 * checked after `realpath`, so neither `..` nor a planted symlink leads outside the realms root.
 */
import { realpathSync } from 'node:fs';
import path from 'node:path';

/** Why `segment` cannot be one path component, or `undefined` when it can. */
export function pathSegmentProblem(segment: string): string | undefined {
  if (segment.length === 0) return 'has an empty path segment';
  if (segment === '.' || segment === '..') return `has a "${segment}" path segment`;
  if (segment.includes('/')) return 'contains "/"';
  if (segment.includes('\\')) return 'contains a backslash';
  // NUL truncates paths in C; other control characters only hide things in logs.
  if (/[\u0000-\u001f\u007f]/.test(segment)) return 'contains a NUL or control character';
  if (Buffer.byteLength(segment, 'utf8') > 255) return 'has a path segment longer than 255 bytes';
  return undefined;
}

/**
 * A source realm's `realm_registry.disk_id`: Boxel writes `<owner>/<endpoint>` (endpoint matches
 * `[a-z0-9-]+`, owner is a Matrix localpart), relative to the realms root. We accept one or more
 * plain segments, never `_published/...` (published realms live there).
 */
export function sourceDiskIdProblem(diskId: string): string | undefined {
  if (typeof diskId !== 'string' || diskId.length === 0) return 'is empty';
  if (diskId.startsWith('/')) return 'is an absolute path';
  if (Buffer.byteLength(diskId, 'utf8') > 1024) return 'is longer than 1024 bytes';
  const segments = diskId.split('/');
  for (const segment of segments) {
    const problem = pathSegmentProblem(segment);
    if (problem) return problem;
  }
  if (segments[0] === '_published') return 'is inside _published/, where published realms live';
  return undefined;
}

/** A published realm's `disk_id`: one plain segment (a uuid when Boxel or we create it). */
export function publishedDiskIdProblem(diskId: string): string | undefined {
  if (typeof diskId !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(diskId) || diskId.length > 200) {
    return 'is not a single path segment of letters, digits, ".", "_" and "-" (a uuid when Boxel or the operator creates it)';
  }
  return undefined;
}

/** Content version names the operator creates: `v<ms>-<hex8>` for a publish, `adopted-<ms>` for an adopted Boxel directory. */
const VERSION_NAME = /^(?:v\d{1,15}-[0-9a-f]{8}|adopted-\d{1,15})$/;

export function versionNameProblem(version: string): string | undefined {
  if (typeof version !== 'string' || !VERSION_NAME.test(version)) return 'is not a content version name the operator creates (v<ms>-<hex8> or adopted-<ms>)';
  return undefined;
}

/** `child` is `parent` or below it, both already absolute and normalized. */
export function isWithin(child: string, parent: string, allowEqual = true): boolean {
  if (child === parent) return allowEqual;
  const rel = path.relative(parent, child);
  return rel !== '' && !rel.startsWith(`..${path.sep}`) && rel !== '..' && !path.isAbsolute(rel);
}

/**
 * `realpath` of `target`, or of its nearest existing ancestor joined with the missing rest (which
 * cannot hold a symlink, as it does not exist yet). Synchronous (native realpath(3), as
 * fs.promises.realpath): a publish makes a few such calls, see RealmsLayout.resolveSourceDir.
 */
export function realpathOfExisting(target: string): string {
  let missing = '';
  let current = target;
  for (;;) {
    try {
      const real = realpathSync.native(current);
      return missing ? path.join(real, missing) : real;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const parent = path.dirname(current);
      if ((code !== 'ENOENT' && code !== 'ENOTDIR') || parent === current) throw error;
      missing = missing ? path.join(path.basename(current), missing) : path.basename(current);
      current = parent;
    }
  }
}
