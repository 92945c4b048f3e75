/**
 * The operator's side of acknowledged invalidation (DESIGN §4.3): has every live replica dropped
 * its cache of a realm since a given epoch was committed? The status query is in ack-status.ts,
 * the shared wait (one LISTEN connection, coalesced re-reads) in ack-waiter.ts.
 */
import type pg from 'pg';
import { sharedReplicaAckWaiter, type WaitForAcksOptions, type WaitForAcksResult } from './ack-waiter.js';
import { liveReplicaCondition, replicaLeaseGraceOf } from './ack-status.js';
import type { Queryable } from './db.js';

export {
  DEFAULT_REPLICA_LEASE_GRACE_MS,
  readReplicaAckStatus,
  readReplicaAckStatuses,
  replicaLeaseGraceOf,
  setReplicaLeaseGrace,
  type RealmEpoch,
  type ReplicaAckStatus,
} from './ack-status.js';
export { ReplicaAckWaiter, sharedReplicaAckWaiter, type ReplicaAckWaiterOptions, type ReplicaAckWaiterStats, type WaitForAcksOptions, type WaitForAcksResult } from './ack-waiter.js';

/**
 * Waits until every live replica is done with `epoch`, or the timeout passes. Every wait on the
 * same pool shares one LISTEN connection on the replica-acks channel and one status query per
 * burst of acks ({@link sharedReplicaAckWaiter}); it also polls (lease expiry sends nothing).
 */
export async function waitForReplicaAcks(pool: pg.Pool, options: WaitForAcksOptions): Promise<WaitForAcksResult> {
  return sharedReplicaAckWaiter(pool).wait(options);
}

/**
 * Deletes replicas whose lease expired more than `olderThanMs` ago (their acks cascade); never one
 * still within the lease grace, which still counts as live.
 */
export async function pruneExpiredReplicas(db: Queryable, olderThanMs: number): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM realm_operator.replicas WHERE lease_expires_at < now() - make_interval(secs => $1::double precision / 1000)`,
    [Math.max(olderThanMs, replicaLeaseGraceOf(db))],
  );
  return rowCount ?? 0;
}

/** Pod names of live registered replicas (from the `pod` field of their registration metadata; live as in ack-status.ts, grace included). */
export async function readLiveReplicaPods(db: Queryable): Promise<Set<string>> {
  const { rows } = await db.query<{ pod: string | null; replica_id: string }>(
    `SELECT replica_id, metadata->>'pod' AS pod FROM realm_operator.replicas r WHERE ${liveReplicaCondition('r', '$1')}`,
    [replicaLeaseGraceOf(db)],
  );
  return new Set(rows.map((r) => r.pod ?? r.replica_id));
}
