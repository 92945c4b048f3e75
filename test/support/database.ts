/** Each integration suite gets its own migrated database on the run's PostgreSQL server. */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { migrate } from '../../src/dataplane/migrations.js';
import { withDatabase } from './embedded-postgres.js';

export interface TestDatabase {
  url: string;
  pool: pg.Pool;
  drop(): Promise<void>;
}

export function adminURL(): string {
  const url = process.env.REALM_OPERATOR_TEST_ADMIN_URL;
  if (!url) throw new Error('REALM_OPERATOR_TEST_ADMIN_URL is unset: run integration tests with `make test` or `make test-integration` (they start PostgreSQL), or set DATABASE_URL');
  return url;
}

export async function createTestDatabase(options: { migrate?: boolean; admin?: string } = {}): Promise<TestDatabase> {
  const admin = options.admin ?? adminURL();
  const name = `realm_test_${randomBytes(6).toString('hex')}`;
  const adminClient = new pg.Client({ connectionString: admin });
  await adminClient.connect();
  try {
    await adminClient.query(`CREATE DATABASE ${name}`);
  } finally {
    await adminClient.end();
  }
  const url = withDatabase(admin, name);
  const pool = new pg.Pool({ connectionString: url, max: 20 });
  pool.on('error', () => undefined); // idle clients killed by tests must not crash the run
  if (options.migrate ?? true) await migrate(pool);
  return {
    url,
    pool,
    async drop() {
      await pool.end();
      const client = new pg.Client({ connectionString: admin });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}
