/**
 * Where realms live on the shared volume. Boxel's layout: a source realm at `<root>/<disk_id>/`,
 * a published realm at `<root>/_published/<disk_id>/`. We add `<root>/_published/.realm-operator/`
 * for staging and content versions; it is on the same volume, so every rename is atomic.
 *
 * A published realm directory is a symlink to `.realm-operator/versions/<disk_id>/<version>`
 * (relative, so it resolves wherever the volume is mounted). Publishing renames a new symlink over
 * it — the one atomic step readers can observe, as in Kubernetes' own atomic volume writer.
 */
import path from 'node:path';

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
  /** Temporary symlinks are made here and renamed into `_published/`. */
  get linkScratchDir(): string {
    return path.join(this.operatorDir, 'links');
  }

  /** A source realm's directory: `disk_id` is `<owner>/<endpoint>` relative to the root. */
  sourceDir(diskId: string): string {
    const dir = path.resolve(this.root, diskId);
    if (!dir.startsWith(this.root + path.sep) || dir.startsWith(this.publishedRoot + path.sep) || dir === this.publishedRoot) {
      throw new Error(`source realm disk_id ${JSON.stringify(diskId)} does not name a directory under the realms root ${this.root}`);
    }
    return dir;
  }
  publishedDir(diskId: string): string {
    return path.join(this.publishedRoot, assertDiskIdSegment(diskId));
  }
  versionsDir(diskId: string): string {
    return path.join(this.operatorDir, 'versions', assertDiskIdSegment(diskId));
  }
  versionDir(diskId: string, version: string): string {
    return path.join(this.versionsDir(diskId), version);
  }
  /** The symlink text for a version, relative to `_published/`. */
  linkTarget(diskId: string, version: string): string {
    return path.posix.join(OPERATOR_DIR, 'versions', assertDiskIdSegment(diskId), version);
  }
  /** The version a symlink text points at, or `undefined` if it is not one of ours. */
  versionFromLinkTarget(diskId: string, target: string): string | undefined {
    const prefix = `${OPERATOR_DIR}/versions/${diskId}/`;
    if (!target.startsWith(prefix)) return undefined;
    const version = target.slice(prefix.length);
    return version.length > 0 && !version.includes('/') ? version : undefined;
  }
}

/** A published `disk_id` is one plain path segment (a uuid when we create it). */
export function assertDiskIdSegment(diskId: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(diskId) || diskId.length > 200) {
    throw new Error(`published disk_id ${JSON.stringify(diskId)} is not a single safe path segment`);
  }
  return diskId;
}
