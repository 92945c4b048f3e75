import pg from 'pg';
import { migrate, MIGRATIONS } from '../../src/dataplane/migrations.js';
import { assertSchema, findMissingSchema, SchemaError } from '../../src/dataplane/schema-check.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

describe('migrations and the start-up schema check (real PostgreSQL)', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase({ migrate: false });
  });
  afterAll(() => db.drop());

  test('an empty database is reported table by table, with the fix', async () => {
    const missing = await findMissingSchema(db.pool);
    expect(missing).toEqual(expect.arrayContaining(['table public.realm_registry', 'table realm_operator.replicas', 'sequence realm_operator.epoch_seq']));
    await expect(assertSchema(db.pool)).rejects.toThrow(/missing .*table public\.jobs.*Fix: run `realm-operator migrate`/);
  });

  test('migrate applies everything once, concurrently safe, and the check passes', async () => {
    const [a, b] = await Promise.all([migrate(db.pool), migrate(db.pool)]);
    expect([...a, ...b].sort()).toEqual(MIGRATIONS.map((m) => m.version));
    expect(await migrate(db.pool)).toEqual([]);
    await expect(assertSchema(db.pool)).resolves.toBeUndefined();
  });

  test('a missing column is named', async () => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      await client.query('ALTER TABLE jobs DROP COLUMN priority');
      const error = await assertSchema(db.pool).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SchemaError);
      expect((error as SchemaError).missing).toEqual(['column public.jobs.priority']);
    } finally {
      await client.query('ALTER TABLE jobs ADD COLUMN priority integer NOT NULL DEFAULT 0');
      await client.end();
    }
  });
});
