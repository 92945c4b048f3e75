/** Shared set-up for benchmarks: a real PostgreSQL (DATABASE_URL or embedded) and a migrated database. */
import { startEmbeddedPostgres, type PostgresServer } from '../test/support/embedded-postgres.js';
import { createTestDatabase, type TestDatabase } from '../test/support/database.js';
import { WARM_CONNECTIONS } from '../src/dataplane/db.js';
import pg from 'pg';

export async function benchDatabase(): Promise<{
  db: TestDatabase;
  /** Another, empty (not migrated) database on the same server, dropped by `close`. */
  another(): Promise<TestDatabase>;
  close(): Promise<void>;
}> {
  let server: PostgresServer | undefined;
  let admin = process.env.DATABASE_URL;
  if (!admin) {
    server = await startEmbeddedPostgres();
    admin = server.adminURL;
    if (STATEMENT_STATS) await loadStatementStats(server);
  }
  // The data plane's pool as the operator's (src/dataplane/db.ts createPool): warm connections kept through quiet spells.
  const db = await createTestDatabase({ admin, poolMin: WARM_CONNECTIONS });
  if (STATEMENT_STATS) await db.pool.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  if (REGISTRY_C_INDEX) await db.pool.query(`CREATE INDEX IF NOT EXISTS realm_registry_url_c ON realm_registry (url COLLATE "C")`);
  if (GENERIC_PLANS) await db.pool.query(`ALTER DATABASE ${db.name} SET plan_cache_mode = force_generic_plan`);
  const others: TestDatabase[] = [];
  return {
    db,
    async another() {
      const other = await createTestDatabase({ admin: admin!, migrate: false });
      others.push(other);
      if (GENERIC_PLANS) await other.pool.query(`ALTER DATABASE ${other.name} SET plan_cache_mode = force_generic_plan`);
      return other;
    },
    async close() {
      try {
        if (STATEMENT_STATS) await printStatementStats(db);
        await Promise.allSettled(others.map((other) => other.drop()));
        await db.drop();
      } finally {
        // Also when the database is already gone (Ctrl-C reaches PostgreSQL first).
        await server?.destroy();
      }
    },
  };
}

/**
 * BENCH_PG_STATEMENTS=1: the embedded server loads pg_stat_statements, and closing the bench
 * database prints, to stderr, where PostgreSQL spent its execution time in that database (the top
 * statements by total_exec_time, with calls and mean). For finding what to cut; the numbers the
 * benches report are taken without it (it adds a little work per statement).
 */
const STATEMENT_STATS = process.env.BENCH_PG_STATEMENTS === '1';

/**
 * BENCH_REGISTRY_C_INDEX=1: the bench database gets the optional index on `realm_registry (url
 * COLLATE "C")` that serves the overlap check's range (docs/publish-statements.md); without it,
 * that part of the check reads the whole registry.
 */
const REGISTRY_C_INDEX = process.env.BENCH_REGISTRY_C_INDEX === '1';

/**
 * BENCH_GENERIC_PLANS=1: every session of the bench database (the operator's too) plans each
 * prepared statement once, generically, instead of five custom plans first on every new pooled
 * connection; to measure what that planning costs PostgreSQL.
 */
const GENERIC_PLANS = process.env.BENCH_GENERIC_PLANS === '1';

/** shared_preload_libraries needs a restart: set it in postgresql.auto.conf, then restart the server. */
async function loadStatementStats(server: PostgresServer): Promise<void> {
  const client = new pg.Client({ connectionString: server.adminURL });
  await client.connect();
  try {
    await client.query(`ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'`);
    await client.query(`ALTER SYSTEM SET pg_stat_statements.track = 'all'`);
    await client.query(`ALTER SYSTEM SET pg_stat_statements.track_planning = on`);
  } finally {
    await client.end();
  }
  await server.stop();
  await server.start();
}

async function printStatementStats(db: TestDatabase): Promise<void> {
  const { rows } = await db.pool.query<{ calls: string; total_ms: number; mean_ms: number; max_ms: number; plan_ms: number; plans: string; query: string }>(
    `SELECT calls, total_exec_time AS total_ms, mean_exec_time AS mean_ms, max_exec_time AS max_ms, total_plan_time AS plan_ms, plans, query FROM pg_stat_statements
     WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY total_exec_time + total_plan_time DESC LIMIT 25`,
  );
  const total = (await db.pool.query<{ ms: number; plan_ms: number; calls: string }>(
    `SELECT sum(total_exec_time) AS ms, sum(total_plan_time) AS plan_ms, sum(calls) AS calls FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())`,
  )).rows[0]!;
  process.stderr.write(`pg_stat_statements: ${Number(total.ms).toFixed(0)} ms of execution and ${Number(total.plan_ms).toFixed(0)} ms of planning in ${total.calls} calls in this database; top statements (execution, planning):\n`);
  for (const row of rows) {
    process.stderr.write(
      `  ${row.total_ms.toFixed(0).padStart(7)} ms ${row.plan_ms.toFixed(0).padStart(6)} ms ${String(row.calls).padStart(7)} calls ${String(row.plans).padStart(6)} plans ${row.mean_ms.toFixed(3).padStart(8)} ms/call max ${row.max_ms.toFixed(2)}  ${row.query.replace(/\s+/g, ' ').slice(0, 200)}\n`,
    );
  }
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function fmt(ms: number): string {
  return ms < 10 ? ms.toFixed(2) : ms.toFixed(1);
}

/** Wall-clock milliseconds with sub-millisecond precision, comparable across processes on one machine. */
export function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

/** The fan-out floors' channels (bench/fanout-child.ts raw mode): one per floor, so a round wakes only its fleet. */
export const RECEIVE_FLOOR_CHANNEL = 'bench_fanout_receive';
export const ACK_FLOOR_CHANNEL = 'bench_fanout_ack';
/** Receive, write the ack row and NOTIFY the publisher back on {@link TOLD_CHANNEL} in the same statement. */
export const TELL_FLOOR_CHANNEL = 'bench_fanout_tell';
export const TOLD_CHANNEL = 'bench_fanout_told';

export function median(values: number[]): number {
  return percentile(values, 50);
}
