/**
 * SQL for the rows a publish reads and writes: Boxel's `realm_registry` and `realm_metadata`, and
 * our `realm_operator.realm_epochs` (which content version is committed, and the epoch).
 */
import { randomUUID } from 'node:crypto';
import { REALM_REGISTRY_CHANNEL } from '../wire/channels.js';
import { formatRealmRegistryPayload } from '../wire/payloads.js';
import { prefixRangeEnd, realmURLProblem, RealmURLError } from '../wire/realm-url.js';
import type pg from 'pg';
import { queryPrepared, withRealmLockAndFirst, type LockedFirstStatement, type Queryable, type RealmLockOptions } from './db.js';
import type { HistoryPolicy } from './published-versions.js';
import { publishedDiskIdProblem, sourceDiskIdProblem, versionNameProblem } from './safe-paths.js';

export interface RegistryRow {
  id: string;
  url: string;
  kind: 'source' | 'published' | 'bootstrap';
  disk_id: string;
  owner_username: string;
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
  /** Present once migration 5 ran: see {@link PublishFence}. */
  published_generation?: string | null;
  published_generation_of?: string | null;
  /** Present once migration 6 ran: the history policy (published-versions.ts) the clean-up trims by. */
  history_limit?: number | null;
  history_max_bytes?: string | null;
}

/**
 * Which object a publish is for and which of its generations (a PublishedRealm's claimant and
 * `metadata.generation`). Recorded with the publish; a later publish of the same object with a
 * generation at or below the recorded one is refused ({@link SupersededPublishError}).
 */
export interface PublishFence {
  of: string;
  generation: number;
}

/**
 * The realm already holds a publish of this object at the same or a newer generation, committed
 * by someone else meanwhile (a new leader, while this publisher was paused): this one must not
 * commit over it. Not a {@link PublishError}: nothing is wrong with the spec, the newer one won.
 */
export class SupersededPublishError extends Error {
  constructor(
    readonly realmURL: string,
    readonly generation: number,
    readonly recordedGeneration: number,
  ) {
    super(`${realmURL}: generation ${recordedGeneration} is already published, so this publish of generation ${generation} is not committed (the newer generation wins)`);
    this.name = 'SupersededPublishError';
  }
}

/** Throws {@link SupersededPublishError} when `row` records a publish of `fence.of` at `fence.generation` or newer. */
export function assertNotSuperseded(url: string, row: Pick<RealmEpochRow, 'published_generation' | 'published_generation_of'> | undefined, fence: PublishFence | undefined): void {
  if (!fence || !row || row.published_generation_of !== fence.of || row.published_generation === null || row.published_generation === undefined) return;
  const recorded = Number(row.published_generation);
  if (recorded >= fence.generation) throw new SupersededPublishError(url, fence.generation, recorded);
}

export class PublishError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PublishError';
  }
}

/** A Boxel authorization rule refused the publish or unpublish; `rule` names it, the message says how to fix it. */
export class PublishNotAuthorizedError extends PublishError {
  constructor(
    readonly rule: string,
    message: string,
  ) {
    super(message);
    this.name = 'PublishNotAuthorizedError';
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

/**
 * A source realm is over the operator's per-realm size limit (`--max-realm-files` /
 * `--max-realm-bytes`). Staging stops at the first file past the limit, so the counts are what
 * was seen until then, not the realm's full size.
 */
export class RealmTooLargeError extends PublishError {
  constructor(
    readonly sourceRealmURL: string,
    /** Regular files counted when staging stopped. */
    readonly files: number,
    /** Bytes counted when staging stopped. */
    readonly bytes: number,
    /** The limit that was exceeded. */
    readonly limit: { kind: 'files' | 'bytes'; max: number },
  ) {
    const counted = limit.kind === 'files' ? `${files} files` : `${bytes} bytes`;
    const flag = limit.kind === 'files' ? '--max-realm-files' : '--max-realm-bytes';
    super(
      `source realm ${sourceRealmURL} is over the per-realm limit of ${limit.max} ${limit.kind} (counted ${counted} before stopping); ` +
        `raise ${flag} on the operator or remove ${limit.kind === 'files' ? 'files' : 'large files'} from the source realm`,
    );
    this.name = 'RealmTooLargeError';
  }
}

/**
 * The published URL would contain, or be contained in, another registered realm's URL. Realm
 * servers resolve a request to the longest matching realm URL they know, so a nested realm changes
 * which realm serves a path depending on each replica's cache.
 */
/** The published URL is registered as a realm of another kind (a source or bootstrap realm). */
export class URLTakenByRealmError extends PublishError {
  constructor(
    readonly realmURL: string,
    readonly kind: string,
  ) {
    super(`${realmURL} is registered as a ${kind} realm; refusing to publish over it (delete and recreate the PublishedRealm with another publishedRealmURL)`);
    this.name = 'URLTakenByRealmError';
  }
}

export class RealmURLOverlapError extends PublishError {
  constructor(
    readonly realmURL: string,
    /** The registered realm URLs that overlap, sorted. */
    readonly overlapping: readonly string[],
  ) {
    const shown = overlapping.slice(0, 5).join(', ') + (overlapping.length > 5 ? ` and ${overlapping.length - 5} more` : '');
    super(
      `publishedRealmURL ${realmURL} overlaps the registered realm URL${overlapping.length === 1 ? '' : 's'} ${shown}; ` +
        'choose a publishedRealmURL that neither contains nor is contained in another realm\'s URL (delete and recreate the PublishedRealm with it)',
    );
    this.name = 'RealmURLOverlapError';
  }
}

/**
 * A value read from the database that is used as a path component is not one the operator or
 * Boxel would write (e.g. `../../etc`). Nothing on disk is touched for that realm until it is fixed.
 */
export class UnsafeDatabaseValueError extends PublishError {
  constructor(
    /** `table.column`, e.g. `realm_operator.realm_epochs.content_version`. */
    readonly column: string,
    /** The realm URL of the row. */
    readonly rowURL: string,
    readonly value: string,
    problem: string,
    fix: string,
  ) {
    super(`${column} of the row for ${rowURL} is ${JSON.stringify(value)}, which ${problem}; refusing to use it as a path. ${fix}`);
    this.name = 'UnsafeDatabaseValueError';
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

/** What {@link readPublishTargetRows} reads for a publish of `source` at `published`. */
export interface PublishTargetRows {
  source: RegistryRow | undefined;
  published: RegistryRow | undefined;
  /** `realm_operator.realm_epochs.claimed_by` of the published URL. */
  claimedBy: string | null;
  /** Registered URLs that may overlap the published one (narrowed by prefix in SQL; `findOverlappingRealmURLs` in wire/realm-url.ts is the rule); read only when it is not registered. */
  overlapCandidates: string[];
  /** The source owner's Matrix id, as {@link readSourceOwnerUserId} reads it. */
  sourceOwnerUserId: string | undefined;
  /**
   * Boxel's authorization facts (authorization.ts) for `publisher` (the requested one, else the
   * source owner's Matrix id, else its bare username), read in the same statement so the checks
   * and the rules cost one round trip.
   */
  authorization: PublishAuthorizationFacts & { publisher: string | null };
  /** With `epochRow`: the published URL's whole epoch row (undefined when absent), read FOR UPDATE with `'lock'`. */
  epochRow?: RealmEpochRow | undefined;
}

/** What Boxel's publish rules read from the database for one publisher (see authorization.ts). */
export interface PublishAuthorizationFacts {
  /** The publisher's own permission row on the source has realm-owner. */
  ownsSource: boolean;
  /** `realm_metadata.publishable` of the source is true. */
  publishable: boolean;
  /** The published URL's registered source (a `published` row's `source_url`, else the URL itself); undefined when not registered as published. */
  existingSource: string | undefined;
  /** The publisher holds realm-owner on `existingSource`. */
  ownsExistingSource: boolean;
}

const REGISTRY_COLUMNS = ['id', 'url', 'kind', 'disk_id', 'owner_username', 'source_url', 'last_published_at'] as const;

/**
 * Every column of `realm_operator.realm_epochs` (migrations.ts), named rather than `*` so the
 * statements that read them can be prepared ({@link queryPrepared}).
 */
const EPOCH_COLUMNS = [
  'realm_url',
  'epoch',
  'disk_id',
  'content_version',
  'previous_version',
  'content_digest',
  'file_count',
  'total_bytes',
  'published_at',
  'reindex_epoch',
  'reindex_job_id',
  'updated_at',
  'claimed_by',
  'published_for',
  'published_generation',
  'published_generation_of',
  'history_limit',
  'history_max_bytes',
] as const;
const EPOCH_SELECT = EPOCH_COLUMNS.join(', ');
const epochColumnsOf = (alias: string) => EPOCH_COLUMNS.map((column) => `${alias}.${column}`).join(', ');

/** The epoch row among a row's columns; undefined when the outer join found none. */
function pickEpochRow(row: Record<string, unknown>): RealmEpochRow | undefined {
  return row.realm_url === null || row.realm_url === undefined ? undefined : (Object.fromEntries(EPOCH_COLUMNS.map((column) => [column, row[column]])) as unknown as RealmEpochRow);
}

/**
 * The registered URLs other than `$2` that are a string prefix of it or have it as one (the
 * candidates `findOverlappingRealmURLs` in wire/realm-url.ts then judges), without reading the
 * whole registry: the same rows as `url <> $2 AND (starts_with($2, url) OR starts_with(url, $2))`.
 * - Prefixes of `$2`, the empty string included, can be listed: one probe each of Boxel's unique
 *   index on `url` (equality is byte equality in any deterministic collation, as a database's
 *   default collation is).
 * - URLs starting with `$2` are a range in byte order, `$2 < url < $4` with `$4` =
 *   {@link prefixRangeEnd}(`$2`), compared under `COLLATE "C"`: in another collation (en_US
 *   ignores "/" at first) strings sharing a prefix need not sort together, so Boxel's index, in the
 *   database's collation, cannot serve it. An index on `(url COLLATE "C")` serves it; without one
 *   the arm reads the table, giving the same rows. `starts_with` keeps the arm exact should the
 *   bound be loose (a prefix ending in U+10FFFF).
 */
const OVERLAP_CANDIDATES_SQL = `SELECT url FROM realm_registry WHERE url = ANY (ARRAY(SELECT left($2, n) FROM generate_series(0, length($2) - 1) AS n))
       UNION ALL
       SELECT url FROM realm_registry WHERE url COLLATE "C" > $2 AND url COLLATE "C" < $4 AND starts_with(url, $2)
       ORDER BY 1`;

/** `$4` of {@link OVERLAP_CANDIDATES_SQL}; a string without one (empty, or only U+10FFFF) is no realm URL, and is refused. */
function overlapRangeEnd(publishedURL: string): string {
  const end = prefixRangeEnd(publishedURL);
  if (end === undefined) throw realmURLProblem(publishedURL, 'publishedRealmURL') ?? new RealmURLError('publishedRealmURL', 'is not a realm URL', 'give an absolute http(s) URL ending in "/"');
  return end;
}

/**
 * The rows a publish's checks read, in one statement (one round trip instead of five): both
 * registry rows, the published URL's claim, the overlap candidates (only when the published URL is
 * not registered) and the source owner's Matrix id. Each column keeps its own type.
 * The source owner's sub-select is fenced (`OFFSET 0`): flattened, PostgreSQL copied it into every
 * expression using the publisher it defaults, and ran it four times.
 * `epochRow`: also the published URL's whole epoch row — `'read'` (the reconciler's first read,
 * which decides whether the spec is already published), or `'lock'` (under the realm lock) FOR
 * UPDATE — saving a statement of its own.
 */
export async function readPublishTargetRows(
  db: Queryable,
  sourceURL: string,
  publishedURL: string,
  publisher?: string,
  { epochRow }: { epochRow?: 'read' | 'lock' } = {},
): Promise<PublishTargetRows> {
  const statement = publishTargetRowsStatement(sourceURL, publishedURL, publisher, { epochRow });
  const { rows } = await queryPrepared<Record<string, unknown>>(db, statement.text, [...statement.values]);
  return parsePublishTargetRows(rows[0]!, { epochRow });
}

/** The statement {@link readPublishTargetRows} sends, for sending it with the realm lock (`withRealmLockAndFirst`). */
export function publishTargetRowsStatement(
  sourceURL: string,
  publishedURL: string,
  publisher?: string,
  { epochRow }: { epochRow?: 'read' | 'lock' } = {},
): LockedFirstStatement {
  return { text: memoizedSQL(`publish-target-${epochRow ?? 'none'}`, () => publishTargetRowsSQL(epochRow)), values: [sourceURL, publishedURL, publisher ?? null, overlapRangeEnd(publishedURL)] };
}

/**
 * The statements' texts, built once: a text built at every call costs its building and, as the
 * key of the prepared-statement names, hashing its few kilobytes again.
 */
const builtSQL = new Map<string, string>();
function memoizedSQL(key: string, build: () => string): string {
  let text = builtSQL.get(key);
  if (text === undefined) {
    text = build();
    builtSQL.set(key, text);
  }
  return text;
}

function publishTargetRowsSQL(epochRow: 'read' | 'lock' | undefined): string {
  const registryColumns = (alias: string) => REGISTRY_COLUMNS.map((column) => `${alias}.${column} AS ${alias}_${column}`).join(', ');
  // FOR UPDATE through a sub-select: it may not name the nullable side of an outer join.
  const epochs =
    epochRow === 'lock'
      ? { columns: epochColumnsOf('e'), join: `LEFT JOIN LATERAL (SELECT ${EPOCH_SELECT} FROM realm_operator.realm_epochs WHERE realm_url = $2 FOR UPDATE) AS e ON true` }
      : epochRow === 'read'
        ? { columns: epochColumnsOf('e'), join: 'LEFT JOIN realm_operator.realm_epochs e ON e.realm_url = $2' }
        : { columns: 'e.claimed_by', join: 'LEFT JOIN realm_operator.realm_epochs e ON e.realm_url = $2' };
  return `SELECT ${registryColumns('s')}, ${registryColumns('p')}, ${epochs.columns},
       CASE WHEN p.url IS NULL THEN ARRAY(${OVERLAP_CANDIDATES_SQL}) END AS overlap_candidates,
       owner.user_id AS source_owner_user_id, who.publisher,
       (SELECT realm_owner FROM realm_user_permissions WHERE realm_url = $1 AND username = who.publisher) AS owns_source,
       (SELECT publishable FROM realm_metadata WHERE url = $1) AS publishable,
       existing.source AS existing_source,
       (SELECT realm_owner FROM realm_user_permissions WHERE realm_url = existing.source AND username = who.publisher) AS owns_existing_source
     FROM (SELECT 1) AS one
     LEFT JOIN realm_registry s ON s.url = $1
     LEFT JOIN realm_registry p ON p.url = $2
     ${epochs.join}
     CROSS JOIN LATERAL (SELECT (SELECT username FROM realm_user_permissions
        WHERE realm_url = $1 AND realm_owner AND starts_with(username, '@' || s.owner_username || ':') ORDER BY username LIMIT 1) AS user_id OFFSET 0) AS owner
     CROSS JOIN LATERAL (SELECT COALESCE($3::text, owner.user_id, NULLIF(s.owner_username, '')) AS publisher) AS who
     CROSS JOIN LATERAL (SELECT CASE WHEN p.kind = 'published' THEN COALESCE(p.source_url, p.url) END AS source) AS existing`;
}

/** {@link readPublishTargetRows}'s result from its statement's one row. */
export function parsePublishTargetRows(row: Record<string, unknown>, { epochRow }: { epochRow?: 'read' | 'lock' } = {}): PublishTargetRows {
  const registry = (alias: string): RegistryRow | undefined =>
    row[`${alias}_url`] === null ? undefined : (Object.fromEntries(REGISTRY_COLUMNS.map((column) => [column, row[`${alias}_${column}`]])) as unknown as RegistryRow);
  const source = registry('s');
  return {
    ...(epochRow ? { epochRow: pickEpochRow(row) } : {}),
    source,
    published: registry('p'),
    claimedBy: (row.claimed_by as string | null) ?? null,
    overlapCandidates: (row.overlap_candidates as string[] | null) ?? [],
    sourceOwnerUserId: source?.owner_username ? ((row.source_owner_user_id as string | null) ?? undefined) : undefined,
    authorization: {
      publisher: (row.publisher as string | null) ?? null,
      ownsSource: row.owns_source === true,
      publishable: row.publishable === true,
      existingSource: (row.existing_source as string | null) ?? undefined,
      ownsExistingSource: row.owns_existing_source === true,
    },
  };
}

export async function readRealmEpochRow(db: Queryable, url: string, forUpdate = false): Promise<RealmEpochRow | undefined> {
  const { rows } = await queryPrepared<RealmEpochRow>(db, `SELECT ${EPOCH_SELECT} FROM realm_operator.realm_epochs WHERE realm_url = $1${forUpdate ? ' FOR UPDATE' : ''}`, [url]);
  return rows[0];
}

/** {@link readRealmEpochRow} (never locking) with the URL's `realm_registry.disk_id`, in one statement; undefined without an epoch row. */
export async function readRealmEpochRowAndRegistryDiskId(db: Queryable, url: string): Promise<(RealmEpochRow & { registry_disk_id: string | null }) | undefined> {
  const { rows } = await queryPrepared<RealmEpochRow & { registry_disk_id: string | null }>(
    db,
    `SELECT ${epochColumnsOf('e')}, (SELECT disk_id FROM realm_registry WHERE url = $1) AS registry_disk_id FROM realm_operator.realm_epochs e WHERE e.realm_url = $1`,
    [url],
  );
  return rows[0];
}

/**
 * The realm's epoch row, locked FOR UPDATE, and its `realm_registry` row, in one statement (one
 * round trip instead of two); each undefined when absent.
 */
export async function readLockedEpochRowAndRegistryRow(db: Queryable, url: string): Promise<LockedEpochAndRegistryRows> {
  const statement = lockedEpochRowAndRegistryStatement(url);
  const { rows } = await queryPrepared<Record<string, unknown>>(db, statement.text, [...statement.values]);
  return parseLockedEpochRowAndRegistryRow(rows[0]!);
}

export interface LockedEpochAndRegistryRows {
  epochRow: RealmEpochRow | undefined;
  registry: RegistryRow | undefined;
}

/** The statement {@link readLockedEpochRowAndRegistryRow} sends, for sending it with the realm lock (`withRealmLockAndFirst`). */
export function lockedEpochRowAndRegistryStatement(url: string): LockedFirstStatement {
  // The epoch row through a locking sub-select: FOR UPDATE may not name the nullable side of an outer join.
  const text = memoizedSQL(
    'locked-epoch-and-registry',
    () => `SELECT ${epochColumnsOf('e')}, ${REGISTRY_COLUMNS.map((column) => `r.${column} AS registry_${column}`).join(', ')}
     FROM (SELECT 1) AS one
     LEFT JOIN LATERAL (SELECT ${EPOCH_SELECT} FROM realm_operator.realm_epochs WHERE realm_url = $1 FOR UPDATE) AS e ON true
     LEFT JOIN realm_registry r ON r.url = $1`,
  );
  return { text, values: [url] };
}

/** {@link readLockedEpochRowAndRegistryRow}'s result from its statement's one row. */
export function parseLockedEpochRowAndRegistryRow(row: Record<string, unknown>): LockedEpochAndRegistryRows {
  const registry = row.registry_url === null ? undefined : (Object.fromEntries(REGISTRY_COLUMNS.map((column) => [column, row[`registry_${column}`]])) as unknown as RegistryRow);
  return { epochRow: pickEpochRow(row), registry };
}

/**
 * Settles which `disk_id` a publish of `url` will use and records it before any file is moved, so
 * a crash in the middle of a first publish leaves a directory recovery can find. Reuses the
 * registry's `disk_id` when the realm is already published, else a reserved one, else a new uuid.
 */
export async function reservePublishedDiskId(db: Queryable, url: string, claim: ClaimOptions = {}): Promise<string> {
  return (await reservePublishedDiskIdWithRow(db, url, claim)).diskId;
}

/** A disk id reserved for `url` and the epoch row as the reservation left it, with the URL's `realm_registry.disk_id`. */
export interface DiskIdReservation {
  url: string;
  diskId: string;
  row: RealmEpochRow & { registry_disk_id: string | null };
}

/**
 * {@link reservePublishedDiskId}, also returning the epoch row it wrote (no extra statement): a
 * publish right after it passes that to {@link publishRealm} as `reserved`, saving its own read.
 * Run it in the realm's locked transaction (`withRealmLock`): a refusal it throws after its one
 * statement relies on the rollback.
 */
export async function reservePublishedDiskIdWithRow(db: Queryable, url: string, claim: ClaimOptions = {}): Promise<DiskIdReservation> {
  const statement = reservationStatement(url, claim);
  const { rows } = await queryPrepared<Record<string, unknown>>(db, statement.text, [...statement.values]);
  return parseReservation(rows[0]!, url, claim);
}

/**
 * {@link reservePublishedDiskIdWithRow} in its own locked transaction, its statement sent in the
 * same round trip as BEGIN and the lock (`withRealmLockAndFirst`): BEGIN + lock, then COMMIT — or
 * ROLLBACK when a check refuses — two round trips instead of three.
 */
export async function reservePublishedDiskIdLocked(pool: pg.Pool, url: string, claim: ClaimOptions = {}, options: RealmLockOptions = {}): Promise<DiskIdReservation> {
  const { result } = await withRealmLockAndFirst(pool, url, reservationStatement(url, claim), async (_tx, first) => parseReservation(first.rows[0]!, url, claim), options);
  return result;
}

function reservationStatement(url: string, claim: ClaimOptions): LockedFirstStatement {
  // One statement (one round trip instead of two): the rows as they were, locked, and the write,
  // made only when the checks in parseReservation would pass — they run on the rows as they were,
  // and one that fails throws, so the caller's transaction rolls back whatever the statement wrote.
  return { text: memoizedSQL('reservation', reservationSQL), values: [url, randomUUID(), claim.claimant ?? null, claim.takeOverFrom ?? null] };
}

function reservationSQL(): string {
  const registryOf = (alias: string) => REGISTRY_COLUMNS.map((column) => `${alias}.${column} AS registry_${column}`).join(', ');
  return `WITH before AS (
       SELECT ${epochColumnsOf('e')}, ${registryOf('r')}
       FROM (SELECT 1) AS one
       LEFT JOIN LATERAL (SELECT ${EPOCH_SELECT} FROM realm_operator.realm_epochs WHERE realm_url = $1 FOR UPDATE) AS e ON true
       LEFT JOIN realm_registry r ON r.url = $1),
     written AS (
       INSERT INTO realm_operator.realm_epochs (realm_url, epoch, disk_id, claimed_by)
       SELECT $1, 0, CASE WHEN registry_url IS NOT NULL THEN registry_disk_id ELSE COALESCE(NULLIF(disk_id, ''), $2) END, $3 FROM before
       WHERE (registry_url IS NULL OR registry_kind = 'published')
         AND (COALESCE(claimed_by, '') = '' OR COALESCE($3::text, '') = '' OR claimed_by = $3 OR claimed_by = $4::text)
       ON CONFLICT (realm_url) DO UPDATE SET disk_id = EXCLUDED.disk_id,
         claimed_by = COALESCE(EXCLUDED.claimed_by, realm_operator.realm_epochs.claimed_by), updated_at = now()
       RETURNING ${EPOCH_SELECT})
     SELECT before.*, ${EPOCH_COLUMNS.map((column) => `w.${column} AS written_${column}`).join(', ')} FROM before LEFT JOIN written w ON true`;
}

function parseReservation(row: Record<string, unknown>, url: string, claim: ClaimOptions): DiskIdReservation {
  const epochRow = pickEpochRow(row);
  const registry = row.registry_url === null ? undefined : (Object.fromEntries(REGISTRY_COLUMNS.map((column) => [column, row[`registry_${column}`]])) as unknown as RegistryRow);
  if (registry && registry.kind !== 'published') {
    throw new URLTakenByRealmError(url, registry.kind);
  }
  assertClaim(url, epochRow, claim);
  const diskId = registry
    ? safePublishedDiskId('realm_registry.disk_id', url, registry.disk_id)
    : epochRow?.disk_id
      ? safePublishedDiskId('realm_operator.realm_epochs.disk_id', url, epochRow.disk_id)
      : undefined;
  // The statement's conditions are the checks above: with them passed, it wrote the row.
  if (row.written_realm_url === null) throw new Error(`realm_operator.realm_epochs row for ${url} was not written though its checks passed; the publish is retried`);
  const writtenRow = Object.fromEntries(EPOCH_COLUMNS.map((column) => [column, row[`written_${column}`]])) as unknown as RealmEpochRow;
  if (diskId !== undefined && writtenRow.disk_id !== diskId) throw new Error(`realm_operator.realm_epochs row for ${url} got disk id ${String(writtenRow.disk_id)}, not ${diskId}; the publish is retried`);
  return { url, diskId: writtenRow.disk_id!, row: { ...writtenRow, registry_disk_id: registry?.disk_id ?? null } };
}

type PublishedDiskIdColumn = 'realm_registry.disk_id' | 'realm_operator.realm_epochs.disk_id';
type VersionColumn = 'realm_operator.realm_epochs.content_version' | 'realm_operator.realm_epochs.previous_version';

/** A published realm's `disk_id` from the database, refused unless it is one plain segment. */
export function safePublishedDiskId(column: PublishedDiskIdColumn, url: string, value: string): string {
  const problem = publishedDiskIdProblem(value);
  if (!problem) return value;
  const fix =
    column === 'realm_registry.disk_id'
      ? 'Set it back to the uuid of the realm\'s directory under _published/, or unpublish and publish again.'
      : `Set it to NULL (UPDATE ${column.replace(/\.disk_id$/, '')} SET disk_id = NULL WHERE realm_url = '${url}') and publish again.`;
  throw new UnsafeDatabaseValueError(column, url, value, problem, fix);
}

/** A content version name from the database, refused unless the operator could have created it. */
export function safeVersionName(column: VersionColumn, url: string, value: string): string {
  const problem = versionNameProblem(value);
  if (!problem) return value;
  throw new UnsafeDatabaseValueError(
    column,
    url,
    value,
    problem,
    `Set it to NULL (UPDATE realm_operator.realm_epochs SET ${column.split('.').pop()} = NULL WHERE realm_url = '${url}') and publish again; then find out who could write that row.`,
  );
}

/** A source realm's `disk_id`, refused unless it is plain segments under the realms root. */
export function safeSourceDiskId(url: string, value: string): string {
  const problem = sourceDiskIdProblem(value);
  if (!problem) return value;
  throw new UnsafeDatabaseValueError(
    'realm_registry.disk_id',
    url,
    value,
    problem,
    'Point it at the source realm\'s directory relative to the realms root (Boxel writes <owner>/<endpoint>), or fix sourceRealmURL.',
  );
}

/** Throws {@link ClaimConflictError} when the URL is claimed by someone other than `claim.claimant`. */
export function assertClaim(url: string, row: Pick<RealmEpochRow, 'claimed_by'> | undefined, claim: ClaimOptions): void {
  const holder = row?.claimed_by;
  if (!holder || !claim.claimant || holder === claim.claimant || holder === claim.takeOverFrom) return;
  throw new ClaimConflictError(url, holder);
}

/**
 * A publish's writes to Boxel's tables, in one statement: inserts the published realm's registry
 * row or advances `last_published_at` on an existing one, marks its `realm_metadata` not
 * publishable (as Boxel does for a published realm), and with `permissions` (a first publish)
 * writes the three `realm_user_permissions` rows. `owner_username` is written only by the insert:
 * like Boxel's `upsertPublishedRealmInRegistry` (cardstack/boxel
 * packages/realm-server/lib/realm-registry-writes.ts), a republish — ours or over a realm Boxel
 * published — keeps the owner the first publish recorded. `source_url` is the one deliberate
 * difference: Boxel's upsert keeps the first source, ours records the source actually published
 * (a PublishedRealm whose spec moved to another source). Keeping the first one would file the URL
 * under a source it no longer comes from: that source's deletion (Boxel's, or a Realm object's)
 * would remove it while its PublishedRealm still claims it, and every re-check would ask for
 * realm-owner on a source nothing is published from any more (docs/authorization.md). The three
 * tables have no foreign keys between them (Boxel's migrations), so writing them in one statement
 * is the same as one by one.
 *
 * The permissions are the rows Boxel writes on a first publish (cardstack/boxel
 * packages/realm-server/handlers/handle-publish-realm.ts, through `insertPermissions` in
 * packages/runtime-common/db-queries/realm-permission-queries.ts, an upsert on the primary key):
 * the realm's own Matrix user and the publishing user get read + realm-owner, everyone (`*`) gets
 * read; `write` is false for all three. Boxel writes them only when the registry row is new.
 */
export async function upsertPublishedRegistryRow(
  db: Queryable,
  row: { url: string; diskId: string; sourceURL: string; ownerUsername: string; publishedAtMs: number },
  permissions?: { realmUserId: string; publisherId: string },
): Promise<RegistryRow> {
  const permissionRows: Array<[string, boolean, boolean, boolean]> = permissions
    ? [
        [permissions.realmUserId, true, false, true],
        [permissions.publisherId, true, false, true],
        ['*', true, false, false],
      ]
    : [];
  // One upsert may not write a row twice, so a user named twice (the publisher set to the realm
  // user's id) is written once, with its last values, as the upserts one by one would leave it.
  const byUser = [...new Map(permissionRows.map((permission) => [permission[0], permission])).values()];
  const { rows } = await queryPrepared<RegistryRow>(
    db,
    `WITH metadata AS (
       INSERT INTO realm_metadata (url, publishable) VALUES ($1, false)
       ON CONFLICT (url) DO UPDATE SET publishable = false, updated_at = now()),
     permissions AS (
       INSERT INTO realm_user_permissions (realm_url, username, read, write, realm_owner)
       SELECT $1, * FROM unnest($6::text[], $7::boolean[], $8::boolean[], $9::boolean[])
       ON CONFLICT (realm_url, username) DO UPDATE SET read = EXCLUDED.read, write = EXCLUDED.write, realm_owner = EXCLUDED.realm_owner)
     INSERT INTO realm_registry (url, kind, disk_id, owner_username, source_url, last_published_at)
     VALUES ($1, 'published', $2, $3, $4, $5)
     ON CONFLICT (url) DO UPDATE SET
       source_url = EXCLUDED.source_url,
       last_published_at = EXCLUDED.last_published_at,
       updated_at = now()
     WHERE realm_registry.kind = 'published' AND realm_registry.disk_id = EXCLUDED.disk_id
     RETURNING id, url, kind, disk_id, owner_username, source_url, last_published_at`,
    [row.url, row.diskId, row.ownerUsername, row.sourceURL, row.publishedAtMs, byUser.map((p) => p[0]), byUser.map((p) => p[1]), byUser.map((p) => p[2]), byUser.map((p) => p[3])],
  );
  // A race (the row changed between reading and writing it), not a refusal: retried with backoff.
  // The metadata and permissions written with it are rolled back with the publish's transaction.
  if (!rows[0]) throw new Error(`realm_registry row for ${row.url} changed under the realm lock; the publish is retried`);
  return rows[0];
}

/** What a publish or rollback records with its epoch, in the same statement (one round trip for all of them). */
export interface PublishedEpochExtras {
  /** Records the history policy the clean-up trims by (unset policy: only the live version); absent: left as it is. */
  history?: { policy: HistoryPolicy | undefined };
  /**
   * Records the version as kept (`realm_operator.published_versions`, published-versions.ts) at
   * the new epoch. `forgetOthers`: also drops the realm's other kept rows, for a publish whose
   * recovery found nothing of ours committed and removed every version directory (their rows are stale).
   */
  keep?: { revision: string | null; forgetOthers: boolean };
  /** Sends `realm_registry 'upsert:<url>'` (Boxel's registry NOTIFY), delivered at COMMIT before any later NOTIFY of the transaction. */
  notifyRegistryUpsert?: boolean;
  /**
   * Sets `realm_registry.last_published_at` (milliseconds) of the URL's `published` row with this
   * disk id, as Boxel's publish does whenever it makes content live (a rollback; a publish writes it
   * with the registry upsert). Boxel's realm server derives the published HTML's ETag from it.
   */
  lastPublishedAtMs?: number;
}

/**
 * Draws the next epoch from the global sequence and records the committed content, with
 * `extras` in the same statement. Must run after the swap: a replica that reads the sequence at or
 * past this epoch is then known to have cleared its cache after the new content was in place.
 * Returns the epoch row as it now is (the caller need not read it again after COMMIT).
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
    fence?: PublishFence;
  },
  extras: PublishedEpochExtras = {},
): Promise<RecordedEpoch> {
  // One statement text whatever the extras (booleans switch its parts), so PostgreSQL plans it once per connection.
  // The data-modifying sub-statements all run, to completion, whether or not the final SELECT reads them.
  const { rows } = await queryPrepared<RealmEpochRow & { notified: unknown; kept_published_at: Date | null }>(
    db,
    memoizedSQL('record-epoch', () => `WITH recorded AS (
       UPDATE realm_operator.realm_epochs SET
         epoch = nextval('realm_operator.epoch_seq'), disk_id = $2, content_version = $3, previous_version = $4,
         content_digest = $5, file_count = $6, total_bytes = $7, published_for = $8, published_generation = $9, published_generation_of = $10,
         history_limit = CASE WHEN $11::boolean THEN $12::integer ELSE history_limit END,
         history_max_bytes = CASE WHEN $11::boolean THEN $13::bigint ELSE history_max_bytes END,
         published_at = now(), updated_at = now()
       WHERE realm_url = $1 RETURNING ${EPOCH_SELECT}),
     registry AS (
       UPDATE realm_registry SET last_published_at = $20, updated_at = now()
       WHERE $20::bigint IS NOT NULL AND url = $1 AND kind = 'published' AND disk_id = $2),
     forgotten AS (
       DELETE FROM realm_operator.published_versions WHERE $14::boolean AND realm_url = $1 AND version <> $3),
     kept AS (
       INSERT INTO realm_operator.published_versions (realm_url, version, disk_id, epoch, content_digest, file_count, total_bytes, published_for, revision)
       SELECT $1, $3, $2, epoch, $5, $6, $7, $8, $15 FROM recorded WHERE $16::boolean
       ON CONFLICT (realm_url, version) DO NOTHING RETURNING published_at)
     SELECT ${EPOCH_SELECT}, (SELECT published_at FROM kept) AS kept_published_at,
       CASE WHEN $17::boolean THEN pg_notify($18, $19) END AS notified FROM recorded`),
    [
      url,
      content.diskId,
      content.version,
      content.previousVersion,
      content.digest,
      content.fileCount,
      content.totalBytes,
      content.publishedFor,
      content.fence?.generation ?? null,
      content.fence?.of ?? null,
      extras.history !== undefined,
      extras.history?.policy?.limit ?? null,
      extras.history?.policy?.maxBytes ?? null,
      extras.keep?.forgetOthers === true,
      extras.keep?.revision ?? null,
      extras.keep !== undefined,
      extras.notifyRegistryUpsert === true,
      REALM_REGISTRY_CHANNEL,
      formatRealmRegistryPayload('upsert', url),
      extras.lastPublishedAtMs ?? null,
    ],
  );
  if (!rows[0]) throw new PublishError(`realm_operator.realm_epochs row for ${url} is missing; it is reserved before the swap`);
  const { notified: _notified, kept_published_at: keptPublishedAt, ...row } = rows[0];
  return { row, ...(keptPublishedAt ? { keptPublishedAt } : {}) };
}

/** What {@link recordPublishedEpoch} wrote. */
export interface RecordedEpoch {
  /** The epoch row as the statement left it. */
  row: RealmEpochRow;
  /** With `extras.keep`: when the kept version's row was written (absent when it was there already). */
  keptPublishedAt?: Date;
}

/** Records that the realm has no published content (unpublish), drawing a new epoch. */
export async function recordUnpublishedEpoch(db: Queryable, url: string): Promise<number> {
  const { rows } = await db.query<{ epoch: string }>(
    `UPDATE realm_operator.realm_epochs SET
       epoch = nextval('realm_operator.epoch_seq'), content_version = NULL, previous_version = NULL,
       content_digest = NULL, file_count = NULL, total_bytes = NULL, published_at = NULL, claimed_by = NULL,
       published_for = NULL, published_generation = NULL, published_generation_of = NULL, updated_at = now()
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

/**
 * The Matrix user id (`@<owner>:<server>`) holding realm-owner on a source realm whose registry
 * `owner_username` is the bare `owner` (Boxel's create-realm writes the bare username to the
 * registry and the full user id to the permissions: cardstack/boxel
 * packages/realm-server/handlers/create-realm.ts). Undefined when there is no such row.
 */
export async function readSourceOwnerUserId(db: Queryable, sourceURL: string, ownerUsername: string): Promise<string | undefined> {
  const { rows } = await db.query<{ username: string }>(
    `SELECT username FROM realm_user_permissions
     WHERE realm_url = $1 AND realm_owner AND starts_with(username, '@' || $2 || ':') ORDER BY username LIMIT 1`,
    [sourceURL, ownerUsername],
  );
  return rows[0]?.username;
}

/**
 * Tombstones every live index entry of an unpublished realm as Boxel's unpublish does through
 * `realm.deleteAll` (cardstack/boxel packages/realm-server/handlers/handle-unpublish-realm.ts): the
 * index writer's `tombstoneEntries` (packages/runtime-common/index-writer.ts) writes each entry at
 * the batch's next generation with `is_deleted = true`, `has_error = false`, `error_doc = NULL`
 * and `diagnostics = {invalidationId, indexedAt}`, keeping every other column, and the batch then
 * records that generation in `realm_generations`. Its `tombstonePrerenderedHtmlEntries` marks the
 * realm's `prerendered_html` rows the same way (`error_doc` and `diagnostics` cleared,
 * `rendered_at` now). Those two tables exist only in a Boxel database; in a standalone one the
 * realm's highest indexed generation stands in for `realm_generations`. Returns how many entries
 * were marked; a repeat marks none and bumps nothing.
 */
export async function tombstoneRealmIndex(db: Queryable, url: string): Promise<number> {
  const { rows } = await db.query<{ generations: boolean; html: boolean }>(
    `SELECT to_regclass('realm_generations') IS NOT NULL AS generations, to_regclass('prerendered_html') IS NOT NULL AS html`,
  );
  const hasGenerations = rows[0]?.generations === true;
  // Boxel's setNextGeneration: current_generation + 1, or 1 when the realm has no row yet.
  const current = hasGenerations
    ? (await db.query<{ g: number }>('SELECT current_generation AS g FROM realm_generations WHERE realm_url = $1', [url])).rows[0]?.g
    : (await db.query<{ g: number | null }>('SELECT max(generation) AS g FROM boxel_index WHERE realm_url = $1', [url])).rows[0]?.g;
  const generation = (current ?? 0) + 1;
  const diagnostics = { invalidationId: randomUUID(), indexedAt: Date.now() };
  const result = await db.query(
    `UPDATE boxel_index SET is_deleted = true, generation = $2, has_error = false, error_doc = NULL, diagnostics = $3::jsonb
     WHERE realm_url = $1 AND is_deleted IS NOT TRUE`,
    [url, generation, JSON.stringify(diagnostics)],
  );
  let marked = result.rowCount ?? 0;
  if (rows[0]?.html) {
    const html = await db.query(
      `UPDATE prerendered_html SET is_deleted = true, generation = $2, error_doc = NULL, diagnostics = NULL, rendered_at = $3
       WHERE realm_url = $1 AND is_deleted IS NOT TRUE`,
      [url, generation, diagnostics.indexedAt],
    );
    marked += html.rowCount ?? 0;
  }
  if (marked > 0 && hasGenerations) {
    await db.query(
      `INSERT INTO realm_generations (realm_url, current_generation) VALUES ($1, $2)
       ON CONFLICT (realm_url) DO UPDATE SET current_generation = EXCLUDED.current_generation`,
      [url, generation],
    );
  }
  return marked;
}
