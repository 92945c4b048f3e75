/** Each integration suite gets its own migrated database on the run's PostgreSQL server. */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { migrate, REPLICA_ROLE } from '../../src/dataplane/migrations.js';
import { withDatabase } from './embedded-postgres.js';

export interface TestDatabase {
  /** The database's name (unique on its server). */
  name: string;
  url: string;
  pool: pg.Pool;
  drop(): Promise<void>;
}

export function adminURL(): string {
  const url = process.env.REALM_OPERATOR_TEST_ADMIN_URL;
  if (!url) throw new Error('REALM_OPERATOR_TEST_ADMIN_URL is unset: run integration tests with `make test` or `make test-integration` (they start PostgreSQL), or set DATABASE_URL');
  return url;
}

/** `poolMin`: connections the pool keeps however long they sit idle (the operator's pool keeps WARM_CONNECTIONS; tests default to none). */
export async function createTestDatabase(options: { migrate?: boolean; admin?: string; poolMin?: number } = {}): Promise<TestDatabase> {
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
  const pool = new pg.Pool({ connectionString: url, max: 20, min: options.poolMin ?? 0 });
  pool.on('error', () => undefined); // idle clients killed by tests must not crash the run
  if (options.migrate ?? true) await migrate(pool);
  return {
    name,
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

/** A realm server's own login: a member of {@link REPLICA_ROLE}, as deploy/ runs realm servers. */
export interface ReplicaLogin {
  name: string;
  /** `databaseURL` with this login's user name and password. */
  url: string;
  /** Drops the login (through the pool that made it); its sessions must have ended. */
  drop(): Promise<void>;
}

const ROLE_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Makes `name` a LOGIN role in {@link REPLICA_ROLE} (the group `migrate` creates, which only has
 * what realm servers need) with a fresh password, and returns a URL for `databaseURL`'s database
 * as that login. Idempotent: an existing role of that name gets the new password and membership.
 * `admin` must be allowed to create roles (CREATEROLE or superuser).
 */
export async function createReplicaLogin(admin: pg.Pool, databaseURL: string, name: string): Promise<ReplicaLogin> {
  if (!ROLE_NAME.test(name)) throw new Error(`replica login name ${JSON.stringify(name)} is not a plain PostgreSQL identifier: use 1-63 lowercase letters, digits and underscores, not starting with a digit`);
  const password = randomBytes(12).toString('hex'); // hex: safe inside the quoted literal
  let created = false;
  if (((await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [name])).rowCount ?? 0) === 0) {
    try {
      await admin.query(`CREATE ROLE ${name} LOGIN PASSWORD '${password}' IN ROLE ${REPLICA_ROLE}`);
      created = true;
    } catch (error) {
      // Roles are cluster-wide: another caller may have just created it; then it is updated below.
      if (!['42710', '23505'].includes((error as { code?: string }).code ?? '')) throw error;
    }
  }
  if (!created) {
    await admin.query(`ALTER ROLE ${name} WITH LOGIN PASSWORD '${password}'`);
    await admin.query(`GRANT ${REPLICA_ROLE} TO ${name}`); // only a notice if it already is a member
  }
  const url = new URL(databaseURL);
  url.username = name;
  url.password = password;
  return { name, url: url.toString(), drop: async () => void (await admin.query(`DROP ROLE IF EXISTS ${name}`)) };
}
