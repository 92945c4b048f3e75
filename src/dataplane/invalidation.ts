/**
 * The two invalidation calls a realm server or the operator can make alone (Boxel's names).
 * Inside a transaction their NOTIFYs are delivered at COMMIT, after the state they announce.
 */
import { MODULE_CACHE_INVALIDATED_CHANNEL, REALM_FILE_CHANGES_CHANNEL, REALM_REGISTRY_CHANNEL } from '../wire/channels.js';
import {
  chunkModuleInvalidations,
  formatAllFileChangesPayload,
  formatRealmDefinitionsInvalidation,
  formatRealmRegistryPayload,
} from '../wire/payloads.js';
import { assertRealmURL } from '../wire/realm-url.js';
import { REALM_EPOCH_HINT_CHANNEL } from '../wire/epoch-hint.js';
import { notify, queryPrepared, type Queryable } from './db.js';

/**
 * Tells every replica to drop every cached file of the realm: wildcard `realm_file_changes '<url>:*'`,
 * preceded by the realm's epoch hint when the operator has an epoch for it (wire/epoch-hint.ts):
 * acknowledging replicas then skip reading the epoch. One statement, no extra round trip; the
 * wildcard's SELECT waits on the hint's (the count), so the hint is always queued first.
 */
export async function notifyAllFileChanges(db: Queryable, realmURL: string): Promise<void> {
  assertRealmURL(realmURL);
  markInvalidationSent(realmURL);
  // Prepared (named) on the connection: on every publish's critical path, and parsing and planning it cost more than running it.
  await queryPrepared(
    db,
    `WITH hint AS (
       SELECT pg_notify($1, epoch::text || ' ' || realm_url) FROM realm_operator.realm_epochs WHERE realm_url = $2 AND epoch > 0)
     SELECT pg_notify($3, $4) FROM (SELECT count(*) FROM hint) AS hinted_first`,
    [REALM_EPOCH_HINT_CHANNEL, realmURL, REALM_FILE_CHANGES_CHANNEL, formatAllFileChangesPayload(realmURL)],
  );
}

/**
 * Drops the realm's cached card definitions everywhere: `DELETE FROM modules` for the realm and
 * `NOTIFY module_cache_invalidated {"k":"realm","r":url}` so every replica bumps its generation.
 * Returns the number of `modules` rows deleted.
 */
export async function clearRealmDefinitions(db: Queryable, realmURL: string): Promise<number> {
  assertRealmURL(realmURL);
  // One statement: the NOTIFY is sent at COMMIT either way, after the DELETE it announces.
  const { rows } = await queryPrepared<{ deleted: string }>(
    db,
    `WITH deleted AS (DELETE FROM modules WHERE resolved_realm_url = $1 RETURNING 1)
     SELECT (SELECT count(*) FROM deleted) AS deleted, pg_notify($2, $3)`,
    [realmURL, MODULE_CACHE_INVALIDATED_CHANNEL, formatRealmDefinitionsInvalidation(realmURL)],
  );
  return Number(rows[0]?.deleted ?? 0);
}

/** Drops specific modules' definitions, chunked under Boxel's 7000-byte payload budget. */
export async function clearModuleDefinitions(db: Queryable, realmURL: string, moduleURLs: readonly string[]): Promise<void> {
  assertRealmURL(realmURL);
  if (moduleURLs.length === 0) return;
  await db.query('DELETE FROM modules WHERE resolved_realm_url = $1 AND url = ANY($2::text[])', [realmURL, [...moduleURLs]]);
  for (const payload of chunkModuleInvalidations(realmURL, moduleURLs)) await notify(db, MODULE_CACHE_INVALIDATED_CHANNEL, payload);
}

export async function notifyRealmRegistry(db: Queryable, op: 'upsert' | 'delete', realmURL: string): Promise<void> {
  await notify(db, REALM_REGISTRY_CHANNEL, formatRealmRegistryPayload(op, realmURL));
}

/**
 * When this process last sent a realm's invalidation (performance.now(), taken before the
 * statement, so before the COMMIT of the transaction it is in). The shared ack waiter compares it
 * with when its LISTEN became active: listening since before it, it hears every completion
 * announcement of that commit and can skip its first status read (ack-waiter.ts). Only a hint:
 * a wrong answer costs a poll interval, never correctness (a wait completes only on a read or a
 * completion proof, whatever this says).
 */
const invalidationSentAt = new Map<string, number>();
const INVALIDATIONS_REMEMBERED = 4096;

function markInvalidationSent(realmURL: string): void {
  invalidationSentAt.delete(realmURL); // re-inserted last: the map's order is the eviction order
  invalidationSentAt.set(realmURL, performance.now());
  if (invalidationSentAt.size > INVALIDATIONS_REMEMBERED) invalidationSentAt.delete(invalidationSentAt.keys().next().value!);
}

/** When this process last sent `realmURL`'s invalidation (see {@link markInvalidationSent}); undefined if not remembered. */
export function lastInvalidationSentAt(realmURL: string): number | undefined {
  return invalidationSentAt.get(realmURL);
}
