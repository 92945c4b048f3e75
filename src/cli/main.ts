#!/usr/bin/env node
/**
 * `realm-operator <command>`:
 *   migrate        apply the standalone migrations to DATABASE_URL
 *   check-schema   report any missing table or column, and how to fix it
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { z } from 'zod';
import { migrate } from '../dataplane/migrations.js';
import { findMissingSchema, SchemaError } from '../dataplane/schema-check.js';
import { ConfigError, databaseURLSchema, parseSettings } from './config.js';

const USAGE = `usage: realm-operator <command> [--database-url URL]

commands:
  migrate        apply the standalone migrations (Boxel tables if absent, realm_operator schema)
  check-schema   check that every table and column the operator needs exists

settings:
  --database-url / DATABASE_URL   PostgreSQL connection string (required)
`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { 'database-url': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  const command = positionals[0];
  if (values.help || !command) {
    process.stdout.write(USAGE);
    return command || values.help ? 0 : 2;
  }
  const settings = parseSettings(
    z.object({ databaseURL: databaseURLSchema }),
    { databaseURL: values['database-url'] ?? process.env.DATABASE_URL },
    { databaseURL: { flag: '--database-url', env: 'DATABASE_URL' } },
  );
  const pool = new pg.Pool({ connectionString: settings.databaseURL, max: 2 });
  try {
    switch (command) {
      case 'migrate': {
        const applied = await migrate(pool);
        process.stdout.write(applied.length > 0 ? `applied migrations ${applied.join(', ')}\n` : 'schema is up to date\n');
        return 0;
      }
      case 'check-schema': {
        const missing = await findMissingSchema(pool);
        if (missing.length > 0) throw new SchemaError(missing);
        process.stdout.write('schema is complete\n');
        return 0;
      }
      default:
        process.stderr.write(`unknown command ${JSON.stringify(command)}\n${USAGE}`);
        return 2;
    }
  } finally {
    await pool.end();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: Error) => {
    process.stderr.write(`realm-operator: ${error instanceof ConfigError || error instanceof SchemaError ? error.message : error.stack}\n`);
    process.exit(1);
  },
);
