/**
 * SQL for the rows a publish reads and writes: Boxel's `realm_registry` and `realm_metadata`, and
 * our `realm_operator.realm_epochs` (which content version is committed, and the epoch).
 */
import { randomUUID } from 'node:crypto';
import type { Queryable } from './db.js';

export interface RegistryRow {
  id: string;
  url: string;
  kind: 'source' | 'published' | 'bootstrap';
  disk_id: string;
  owner_username: string | null;
  source_url: string | null;
  last_published_at: string | null;
}

export interface RealmEpochRow {
  realm_url: string;
  epoch: string;
  disk_id: string | null;
  content_version: string | null;
  previous_version: string | null;
  content_digest: string | null;
  file_count: number | null;
  total_bytes: string | null;
  published_at: Date | null;
  reindex_epoch: string | null;
  reindex_job_id: string | null;
  claimed_by: string | null;
  published_for: string | null;
}

export class PublishError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PublishError';
  }
}

/** The published URL belongs to another claimant (another PublishedRealm object). */
export class ClaimConflictError extends PublishError {
  constructor(
    readonly realmURL: string,
    readonly claimedBy: string,
  ) {
    super(`${realmURL} is already published by ${claimedBy}`);
    this.name = 'ClaimConflictError';
  }
}

export interface ClaimOptions {
  /** Who publishes, e.g. `<namespace>/<name>/<uid>`; a URL claimed by someone else is refused. */
  claimant?: string;
  /** Take the URL over from this previous claimant (known to be gone). */
  takeOverFrom?: string;
}

export async function readRegistryRow(db: Queryable, url: string): Promise<RegistryRow | undefined> {
  const { rows } = await db.query<RegistryRow>(
    'SELECT id, url, kind, disk_id, owner_username, source_url, last_published_at FROM realm_registry WHERE url = $1',
    [url],
  );
  return rows[0];
}

export async function readRealmEpochRow(db: Queryable, url: string, forUpdate = false): Promise<RealmEpochRow | undefined> {
  const { rows } = await db.query<RealmEpochRow>(
    `SELECT * FROM realm_operator.realm_epochs WHERE realm_url = $1${forUpdate ? ' FOR UPDATE' : ''}`,
    [url],
  );
  return rows[0];
}

/**
 * Settles which `disk_id` a publish of `url` will use and records it before any file is moved, so
 * a crash in the middle of a first publish leaves a directory recovery can find. Reuses the
 * registry's `disk_id` when the realm is already published, else a reserved one, else a new uuid.
 */
export async function reservePublishedDiskId(db: Queryable, url: string, claim: ClaimOptions = {}): Promise<string> {
  const registry = await readRegistryRow(db, url);
  if (registry && registry.kind !== 'published') {
    throw new PublishError(`${url} is registered as a ${registry.kind} realm; refusing to publish over it (choose another publishedRealmURL)`);
  }
  const epochRow = await readRealmEpochRow(db, url, true);
  assertClaim(url, epochRow, claim);
  const diskId = registry?.disk_id ?? epochRow?.disk_id ?? randomUUID();
  await db.query(
    `INSERT INTO realm_operator.realm_epochs (realm_url, epoch, disk_id, claimed_by) VALUES ($1, 0, $2, $3)
     ON CONFLICT (realm_url) DO UPDATE SET disk_id = EXCLUDED.disk_id,
       claimed_by = COALESCE(EXCLUDED.claimed_by, realm_operator.realm_epochs.claimed_by), updated_at = now()`,
    [url, diskId, claim.claimant ?? null],
  );
  return diskId;
}

/** Throws {@link ClaimConflictError} when the URL is claimed by someone other than `claim.claimant`. */
export function assertClaim(url: string, row: Pick<RealmEpochRow, 'claimed_by'> | undefined, claim: ClaimOptions): void {
  const holder = row?.claimed_by;
  if (!holder || !claim.claimant || holder === claim.claimant || holder === claim.takeOverFrom) return;
  throw new ClaimConflictError(url, holder);
}

export async function upsertPublishedRegistryRow(
  db: Queryable,
  row: { url: string; diskId: string; sourceURL: string; ownerUsername: string | null; publishedAtMs: number },
): Promise<RegistryRow> {
  const { rows } = await db.query<RegistryRow>(
    `INSERT INTO realm_registry (url, kind, disk_id, owner_username, source_url, last_published_at)
     VALUES ($1, 'published', $2, $3, $4, $5)
     ON CONFLICT (url) DO UPDATE SET
       source_url = EXCLUDED.source_url,
       owner_username = COALESCE(EXCLUDED.owner_username, realm_registry.owner_username),
       last_published_at = EXCLUDED.last_published_at,
       updated_at = now()
     WHERE realm_registry.kind = 'published' AND realm_registry.disk_id = EXCLUDED.disk_id
     RETURNING id, url, kind, disk_id, owner_username, source_url, last_published_at`,
    [row.url, row.diskId, row.ownerUsername, row.sourceURL, row.publishedAtMs],
  );
  if (!rows[0]) throw new PublishError(`realm_registry row for ${row.url} changed under the realm lock; retry the publish`);
  return rows[0];
}

/** Boxel marks a published realm's metadata as not publishable itself. */
export async function upsertPublishedRealmMetadata(db: Queryable, url: string): Promise<void> {
  await db.query(
    `INSERT INTO realm_metadata (url, publishable) VALUES ($1, false)
     ON CONFLICT (url) DO UPDATE SET publishable = false, updated_at = now()`,
    [url],
  );
}

/**
 * Draws the next epoch from the global sequence and records the committed content. Must run after
 * the swap: a replica that reads the sequence at or past this epoch is then known to have cleared
 * its cache after the new content was in place.
 */
export async function recordPublishedEpoch(
  db: Queryable,
  url: string,
  content: {
    diskId: string;
    version: string;
    previousVersion: string | null;
    digest: string;
    fileCount: number;
    totalBytes: number;
    publishedFor: string | null;
  },
): Promise<number> {
  const { rows } = await db.query<{ epoch: string }>(
    `UPDATE realm_operator.realm_epochs SET
       epoch = nextval('realm_operator.epoch_seq'), disk_id = $2, content_version = $3, previous_version = $4,
       content_digest = $5, file_count = $6, total_bytes = $7, published_for = $8, published_at = now(), updated_at = now()
     WHERE realm_url = $1 RETURNING epoch`,
    [url, content.diskId, content.version, content.previousVersion, content.digest, content.fileCount, content.totalBytes, content.publishedFor],
  );
  if (!rows[0]) throw new PublishError(`realm_operator.realm_epochs row for ${url} is missing; it is reserved before the swap`);
  return Number(rows[0].epoch);
}

/** Records that the realm has no published content (unpublish), drawing a new epoch. */
export async function recordUnpublishedEpoch(db: Queryable, url: string): Promise<number> {
  const { rows } = await db.query<{ epoch: string }>(
    `UPDATE realm_operator.realm_epochs SET
       epoch = nextval('realm_operator.epoch_seq'), content_version = NULL, previous_version = NULL,
       content_digest = NULL, file_count = NULL, total_bytes = NULL, published_at = NULL, claimed_by = NULL,
       published_for = NULL, updated_at = now()
     WHERE realm_url = $1 RETURNING epoch`,
    [url],
  );
  return rows[0] ? Number(rows[0].epoch) : 0;
}

/** A new epoch for the same content: after recovery re-pointed the link, replicas must clear again. */
export async function bumpEpoch(db: Queryable, url: string): Promise<number> {
  const { rows } = await db.query<{ epoch: string }>(
    `UPDATE realm_operator.realm_epochs SET epoch = nextval('realm_operator.epoch_seq'), updated_at = now()
     WHERE realm_url = $1 RETURNING epoch`,
    [url],
  );
  return rows[0] ? Number(rows[0].epoch) : 0;
}
