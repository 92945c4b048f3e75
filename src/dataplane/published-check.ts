/**
 * A lock-free look at whether a realm's published files still agree with what the database
 * committed, for reconciles that would otherwise publish nothing (the spec already published).
 * A publish that died after its swap leaves the link on a version that never committed (or a
 * repair whose COMMIT was lost leaves a stray version readers may have cached); only recovery
 * puts that right *with* an epoch bump and the wildcard NOTIFY, so Ready must not be reported
 * over it. Cheap on the common path: one lstat + readlink and one readdir; the kept versions are
 * read from the database only when a directory beyond the committed and previous ones exists.
 */
import { readPublishedLink, listVersions } from './published-content.js';
import { readKeptVersions } from './published-versions.js';
import { safePublishedDiskId, safeVersionName, type RealmEpochRow } from './realm-state.js';
import type { DataPlane } from './publish.js';

export async function publishedFilesDisagree(plane: Pick<DataPlane, 'pool' | 'layout'>, row: RealmEpochRow): Promise<boolean> {
  if (!row.disk_id || !row.content_version) return false;
  const url = row.realm_url;
  const diskId = safePublishedDiskId('realm_operator.realm_epochs.disk_id', url, row.disk_id);
  const committed = safeVersionName('realm_operator.realm_epochs.content_version', url, row.content_version);
  const link = await readPublishedLink(plane.layout, diskId);
  if (!(link.kind === 'version' && link.version === committed)) return true;
  const expected = new Set([committed, ...(row.previous_version ? [row.previous_version] : [])]);
  const others = (await listVersions(plane.layout, diskId)).filter((version) => !expected.has(version));
  if (others.length === 0) return false;
  const kept = new Set((await readKeptVersions(plane.pool, url, diskId)).map((v) => v.version));
  return others.some((version) => !kept.has(version));
}
