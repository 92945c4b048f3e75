/**
 * The replica's side of acknowledged invalidation (DESIGN §4.3), as SQL. Every write that can end
 * a wait in the operator also NOTIFYs {@link REPLICA_ACKS_CHANNEL} in the same statement.
 */
import pg from 'pg';
import { REPLICA_ACKS_CHANNEL } from '../wire/channels.js';

type Db = Pick<pg.Client, 'query'>;
const { escapeLiteral } = pg;

/**
 * Registers (or re-registers) the replica with a fresh lease. `cache_started_epoch` is reset: a
 * replica that registers has not yet proven its cache is clean.
 */
export async function registerReplica(db: Db, replicaId: string, leaseMs: number, metadata: Record<string, unknown> = {}): Promise<void> {
  await db.query(
    `INSERT INTO realm_operator.replicas (replica_id, lease_expires_at, lease_duration_ms, renewed_at, metadata)
     VALUES ($1, now() + make_interval(secs => $2::double precision / 1000), $2, now(), $3)
     ON CONFLICT (replica_id) DO UPDATE SET
       registered_at = now(), lease_expires_at = EXCLUDED.lease_expires_at, lease_duration_ms = EXCLUDED.lease_duration_ms,
       renewed_at = now(), cache_started_epoch = NULL, cache_started_at = NULL, metadata = EXCLUDED.metadata`,
    [replicaId, leaseMs, JSON.stringify(metadata)],
  );
}

/** Extends a lease that has not expired; false when it had (the replica must re-register and resync). */
export async function renewLease(db: Db, replicaId: string, leaseMs: number): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE realm_operator.replicas
        SET lease_expires_at = now() + make_interval(secs => $2::double precision / 1000), lease_duration_ms = $2, renewed_at = now()
      WHERE replica_id = $1 AND lease_expires_at > now()`,
    [replicaId, leaseMs],
  );
  return rowCount === 1;
}

/** The epoch sequence's position now: every epoch committed so far is at or below it. */
export async function readEpochPosition(db: Db): Promise<number> {
  const { rows } = await db.query<{ position: string }>(
    `SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS position FROM realm_operator.epoch_seq`,
  );
  return Number(rows[0]?.position ?? 0);
}

/** The realm's current epoch (0 when it has never been published by the operator). */
export async function readRealmEpoch(db: Db, realmURL: string): Promise<number> {
  const { rows } = await db.query<{ epoch: string }>('SELECT epoch FROM realm_operator.realm_epochs WHERE realm_url = $1', [realmURL]);
  return Number(rows[0]?.epoch ?? 0);
}

/**
 * Records that the replica emptied its whole cache after reading sequence position `position`.
 * False when the lease is gone (the replica must re-register).
 */
export async function recordCacheStarted(db: Db, replicaId: string, position: number): Promise<boolean> {
  const { rows } = await db.query(
    `WITH updated AS (
       UPDATE realm_operator.replicas SET cache_started_epoch = $2, cache_started_at = now()
        WHERE replica_id = $1 AND lease_expires_at > now() RETURNING replica_id)
     SELECT pg_notify($3, '*') FROM updated`,
    [replicaId, position, REPLICA_ACKS_CHANNEL],
  );
  return rows.length === 1;
}

/**
 * "Some live replica (other than `$except`, when given) is not yet done with epoch `$epoch` of
 * realm `$realm`", as a replica sees it: no operator grace (a lapsed lease is not waited for
 * here, so at worst the operator is woken for a re-read that still finds it missing). Done: it
 * acknowledged the realm at the epoch or later, or emptied its whole cache at or after it.
 *
 * Two parts, so it costs about one index probe, not one per replica: every replica runs it with
 * its ack, and a scan of every replica per ack made a publish O(N²) (measured: 0.4 ms more per ack
 * at 50 replicas than at 1, in each replica's backend). (1) An ack row of the realm older than the
 * epoch, found through replica_acks_realm_url_index: during a fan-out the first one found ends it,
 * and once everyone acked the range is empty. (2) Only then, a live replica with no ack row for the
 * realm at all (a realm's first publish, a replica that never acked it). (1) walks the range from
 * the epoch down (a scalar subquery: EXISTS would drop its ORDER BY): every ack moves its row to a
 * new index entry, so until vacuum the range holds each replica's dead entries of every earlier
 * publish at its low end, and a scan from there crossed them all before reaching a row still
 * missing, which sits just below the epoch.
 */
const SOME_NOT_DONE = (realm: string, epoch: string, except?: string) => `(
  (SELECT 1 FROM realm_operator.replica_acks a JOIN realm_operator.replicas r ON r.replica_id = a.replica_id
    WHERE a.realm_url = ${realm} AND a.epoch < ${epoch}${except ? ` AND a.replica_id <> ${except}` : ''}
      AND r.lease_expires_at > now() AND COALESCE(r.cache_started_epoch, 0) < ${epoch}
    ORDER BY a.epoch DESC LIMIT 1) IS NOT NULL
  OR EXISTS (SELECT 1 FROM realm_operator.replicas r
              WHERE r.lease_expires_at > now() AND COALESCE(r.cache_started_epoch, 0) < ${epoch}${except ? ` AND r.replica_id <> ${except}` : ''}
                AND NOT EXISTS (SELECT 1 FROM realm_operator.replica_acks a WHERE a.replica_id = r.replica_id AND a.realm_url = ${realm})))`;

/** Ack rows of realm `$realm` at epoch `$epoch` or later (an index range): what a completion claim counts. */
const ACKED_COUNT = (realm: string, epoch: string) => `(SELECT count(*) FROM realm_operator.replica_acks a WHERE a.realm_url = ${realm} AND a.epoch >= ${epoch})`;

/**
 * The completion claim: a row of `realm_operator.ack_announcements` per realm holding the last
 * (epoch, done count) announced. The upsert returns a row only when it moves that pair forward, so
 * of the replicas that see the same completion only one NOTIFYs. Two claims at once: the second
 * waits for the first's commit and then finds the pair already there (or claims it itself, when
 * the first rolled back), so a claim that returns nothing means another statement that saw the
 * same completion NOTIFYs it at its commit. `done` counts the realm's ack rows at the epoch or
 * later, lease or not: a replica within the operator's lease grace (not live to a replica, still
 * waited for by the operator) that acks later raises it, so its completion is announced too. (A
 * replica done by emptying its cache NOTIFYs that itself: recordCacheStarted.)
 */
const CLAIM = (realm: string, epoch: string, done: string, when: string) => `
  INSERT INTO realm_operator.ack_announcements AS c (realm_url, epoch, done)
  SELECT ${realm}, ${epoch}, ${done} ${when}
  ON CONFLICT (realm_url) DO UPDATE SET epoch = EXCLUDED.epoch, done = EXCLUDED.done, announced_at = now()
    WHERE (c.epoch, c.done) < (EXCLUDED.epoch, EXCLUDED.done)
  RETURNING 1`;

/**
 * Replicas whose lease lapsed at most this long ago are listed in a completion announcement (with
 * how long ago); older lapses are left out. A waiter whose lease grace is longer cannot tell from
 * the announcement whether such a replica still counts for it, so it reads the table instead.
 */
export const ANNOUNCED_LAPSE_WINDOW_MS = 60_000;

/** Milliseconds since replica `r`'s lease lapsed (negative while it runs), by the database's clock. */
const LAPSED_MS = `(extract(epoch from now() - r.lease_expires_at) * 1000)`;

/**
 * The completion proof a "complete" announcement carries (ack-waiter.ts parseAckNotification):
 * `a` the replicas live by lease (no grace) and done; `o` every other replica whose lease runs or
 * lapsed within the window, as `[id, ms since its lapse (negative: still running), done]`; `w` the
 * window. From it a waiter applies its own lease grace exactly as its status read would
 * (ack-status.ts: live while `lease_expires_at + grace > now()`), at this statement's `now()` and
 * in its snapshot, taken after the announcer's ack committed and so after the epoch committed.
 * Done: acked the realm at the epoch or later (its one ack row, by primary key), or emptied its
 * cache at or after it. O(replicas), so it runs only in the announcement that NOTIFYs (once per
 * publish, on the critical path of its completion): one pass over the replicas in the window, both
 * lists aggregated from it (two passes, each probing every replica's ack, cost twice as much).
 */
const COMPLETION = (realm: string, epoch: string) => `(SELECT json_build_object(
    'a', COALESCE(json_agg(x.replica_id ORDER BY x.replica_id) FILTER (WHERE x.live AND x.done), '[]'::json),
    'o', COALESCE(json_agg(json_build_array(x.replica_id, x.lapsed_ms, x.done) ORDER BY x.replica_id) FILTER (WHERE NOT (x.live AND x.done)), '[]'::json),
    'w', ${ANNOUNCED_LAPSE_WINDOW_MS})
  FROM (SELECT r.replica_id, r.lease_expires_at > now() AS live, ${LAPSED_MS} AS lapsed_ms,
               COALESCE(r.cache_started_epoch, 0) >= ${epoch} OR COALESCE(a.epoch >= ${epoch}, false) AS done
          FROM realm_operator.replicas r
          LEFT JOIN realm_operator.replica_acks a ON a.replica_id = r.replica_id AND a.realm_url = ${realm}
         WHERE r.lease_expires_at > now() - make_interval(secs => ${ANNOUNCED_LAPSE_WINDOW_MS / 1000})) x)`;

/**
 * The completion proof of a replica's ack made in the ack's own statement while no other replica
 * is registered (its own ack row is not visible to the statement itself, so {@link COMPLETION}
 * would count it missing): it alone, done.
 */
const COMPLETION_ALONE = `(SELECT CASE WHEN r.lease_expires_at > now()
    THEN json_build_object('a', json_build_array(r.replica_id), 'o', '[]'::json, 'w', ${ANNOUNCED_LAPSE_WINDOW_MS})
    ELSE json_build_object('a', '[]'::json, 'o', json_build_array(json_build_array(r.replica_id, ${LAPSED_MS}, true)), 'w', ${ANNOUNCED_LAPSE_WINDOW_MS}) END
  FROM realm_operator.replicas r WHERE r.replica_id = $1)`;

/**
 * A completion announcement's payload: `{"r":realm,"e":epoch,"id":notifier,"c":proof}`, or without
 * the proof when it would not fit PostgreSQL's payload limit (8000 bytes; thousands of replicas):
 * the waiter then reads the table, as before proofs.
 */
const ANNOUNCEMENT_PAYLOAD = (replica: string, realm: string, epoch: string, proof: string) => `(SELECT CASE WHEN octet_length(p.text) <= 7000 THEN p.text
    ELSE json_build_object('r', ${realm}, 'e', ${epoch}, 'id', ${replica})::text END
  FROM (SELECT json_build_object('r', ${realm}, 'e', ${epoch}, 'id', ${replica}, 'c', ${proof})::text AS text OFFSET 0) p)`;

/** The ack row (replica $1, realm $2, epoch $3; acks never go backwards), returning it. */
const ACK_UPSERT = `INSERT INTO realm_operator.replica_acks (replica_id, realm_url, epoch) VALUES ($1, $2, $3)
  ON CONFLICT (replica_id, realm_url) DO UPDATE SET epoch = GREATEST(realm_operator.replica_acks.epoch, EXCLUDED.epoch), acked_at = now()
  RETURNING replica_id, realm_url, epoch`;

/** The NOTIFY payload of the ack row `acked` ($4: the channel). */
const ACK_NOTIFY = `pg_notify($4, json_build_object('r', acked.realm_url, 'e', acked.epoch, 'id', acked.replica_id)::text)`;

/** What {@link writeAck} found: the ack row written and whether the set looked complete. */
export type AckWrite =
  /** Written and NOTIFYd: no other replica is registered, so nobody else can be missing or announce it. */
  | 'written-alone'
  /**
   * Written, and no other live replica was missing in its snapshot: the completion was NOTIFYd in
   * the same statement, unless another replica had already announced the same completion.
   */
  | 'written-notified'
  /** Written, not NOTIFYd: others were still missing in its snapshot; {@link announceIfAllAcked} after it commits. */
  | 'written'
  /** Not written: the replica's row is gone (pruned after its lease expired); it must re-register. */
  | 'unregistered';

/**
 * Records that the replica dropped its cache of `realmURL` after reading `epoch`, and NOTIFYs
 * {@link REPLICA_ACKS_CHANNEL} (`{"r":realm,"e":epoch,"id":replica}`) in the same statement only
 * when, in the statement's snapshot, no other live replica is still missing the epoch, and no
 * other replica already announced that completion (the claim, {@link CLAIM}).
 *
 * Why not every ack: each NOTIFYing commit takes PostgreSQL's database-wide notify lock and
 * signals EVERY backend LISTENing in the database (PostgreSQL 17's SignalBackends does not look at
 * channels), and every replica LISTENs there. N acks per publish were N × (N replicas + the
 * operator) backend wake-ups: at 50 replicas that storm, not the acks, was most of the fan-out's
 * time (bench/fanout.ts). The operator needs to hear only the ack that completes the set; the
 * others it reads from the table (src/dataplane/ack-waiter.ts re-reads when a NOTIFY leaves a
 * wait incomplete). Acks committing concurrently may each see the others missing, so a replica
 * that got `written` runs {@link announceIfAllAcked} once its ack committed: the later of two
 * commits then sees both. Several such announcements then see the same completion (at 50
 * replicas, 9 per publish before the claim): the claim lets one of them NOTIFY. Safety never
 * rests on a NOTIFY: the operator completes a wait only from committed rows (its reads, or a
 * NOTIFY that follows the notifier's committed ack); a lost NOTIFY costs a poll interval, not a
 * stale read.
 *
 * This is the one statement on a publish's critical path in every replica, so it is a named
 * (prepared once per connection) INSERT ... VALUES: measured on this machine, parse and plan plus
 * a CTE selecting the replica row first cost ~0.25 ms more per ack than the statement itself. The
 * `expectAlone` (the last ack was `written-alone`) takes the leaner statement ({@link writeAckAlone}). The
 * claim runs only when the set looks complete (once per publish, not per ack), and not at all when
 * no other replica is registered: nobody else can announce that completion (one that registers
 * meanwhile NOTIFYs its own cache start), and the claim's upsert was a fifth of such an ack.
 */
export async function writeAck(db: Db, replicaId: string, realmURL: string, epoch: number, { expectAlone = false } = {}): Promise<AckWrite> {
  try {
    if (expectAlone) return await writeAckAlone(db, replicaId, realmURL, epoch);
    const { rows } = await db.query<{ others_missing: boolean; alone: boolean }>({
      name: 'realm_operator_record_ack',
      text: `WITH acked AS (
         ${ACK_UPSERT}),
       alone AS (SELECT NOT EXISTS (SELECT 1 FROM realm_operator.replicas r WHERE r.replica_id <> $1) AS yes),
       -- Alone, nobody else can be missing: the two EXISTS are not run at all (AND stops at false).
       others_missing AS (SELECT NOT alone.yes AND ${SOME_NOT_DONE('$2', '$3', '$1')} AS any FROM alone),
       announced AS (${CLAIM('$2', '$3', `1 + ${ACKED_COUNT('$2', '$3')}`, 'FROM others_missing, alone WHERE NOT others_missing.any AND NOT alone.yes')})
       SELECT others_missing.any AS others_missing, alone.yes AS alone,
              CASE WHEN NOT others_missing.any AND (alone.yes OR EXISTS (SELECT 1 FROM announced))
                THEN ${ACK_NOTIFY} END AS notified
         FROM acked, others_missing, alone`,
      values: [replicaId, realmURL, epoch, REPLICA_ACKS_CHANNEL],
    });
    if (rows.length !== 1) return 'unregistered';
    return rows[0]!.alone ? 'written-alone' : rows[0]!.others_missing ? 'written' : 'written-notified';
  } catch (error) {
    if ((error as { code?: string }).code === FOREIGN_KEY_VIOLATION) return 'unregistered';
    throw error;
  }
}

/**
 * {@link writeAck} for a replica whose last ack found it alone (`written-alone`): the ack row and,
 * only if still no other replica is registered, the NOTIFY; nothing else. Not alone any more, it
 * returns `written` and the caller announces after the commit (which claims), as for any ack that
 * saw others. Why a second statement: even when it inserts nothing, the claim's INSERT ... ON
 * CONFLICT and the completion check cost a lone replica ~0.1 ms per ack (0.48 against 0.38 ms,
 * the statement alone in a loop), on the critical path of every publish with one replica.
 */
async function writeAckAlone(db: Db, replicaId: string, realmURL: string, epoch: number): Promise<AckWrite> {
  const { rows } = await db.query<{ alone: boolean }>({
    name: 'realm_operator_record_ack_alone',
    text: `WITH acked AS (
         ${ACK_UPSERT}),
       alone AS (SELECT NOT EXISTS (SELECT 1 FROM realm_operator.replicas r WHERE r.replica_id <> $1) AS yes)
       SELECT alone.yes AS alone,
              CASE WHEN alone.yes THEN pg_notify($4, ${ANNOUNCEMENT_PAYLOAD('acked.replica_id', 'acked.realm_url', 'acked.epoch', COMPLETION_ALONE)}) END AS notified
         FROM acked, alone`,
    values: [replicaId, realmURL, epoch, REPLICA_ACKS_CHANNEL],
  });
  if (rows.length !== 1) return 'unregistered';
  return rows[0]!.alone ? 'written-alone' : 'written';
}

/**
 * After an ack that was `written` (not NOTIFYd) has committed: NOTIFYs the operator, as that ack,
 * if every live replica is now done with `epoch` and no other replica announced that completion
 * already. Run it on a connection outside a transaction, so its snapshot includes every ack that
 * committed before ours. True when it NOTIFYd.
 */
export async function announceIfAllAcked(db: Db, replicaId: string, realmURL: string, epoch: number): Promise<boolean> {
  const { rows } = await db.query({
    name: 'realm_operator_announce_acks',
    text: `WITH complete AS (SELECT NOT ${SOME_NOT_DONE('$2::text', '$3::bigint')} AS yes),
       announced AS (${CLAIM('$2::text', '$3::bigint', ACKED_COUNT('$2::text', '$3::bigint'), 'FROM complete WHERE complete.yes')})
       SELECT pg_notify($4, ${ANNOUNCEMENT_PAYLOAD('$1::text', '$2::text', '$3::bigint', COMPLETION('$2::text', '$3::bigint'))}) FROM announced`,
    values: [replicaId, realmURL, epoch, REPLICA_ACKS_CHANNEL],
  });
  return rows.length === 1;
}

/** Whether no replica other than $1 is registered. */
const ALONE = `NOT EXISTS (SELECT 1 FROM realm_operator.replicas r WHERE r.replica_id <> $1)`;

/**
 * The completion announcement ($1 replica, $2 realm, $3 epoch, $4 channel), after the replica's
 * ack committed: alone (no other replica registered), it NOTIFYs without a claim; otherwise it
 * NOTIFYs only if no live replica is still missing the epoch and its claim succeeds. Selects
 * `alone` and `notified`; `into` is PL/pgSQL's INTO clause when it runs inside
 * {@link COMPLETION_FUNCTION}.
 */
const ANNOUNCEMENT = (into = '') => `WITH alone AS (SELECT ${ALONE} AS yes),
       complete AS (SELECT NOT alone.yes AND NOT ${SOME_NOT_DONE('$2', '$3')} AS yes FROM alone),
       announced AS (${CLAIM('$2', '$3', ACKED_COUNT('$2', '$3'), 'FROM complete WHERE complete.yes')})
       SELECT alone.yes AS alone,
              CASE WHEN alone.yes OR EXISTS (SELECT 1 FROM announced)
                THEN pg_notify($4, ${ANNOUNCEMENT_PAYLOAD('$1', '$2', '$3', COMPLETION('$2', '$3'))}) END IS NOT NULL AS notified${into}
         FROM alone`;

/**
 * {@link ANNOUNCEMENT} as a PL/pgSQL function (replica, realm, epoch, channel) returning the
 * {@link AckWrite} it amounts to, so the ack's completion check can call it only when the set is
 * complete: a function's plan is initialized when it is called, and its statements' plans are
 * cached for the session. `realm-operator migrate` (re)creates it when missing or not this
 * release's body (migrations.ts ensureCompletionFunction); a listener uses it only when its body is
 * the listener's own and it may execute it, and otherwise (a database migrated by another release,
 * or not at all) sends the announcement itself, in a second round trip.
 */
export const COMPLETION_FUNCTION = 'realm_operator.announce_completion(text, text, bigint, text)';
export const COMPLETION_FUNCTION_BODY = `
DECLARE
  was_alone boolean;
  was_notified boolean;
BEGIN
  ${ANNOUNCEMENT(' INTO was_alone, was_notified')};
  RETURN CASE WHEN was_alone THEN 'written-alone' WHEN was_notified THEN 'written-notified' ELSE 'written' END;
END
`;
export const COMPLETION_FUNCTION_SQL = `CREATE OR REPLACE FUNCTION ${COMPLETION_FUNCTION} RETURNS text LANGUAGE plpgsql AS $announce$${COMPLETION_FUNCTION_BODY}$announce$`;

/** SQL-level prepared statements of {@link writeAckThenAnnounce}, per connection (they live as long as its session). */
const ACK_THEN_ANNOUNCE_ACK = 'realm_operator_ack_then_announce_ack';
const ACK_THEN_ANNOUNCE_CHECK = 'realm_operator_ack_then_announce_check';
const ACK_THEN_ANNOUNCE_ANNOUNCE = 'realm_operator_ack_then_announce_announce';
const ACK_THEN_ANNOUNCE_STATEMENTS = [ACK_THEN_ANNOUNCE_ACK, ACK_THEN_ANNOUNCE_CHECK, ACK_THEN_ANNOUNCE_ANNOUNCE];
/**
 * Per connection, once prepared: `folded` — the check calls {@link COMPLETION_FUNCTION} when the set
 * is complete, in the ack's own round trip; `separate` — the function is missing, not this
 * release's or not executable, and the check only says whether to send {@link ANNOUNCEMENT} next.
 */
const ackStatementsOf = new WeakMap<object, 'folded' | 'separate'>();
/** What {@link COMPLETION_FUNCTION} may return. */
const ANNOUNCED_WRITES: ReadonlySet<string> = new Set<AckWrite>(['written-alone', 'written-notified', 'written']);

/**
 * The ack row and, once it has committed, the completion check, in ONE round trip: the
 * simple-protocol query `BEGIN; EXECUTE <ack>; COMMIT; EXECUTE <check>`. PostgreSQL runs the
 * statements of one Query message in order; the explicit COMMIT ends the ack's transaction before
 * the check starts, which then runs in a transaction (and snapshot) of its own — so it sees every
 * ack committed before ours, exactly as {@link announceIfAllAcked} sent after the ack's reply
 * does. Only when the check finds no live replica still missing the epoch (once per publish, not
 * per ack; always when the replica is alone) does the announcement run: the completion claim and
 * the NOTIFY with its proof (or, alone, the NOTIFY without a claim) — called from the check
 * ({@link COMPLETION_FUNCTION}), or where the database lacks the function, sent as a second round
 * trip.
 *
 * Why one round trip for the common case: the two-step form cost each replica a second round trip
 * (a second wake-up of its process and of its backend) for every ack that saw others missing, which
 * on a fan-out is all but the last. Why a check that calls the announcement, not the announcement
 * itself, in it: PostgreSQL initializes every node of a plan before running any, and the
 * announcement's (the claim's upsert, the proof's aggregate over every replica) cost ~0.15 ms of
 * backend CPU per ack even when nothing was announced (bench/ack-statement-cost.ts) — in every
 * replica, on every publish. The check is two index probes. The statements are prepared once per
 * connection (SQL `PREPARE`, at the listener's resync), so each ack parses four short utility
 * statements and plans nothing.
 *
 * Values travel as SQL literals (a simple-protocol query has no parameters): the realm URL and the
 * replica id through pg's `escapeLiteral` (quotes doubled; a backslash switches to an E'' literal),
 * the epoch checked to be a safe integer; a NUL byte (which would cut a Query message short) is
 * refused. The check does not ask whether the replica is alone: then nobody is missing either, so
 * it lets the announcement run, which tells. Returns `written-alone` (no other replica registered:
 * NOTIFYd without a claim), `written-notified` (this announcement claimed the completion and
 * NOTIFYd), `written` (others still missing, or another announcement holds the claim) or
 * `unregistered` (the foreign key refused the row: the replica must re-register; the failed
 * transaction is rolled back).
 */
export async function writeAckThenAnnounce(client: pg.ClientBase, replicaId: string, realmURL: string, epoch: number): Promise<AckWrite> {
  if (!Number.isSafeInteger(epoch) || epoch <= 0) throw new Error(`writeAckThenAnnounce: epoch must be a positive integer (got ${epoch})`);
  if (replicaId.includes('\0') || realmURL.includes('\0')) throw new Error('writeAckThenAnnounce: the replica id and realm URL must not contain a NUL character');
  const mode = ackStatementsOf.get(client) ?? (await prepareAckThenAnnounce(client));
  const args = `${escapeLiteral(replicaId)}, ${escapeLiteral(realmURL)}, ${epoch}, ${escapeLiteral(REPLICA_ACKS_CHANNEL)}`;
  let results: pg.QueryResult[];
  try {
    results = (await client.query(`BEGIN; EXECUTE ${ACK_THEN_ANNOUNCE_ACK}(${args}); COMMIT; EXECUTE ${ACK_THEN_ANNOUNCE_CHECK}(${args})`)) as unknown as pg.QueryResult[];
  } catch (error) {
    // An error inside the explicit block leaves the session in a failed transaction: end it.
    await client.query('ROLLBACK').catch(() => undefined);
    if ((error as { code?: string }).code === FOREIGN_KEY_VIOLATION) return 'unregistered';
    throw error;
  }
  const check = results[3]?.rows[0] as { written?: string; may_announce?: boolean } | undefined;
  if (!check) throw new Error(`writeAckThenAnnounce: expected 4 results, got ${results.length}`);
  if (mode === 'folded') {
    if (!check.written || !ANNOUNCED_WRITES.has(check.written)) throw new Error(`writeAckThenAnnounce: the check returned ${JSON.stringify(check.written)}`);
    return check.written as AckWrite;
  }
  if (!check.may_announce) return 'written';
  // Outside any transaction: a snapshot of its own, later than the check's.
  const { rows } = await client.query<{ alone: boolean; notified: boolean }>(`EXECUTE ${ACK_THEN_ANNOUNCE_ANNOUNCE}(${args})`);
  const row = rows[0];
  if (!row) throw new Error('writeAckThenAnnounce: the announcement returned no row');
  return row.alone ? 'written-alone' : row.notified ? 'written-notified' : 'written';
}

/**
 * Prepares {@link writeAckThenAnnounce}'s statements on `client` now (a no-op once done), so that
 * neither the PREPARE nor the planning falls on a publish's critical path: the listener calls it
 * while it resyncs.
 */
export async function prepareAckThenAnnounceStatements(client: pg.ClientBase): Promise<void> {
  if (!ackStatementsOf.has(client)) await prepareAckThenAnnounce(client);
}

/**
 * SQL-PREPAREs {@link writeAckThenAnnounce}'s statements on `client` — the check calling
 * {@link COMPLETION_FUNCTION} where the database has this release's and this login may execute it, else the
 * check and {@link ANNOUNCEMENT} apart — and plans the check and the announcement (`EXPLAIN
 * EXECUTE` builds and keeps a prepared statement's generic plan, on a session with
 * `plan_cache_mode = force_generic_plan` as the listener's, without running it): otherwise a
 * statement is planned at its first EXECUTE, and the announcement's plan (1–2.6 ms at 50
 * replicas, bench/fanout.ts with BENCH_PG_STATEMENTS=1) would be made on the critical path of the
 * first completion each replica announces. PREPARE is not undone by a failed query: if the first
 * succeeded and a later one failed, the first would exist and every later attempt fail with
 * "already exists", so on failure every name is DEALLOCATEd (each on its own: DEALLOCATE of a name
 * that does not exist is an error) and the next ack prepares afresh.
 */
async function prepareAckThenAnnounce(client: pg.ClientBase): Promise<'folded' | 'separate'> {
  const args = '(text, text, bigint, text)';
  try {
    // Only this release's body: a function another release's `migrate` left may announce differently.
    const { rows } = await client.query<{ folded: boolean }>(
      `SELECT CASE WHEN to_regprocedure($1) IS NULL THEN false
              ELSE (SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure($1)) = $2 AND has_function_privilege($1, 'EXECUTE') END AS folded`,
      [COMPLETION_FUNCTION, COMPLETION_FUNCTION_BODY],
    );
    const mode = rows[0]?.folded ? 'folded' : 'separate';
    const notDone = `NOT ${SOME_NOT_DONE('$2', '$3')}`;
    await client.query(
      `PREPARE ${ACK_THEN_ANNOUNCE_ACK} ${args} AS ${ACK_UPSERT.replace(/\s+RETURNING[^]*$/, '')};` +
        (mode === 'folded'
          ? `PREPARE ${ACK_THEN_ANNOUNCE_CHECK} ${args} AS
             SELECT CASE WHEN ${notDone} THEN realm_operator.announce_completion($1, $2, $3, $4) ELSE 'written' END AS written;
             EXPLAIN EXECUTE ${ACK_THEN_ANNOUNCE_CHECK}('', '', 1, '')`
          : `PREPARE ${ACK_THEN_ANNOUNCE_CHECK} ${args} AS SELECT ${notDone} AS may_announce;
             PREPARE ${ACK_THEN_ANNOUNCE_ANNOUNCE} ${args} AS ${ANNOUNCEMENT()};
             EXPLAIN EXECUTE ${ACK_THEN_ANNOUNCE_CHECK}('', '', 1, '');
             EXPLAIN EXECUTE ${ACK_THEN_ANNOUNCE_ANNOUNCE}('', '', 1, '')`),
    );
    // The function's own statements are planned at its first call: call it now, in a transaction
    // rolled back (what it may claim or NOTIFY is undone; the plans stay with the session).
    if (mode === 'folded') await client.query(`BEGIN; SELECT realm_operator.announce_completion('', '', 1, 'realm_operator_warm_up'); ROLLBACK`);
    ackStatementsOf.set(client, mode);
    return mode;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    for (const name of ACK_THEN_ANNOUNCE_STATEMENTS) await client.query(`DEALLOCATE ${name}`).catch(() => undefined);
    throw error;
  }
}

/**
 * {@link writeAck}, then {@link announceIfAllAcked} when needed: the ack as one call. False when
 * the replica is no longer registered (its row was pruned after its lease expired: the foreign
 * key refuses the row). Outside a transaction (the announcement must follow the ack's commit).
 */
export async function recordAck(db: Db, replicaId: string, realmURL: string, epoch: number): Promise<boolean> {
  const written = await writeAck(db, replicaId, realmURL, epoch);
  if (written === 'written') await announceIfAllAcked(db, replicaId, realmURL, epoch);
  return written !== 'unregistered';
}

const FOREIGN_KEY_VIOLATION = '23503';

/** Removes the replica on graceful shutdown so the operator stops waiting for it at once. */
export async function deregisterReplica(db: Db, replicaId: string): Promise<void> {
  await db.query(
    `WITH gone AS (DELETE FROM realm_operator.replicas WHERE replica_id = $1 RETURNING replica_id)
     SELECT pg_notify($2, '-') FROM gone`,
    [replicaId, REPLICA_ACKS_CHANNEL],
  );
}
