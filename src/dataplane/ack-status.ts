/**
 * Reading acknowledgement status (DESIGN §4.3): has every live replica dropped its cache of a
 * realm since a given epoch was committed?
 *
 * A replica is *live* while its lease has not expired more than the grace ago (database clock:
 * `lease_expires_at + grace > now()`, see {@link setReplicaLeaseGrace}). A live replica is *done*
 * with epoch E of realm R when it acknowledged R at an epoch >= E (it read the epoch before
 * clearing), or when it emptied its whole cache at sequence position >= E. Replicas that never
 * register (unmodified Boxel servers) are invisible here: with no live replica at all the
 * result says `notify-only`, and the caller reports that instead of claiming acknowledgement.
 */
import { queryPrepared, type Queryable } from './db.js';

/**
 * How long past `lease_expires_at` the operator still waits for a replica, unless configured
 * (`--replica-lease-grace`). With the replica's fence margin (src/listener/fence.ts) it is the
 * tolerance for a database clock that steps forward, a failover to a host whose clock is ahead, a
 * slow replica clock or a paused replica; docs/protocol.md explains the value.
 */
export const DEFAULT_REPLICA_LEASE_GRACE_MS = 2_000;

const leaseGraceByDb = new WeakMap<object, number>();

/**
 * Sets the lease grace for every liveness read made through `db` (the operator's pool): the shared
 * ack waiter, status reads and the live-pod list all take the pool, so one setting covers them.
 */
export function setReplicaLeaseGrace(db: Queryable, graceMs: number): void {
  if (!Number.isFinite(graceMs) || graceMs < 0) throw new Error(`the replica lease grace must be zero or a positive number of milliseconds (got ${graceMs})`);
  leaseGraceByDb.set(db, graceMs);
}

/** The lease grace for reads through `db`: what {@link setReplicaLeaseGrace} set, else the default. */
export function replicaLeaseGraceOf(db: Queryable): number {
  return leaseGraceByDb.get(db) ?? DEFAULT_REPLICA_LEASE_GRACE_MS;
}

/** The SQL condition "replica `r` is live", with the grace in milliseconds as parameter `$n`. */
export function liveReplicaCondition(alias: string, graceParameter: string): string {
  return `${alias}.lease_expires_at + make_interval(secs => ${graceParameter}::double precision / 1000) > now()`;
}

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

export interface RealmEpoch {
  realmURL: string;
  epoch: number;
}

/**
 * The status of many (realm, epoch) pairs in ONE query, in the order given: the shared waiter
 * reads every wait a burst of acks woke with it. One `now()` judges every lease, so all the
 * answers describe the same instant.
 */
export async function readReplicaAckStatuses(db: Queryable, waits: readonly RealmEpoch[]): Promise<ReplicaAckStatus[]> {
  if (waits.length === 0) return [];
  const { rows } = await queryPrepared<{ i: string; replica_id: string; done: boolean }>(
    db,
    `SELECT w.i, r.replica_id,
            (COALESCE(a.epoch, 0) >= w.epoch OR COALESCE(r.cache_started_epoch, 0) >= w.epoch) AS done
       FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS w(realm_url, epoch, i)
       CROSS JOIN realm_operator.replicas r
       LEFT JOIN realm_operator.replica_acks a ON a.replica_id = r.replica_id AND a.realm_url = w.realm_url
      WHERE ${liveReplicaCondition('r', '$3')}
      ORDER BY w.i, r.replica_id`,
    [waits.map((w) => w.realmURL), waits.map((w) => w.epoch), replicaLeaseGraceOf(db)],
  );
  const statuses = waits.map((w): ReplicaAckStatus => ({ realmURL: w.realmURL, epoch: w.epoch, acknowledged: [], missing: [], mode: 'notify-only' }));
  for (const row of rows) {
    const status = statuses[Number(row.i) - 1]!;
    status.mode = 'acknowledged';
    (row.done ? status.acknowledged : status.missing).push(row.replica_id);
  }
  return statuses;
}

export async function readReplicaAckStatus(db: Queryable, realmURL: string, epoch: number): Promise<ReplicaAckStatus> {
  return (await readReplicaAckStatuses(db, [{ realmURL, epoch }]))[0]!;
}
