/**
 * Database plumbing shared by the data plane: the advisory-locked transaction and NOTIFY.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { advisoryLockKey } from '../wire/lock-key.js';

/** Anything that can run a query: a pool, a pooled client or a single client. */
export interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/**
 * Connections a {@link createPool} pool keeps open however long they sit idle (pg-pool closes idle
 * ones after 10 s by default). A connection's backend keeps the statements prepared on it and its
 * catalog caches; a fresh one prepares, plans and loads them at first use — for the locked
 * transaction's statements, inside the realm lock. So a publish after a quiet spell of more than
 * 10 s held the lock for a new backend's warm-up: bench/boxel-comparison.ts's 10,000-file rounds
 * (the Boxel side's copies take ~11 s between ours) measured 14–16 ms against ~5 ms, the whole
 * difference in the lock round trip; with warm connections kept, 1.3–2.4 ms for that round trip
 * after an 11 s pause against 13–16 ms without. Four: a publish uses one at a time, and an idle
 * backend costs the server a few MB.
 */
export const WARM_CONNECTIONS = 4;

/**
 * A pool that survives the database going away. node-postgres emits `error` on a client whose
 * connection dies; the pool handles that only for idle clients, so a checked-out client that is
 * between queries (holding LISTEN, a session lock, or doing file work inside a transaction) would
 * crash the process. Every client gets a listener; its next query fails and the caller's error
 * path discards it. Unless `config.min` says otherwise, it keeps {@link WARM_CONNECTIONS} open.
 */
export function createPool(config: pg.PoolConfig, onError: (error: Error) => void): pg.Pool {
  const pool = new pg.Pool({ min: Math.min(WARM_CONNECTIONS, config.max ?? WARM_CONNECTIONS), ...config });
  pool.on('error', onError);
  pool.on('connect', (client) => client.on('error', onError));
  return pool;
}

const statementNames = new Map<string, string>();

/**
 * Runs `text` as a named prepared statement on a `pg` pool or client, else as a plain query:
 * PostgreSQL then parses and plans it once per connection, not at every call (for the statements
 * each publish sends, a share of the database's CPU). The name is derived from the text, so one
 * name never stands for two texts. `text` must not select `*`: a prepared statement whose result
 * columns change (a migration adding one) fails until its connection is replaced.
 */
export async function queryPrepared<R extends pg.QueryResultRow = pg.QueryResultRow>(db: Queryable, text: string, values: unknown[]): Promise<pg.QueryResult<R>> {
  if (!(db instanceof pg.Pool || db instanceof pg.Client)) return db.query<R>(text, values);
  let name = statementNames.get(text);
  if (name === undefined) {
    name = `realm_operator_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
    statementNames.set(text, name);
  }
  return db.query<R>({ name, text, values });
}

/** Runs `NOTIFY channel, payload`; delivered to listeners when the surrounding transaction commits. */
export async function notify(db: Queryable, channel: string, payload = ''): Promise<void> {
  await db.query('SELECT pg_notify($1, $2)', [channel, payload]);
}

export interface RealmLockOptions {
  /** Give up waiting for the lock after this long (PostgreSQL `lock_timeout`). Default: wait forever. */
  lockTimeoutMs?: number;
}

export interface RealmLockTiming {
  /** Time spent waiting for `pg_advisory_xact_lock`. */
  waitMs: number;
  /** Time from acquiring the lock to COMMIT/ROLLBACK finishing (the lock is released then). */
  heldMs: number;
}

/**
 * Runs `fn` in one transaction holding Boxel's per-realm advisory lock
 * (`pg_advisory_xact_lock(key::bigint)`): it commits if `fn` resolves and rolls back if it throws.
 * The lock is transaction-scoped, so it is released by COMMIT, ROLLBACK, or the connection
 * dying — a crashed holder never leaves a realm locked. Not re-entrant: do not nest for one realm.
 */
export async function withRealmLock<T>(
  pool: pg.Pool,
  realmURL: string,
  fn: (tx: pg.PoolClient) => Promise<T>,
  options: RealmLockOptions = {},
): Promise<T> {
  return (await withRealmLockTimed(pool, realmURL, fn, options)).result;
}

/** {@link withRealmLock}, also reporting how long the lock was waited for and held. */
export async function withRealmLockTimed<T>(
  pool: pg.Pool,
  realmURL: string,
  fn: (tx: pg.PoolClient) => Promise<T>,
  options: RealmLockOptions = {},
): Promise<{ result: T; timing: RealmLockTiming }> {
  return runLocked(pool, realmURL, [], (tx) => fn(tx), options);
}

/**
 * A locked transaction's first statement, sent in the round trip of BEGIN and the lock
 * ({@link withRealmLockAndFirst}). Its values are text or NULL: they travel as SQL literals.
 */
export interface LockedFirstStatement {
  text: string;
  values: ReadonlyArray<string | null>;
}

/**
 * {@link withRealmLockTimed} whose transaction starts with `first`, sent in the same round trip as
 * BEGIN and the lock (one simple-protocol query: `BEGIN; SELECT pg_advisory_xact_lock(…); EXECUTE
 * <first>(…)`; PostgreSQL runs them in order and the first error stops the rest, so `first` runs
 * only once the lock is held). `fn` gets its result. A round trip less per locked transaction; the
 * statement is SQL-prepared once per connection (a `PREPARE` in the
 * first such query on it: prepared statements outlive a rollback), so it is planned as often as
 * with {@link queryPrepared}. The timing counts that round trip as both waiting and held (the
 * lock's moment inside it is unknown).
 */
export async function withRealmLockAndFirst<T>(
  pool: pg.Pool,
  realmURL: string,
  first: LockedFirstStatement,
  fn: (tx: pg.PoolClient, first: pg.QueryResult<Record<string, unknown>>) => Promise<T>,
  options: RealmLockOptions = {},
): Promise<{ result: T; timing: RealmLockTiming }> {
  return runLocked(pool, realmURL, [first], (tx, results) => fn(tx, results[0]!), options);
}

/** The names of SQL-level prepared statements, by text (a name is never given to two texts). */
const sqlPreparedNames = new Map<string, string>();
/** The SQL-level prepared statements (`PREPARE`) made on each connection, by name. */
const sqlPrepared = new WeakMap<pg.ClientBase, Set<string>>();

/** A value as a SQL literal in a simple-protocol query (which has no parameters). */
function sqlLiteral(value: string | null): string {
  if (value === null) return 'NULL';
  // A NUL would end the Query message early; PostgreSQL refuses it in a parameter too.
  if (value.includes('\0')) throw new Error('a value sent with the realm lock contains a NUL character, which PostgreSQL text cannot hold');
  return pg.escapeLiteral(value);
}

async function runLocked<T>(
  pool: pg.Pool,
  realmURL: string,
  statements: readonly LockedFirstStatement[],
  fn: (tx: pg.PoolClient, results: pg.QueryResult<Record<string, unknown>>[]) => Promise<T>,
  options: RealmLockOptions,
): Promise<{ result: T; timing: RealmLockTiming }> {
  const client = await pool.connect();
  let discard: Error | undefined;
  try {
    // BEGIN, the timeout and the lock in one round trip (a simple query of several statements;
    // they run in order and the first error stops the rest). Both values are formed here from
    // numbers, never from input text, so they are written as literals.
    const key = advisoryLockKey(realmURL);
    if (!/^-?\d+$/.test(key)) throw new Error(`advisory lock key ${JSON.stringify(key)} is not an integer`);
    const timeout = options.lockTimeoutMs === undefined ? '' : `SELECT set_config('lock_timeout', '${Math.max(1, Math.round(options.lockTimeoutMs))}ms', true); `;
    const names = sqlPrepared.get(client) ?? new Set<string>();
    sqlPrepared.set(client, names);
    // Inside the transaction (so the query still starts with BEGIN); a PREPARE is not undone by a rollback.
    const preparing: string[] = [];
    let statementsSQL = '';
    for (const statement of statements) {
      let name = sqlPreparedNames.get(statement.text);
      if (name === undefined) {
        name = `realm_operator_sql_${createHash('sha256').update(statement.text).digest('hex').slice(0, 24)}`;
        sqlPreparedNames.set(statement.text, name);
      }
      if (!names.has(name) && !preparing.includes(name)) {
        preparing.push(name);
        statementsSQL += `; PREPARE ${name} AS ${statement.text}`;
      }
      statementsSQL += `; EXECUTE ${name}${statement.values.length === 0 ? '' : `(${statement.values.map(sqlLiteral).join(', ')})`}`;
    }
    const waitStart = performance.now();
    let results: pg.QueryResult<Record<string, unknown>> | pg.QueryResult<Record<string, unknown>>[];
    try {
      results = (await client.query(`BEGIN; ${timeout}SELECT pg_advisory_xact_lock(${key}::bigint)${statementsSQL}`)) as unknown as typeof results;
    } catch (error) {
      // Whether a PREPARE ran before the error is unknown: a connection that may hold one unrecorded is
      // not reused; nor one that lost a statement recorded as prepared (26000: a DISCARD ALL or
      // DEALLOCATE on it, e.g. by a pooler), which would otherwise fail every locked transaction on it.
      if (preparing.length > 0 || (error as { code?: unknown }).code === '26000') discard = error as Error;
      throw error;
    }
    for (const name of preparing) names.add(name);
    const answeredAt = performance.now();
    const lockedAt = statements.length > 0 ? waitStart : answeredAt;
    // The EXECUTEs' results, last in the query's (a PREPARE's result comes before its EXECUTE's).
    const executed = statements.length === 0 ? [] : (results as pg.QueryResult<Record<string, unknown>>[]).filter((r) => r.command !== 'PREPARE').slice(-statements.length);
    const result = await fn(client, executed);
    await client.query('COMMIT');
    return { result, timing: { waitMs: answeredAt - waitStart, heldMs: performance.now() - lockedAt } };
  } catch (error) {
    // A client whose ROLLBACK fails is in an unknown state: destroy it instead of reusing it.
    await client.query('ROLLBACK').catch((rollbackError: Error) => (discard = rollbackError));
    throw error;
  } finally {
    client.release(discard);
  }
}
