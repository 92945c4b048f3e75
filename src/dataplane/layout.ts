/**
 * Where realms live on the shared volume. Boxel's layout: a source realm at `<root>/<disk_id>/`,
 * a published realm at `<root>/_published/<disk_id>/`. We add `<root>/_published/.realm-operator/`
 * for staging and content versions; it is on the same volume, so every rename is atomic.
 *
 * A published realm directory is a symlink to `.realm-operator/versions/<disk_id>/<version>`
 * (relative, so it resolves wherever the volume is mounted). Publishing renames a new symlink over
 * it — the one atomic step readers can observe, as in Kubernetes' own atomic volume writer.
 */
import { lstatSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { PublishError } from './realm-state.js';
import { isWithin, publishedDiskIdProblem, realpathOfExisting, sourceDiskIdProblem, versionNameProblem } from './safe-paths.js';

const OPERATOR_DIR = '.realm-operator';

export class RealmsLayout {
  readonly root: string;
  // The operator's fixed directories, joined once: a publish asks for them dozens of times.
  readonly publishedRoot: string;
  readonly operatorDir: string;
  readonly stagingRoot: string;
  /** Removed content is renamed here under the realm lock (O(1)) and deleted after it is released. */
  readonly trashDir: string;
  /** What each version was staged from (`<disk_id>/<version>.json`), for incremental republishes. */
  readonly manifestsRoot: string;
  /** Temporary symlinks are made here and renamed into `_published/`. */
  readonly linkScratchDir: string;
  private readonly versionsRoot: string;
  /** Every path component below the root that {@link assertNoSymlinkedOperatorDirs} checks without a disk id, parents first. */
  private readonly fixedComponents: readonly string[];

  constructor(root: string) {
    this.root = path.resolve(root);
    this.publishedRoot = path.join(this.root, '_published');
    this.operatorDir = path.join(this.publishedRoot, OPERATOR_DIR);
    this.stagingRoot = path.join(this.operatorDir, 'staging');
    this.trashDir = path.join(this.operatorDir, 'trash');
    this.manifestsRoot = path.join(this.operatorDir, 'manifests');
    this.linkScratchDir = path.join(this.operatorDir, 'links');
    this.versionsRoot = path.join(this.operatorDir, 'versions');
    this.fixedComponents = [this.publishedRoot, this.operatorDir, this.stagingRoot, this.trashDir, this.linkScratchDir, this.manifestsRoot];
  }

  /**
   * A source realm's directory, lexically: `disk_id` is `<owner>/<endpoint>` relative to the root.
   * Symlinks are not resolved here; publishing uses {@link resolveSourceDir}.
   */
  sourceDir(diskId: string): string {
    const problem = sourceDiskIdProblem(diskId);
    if (problem) throw new Error(`source realm disk_id ${JSON.stringify(diskId)} ${problem}; it must name a directory under the realms root ${this.root}`);
    return path.join(this.root, diskId);
  }

  /**
   * The real path of a source realm's directory, refusing one that resolves (through symlinks in
   * it or its parents) outside the realms root or inside `_published/`.
   */
  async resolveSourceDir(diskId: string): Promise<{ dir: string } | { problem: string }> {
    const problem = sourceDiskIdProblem(diskId);
    if (problem) return { problem };
    const lexical = path.join(this.root, diskId);
    // Synchronous for the reason given in assertNoSymlinkedOperatorDirs: four calls per publish,
    // each a single realpath(3)/stat(2) (the `.native` realpath, as fs.promises.realpath uses).
    let real: string;
    try {
      real = realpathSync.native(lexical);
    } catch (error) {
      return { problem: `names ${lexical}, which does not exist (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})` };
    }
    const realRoot = realpathSync.native(this.root);
    const realPublished = realpathOfExisting(path.join(realRoot, '_published'));
    if (!isWithin(real, realRoot, false)) return { problem: `resolves through a symlink to ${real}, outside the realms root ${realRoot}` };
    if (isWithin(real, realPublished)) return { problem: `resolves through a symlink to ${real}, inside ${realPublished}, where published realms live` };
    if (!statSync(real).isDirectory()) return { problem: `names ${lexical}, which is not a directory` };
    return { dir: real };
  }

  /**
   * Checks that the operator's own directories for `diskId` (and `_published/` itself) are where
   * they appear to be: no component below the realms root may be a symlink, or a rename into a
   * version directory or a symlink swap could land outside the volume. Checked afresh at every
   * call (nothing is remembered between calls: a symlink swapped in later is caught by the next).
   */
  async assertNoSymlinkedOperatorDirs(diskId?: string): Promise<void> {
    // One lstat per path component below the root (no component being a symlink is exactly what a
    // realpath of each dir would confirm, without walking from `/` every time), parents first, so
    // the first symlink or missing directory from the root down decides.
    // Synchronous on purpose: these are the operator's own few directories (6-9 per call, never
    // per file), whose entries the kernel has cached, so each lstat takes a few microseconds of the
    // event loop; through fs.promises each cost a thread-pool hand-off, a wake-up and a promise,
    // ~75 µs of operator CPU apiece under bench-scale's load (1.1 s of samples per 1,000 publishes,
    // the largest single file-system item; H3's profile in docs/staging.md).
    const components =
      diskId === undefined ? this.fixedComponents : [...this.fixedComponents, this.versionsRoot, this.versionsDir(diskId), this.manifestsDir(diskId)];
    const missing = new Set<string>();
    for (const component of components) {
      // Below a missing directory nothing exists yet to be a symlink: skipped, as a walk from the
      // root would stop there.
      if (missing.has(path.dirname(component))) {
        missing.add(component);
        continue;
      }
      const kind = componentKind(component);
      if (kind === 'missing') missing.add(component);
      else if (kind === 'symlink') {
        const expected = path.join(realpathSync.native(this.root), path.relative(this.root, component));
        throw new PublishError(
          `${component} resolves to ${realpathOfExisting(component)}, not ${expected}: a directory the operator manages under the realms root is a symlink; remove the symlink (the operator recreates the directory)`,
        );
      }
    }
  }

  publishedDir(diskId: string): string {
    return path.join(this.publishedRoot, assertDiskIdSegment(diskId));
  }
  versionsDir(diskId: string): string {
    return path.join(this.versionsRoot, assertDiskIdSegment(diskId));
  }
  versionDir(diskId: string, version: string): string {
    return path.join(this.versionsDir(diskId), assertVersionName(version));
  }
  manifestsDir(diskId: string): string {
    return path.join(this.manifestsRoot, assertDiskIdSegment(diskId));
  }
  manifestPath(diskId: string, version: string): string {
    return path.join(this.manifestsDir(diskId), `${assertVersionName(version)}.json`);
  }
  /** The symlink text for a version, relative to `_published/`. */
  linkTarget(diskId: string, version: string): string {
    return path.posix.join(OPERATOR_DIR, 'versions', assertDiskIdSegment(diskId), assertVersionName(version));
  }
  /** The version a symlink text points at, or `undefined` if it is not one of ours. */
  versionFromLinkTarget(diskId: string, target: string): string | undefined {
    const prefix = `${OPERATOR_DIR}/versions/${diskId}/`;
    if (!target.startsWith(prefix)) return undefined;
    const version = target.slice(prefix.length);
    return versionNameProblem(version) === undefined ? version : undefined;
  }
}

/** What an lstat of one of the operator's directories found; an error other than a missing path is thrown. */
function componentKind(component: string): 'dir' | 'missing' | 'symlink' {
  try {
    return lstatSync(component).isSymbolicLink() ? 'symlink' : 'dir';
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return 'missing';
    throw error;
  }
}

/** A published `disk_id` is one plain path segment (a uuid when we create it). */
export function assertDiskIdSegment(diskId: string): string {
  const problem = publishedDiskIdProblem(diskId);
  if (problem) throw new Error(`published disk_id ${JSON.stringify(diskId)} ${problem}`);
  return diskId;
}

/** A content version name is one the operator creates; anything else never becomes a path. */
export function assertVersionName(version: string): string {
  const problem = versionNameProblem(version);
  if (problem) throw new Error(`content version ${JSON.stringify(version)} ${problem}`);
  return version;
}
