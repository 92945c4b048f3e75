/**
 * The data plane's pool (src/dataplane/db.ts createPool) against a real PostgreSQL: it keeps
 * WARM_CONNECTIONS open through a quiet spell longer than its idle timeout, so the next locked
 * transaction runs on a backend that already has its statements prepared — not on a new one that
 * prepares and warms up inside the realm lock.
 */
import pg from 'pg';
import { loadOperatorConfig, operatorPoolConfig } from '../../src/cli/operator-config.js';
import { createPool, WARM_CONNECTIONS } from '../../src/dataplane/db.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

let db: TestDatabase;
const pools: pg.Pool[] = [];
beforeAll(async () => {
  db = await createTestDatabase({ migrate: false });
});
afterAll(async () => {
  await Promise.all(pools.map((pool) => pool.end()));
  await db?.drop();
});

/** Checks out `n` connections at once, prepares a statement on each, returns their backend pids. */
async function useConnections(pool: pg.Pool, n: number): Promise<number[]> {
  const clients = await Promise.all(Array.from({ length: n }, () => pool.connect()));
  try {
    const pids: number[] = [];
    for (const client of clients) {
      pids.push((await client.query<{ pid: number }>({ name: 'warm_probe', text: 'SELECT pg_backend_pid() AS pid' })).rows[0]!.pid);
    }
    return pids;
  } finally {
    for (const client of clients) client.release();
  }
}

const quietSpell = (pool: pg.Pool) => new Promise((resolve) => setTimeout(resolve, 300)).then(() => pool);

test('a quiet spell longer than the idle timeout leaves WARM_CONNECTIONS open, with what was prepared on them', async () => {
  const pool = createPool({ connectionString: db.url, max: 8, idleTimeoutMillis: 50 }, () => undefined);
  pools.push(pool);
  const before = await useConnections(pool, 6);
  await quietSpell(pool);
  expect(pool.totalCount).toBe(WARM_CONNECTIONS);
  // The connection the next transaction gets is one of the earlier backends, its statement still prepared.
  const client = await pool.connect();
  try {
    expect(before).toContain((await client.query<{ pid: number }>({ name: 'warm_probe', text: 'SELECT pg_backend_pid() AS pid' })).rows[0]!.pid);
    const { rows } = await client.query<{ prepared: boolean }>(`SELECT count(*) > 0 AS prepared FROM pg_prepared_statements WHERE name = 'warm_probe'`);
    expect(rows[0]!.prepared).toBe(true);
  } finally {
    client.release();
  }
});

test('a pool that asks for none keeps none (min is the caller’s to override), and a small pool keeps at most its max', async () => {
  const none = createPool({ connectionString: db.url, max: 8, idleTimeoutMillis: 50, min: 0 }, () => undefined);
  const small = createPool({ connectionString: db.url, max: 2, idleTimeoutMillis: 50 }, () => undefined);
  pools.push(none, small);
  await Promise.all([useConnections(none, 6), useConnections(small, 2)]);
  await Promise.all([quietSpell(none), quietSpell(small)]);
  expect(none.totalCount).toBe(0);
  expect(small.totalCount).toBe(2);
});

test('the operator’s pool keeps what --database-warm-connections says', async () => {
  const pool = (warm: string) =>
    createPool({ ...operatorPoolConfig(loadOperatorConfig({ 'database-warm-connections': warm }, { DATABASE_URL: db.url, REALMS_ROOT: '/realms' })), idleTimeoutMillis: 50 }, () => undefined);
  const [two, none] = [pool('2'), pool('0')];
  pools.push(two, none);
  await Promise.all([useConnections(two, 6), useConnections(none, 6)]);
  await Promise.all([quietSpell(two), quietSpell(none)]);
  expect(two.totalCount).toBe(2);
  expect(none.totalCount).toBe(0);
});
