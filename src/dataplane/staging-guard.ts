/**
 * Who owns a staging directory. A publisher holds a session-level advisory lock on a staging
 * token (in the two-int key space, apart from Boxel's bigint realm keys) for as long as its copy
 * exists. The lock dies with its connection, so a directory whose lock can be taken belongs to
 * a crashed publisher and may be removed — no timestamps or grace periods needed.
 *
 * The publishes of one process that overlap share one token and one lock (a lease): each copy is
 * `stage-<token>-<n>`, and the lease is unlocked when its last publish has finished. With many
 * publishes at once that is one lock and one unlock for all of them instead of a pooled connection
 * and two round trips each. The guarantee is the same: a lock that can be taken means its process
 * (or its connection) is gone, and every copy named by its token is abandoned. Copies of a live
 * lease whose publish is over (a removal that failed) wait until the lease ends, then the next
 * sweep takes them. A lease whose connection dies is not used again.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import type { Queryable } from './db.js';
import type { RealmsLayout } from './layout.js';
import { moveToTrash } from './published-content.js';
import { newStagingToken, STAGING_DIR_PREFIX } from './staging.js';

/** First key of the two-int advisory locks on staging tokens ("RELM"). */
export const STAGING_LOCK_CLASS = 0x52454c4d;

export interface StagingGuard {
  /** The staging directory's name under the staging root (`stage-<token>-<n>`), owned while the guard is held. */
  readonly name: string;
  /**
   * Throws when the lease's connection failed (its session lock may be gone, so another process's
   * sweep may take the copy): called under the realm lock before the copy is installed, so such a
   * publish is retried instead of installing a copy nobody guarded.
   */
  assertHeld(): void;
  release(): Promise<void>;
}

interface StagingLease {
  readonly token: number;
  /** The connection holding the session lock, once it is held. */
  readonly locked: Promise<pg.PoolClient>;
  /** Publishes holding a guard under this lease. */
  users: number;
  /** Its connection failed: the lock may be gone, so no new copy is staged under it. */
  lost?: Error;
  /** Set while the lease, with no publish under it, waits to be joined before it is unlocked. */
  lingering?: NodeJS.Timeout;
}

/** The lease new publishes join, per pool (one per process in the operator). */
const openLeases = new WeakMap<pg.Pool, StagingLease>();
/** How long a pool's lease is kept, with no publish under it, for the next publish to join. */
const lingerByPool = new WeakMap<pg.Pool, number>();

/**
 * Keeps a lease whose last publish has ended locked for `ms` more, for the next publish to join
 * (the operator's workers start one publish as another ends, with API requests between): its lock
 * and unlock are then sent once per burst of publishes, not once per gap between them. Default 0
 * (unlocked at once). A pool's end waits for the lease's connection, so for up to `ms`.
 */
export function setStagingLeaseLinger(pool: pg.Pool, ms: number): void {
  lingerByPool.set(pool, ms);
}
let copySequence = 0;

/** Takes the staging lock (joining the process's lease on it when there is one) and names a staging directory under it. */
export async function holdStagingGuard(pool: pg.Pool): Promise<StagingGuard> {
  let lease = openLeases.get(pool);
  if (!lease) {
    lease = openLease(pool);
    openLeases.set(pool, lease);
  }
  lease.users += 1;
  if (lease.lingering) {
    clearTimeout(lease.lingering);
    lease.lingering = undefined;
  }
  const joined = lease;
  try {
    await joined.locked;
    // Lost between opening and now: its lock may be gone already.
    if (joined.lost) throw lostLeaseError(joined.lost);
  } catch (error) {
    await leave(pool, joined);
    throw error;
  }
  copySequence = (copySequence + 1) % 2 ** 31;
  let released = false;
  return {
    name: `${STAGING_DIR_PREFIX}${joined.token}-${copySequence}`,
    assertHeld() {
      if (joined.lost) throw lostLeaseError(joined.lost);
    },
    async release() {
      if (released) return;
      released = true;
      await leave(pool, joined);
    },
  };
}

function lostLeaseError(cause: Error): Error {
  return new Error(`the staging lock's database connection failed (${cause.message}); the publish is retried`, { cause });
}

function openLease(pool: pg.Pool): StagingLease {
  const token = newStagingToken();
  const lease: StagingLease = {
    token,
    users: 0,
    locked: (async () => {
      const client = await pool.connect();
      const onError = (error: Error) => {
        lease.lost = error;
        if (openLeases.get(pool) === lease) openLeases.delete(pool);
      };
      client.on('error', onError);
      try {
        await client.query('SELECT pg_advisory_lock($1::int, $2::int)', [STAGING_LOCK_CLASS, token]);
      } catch (error) {
        client.off('error', onError);
        client.release(error as Error);
        throw error;
      }
      // Detached again before the client goes back to the pool (see leave).
      (client as LeaseClient).leaseErrorListener = onError;
      return client;
    })(),
  };
  // A lease whose lock could not be taken is not joined again (its joiners see the error).
  lease.locked.catch((error: Error) => {
    lease.lost = error;
    if (openLeases.get(pool) === lease) openLeases.delete(pool);
  });
  return lease;
}

type LeaseClient = pg.PoolClient & { leaseErrorListener?: (error: Error) => void };

async function leave(pool: pg.Pool, lease: StagingLease): Promise<void> {
  lease.users -= 1;
  if (lease.users > 0) return;
  const linger = lingerByPool.get(pool) ?? 0;
  if (linger > 0 && !lease.lost && openLeases.get(pool) === lease) {
    // Closed when the time is up unless a publish joined meanwhile (which clears the timer).
    lease.lingering = setTimeout(() => {
      lease.lingering = undefined;
      if (lease.users === 0) void closeLease(pool, lease);
    }, linger);
    lease.lingering.unref();
    return;
  }
  await closeLease(pool, lease);
}

async function closeLease(pool: pg.Pool, lease: StagingLease): Promise<void> {
  // No publish under it: new ones open a lease of their own (with a new token, so this one's
  // unlock never races their lock).
  if (openLeases.get(pool) === lease) openLeases.delete(pool);
  const client = (await lease.locked.catch(() => undefined)) as LeaseClient | undefined;
  if (!client) return;
  if (client.leaseErrorListener) client.off('error', client.leaseErrorListener);
  if (lease.lost) {
    client.release(lease.lost); // a dead connection has released the lock already
    return;
  }
  try {
    await client.query('SELECT pg_advisory_unlock($1::int, $2::int)', [STAGING_LOCK_CLASS, lease.token]);
    client.release();
  } catch (error) {
    client.release(error as Error);
  }
}

/** The staging token in a staging directory's name (`stage-<token>` or `stage-<token>-<n>`), or undefined for another name. */
export function stagingTokenOf(name: string): number | undefined {
  const match = /^(-?\d{1,10})(?:-\d{1,10})?$/.exec(name.startsWith(STAGING_DIR_PREFIX) ? name.slice(STAGING_DIR_PREFIX.length) : '');
  if (!match) return undefined;
  const token = Number(match[1]);
  return token >= -(2 ** 31) && token < 2 ** 31 ? token : undefined;
}

/**
 * Moves to the trash the staging directories whose owner is gone. Run inside a transaction: the owner check
 * takes a transaction-scoped lock on each token, so no publisher can claim it while we delete. One
 * statement tries every token (with many publishes at once there are as many live copies); a lock
 * it could take is held until the transaction ends, like the per-token statements it replaces.
 */
export async function removeAbandonedStaging(tx: Queryable, layout: RealmsLayout, names?: string[]): Promise<string[]> {
  const namesByToken = new Map<number, string[]>();
  for (const name of names ?? (await fs.readdir(layout.stagingRoot).catch(() => [] as string[]))) {
    const token = stagingTokenOf(name);
    if (token !== undefined) namesByToken.set(token, [...(namesByToken.get(token) ?? []), name]);
  }
  if (namesByToken.size === 0) return [];
  const { rows } = await tx.query<{ token: number }>('SELECT t AS token FROM unnest($2::int[]) AS t WHERE pg_try_advisory_xact_lock($1::int, t)', [STAGING_LOCK_CLASS, [...namesByToken.keys()]]);
  const removed: string[] = [];
  for (const { token } of rows) {
    for (const name of namesByToken.get(token)!) {
      await moveToTrash(layout, path.join(layout.stagingRoot, name));
      removed.push(name);
    }
  }
  return removed;
}
