/**
 * Kept published versions (instant rollback): which versions of a published realm stay on disk
 * after they stop being live, recorded in `realm_operator.published_versions` (migration 6).
 *
 * The database, not the versions directory, says what is kept: a row is written in the publish's
 * own transaction, so it exists exactly for versions that committed, and a version directory
 * without a row is never mistaken for a rollback target (it may be a publish that never committed).
 * Which rows to keep is {@link selectKeptVersions}, a pure rule; the clean-up after each publish
 * and rollback applies it under the realm lock and trashes the directories it drops.
 */
import { queryPrepared, type Queryable } from './db.js';
import { PublishError } from './realm-state.js';
import { versionNameProblem } from './safe-paths.js';

/** How many published versions to keep, the live one included, and their byte budget. */
export interface HistoryPolicy {
  /** 1–20; 1 keeps only the live version (and, as always, the one before it for one publish). */
  limit: number;
  /** Sum of the kept versions' `totalBytes` (each counted whole, though hard-linked files share blocks); unset: no budget. */
  maxBytes?: number;
}

export const MIN_HISTORY_LIMIT = 1;
export const MAX_HISTORY_LIMIT = 20;
/** The CRD's default for `spec.history.limit`. A publish without a policy (library callers) keeps only the live version. */
export const DEFAULT_HISTORY_LIMIT = 3;
const NO_HISTORY: HistoryPolicy = { limit: 1 };

export interface KeptVersion {
  version: string;
  diskId: string;
  /** The epoch the version was first published at. */
  epoch: number;
  digest: string;
  fileCount: number;
  totalBytes: number;
  publishedAt: Date;
  publishedFor: string | null;
  revision: string | null;
}

/** A rollback named a version that is not kept (never published, or trimmed by the history policy). */
export class VersionNotKeptError extends PublishError {
  constructor(
    readonly realmURL: string,
    readonly version: string,
    readonly kept: readonly string[],
  ) {
    super(
      `${realmURL}: version ${JSON.stringify(version)} is not a kept published version (kept: ${kept.length > 0 ? kept.join(', ') : 'none'}); ` +
        'set spec.rollbackTo to one of the kept versions (kubectl realm versions <name>), or remove spec.rollbackTo to publish spec.revision again',
    );
    this.name = 'VersionNotKeptError';
  }
}

/**
 * The versions to keep: the live one always (whatever the budget), then the newest others while
 * both the count and the byte budget allow. `versions` in any order; returns names, newest first.
 */
export function selectKeptVersions(versions: readonly KeptVersion[], live: string | null, policy: HistoryPolicy): { kept: string[]; trimmed: string[] } {
  const newestFirst = [...versions].sort((a, b) => b.publishedAt.getTime() - a.publishedAt.getTime() || b.epoch - a.epoch);
  const liveRow = newestFirst.find((v) => v.version === live);
  const kept = new Set<string>(liveRow ? [liveRow.version] : []);
  let bytes = liveRow?.totalBytes ?? 0;
  for (const candidate of newestFirst) {
    if (kept.has(candidate.version)) continue;
    if (kept.size >= policy.limit) break;
    if (policy.maxBytes !== undefined && bytes + candidate.totalBytes > policy.maxBytes) continue;
    kept.add(candidate.version);
    bytes += candidate.totalBytes;
  }
  return { kept: newestFirst.filter((v) => kept.has(v.version)).map((v) => v.version), trimmed: newestFirst.filter((v) => !kept.has(v.version)).map((v) => v.version) };
}

/** A policy read back from the database or a spec, checked: limit 1–20, maxBytes ≥ 0. */
export function historyPolicyProblem(policy: HistoryPolicy): string | undefined {
  if (!Number.isInteger(policy.limit) || policy.limit < MIN_HISTORY_LIMIT || policy.limit > MAX_HISTORY_LIMIT) return `history limit ${policy.limit} must be an integer from ${MIN_HISTORY_LIMIT} to ${MAX_HISTORY_LIMIT}`;
  if (policy.maxBytes !== undefined && (!Number.isSafeInteger(policy.maxBytes) || policy.maxBytes < 0)) return `history maxBytes ${policy.maxBytes} must be a non-negative integer`;
  return undefined;
}

interface KeptVersionRow {
  version: string;
  disk_id: string;
  epoch: string;
  content_digest: string;
  file_count: number;
  total_bytes: string;
  published_at: Date;
  published_for: string | null;
  revision: string | null;
}

const COLUMNS = 'version, disk_id, epoch, content_digest, file_count, total_bytes, published_at, published_for, revision';

function fromRow(row: KeptVersionRow): KeptVersion {
  return {
    version: row.version,
    diskId: row.disk_id,
    epoch: Number(row.epoch),
    digest: row.content_digest,
    fileCount: row.file_count,
    totalBytes: Number(row.total_bytes),
    publishedAt: row.published_at,
    publishedFor: row.published_for,
    revision: row.revision,
  };
}

/** The kept versions of `url` on `diskId`, newest first; rows with names the operator never makes are ignored. */
export async function readKeptVersions(db: Queryable, url: string, diskId?: string): Promise<KeptVersion[]> {
  const { rows } = await queryPrepared<KeptVersionRow>(
    db,
    `SELECT ${COLUMNS} FROM realm_operator.published_versions WHERE realm_url = $1 AND ($2::text IS NULL OR disk_id = $2) ORDER BY published_at DESC, epoch DESC`,
    [url, diskId ?? null],
  );
  return rows.filter((row) => !versionNameProblem(row.version)).map(fromRow);
}

export async function forgetKeptVersions(db: Queryable, url: string, versions: readonly string[] | 'all'): Promise<void> {
  if (versions === 'all') await db.query('DELETE FROM realm_operator.published_versions WHERE realm_url = $1', [url]);
  else if (versions.length > 0) await db.query('DELETE FROM realm_operator.published_versions WHERE realm_url = $1 AND version = ANY($2::text[])', [url, versions]);
}

/** The policy recorded in an epoch row (its `history_limit`, `history_max_bytes`); none recorded (or out of range): keep only the live version. */
export function recordedHistoryPolicy(row: { history_limit?: number | null; history_max_bytes?: string | null } | undefined): HistoryPolicy {
  if (!row || row.history_limit === null || row.history_limit === undefined) return NO_HISTORY;
  const policy: HistoryPolicy = { limit: row.history_limit, ...(row.history_max_bytes !== null && row.history_max_bytes !== undefined ? { maxBytes: Number(row.history_max_bytes) } : {}) };
  return historyPolicyProblem(policy) ? NO_HISTORY : policy;
}
