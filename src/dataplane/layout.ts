/**
 * Where realms live on the shared volume. Boxel's layout: a source realm at `<root>/<disk_id>/`,
 * a published realm at `<root>/_published/<disk_id>/`. We add `<root>/_published/.realm-operator/`
 * for staging and content versions; it is on the same volume, so every rename is atomic.
 *
 * A published realm directory is a symlink to `.realm-operator/versions/<disk_id>/<version>`
 * (relative, so it resolves wherever the volume is mounted). Publishing renames a new symlink over
 * it — the one atomic step readers can observe, as in Kubernetes' own atomic volume writer.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { PublishError } from './realm-state.js';
import { isWithin, publishedDiskIdProblem, realpathOfExisting, sourceDiskIdProblem, versionNameProblem } from './safe-paths.js';

const OPERATOR_DIR = '.realm-operator';

export class RealmsLayout {
  readonly root: string;
  constructor(root: string) {
    this.root = path.resolve(root);
  }

  get publishedRoot(): string {
    return path.join(this.root, '_published');
  }
  get operatorDir(): string {
    return path.join(this.publishedRoot, OPERATOR_DIR);
  }
  get stagingRoot(): string {
    return path.join(this.operatorDir, 'staging');
  }
  /** Removed content is renamed here under the realm lock (O(1)) and deleted after it is released. */
  get trashDir(): string {
    return path.join(this.operatorDir, 'trash');
  }
  /** What each version was staged from (`<disk_id>/<version>.json`), for incremental republishes. */
  get manifestsRoot(): string {
    return path.join(this.operatorDir, 'manifests');
  }
  /** Temporary symlinks are made here and renamed into `_published/`. */
  get linkScratchDir(): string {
    return path.join(this.operatorDir, 'links');
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
    let real: string;
    try {
      real = await fs.realpath(lexical);
    } catch (error) {
      return { problem: `names ${lexical}, which does not exist (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})` };
    }
    const realRoot = await fs.realpath(this.root);
    const realPublished = await realpathOfExisting(path.join(realRoot, '_published'));
    if (!isWithin(real, realRoot, false)) return { problem: `resolves through a symlink to ${real}, outside the realms root ${realRoot}` };
    if (isWithin(real, realPublished)) return { problem: `resolves through a symlink to ${real}, inside ${realPublished}, where published realms live` };
    const stat = await fs.stat(real);
    if (!stat.isDirectory()) return { problem: `names ${lexical}, which is not a directory` };
    return { dir: real };
  }

  /**
   * Checks that the operator's own directories for `diskId` (and `_published/` itself) are where
   * they appear to be: no component below the realms root may be a symlink, or a rename into a
   * version directory or a symlink swap could land outside the volume.
   */
  async assertNoSymlinkedOperatorDirs(diskId?: string): Promise<void> {
    const dirs = [this.publishedRoot, this.operatorDir, this.stagingRoot, this.trashDir, this.linkScratchDir, this.manifestsRoot];
    if (diskId !== undefined) dirs.push(this.versionsDir(diskId), this.manifestsDir(diskId));
    // One lstat per path component below the root (shared by the dirs) instead of a realpath of
    // each dir, which walks the whole path from `/` every time (a publish runs this three times):
    // no component below the root being a symlink is exactly what realpath would confirm.
    const kinds = new Map<string, Promise<'dir' | 'missing' | 'symlink'>>();
    const kindOf = (component: string) => {
      let kind = kinds.get(component);
      if (!kind) {
        kind = fs.lstat(component).then(
          (stat) => (stat.isSymbolicLink() ? 'symlink' : 'dir'),
          (error: NodeJS.ErrnoException) => {
            if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return 'missing';
            throw error;
          },
        );
        kinds.set(component, kind);
      }
      return kind;
    };
    for (const dir of dirs) {
      let component = this.root;
      for (const segment of path.relative(this.root, dir).split(path.sep)) {
        component = path.join(component, segment);
        const kind = await kindOf(component);
        if (kind === 'missing') break;
        if (kind === 'symlink') {
          const expected = path.join(await fs.realpath(this.root), path.relative(this.root, dir));
          throw new PublishError(
            `${dir} resolves to ${await realpathOfExisting(dir)}, not ${expected}: a directory the operator manages under the realms root is a symlink; remove the symlink (the operator recreates the directory)`,
          );
        }
      }
    }
  }

  publishedDir(diskId: string): string {
    return path.join(this.publishedRoot, assertDiskIdSegment(diskId));
  }
  versionsDir(diskId: string): string {
    return path.join(this.operatorDir, 'versions', assertDiskIdSegment(diskId));
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
