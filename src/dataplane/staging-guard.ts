/**
 * Who owns a staging directory. A publisher holds a session-level advisory lock on its staging
 * token (in the two-int key space, apart from Boxel's bigint realm keys) for as long as the copy
 * exists. The lock dies with its connection, so a directory whose lock can be taken belongs to
 * a crashed publisher and may be removed — no timestamps or grace periods needed.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import type { Queryable } from './db.js';
import type { RealmsLayout } from './layout.js';
import { moveToTrash } from './published-content.js';
import { STAGING_DIR_PREFIX } from './staging.js';

/** First key of the two-int advisory locks on staging tokens ("RELM"). */
export const STAGING_LOCK_CLASS = 0x52454c4d;

export interface StagingGuard {
  release(): Promise<void>;
}

export async function holdStagingGuard(pool: pg.Pool, token: number): Promise<StagingGuard> {
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1::int, $2::int)', [STAGING_LOCK_CLASS, token]);
  } catch (error) {
    client.release(error as Error);
    throw error;
  }
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      try {
        await client.query('SELECT pg_advisory_unlock($1::int, $2::int)', [STAGING_LOCK_CLASS, token]);
        client.release();
      } catch (error) {
        client.release(error as Error); // a dead connection has released the lock already
      }
    },
  };
}

/**
 * Moves to the trash the staging directories whose owner is gone. Run inside a transaction: the owner check
 * takes a transaction-scoped lock on each token, so no publisher can claim it while we delete. One
 * statement tries every token (with many publishes at once there are as many live copies); a lock
 * it could take is held until the transaction ends, like the per-token statements it replaces.
 */
export async function removeAbandonedStaging(tx: Queryable, layout: RealmsLayout, names?: string[]): Promise<string[]> {
  const tokens = new Map<number, string>();
  for (const name of names ?? (await fs.readdir(layout.stagingRoot).catch(() => [] as string[]))) {
    const token = Number(name.slice(STAGING_DIR_PREFIX.length));
    if (name.startsWith(STAGING_DIR_PREFIX) && Number.isInteger(token) && token >= -(2 ** 31) && token < 2 ** 31) tokens.set(token, name);
  }
  if (tokens.size === 0) return [];
  const { rows } = await tx.query<{ token: number }>('SELECT t AS token FROM unnest($2::int[]) AS t WHERE pg_try_advisory_xact_lock($1::int, t)', [STAGING_LOCK_CLASS, [...tokens.keys()]]);
  const removed: string[] = [];
  for (const { token } of rows) {
    const name = tokens.get(token)!;
    await moveToTrash(layout, path.join(layout.stagingRoot, name));
    removed.push(name);
  }
  return removed;
}
