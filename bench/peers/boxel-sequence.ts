/**
 * Boxel's own publish sequence, re-implemented step by step for the comparison bench (not Boxel's
 * code: the same steps in the same order, on the same tables and channels, with our helpers where
 * the step is the same SQL). Read from cardstack/boxel at f7e3fda4f7ff322064f54a41fea52f3d36dedb9a:
 *
 * - packages/realm-server/handlers/handle-publish-realm.ts
 *   - 449-452: everything below runs inside `dbAdapter.withWriteLock(publishedRealmURL, …)`;
 *   - 450-480: read the registry row (first publish: new uuid, Matrix user, three permission rows);
 *   - 507-527: `remove(<pub>.tmp)`, `remove(<pub>.backup)`, `copy(source, <pub>.tmp)`, then
 *     `move(<pub>, <pub>.backup)`, `move(<pub>.tmp, <pub>)`, `remove(<pub>.backup)` — the whole copy
 *     and a gap with no `<pub>` at all, inside the lock;
 *   - 533-540: `realm_metadata` upsert (publishable = false);
 *   - 554: the realm.json default-index opt-in;
 *   - 569: `clearRealmDefinitions` (DELETE FROM modules + NOTIFY module_cache_invalidated);
 *   - 571-587: `upsertPublishedRealmInRegistry` (lib/realm-registry-writes.ts 53-79: INSERT … ON
 *     CONFLICT + NOTIFY realm_registry 'upsert:<url>');
 *   - 609-616: `clearLocalSourceCachesAndBroadcast` → runtime-common/realm.ts 2140-2143 and 454-468:
 *     NOTIFY realm_file_changes '<url>:*', fire-and-forget (a failure is logged and swallowed);
 *   - 628-638: `enqueueReindexRealmJob` (runtime-common/jobs/reindex-realm.ts 19-50:
 *     `UPDATE boxel_index SET last_modified = NULL`, then the queue's from-scratch-index job) —
 *     enqueued at once, without waiting for any peer to have dropped its cache.
 * - packages/postgres/pg-adapter.ts 533-563: `withWriteLock` takes one pooled client, `BEGIN`,
 *   `pg_advisory_xact_lock(key)`, runs the callback, `COMMIT`. The handler's queries go through
 *   `dbAdapter`/`query(dbAdapter, …)`, i.e. other pooled clients in autocommit: every write and
 *   NOTIFY above is committed and delivered while the lock is still held, each on its own.
 *
 * Left out, the same for both sides of the comparison: the Matrix registration of a first publish
 * (the bench measures republishes), the HTTP request and the in-process mount of the realm.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { notify } from '../../src/dataplane/db.js';
import { applyRealmIndexOptIn } from '../../src/dataplane/realm-json.js';
import { advisoryLockKey } from '../../src/wire/lock-key.js';

export interface BoxelPublishRequest {
  /** The realms root; published realms live at `<root>/_published/<disk_id>/` (real directories). */
  realmsRoot: string;
  sourceDir: string;
  sourceRealmURL: string;
  publishedRealmURL: string;
}

export interface BoxelPublishResult {
  diskId: string;
  /** From the lock being granted to COMMIT (the callback's whole run). */
  lockHeldMs: number;
  lockWaitMs: number;
  /** The handler's whole run (what the 202 response waits for). */
  totalMs: number;
}

/** One publish, as Boxel's handler runs it. */
export async function boxelPublish(pool: pg.Pool, request: BoxelPublishRequest): Promise<BoxelPublishResult> {
  const { publishedRealmURL: url, sourceRealmURL } = request;
  const started = performance.now();
  const lockClient = await pool.connect();
  let lockedAt = NaN;
  let diskId: string;
  try {
    await lockClient.query('BEGIN');
    await lockClient.query('SELECT pg_advisory_xact_lock($1::bigint)', [advisoryLockKey(url)]);
    lockedAt = performance.now();
    try {
      const { rows } = await pool.query<{ disk_id: string }>(`SELECT disk_id, owner_username FROM realm_registry WHERE kind = 'published' AND url = $1`, [url]);
      const isNewRealm = rows.length === 0;
      diskId = rows[0]?.disk_id ?? randomUUID();
      const realmUsername = `realm/_published_${diskId}`;
      if (isNewRealm) {
        await pool.query(
          `INSERT INTO realm_user_permissions (realm_url, username, read, write, realm_owner) VALUES ($1, $2, true, false, true), ($1, 'bench-owner', true, false, true), ($1, '*', true, false, false)
           ON CONFLICT DO NOTHING`,
          [url, `@${realmUsername}:localhost`],
        );
      }
      const publishedPath = path.join(request.realmsRoot, '_published', diskId);
      const tempCopyPath = `${publishedPath}.tmp`;
      const backupPath = `${publishedPath}.backup`;
      await fs.rm(tempCopyPath, { recursive: true, force: true });
      await fs.rm(backupPath, { recursive: true, force: true });
      await fs.cp(request.sourceDir, tempCopyPath, { recursive: true });
      if (await exists(publishedPath)) await fs.rename(publishedPath, backupPath);
      // Here readers find no published realm at all (the gap the operator's symlink swap closes).
      await fs.rename(tempCopyPath, publishedPath);
      await fs.rm(backupPath, { recursive: true, force: true });
      await pool.query(
        `INSERT INTO realm_metadata (url, publishable) VALUES ($1, false) ON CONFLICT (url) DO UPDATE SET publishable = false, updated_at = now()`,
        [url],
      );
      await applyRealmIndexOptIn(publishedPath, { durable: false });
      // clearRealmDefinitions: the DELETE and its NOTIFY, each autocommitted.
      await pool.query('DELETE FROM modules WHERE resolved_realm_url = $1', [url]);
      await notify(pool, 'module_cache_invalidated', JSON.stringify({ k: 'realm', r: url }));
      await pool.query(
        `INSERT INTO realm_registry (url, kind, disk_id, owner_username, source_url, last_published_at, pinned) VALUES ($1, 'published', $2, $3, $4, $5, false)
         ON CONFLICT (url) DO UPDATE SET last_published_at = EXCLUDED.last_published_at, updated_at = now() WHERE realm_registry.kind = 'published'`,
        [url, diskId, realmUsername, sourceRealmURL, Date.now()],
      );
      await notify(pool, 'realm_registry', `upsert:${url}`);
      // Fire-and-forget in Boxel: a failed NOTIFY is logged and swallowed.
      await notify(pool, 'realm_file_changes', `${url}:*`).catch(() => undefined);
      await enqueueFromScratchIndex(pool, url, realmUsername);
      await lockClient.query('COMMIT');
    } catch (error) {
      await lockClient.query('ROLLBACK').catch(() => undefined);
      throw error;
    }
  } finally {
    lockClient.release();
  }
  const ended = performance.now();
  return { diskId, lockHeldMs: ended - lockedAt, lockWaitMs: lockedAt - started, totalMs: ended - started };
}

/**
 * The reindex enqueue of reindex-realm.ts 19-50 through Boxel's queue protocol (pg-queue: one
 * SERIALIZABLE transaction under `pg_advisory_xact_lock(hashtext(<concurrency group>))`, join a
 * pending job of the same type and group or insert one, NOTIFY jobs), retried on 40001.
 */
async function enqueueFromScratchIndex(pool: pg.Pool, url: string, realmUsername: string): Promise<void> {
  await pool.query('UPDATE boxel_index SET last_modified = NULL WHERE realm_url = $1', [url]);
  const group = `indexing:${url}`;
  const args = { realmURL: url, realmUsername, clearLastModified: true, awaitedByPublish: true };
  for (let attempt = 1; ; attempt++) {
    const client = await pool.connect();
    try {
      await client.query('BEGIN ISOLATION LEVEL SERIALIZABLE');
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [group]);
      const { rows } = await client.query<{ id: number }>(
        `SELECT id FROM jobs WHERE job_type = 'from-scratch-index' AND concurrency_group = $1 AND status = 'unfulfilled' ORDER BY id LIMIT 1`,
        [group],
      );
      if (rows[0]) {
        await client.query('UPDATE jobs SET priority = GREATEST(priority, 10), args = args || $2::jsonb WHERE id = $1', [rows[0].id, JSON.stringify(args)]);
      } else {
        await client.query(
          `INSERT INTO jobs (job_type, args, concurrency_group, timeout, priority) VALUES ('from-scratch-index', $1::jsonb, $2, 3600, 10)`,
          [JSON.stringify(args), group],
        );
      }
      await client.query(`NOTIFY jobs`);
      await client.query('COMMIT');
      return;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      if ((error as { code?: string }).code !== '40001' || attempt >= 20) throw error;
    } finally {
      client.release();
    }
  }
}

async function exists(target: string): Promise<boolean> {
  return fs.lstat(target).then(
    () => true,
    () => false,
  );
}
