/**
 * The reindex enqueue, as Boxel does it after a publish; separate from the publish transaction so
 * the controller runs it only once every live replica has acknowledged the new epoch.
 *
 * It follows Boxel's queue protocol so a Boxel deployment's queue sees what its own publish would
 * have left (cardstack/boxel): `enqueueReindexRealmJob` (packages/runtime-common/jobs/reindex-realm.ts)
 * clears `boxel_index.last_modified` and publishes a `from-scratch-index` job in the group
 * `indexing:<url>` (packages/runtime-common/jobs/indexing.ts) at `userInitiatedPriority` 10
 * (packages/runtime-common/queue.ts) with the from-scratch timeout, 3600 s by default
 * (packages/runtime-common/tasks/indexer.ts); `PgQueuePublisher` (packages/postgres/pg-queue.ts)
 * runs one SERIALIZABLE transaction holding `pg_advisory_xact_lock(hashtext(group))`
 * (packages/postgres/job-concurrency-lock.ts), joins a still-pending, unreserved job of the same
 * type in the group (the from-scratch coalesce rule in tasks/indexer.ts: priority and timeout
 * raised to the max, args merged incoming-over-existing with `coalescedCallers` merged) or inserts
 * one, NOTIFYs `jobs`, and retries on serialization failure.
 */
import type pg from 'pg';
import { JOBS_CHANNEL } from '../wire/channels.js';
import { advisoryLockKey } from '../wire/lock-key.js';
import { assertRealmURL } from '../wire/realm-url.js';
import { notify } from './db.js';
import { PublishError, readRealmEpochRow, readRegistryRow } from './realm-state.js';

export interface ReindexRequest {
  realmURL: string;
  /** The epoch the reindex is for; a second call for the same epoch returns the first job. */
  epoch: number;
  /** `realmUsername` in the job's args. Unset or empty: the realm's `realm_registry.owner_username`. */
  realmUsername?: string;
  /** Default 10, Boxel's `userInitiatedPriority`. */
  priority?: number;
  /** Seconds. Default 3600, Boxel's from-scratch index timeout. */
  timeout?: number;
}

export interface ReindexResult {
  jobId: number;
  /** False when a job for this epoch already existed (a retried reconcile). */
  created: boolean;
  /** True when this enqueue joined a still-pending job of the realm instead of inserting one. */
  joined: boolean;
}

export const REINDEX_JOB_TYPE = 'from-scratch-index';
export const DEFAULT_REINDEX_PRIORITY = 10;
export const DEFAULT_REINDEX_TIMEOUT_SECONDS = 3600;
/** Attempts before a run of serialization failures is reported instead of retried. */
export const MAX_SERIALIZATION_ATTEMPTS = 20;
const SERIALIZATION_FAILURE = '40001';

/** A live reservation means a worker holds the job (Boxel's pg-queue.ts: reserved until `locked_until`, not completed). */
const NOT_RESERVED = `NOT EXISTS (SELECT 1 FROM job_reservations r WHERE r.job_id = j.id AND r.locked_until > now() AND r.completed_at IS NULL)`;

/** Boxel's concurrency group for every job that writes a realm's index. */
export function indexingConcurrencyGroup(realmURL: string): string {
  return `indexing:${realmURL}`;
}

export interface ReindexJobArgs {
  realmURL: string;
  realmUsername: string;
  clearLastModified: true;
  awaitedByPublish: true;
  [key: string]: unknown;
}

/** A pending job's spec, as the coalesce rule sees it. */
export interface PendingJob {
  id: number;
  jobType: string;
  priority: number;
  timeout: number;
  args: unknown;
}

export type CoalesceDecision =
  | { type: 'insert' }
  | { type: 'join'; jobId: number; update: { priority: number; timeout: number; args: Record<string, unknown> } };

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function coalescedCallers(args: unknown): Array<Record<string, unknown>> {
  const callers = isObject(args) ? args.coalescedCallers : undefined;
  if (!Array.isArray(callers)) return [];
  return callers.filter(
    (c): c is Record<string, unknown> => isObject(c) && typeof c.waiterId === 'string' && (c.clientRequestId === null || typeof c.clientRequestId === 'string'),
  );
}

/**
 * Boxel's from-scratch coalesce rule for a publish's enqueue: join the first pending job of the same
 * type (oldest first), else insert. A publish (`clearLastModified: true`) never attaches to a job
 * already running, so in-flight jobs are not candidates. Pure.
 */
export function chooseFromScratchCoalesce(
  incoming: { jobType: string; priority: number; timeout: number; args: Record<string, unknown> },
  pending: readonly PendingJob[],
): CoalesceDecision {
  const same = pending.find((job) => job.jobType === incoming.jobType);
  if (!same) return { type: 'insert' };
  const callers = new Map<string, Record<string, unknown>>();
  for (const caller of [...coalescedCallers(same.args), ...coalescedCallers(incoming.args)]) callers.set(caller.waiterId as string, caller);
  return {
    type: 'join',
    jobId: same.id,
    update: {
      priority: Math.max(same.priority, incoming.priority),
      timeout: Math.max(same.timeout, incoming.timeout),
      args: { ...(isObject(same.args) ? same.args : {}), ...incoming.args, coalescedCallers: [...callers.values()] },
    },
  };
}

/**
 * Clears `boxel_index.last_modified` for the realm and enqueues (or joins) its `from-scratch-index`
 * job with NOTIFY `jobs`, in one SERIALIZABLE transaction under the realm lock and the queue's
 * group lock that also records the job against the epoch, so a retry after a crash does not
 * enqueue twice. Refuses an epoch that is no longer the realm's current one.
 */
export async function enqueueReindex(pool: pg.Pool, request: ReindexRequest): Promise<ReindexResult> {
  const url = assertRealmURL(request.realmURL, 'realmURL');
  for (let attempt = 1; ; attempt++) {
    try {
      return await enqueueOnce(pool, url, request);
    } catch (error) {
      if ((error as { code?: string }).code !== SERIALIZATION_FAILURE || attempt >= MAX_SERIALIZATION_ATTEMPTS) throw error;
      // Jittered backoff so colliding enqueuers do not collide again in lockstep.
      await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(200, 5 * 2 ** attempt)));
    }
  }
}

async function enqueueOnce(pool: pg.Pool, url: string, request: ReindexRequest): Promise<ReindexResult> {
  const client = await pool.connect();
  let discard: Error | undefined;
  try {
    await client.query('BEGIN ISOLATION LEVEL SERIALIZABLE');
    // The realm lock first, as a publish holds it while it enqueues: the epoch cannot move under us.
    await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [advisoryLockKey(url)]);
    const row = await readRealmEpochRow(client, url, true);
    if (!row || Number(row.epoch) !== request.epoch) {
      throw new PublishError(`cannot enqueue a reindex of ${url} for epoch ${request.epoch}: the realm is at epoch ${row?.epoch ?? 'none'}`);
    }
    if (row.reindex_epoch !== null && Number(row.reindex_epoch) === request.epoch && row.reindex_job_id !== null) {
      await client.query('COMMIT');
      return { jobId: Number(row.reindex_job_id), created: false, joined: false };
    }
    const realmUsername = request.realmUsername || (await readRegistryRow(client, url))?.owner_username;
    if (!realmUsername) {
      throw new PublishError(`cannot enqueue a reindex of ${url}: it has no realm_registry.owner_username and no realmUsername was given; publish it first`);
    }
    const group = indexingConcurrencyGroup(url);
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [group]);
    await client.query('UPDATE boxel_index SET last_modified = NULL WHERE realm_url = $1', [url]);
    const args: ReindexJobArgs = { realmURL: url, realmUsername, clearLastModified: true, awaitedByPublish: true };
    const incoming = {
      jobType: REINDEX_JOB_TYPE,
      priority: request.priority ?? DEFAULT_REINDEX_PRIORITY,
      timeout: request.timeout ?? DEFAULT_REINDEX_TIMEOUT_SECONDS,
      args,
    };
    const decision = chooseFromScratchCoalesce(incoming, await readPendingJobs(client, group));
    let jobId: number;
    if (decision.type === 'join') {
      const updated = await client.query(
        `UPDATE jobs j SET priority = $2, timeout = $3, args = $4 WHERE j.id = $1 AND j.status = 'unfulfilled' AND ${NOT_RESERVED} RETURNING j.id`,
        [decision.jobId, decision.update.priority, decision.update.timeout, JSON.stringify(decision.update.args)],
      );
      if (updated.rowCount !== 1) throw Object.assign(new Error(`pending job ${decision.jobId} changed while joining it`), { code: SERIALIZATION_FAILURE });
      jobId = decision.jobId;
    } else {
      const { rows } = await client.query<{ id: number }>(
        `INSERT INTO jobs (job_type, args, concurrency_group, timeout, priority) VALUES ($1, $2, $3, $4, $5) RETURNING id`,
        [incoming.jobType, JSON.stringify(args), group, incoming.timeout, incoming.priority],
      );
      jobId = Number(rows[0]!.id);
    }
    await client.query('UPDATE realm_operator.realm_epochs SET reindex_epoch = $2, reindex_job_id = $3, updated_at = now() WHERE realm_url = $1', [
      url,
      request.epoch,
      jobId,
    ]);
    await notify(client, JOBS_CHANNEL);
    await client.query('COMMIT');
    return { jobId, created: true, joined: decision.type === 'join' };
  } catch (error) {
    await client.query('ROLLBACK').catch((rollbackError: Error) => (discard = rollbackError));
    throw error;
  } finally {
    client.release(discard);
  }
}

/** The group's unfulfilled jobs that no worker holds, oldest first, locked FOR UPDATE (Boxel's pending coalesce candidates). */
async function readPendingJobs(client: pg.PoolClient, group: string): Promise<PendingJob[]> {
  const { rows } = await client.query<{ id: number; job_type: string; priority: number; timeout: number; args: unknown }>(
    `SELECT j.id, j.job_type, j.priority, j.timeout, j.args FROM jobs j
     WHERE j.status = 'unfulfilled' AND j.concurrency_group IS NOT DISTINCT FROM $1 AND ${NOT_RESERVED}
     ORDER BY j.created_at, j.id FOR UPDATE`,
    [group],
  );
  return rows.map((r) => ({ id: Number(r.id), jobType: r.job_type, priority: r.priority, timeout: r.timeout, args: r.args }));
}
