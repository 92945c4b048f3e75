/**
 * The operator's side of acknowledged invalidation (DESIGN §4.3): has every live replica dropped
 * its cache of a realm since a given epoch was committed?
 *
 * A replica is *live* while its lease has not expired (database clock). A live replica is *done*
 * with epoch E of realm R when it acknowledged R at an epoch >= E (it read the epoch before
 * clearing), or when it emptied its whole cache at sequence position >= E. Replicas that never
 * register (unmodified Boxel servers) are invisible here: with no live replica at all the
 * result says `notify-only`, and the caller reports that instead of claiming acknowledgement.
 */
import type pg from 'pg';
import { REPLICA_ACKS_CHANNEL } from '../wire/channels.js';
import type { Queryable } from './db.js';

export interface ReplicaAckStatus {
  realmURL: string;
  epoch: number;
  /** Live replicas that are done with the epoch. */
  acknowledged: string[];
  /** Live replicas not yet done. */
  missing: string[];
  /** `acknowledged` when at least one replica is registered and live; `notify-only` otherwise. */
  mode: 'acknowledged' | 'notify-only';
}

export async function readReplicaAckStatus(db: Queryable, realmURL: string, epoch: number): Promise<ReplicaAckStatus> {
  const { rows } = await db.query<{ replica_id: string; done: boolean }>(
    `SELECT r.replica_id,
            (COALESCE(a.epoch, 0) >= $2 OR COALESCE(r.cache_started_epoch, 0) >= $2) AS done
       FROM realm_operator.replicas r
       LEFT JOIN realm_operator.replica_acks a ON a.replica_id = r.replica_id AND a.realm_url = $1
      WHERE r.lease_expires_at > now()
      ORDER BY r.replica_id`,
    [realmURL, epoch],
  );
  const acknowledged = rows.filter((r) => r.done).map((r) => r.replica_id);
  const missing = rows.filter((r) => !r.done).map((r) => r.replica_id);
  return { realmURL, epoch, acknowledged, missing, mode: rows.length > 0 ? 'acknowledged' : 'notify-only' };
}

export interface WaitForAcksOptions {
  realmURL: string;
  epoch: number;
  timeoutMs: number;
  /** Re-check at least this often (lease expiry produces no notification). Default 500 ms. */
  pollIntervalMs?: number;
  signal?: AbortSignal;
}

export interface WaitForAcksResult extends ReplicaAckStatus {
  /** True when no live replica is missing. */
  complete: boolean;
  waitedMs: number;
}

/**
 * Waits until every live replica is done with `epoch`, or the timeout passes. Wakes on each
 * replica's NOTIFY on {@link REPLICA_ACKS_CHANNEL} and polls in between. Uses one pooled
 * connection for the duration of the wait.
 */
export async function waitForReplicaAcks(pool: pg.Pool, options: WaitForAcksOptions): Promise<WaitForAcksResult> {
  const started = performance.now();
  const pollIntervalMs = options.pollIntervalMs ?? 500;
  const client = await pool.connect();
  let wake: (() => void) | undefined;
  // Set by every ack NOTIFY; cleared before each read, so an ack landing between the read and the
  // sleep is never lost (it would otherwise cost a whole poll interval).
  let notified = false;
  const onNotification = (message: pg.Notification) => {
    if (message.channel !== REPLICA_ACKS_CHANNEL) return;
    notified = true;
    wake?.();
  };
  client.on('notification', onNotification);
  let discard: Error | undefined;
  try {
    await client.query(`LISTEN ${REPLICA_ACKS_CHANNEL}`);
    for (;;) {
      notified = false;
      const status = await readReplicaAckStatus(client, options.realmURL, options.epoch);
      const waitedMs = performance.now() - started;
      const remaining = options.timeoutMs - waitedMs;
      if (status.missing.length === 0 || remaining <= 0 || options.signal?.aborted) {
        return { ...status, complete: status.missing.length === 0, waitedMs };
      }
      if (notified) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(pollIntervalMs, remaining));
        options.signal?.addEventListener('abort', done, { once: true });
        wake = done;
        function done() {
          clearTimeout(timer);
          options.signal?.removeEventListener('abort', done);
          wake = undefined;
          resolve();
        }
      });
    }
  } catch (error) {
    discard = error as Error;
    throw error;
  } finally {
    client.off('notification', onNotification);
    if (!discard) await client.query(`UNLISTEN ${REPLICA_ACKS_CHANNEL}`).catch((e: Error) => (discard = e));
    client.release(discard);
  }
}

/** Deletes replicas whose lease expired more than `olderThanMs` ago (their acks cascade). */
export async function pruneExpiredReplicas(db: Queryable, olderThanMs: number): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM realm_operator.replicas WHERE lease_expires_at < now() - make_interval(secs => $1::double precision / 1000)`,
    [olderThanMs],
  );
  return rowCount ?? 0;
}

/** Pod names of live registered replicas (from the `pod` field of their registration metadata). */
export async function readLiveReplicaPods(db: Queryable): Promise<Set<string>> {
  const { rows } = await db.query<{ pod: string | null; replica_id: string }>(
    `SELECT replica_id, metadata->>'pod' AS pod FROM realm_operator.replicas WHERE lease_expires_at > now()`,
  );
  return new Set(rows.map((r) => r.pod ?? r.replica_id));
}
