/**
 * Creating, adopting and deleting a Boxel source realm: what the `Realm` controller runs.
 *
 * Create writes exactly what Boxel's `createRealm` writes (cardstack/boxel
 * packages/realm-server/handlers/create-realm.ts): under the realm URL's lock, the owner's
 * permissions (read, write, realm-owner), `realm_metadata`, `realm.json` (name, background, icon)
 * and the initial `index.json` in `<root>/<owner>/<endpoint>/`, and the `realm_registry` row (kind
 * `source`) with `NOTIFY realm_registry 'upsert:<url>'`. Boxel then mounts the realm, whose
 * start-up enqueues one `from-scratch-index` job (packages/runtime-common/realm-index-updater.ts
 * `publishFullIndex` through jobs/reindex-realm.ts, at `userInitiatedPriority`); the operator
 * enqueues that same job in the same transaction. Boxel has registered no Matrix user for a source
 * realm since commit fd6228f5ec ("Simplify setup to require a single session room"), so neither does
 * the operator. Two departures, both refusals: a URL that contains or is inside another realm's
 * (Boxel checks only the server root), and one already managed by another Realm object.
 *
 * Delete does what Boxel's delete handler does (handlers/handle-delete-realm.ts, with
 * lib/realm-registry-writes.ts and handlers/realm-destruction-utils.ts): under the source realm's
 * lock, in one transaction, the published realms made from it lose their registry rows (one
 * `NOTIFY realm_registry 'delete:<source>'`), permissions and database artifacts, then the source
 * loses its own (registry row with its NOTIFY, claimed domains soft-deleted, unlisted slug,
 * permissions, artifacts). After the commit the files go, then the wildcard `realm_file_changes
 * '<url>:*'` for every removed published realm and then the source. The operator draws an epoch for
 * each removed realm in that last transaction, after the files are gone, so replicas that
 * acknowledge it are known to have dropped their caches after the removal. The delete transaction
 * also records each removed realm in `realm_operator.pending_realm_removals`; the steps after the
 * commit work from those rows and mark their progress there, so a crash after any of them loses
 * nothing (the rows go only once every replica acknowledged).
 *
 * The operator's own marker is a `realm_operator.realm_epochs` row for the source URL whose
 * `claimed_by` names the Realm object, written in the create (or adopt) transaction: a retried
 * reconcile after a crash recognizes its own realm instead of refusing it as a collision.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { assertRealmURL, findOverlappingRealmURLs } from '../wire/realm-url.js';
import { JOBS_CHANNEL } from '../wire/channels.js';
import { withRealmLock, notify, type Queryable } from './db.js';
import { notifyAllFileChanges, notifyRealmRegistry } from './invalidation.js';
import type { DataPlane } from './publish.js';
import { emptyTrash, removeManifestsExcept, trashVersionsExcept } from './published-content.js';
import { PUBLISHED_DIRECTORY_NAME } from './realm-identity.js';
import { PublishError, readRealmEpochRow, readRegistryRow, recordUnpublishedEpoch, safePublishedDiskId, safeSourceDiskId, UnsafeDatabaseValueError } from './realm-state.js';
import { chooseFromScratchCoalesce, DEFAULT_REINDEX_PRIORITY, DEFAULT_REINDEX_TIMEOUT_SECONDS, indexingConcurrencyGroup, REINDEX_JOB_TYPE } from './reindex.js';
import { publishedDiskIdProblem, sourceDiskIdProblem } from './safe-paths.js';

/** Where a source realm lives: its URL, its registry owner and its directory. */
export interface SourceRealmLocation {
  url: string;
  /** Boxel's `getMatrixUsername(owner)`: the user id without `@` and `:<server>`. */
  ownerUsername: string;
  /** `<owner>/<endpoint>`, relative to the realms root. */
  diskId: string;
}

/** A create or adopt refused for a reason a person must fix; `field` names the spec field to change. */
export class RealmRefusedError extends PublishError {
  constructor(
    readonly reason: 'URLTaken' | 'URLOverlapsRealm' | 'URLAlreadyManaged' | 'RealmNotFound' | 'RealmMissing' | 'OwnerMismatch' | 'UnsafeLocation',
    readonly field: string,
    message: string,
  ) {
    super(message);
    this.name = 'RealmRefusedError';
  }
}

/**
 * Boxel's create-realm URL and directory: `new URL('<server path>/<owner>/<endpoint>/', serverURL)`
 * and `<root>/<owner>/<endpoint>`. Refuses an owner whose localpart would not be one safe path
 * segment (Matrix localparts may contain `/` and `.`). Pure.
 */
export function sourceRealmLocation(serverURL: string, ownerUserId: string, endpoint: string): SourceRealmLocation {
  const ownerUsername = ownerUserId.replace(/^@/, '').replace(/:.*$/, '');
  const diskId = `${ownerUsername}/${endpoint}`;
  const problem = sourceDiskIdProblem(diskId);
  if (problem || ownerUsername.includes('/')) {
    throw new RealmRefusedError(
      'UnsafeLocation',
      'spec.owner',
      `the realm directory ${JSON.stringify(diskId)} made from spec.owner's localpart ${JSON.stringify(ownerUsername)} ${problem ?? 'has more than one path segment'}; the owner's localpart must be one path segment (no "/", not "." or "..")`,
    );
  }
  const server = new URL(serverURL);
  const url = assertRealmURL(new URL(`${server.pathname.replace(/\/$/, '')}/${ownerUsername}/${endpoint}/`, server).href, 'the realm URL');
  return { url, ownerUsername, diskId };
}

/** `fs-extra`'s `writeJSONSync` format, which Boxel writes realm.json and index.json with: compact JSON and a final newline. */
function boxelJSON(value: unknown): string {
  return `${JSON.stringify(value)}\n`;
}

/** The `realm.json` Boxel's create-realm writes (a RealmConfig card); icon and background only when given. */
export function initialRealmJSON(info: { name: string; iconURL?: string; backgroundURL?: string }): string {
  return boxelJSON({
    data: {
      type: 'card',
      attributes: {
        cardInfo: { name: info.name },
        ...(info.iconURL ? { iconURL: info.iconURL } : {}),
        ...(info.backgroundURL ? { backgroundURL: info.backgroundURL } : {}),
      },
      meta: { adoptsFrom: { module: '@cardstack/base/realm-config', name: 'RealmConfig' } },
    },
  });
}

/** The `index.json` Boxel's create-realm writes (a Workspace card). */
export const INITIAL_INDEX_JSON = boxelJSON({ data: { type: 'card', meta: { adoptsFrom: { module: '@cardstack/base/workspace', name: 'Workspace' } } } });

export interface CreateSourceRealmRequest extends SourceRealmLocation {
  /** The owner's Matrix user id; gets read, write and realm-owner. */
  ownerUserId: string;
  name: string;
  backgroundURL?: string;
  iconURL?: string;
  publishable: boolean;
  /** `<namespace>/<name>/<uid>` of the Realm object. */
  claimant: string;
  /** The server's origin realm URL (`<origin>/`), which Boxel refuses to create under. */
  serverRootURL: string;
}

export interface CreateSourceRealmResult {
  /** False when this claimant had already created (or adopted) it: nothing was written. */
  created: boolean;
  /** The initial index job (created, or recorded by the first create). */
  indexJobId: number | null;
}

/** Creates the source realm as Boxel's create-realm does (see the file comment); idempotent for its claimant. */
export async function createSourceRealm(plane: DataPlane, request: CreateSourceRealmRequest): Promise<CreateSourceRealmResult> {
  const { url } = request;
  const dir = plane.layout.sourceDir(request.diskId);
  return withRealmLock(
    plane.pool,
    url,
    async (tx) => {
      const marker = await readRealmEpochRow(tx, url, true);
      const existing = await readRegistryRow(tx, url);
      if (existing && marker?.claimed_by === request.claimant) return { created: false, indexJobId: marker.reindex_job_id === null ? null : Number(marker.reindex_job_id) };
      assertClaimable(url, marker?.claimed_by ?? null, request.claimant);
      if (!existing && marker?.claimed_by === request.claimant) {
        // The marker is written with the registry row, so the realm was deleted outside the operator.
        throw new RealmRefusedError(
          'RealmMissing',
          'metadata.name',
          `${url} was created by this Realm but is no longer registered (deleted outside the operator, e.g. in Boxel); it is not recreated on its own: delete this Realm and create it again to make a new, empty realm`,
        );
      }
      if (existing) {
        throw new RealmRefusedError(
          'URLTaken',
          'spec.endpoint',
          `a ${existing.kind} realm is already registered at ${url}; choose another spec.endpoint, or set spec.adopt to true to manage the existing realm without touching its files`,
        );
      }
      const atRoot = await readRegistryRow(tx, request.serverRootURL);
      if (atRoot) {
        throw new RealmRefusedError('URLTaken', 'spec.serverURL', `a realm is already mounted at the origin of this server (${atRoot.url}), and Boxel creates no realm under it; use another spec.serverURL`);
      }
      const overlapping = findOverlappingRealmURLs(url, (await tx.query<{ url: string }>('SELECT url FROM realm_registry')).rows.map((r) => r.url));
      if (overlapping.length > 0) {
        throw new RealmRefusedError(
          'URLOverlapsRealm',
          'spec.endpoint',
          `${url} contains or is inside the registered realm${overlapping.length > 1 ? 's' : ''} ${overlapping.join(', ')}: replicas would route its requests differently; choose another spec.endpoint or spec.serverURL`,
        );
      }
      await tx.query(
        `INSERT INTO realm_user_permissions (realm_url, username, read, write, realm_owner) VALUES ($1, $2, true, true, true)
         ON CONFLICT (realm_url, username) DO UPDATE SET read = true, write = true, realm_owner = true`,
        [url, request.ownerUserId],
      );
      // Boxel resets every mutable column on conflict, so a row left by an earlier realm at this URL does not bleed in.
      await tx.query(
        `INSERT INTO realm_metadata (url, publishable, show_as_catalog) VALUES ($1, $2, NULL)
         ON CONFLICT (url) DO UPDATE SET publishable = EXCLUDED.publishable, show_as_catalog = NULL, updated_at = now()`,
        [url, request.publishable],
      );
      await fs.mkdir(dir, { recursive: true });
      await fs.writeFile(path.join(dir, 'realm.json'), initialRealmJSON(request));
      await fs.writeFile(path.join(dir, 'index.json'), INITIAL_INDEX_JSON);
      await tx.query(
        `INSERT INTO realm_registry (url, kind, disk_id, owner_username, pinned) VALUES ($1, 'source', $2, $3, false) ON CONFLICT (url) DO NOTHING`,
        [url, request.diskId, request.ownerUsername],
      );
      await notifyRealmRegistry(tx, 'upsert', url);
      const indexJobId = await enqueueInitialIndex(tx, url, request.ownerUsername);
      await writeMarker(tx, url, request.claimant, indexJobId);
      return { created: true, indexJobId };
    },
    plane.lock,
  );
}

/**
 * Takes over an existing Boxel source realm: checks it is a source realm of this owner and records
 * the claim; writes nothing of Boxel's and touches no file. Returns its registry row's disk id.
 */
export async function adoptSourceRealm(plane: DataPlane, request: { url: string; ownerUsername: string; claimant: string }): Promise<{ diskId: string }> {
  return withRealmLock(
    plane.pool,
    request.url,
    async (tx) => {
      const existing = await readRegistryRow(tx, request.url);
      if (!existing) {
        throw new RealmRefusedError('RealmNotFound', 'spec.adopt', `no realm is registered at ${request.url} to adopt; set spec.adopt to false to create it, or fix spec.owner, spec.endpoint or spec.serverURL`);
      }
      if (existing.kind !== 'source') {
        throw new RealmRefusedError('URLTaken', 'spec.endpoint', `${request.url} is a ${existing.kind} realm, not a source realm; only source realms can be adopted`);
      }
      if (existing.owner_username !== request.ownerUsername) {
        throw new RealmRefusedError('OwnerMismatch', 'spec.owner', `${request.url} is owned by ${existing.owner_username} in realm_registry, not by ${request.ownerUsername}; set spec.owner to that user's Matrix id`);
      }
      const marker = await readRealmEpochRow(tx, request.url, true);
      assertClaimable(request.url, marker?.claimed_by ?? null, request.claimant);
      await writeMarker(tx, request.url, request.claimant, marker?.reindex_job_id === null || marker === undefined ? null : Number(marker.reindex_job_id));
      return { diskId: safeSourceDiskId(request.url, existing.disk_id) };
    },
    plane.lock,
  );
}

/** Refuses a URL another Realm object manages. */
function assertClaimable(url: string, claimedBy: string | null, claimant: string): void {
  if (claimedBy && claimedBy !== claimant) {
    throw new RealmRefusedError(
      'URLAlreadyManaged',
      'spec.endpoint',
      `${url} is managed by the Realm ${claimedBy.split('/').slice(0, 2).join('/')}; delete one of the two Realms (deleting this one leaves the realm alone)`,
    );
  }
}

async function writeMarker(db: Queryable, url: string, claimant: string, indexJobId: number | null): Promise<void> {
  await db.query(
    `INSERT INTO realm_operator.realm_epochs (realm_url, epoch, claimed_by, reindex_epoch, reindex_job_id) VALUES ($1, 0, $2, 0, $3)
     ON CONFLICT (realm_url) DO UPDATE SET claimed_by = EXCLUDED.claimed_by,
       reindex_job_id = COALESCE(realm_operator.realm_epochs.reindex_job_id, EXCLUDED.reindex_job_id), updated_at = now()`,
    [url, claimant, indexJobId],
  );
}

/**
 * The job a new realm's start-up enqueues (Boxel's `enqueueReindexRealmJob` without a forced
 * refresh): `from-scratch-index` in `indexing:<url>`, args `{realmURL, realmUsername,
 * clearLastModified: false}`, `userInitiatedPriority`, the from-scratch timeout, under the queue's
 * group lock; a still-pending job of the group is joined by Boxel's coalesce rule. NOTIFY `jobs`
 * is delivered at COMMIT.
 */
async function enqueueInitialIndex(tx: pg.PoolClient, url: string, realmUsername: string): Promise<number> {
  const group = indexingConcurrencyGroup(url);
  await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [group]);
  const incoming = {
    jobType: REINDEX_JOB_TYPE,
    priority: DEFAULT_REINDEX_PRIORITY,
    timeout: DEFAULT_REINDEX_TIMEOUT_SECONDS,
    args: { realmURL: url, realmUsername, clearLastModified: false },
  };
  const { rows: pending } = await tx.query<{ id: number; job_type: string; priority: number; timeout: number; args: unknown }>(
    `SELECT j.id, j.job_type, j.priority, j.timeout, j.args FROM jobs j
     WHERE j.status = 'unfulfilled' AND j.concurrency_group = $1 ORDER BY j.created_at, j.id FOR UPDATE`,
    [group],
  );
  const decision = chooseFromScratchCoalesce(
    incoming,
    pending.map((r) => ({ id: Number(r.id), jobType: r.job_type, priority: r.priority, timeout: r.timeout, args: r.args })),
  );
  let jobId: number;
  if (decision.type === 'join') {
    await tx.query('UPDATE jobs SET priority = $2, timeout = $3, args = $4 WHERE id = $1', [decision.jobId, decision.update.priority, decision.update.timeout, JSON.stringify(decision.update.args)]);
    jobId = decision.jobId;
  } else {
    const { rows } = await tx.query<{ id: number }>(
      'INSERT INTO jobs (job_type, args, concurrency_group, timeout, priority) VALUES ($1, $2, $3, $4, $5) RETURNING id',
      [incoming.jobType, JSON.stringify(incoming.args), group, incoming.timeout, incoming.priority],
    );
    jobId = Number(rows[0]!.id);
  }
  await notify(tx, JOBS_CHANNEL);
  return jobId;
}

/** A realm removed by a delete: its URL and directory relative to the realms root. */
export interface RemovedRealm {
  url: string;
  /** `<owner>/<endpoint>` for the source realm, `_published/<id>` for a published one. */
  diskId: string;
  /** The epoch replicas acknowledge for its removal, once drawn. */
  epoch?: number;
}

/** A removed realm as `realm_operator.pending_realm_removals` records what is left to do for it. */
export interface PendingRealmRemoval extends RemovedRealm {
  /** The row's id. */
  id: number;
  kind: 'published' | 'source';
  /** The Realm object (`<namespace>/<name>/<uid>`) whose deletion it is. */
  claimedBy: string | null;
  filesRemoved: boolean;
}

/**
 * The points of a Realm deletion a crash test stops at: `committed` (the delete transaction with
 * its pending rows), `files-removed` (after each realm's directory), `announced` (the wildcard
 * NOTIFYs and epochs committed), `acknowledged` (every live replica acknowledged), `drained` (the
 * pending rows deleted; the finalizer is next).
 */
export type RealmDeletionStep = 'committed' | 'files-removed' | 'announced' | 'acknowledged' | 'drained';
export type RealmDeletionStepHook = (step: RealmDeletionStep, realmURL: string) => void | Promise<void>;

/**
 * Boxel's delete, database part: one transaction under the source realm's lock, which also
 * records every removed realm in `realm_operator.pending_realm_removals` (published ones first,
 * the source last), so what follows the commit survives a crash. Returns the pending removals of
 * the source (those of an earlier attempt when the source is no longer registered). When the
 * source is not registered and nothing is pending, `fallbackDiskId` (the directory the Realm
 * object recorded) is queued for removal; without it nothing is. Refuses a realm that is not a
 * source realm.
 */
export async function deleteSourceRealmRows(
  plane: DataPlane,
  sourceURL: string,
  options: { claimant?: string; fallbackDiskId?: string } = {},
): Promise<PendingRealmRemoval[]> {
  const url = assertRealmURL(sourceURL, 'the realm URL');
  return withRealmLock(
    plane.pool,
    url,
    async (tx) => {
      const source = await readRegistryRow(tx, url);
      if (!source) {
        const pending = await readPendingRealmRemovals(tx, url);
        // Rows of this claimant, or of a caller without one: this deletion committed before (its record elsewhere was lost).
        if (pending.some((r) => r.claimedBy === (options.claimant ?? null) || r.claimedBy === null) || !options.fallbackDiskId) return pending;
        // Deleted outside the operator (e.g. in Boxel): its directory and NOTIFY may still be due.
        const removed = [{ url, diskId: safeSourceDiskId(url, options.fallbackDiskId) }];
        await insertPendingRealmRemovals(tx, url, removed, options.claimant ?? null);
        return readPendingRealmRemovals(tx, url);
      }
      if (source.kind !== 'source') throw new PublishError(`${url} is a ${source.kind} realm in realm_registry, not a source realm; refusing to delete it`);
      const sourceDiskId = safeSourceDiskId(url, source.disk_id);
      const tables = await presentTables(tx);
      // The RETURNING set drives the per-published clean-up, as in Boxel (no window between a SELECT and the DELETE).
      const { rows: published } = await tx.query<{ url: string; disk_id: string }>(
        `DELETE FROM realm_registry WHERE source_url = $1 AND kind = 'published' RETURNING url, disk_id`,
        [url],
      );
      await notifyRealmRegistry(tx, 'delete', url);
      const removed: RemovedRealm[] = [];
      for (const row of published) {
        const diskId = safePublishedDiskId('realm_registry.disk_id', row.url, row.disk_id);
        await tx.query('DELETE FROM realm_user_permissions WHERE realm_url = $1', [row.url]);
        await removeRealmDatabaseArtifacts(tx, row.url, tables);
        // The operator's record of content it published there: nothing is published any more.
        await recordUnpublishedEpoch(tx, row.url);
        removed.push({ url: row.url, diskId: `${PUBLISHED_DIRECTORY_NAME}/${diskId}` });
      }
      await tx.query(`DELETE FROM realm_registry WHERE url = $1 AND kind <> 'bootstrap'`, [url]);
      await notifyRealmRegistry(tx, 'delete', url);
      if (tables.has('claimed_domains_for_sites')) {
        await tx.query('UPDATE claimed_domains_for_sites SET removed_at = $2 WHERE source_realm_url = $1 AND removed_at IS NULL', [url, Math.floor(Date.now() / 1000)]);
      }
      if (tables.has('unlisted_realm_paths')) await tx.query('DELETE FROM unlisted_realm_paths WHERE source_realm_url = $1', [url]);
      await tx.query('DELETE FROM realm_user_permissions WHERE realm_url = $1', [url]);
      await removeRealmDatabaseArtifacts(tx, url, tables);
      removed.push({ url, diskId: sourceDiskId });
      await insertPendingRealmRemovals(tx, url, removed, options.claimant ?? null);
      return readPendingRealmRemovals(tx, url);
    },
    plane.lock,
  );
}

/**
 * Queues removed realms of a source (in order; the source itself last) for the post-commit work.
 * Also how a deletion an older operator
 * recorded only in the Realm's status is taken over.
 */
export async function insertPendingRealmRemovals(db: Queryable, sourceURL: string, removed: readonly RemovedRealm[], claimedBy: string | null): Promise<void> {
  for (const [position, realm] of removed.entries()) {
    const kind = realm.url === sourceURL ? 'source' : 'published';
    await db.query(
      `INSERT INTO realm_operator.pending_realm_removals (realm_url, source_url, kind, disk_id, position, claimed_by, epoch)
       VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [realm.url, sourceURL, kind, checkedRemovalDiskId(realm.url, kind, realm.diskId), position, claimedBy, realm.epoch ?? null],
    );
  }
}

/** The source's pending removals in Boxel's order (published realms first, the source last); disk ids checked. */
export async function readPendingRealmRemovals(db: Queryable, sourceURL: string): Promise<PendingRealmRemoval[]> {
  const { rows } = await db.query<{ id: string; realm_url: string; kind: 'published' | 'source'; disk_id: string; claimed_by: string | null; files_removed: boolean; epoch: string | null }>(
    `SELECT id, realm_url, kind, disk_id, claimed_by, files_removed, epoch FROM realm_operator.pending_realm_removals WHERE source_url = $1 ORDER BY id`,
    [sourceURL],
  );
  return rows.map((r) => ({
    id: Number(r.id),
    url: r.realm_url,
    kind: r.kind,
    diskId: checkedRemovalDiskId(r.realm_url, r.kind, r.disk_id),
    claimedBy: r.claimed_by,
    filesRemoved: r.files_removed,
    ...(r.epoch === null ? {} : { epoch: Number(r.epoch) }),
  }));
}

/** Sources with pending removals and the Realm objects they belong to (for finishing deletions whose object is gone). */
export async function listPendingRealmRemovalSources(db: Queryable): Promise<Array<{ sourceURL: string; claimedBy: string | null }>> {
  const { rows } = await db.query<{ source_url: string; claimed_by: string | null }>(
    `SELECT DISTINCT source_url, claimed_by FROM realm_operator.pending_realm_removals WHERE kind = 'source' ORDER BY source_url`,
  );
  return rows.map((r) => ({ sourceURL: r.source_url, claimedBy: r.claimed_by }));
}

/** A disk id is used as a path only if it is one the data plane writes: `<owner>/<endpoint>` or `_published/<one segment>`. */
function checkedRemovalDiskId(url: string, kind: 'published' | 'source', diskId: string): string {
  const prefix = `${PUBLISHED_DIRECTORY_NAME}/`;
  const problem =
    kind === 'source' ? sourceDiskIdProblem(diskId) : diskId.startsWith(prefix) ? publishedDiskIdProblem(diskId.slice(prefix.length)) : `is not under ${prefix}`;
  if (!problem) return diskId;
  throw new UnsafeDatabaseValueError(
    'realm_operator.pending_realm_removals.disk_id',
    url,
    diskId,
    problem,
    `Set it to the removed realm's directory relative to the realms root (<owner>/<endpoint>, or ${prefix}<id>), or delete the row if the directory is already gone.`,
  );
}

/** Boxel's tables that only a Boxel database has (a standalone one made by migrations.ts lacks them). */
const OPTIONAL_TABLES = [
  'claimed_domains_for_sites',
  'unlisted_realm_paths',
  'boxel_index_working',
  'prerendered_html',
  'prerendered_html_working',
  'realm_meta',
  'realm_generations',
  'realm_file_meta',
] as const;

async function presentTables(db: Queryable): Promise<Set<string>> {
  const { rows } = await db.query<{ name: string }>(`SELECT name FROM unnest($1::text[]) AS name WHERE to_regclass(name) IS NOT NULL`, [[...OPTIONAL_TABLES]]);
  return new Set(rows.map((r) => r.name));
}

/** Boxel's `userInitiatedJobCancellationResult` (packages/runtime-common/job-utils.ts). */
const USER_CANCELLATION_RESULT = { status: 418, message: 'User initiated job cancellation' };

/**
 * Boxel's `removeRealmDatabaseArtifacts` (handlers/realm-destruction-utils.ts): both job lanes of
 * the realm drained (running jobs cancelled as `forceCancelJobById` does, pending ones deleted with
 * their reservations), then its modules, index, prerendered HTML, meta, generations, file meta and
 * metadata rows.
 */
async function removeRealmDatabaseArtifacts(tx: Queryable, url: string, tables: ReadonlySet<string>): Promise<void> {
  for (const group of [indexingConcurrencyGroup(url), `prerender-html:${url}`]) {
    const { rows: running } = await tx.query<{ id: number }>(
      `SELECT DISTINCT j.id FROM jobs j JOIN job_reservations jr ON jr.job_id = j.id
       WHERE j.concurrency_group = $1 AND j.status = 'unfulfilled' AND jr.completed_at IS NULL AND jr.locked_until > now() ORDER BY j.id`,
      [group],
    );
    for (const { id } of running) {
      await tx.query(`UPDATE jobs SET result = $2, status = 'rejected', finished_at = now() WHERE id = $1`, [id, JSON.stringify(USER_CANCELLATION_RESULT)]);
      await tx.query('UPDATE job_reservations SET completed_at = now() WHERE job_id = $1 AND completed_at IS NULL', [id]);
      await notify(tx, 'jobs_finished');
    }
    await tx.query(`DELETE FROM job_reservations WHERE job_id IN (SELECT id FROM jobs WHERE concurrency_group = $1 AND status = 'unfulfilled')`, [group]);
    await tx.query(`DELETE FROM jobs WHERE concurrency_group = $1 AND status = 'unfulfilled'`, [group]);
  }
  await tx.query('DELETE FROM modules WHERE resolved_realm_url = $1', [url]);
  if (tables.has('boxel_index_working')) await tx.query('DELETE FROM boxel_index_working WHERE realm_url = $1', [url]);
  await tx.query('DELETE FROM boxel_index WHERE realm_url = $1', [url]);
  for (const table of ['prerendered_html_working', 'prerendered_html', 'realm_meta', 'realm_generations', 'realm_file_meta'] as const) {
    if (tables.has(table)) await tx.query(`DELETE FROM ${table} WHERE realm_url = $1`, [url]);
  }
  await tx.query('DELETE FROM realm_metadata WHERE url = $1', [url]);
}

/**
 * Boxel's delete, file part (after the commit): removes the directory of each pending realm whose
 * files are not yet marked removed, marking each as it goes (a crash repeats at most one removal,
 * which is idempotent). A published realm the operator published is a symlink into its content
 * versions: the link goes as in Boxel, then, under that realm's lock, its versions and manifests
 * (nothing refers to them any more: the database part recorded it unpublished), and its disk id is
 * forgotten, as recovery does for an unpublished realm. No NOTIFY here: the announcement follows
 * ({@link announcePendingRealmRemovals}).
 */
export async function removePendingRealmFiles(plane: DataPlane, sourceURL: string, onStep?: RealmDeletionStepHook): Promise<void> {
  for (const realm of await readPendingRealmRemovals(plane.pool, sourceURL)) {
    if (realm.filesRemoved) continue;
    await removeRealmDirectory(plane, realm);
    await plane.pool.query('UPDATE realm_operator.pending_realm_removals SET files_removed = true WHERE id = $1', [realm.id]);
    await onStep?.('files-removed', realm.url);
  }
  await emptyTrash(plane.layout, plane.logger);
}

async function removeRealmDirectory(plane: DataPlane, realm: PendingRealmRemoval): Promise<void> {
  if (realm.kind === 'source') {
    await fs.rm(plane.layout.sourceDir(realm.diskId), { recursive: true, force: true });
    return;
  }
  const diskId = realm.diskId.slice(PUBLISHED_DIRECTORY_NAME.length + 1);
  await fs.rm(path.join(plane.layout.publishedRoot, diskId), { recursive: true, force: true });
  await withRealmLock(
    plane.pool,
    realm.url,
    async (tx) => {
      const row = await readRealmEpochRow(tx, realm.url, true);
      if (!row?.disk_id || row.content_version) return; // not ours, or published again since
      const ours = safePublishedDiskId('realm_operator.realm_epochs.disk_id', realm.url, row.disk_id);
      await trashVersionsExcept(plane.layout, ours, new Set());
      await removeManifestsExcept(plane.layout, ours, new Set());
      await tx.query('UPDATE realm_operator.realm_epochs SET disk_id = NULL, updated_at = now() WHERE realm_url = $1', [realm.url]);
    },
    plane.lock,
  );
}

/**
 * Boxel's delete, last part: the wildcard `realm_file_changes '<url>:*'` for every pending realm
 * not yet announced, published ones first, in one transaction that draws each one's epoch (after
 * the files are gone) and records it in its row; the NOTIFYs and the epochs commit together, so a
 * crash sends all or none. The rows are locked, so two processes finishing the same deletion
 * announce once. Returns all the source's pending removals, with their epochs.
 */
export async function announcePendingRealmRemovals(pool: pg.Pool, sourceURL: string): Promise<PendingRealmRemoval[]> {
  const client = await pool.connect();
  let discard: Error | undefined;
  try {
    await client.query('BEGIN');
    // Locks the rows first: a second process finishing the same deletion waits here, then sees the epochs.
    await client.query(`SELECT id FROM realm_operator.pending_realm_removals WHERE source_url = $1 ORDER BY id FOR UPDATE`, [sourceURL]);
    const pending = await readPendingRealmRemovals(client, sourceURL);
    for (const realm of pending.filter((r) => r.epoch === undefined)) {
      const { rows: drawn } = await client.query<{ epoch: string }>(
        `INSERT INTO realm_operator.realm_epochs (realm_url, epoch) VALUES ($1, nextval('realm_operator.epoch_seq'))
         ON CONFLICT (realm_url) DO UPDATE SET epoch = nextval('realm_operator.epoch_seq'), claimed_by = NULL, updated_at = now() RETURNING epoch`,
        [realm.url],
      );
      await notifyAllFileChanges(client, realm.url);
      await client.query('UPDATE realm_operator.pending_realm_removals SET epoch = $2 WHERE id = $1', [realm.id, drawn[0]!.epoch]);
    }
    const announced = await readPendingRealmRemovals(client, sourceURL);
    await client.query('COMMIT');
    return announced;
  } catch (error) {
    await client.query('ROLLBACK').catch((rollbackError: Error) => (discard = rollbackError));
    throw error;
  } finally {
    client.release(discard);
  }
}

/** The deletion is done (files gone, announced, acknowledged): its pending rows go. Only announced rows are deleted. */
export async function finishPendingRealmRemovals(db: Queryable, sourceURL: string): Promise<void> {
  await db.query('DELETE FROM realm_operator.pending_realm_removals WHERE source_url = $1 AND epoch IS NOT NULL AND files_removed', [sourceURL]);
}

/** The removed realms with the epoch each one's removal was announced at (its `realm_epochs.epoch`; 0 when it has none). */
export async function withAnnouncedEpochs(db: Queryable, removed: readonly RemovedRealm[]): Promise<RemovedRealm[]> {
  const { rows } = await db.query<{ realm_url: string; epoch: string }>('SELECT realm_url, epoch FROM realm_operator.realm_epochs WHERE realm_url = ANY($1::text[])', [removed.map((r) => r.url)]);
  return removed.map((r) => ({ ...r, epoch: r.epoch ?? Number(rows.find((row) => row.realm_url === r.url)?.epoch ?? 0) }));
}

/** Lets go of a realm without touching it (deletionPolicy Retain): only the operator's claim goes. */
export async function releaseSourceRealm(pool: pg.Pool, url: string, claimant: string): Promise<void> {
  await pool.query('UPDATE realm_operator.realm_epochs SET claimed_by = NULL, updated_at = now() WHERE realm_url = $1 AND claimed_by = $2', [url, claimant]);
}

/** The Realm object holding the URL's claim, if any (`<namespace>/<name>/<uid>`). */
export async function readRealmClaim(db: Queryable, url: string): Promise<string | null> {
  return (await readRealmEpochRow(db, url))?.claimed_by ?? null;
}
