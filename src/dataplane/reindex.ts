/**
 * The reindex enqueue, as Boxel does it after a publish; separate from the publish transaction so
 * the controller runs it only once every live replica has acknowledged the new epoch.
 */
import type pg from 'pg';
import { JOBS_CHANNEL } from '../wire/channels.js';
import { assertRealmURL } from '../wire/realm-url.js';
import { notify, withRealmLock } from './db.js';
import { PublishError, readRealmEpochRow } from './realm-state.js';

export interface ReindexRequest {
  realmURL: string;
  /** The epoch the reindex is for; a second call for the same epoch returns the first job. */
  epoch: number;
  realmUsername: string;
  priority?: number;
  /** Seconds. */
  timeout?: number;
}

export interface ReindexResult {
  jobId: number;
  /** False when a job for this epoch already existed (a retried reconcile). */
  created: boolean;
}

export const REINDEX_JOB_TYPE = 'from-scratch-index';

/**
 * Clears `boxel_index.last_modified` for the realm, inserts a `from-scratch-index` job and NOTIFYs
 * `jobs`, in one locked transaction that also records the job against the epoch, so a retry after
 * a crash does not enqueue twice. Refuses an epoch that is no longer the realm's current one.
 */
export async function enqueueReindex(pool: pg.Pool, request: ReindexRequest): Promise<ReindexResult> {
  const url = assertRealmURL(request.realmURL, 'realmURL');
  return withRealmLock(pool, url, async (tx) => {
    const row = await readRealmEpochRow(tx, url, true);
    if (!row || Number(row.epoch) !== request.epoch) {
      throw new PublishError(`cannot enqueue a reindex of ${url} for epoch ${request.epoch}: the realm is at epoch ${row?.epoch ?? 'none'}`);
    }
    if (row.reindex_epoch !== null && Number(row.reindex_epoch) === request.epoch && row.reindex_job_id !== null) {
      return { jobId: Number(row.reindex_job_id), created: false };
    }
    await tx.query('UPDATE boxel_index SET last_modified = NULL WHERE realm_url = $1', [url]);
    const args = { realmURL: url, realmUsername: request.realmUsername, clearLastModified: true, awaitedByPublish: true };
    const { rows } = await tx.query<{ id: number }>(
      `INSERT INTO jobs (job_type, args, concurrency_group, timeout, priority)
       VALUES ($1, $2, $3, $4, $5) RETURNING id`,
      [REINDEX_JOB_TYPE, JSON.stringify(args), `indexing:${url}`, request.timeout ?? 3600, request.priority ?? 10],
    );
    const jobId = Number(rows[0]!.id);
    await tx.query('UPDATE realm_operator.realm_epochs SET reindex_epoch = $2, reindex_job_id = $3, updated_at = now() WHERE realm_url = $1', [
      url,
      request.epoch,
      jobId,
    ]);
    await notify(tx, JOBS_CHANNEL);
    return { jobId, created: true };
  });
}
