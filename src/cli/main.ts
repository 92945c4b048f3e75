#!/usr/bin/env node
/**
 * `realm-operator <command>`: operator, realm-server, migrate, check-schema, seed-sample. Each
 * command's summary and flags (with variables, descriptions and defaults) are in ./help.ts, which
 * `realm-operator [<command>] --help` prints.
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { pino } from 'pino';
import { z } from 'zod';
import { migrate } from '../dataplane/migrations.js';
import { findMissingSchema, SchemaError } from '../dataplane/schema-check.js';
import { ConfigError, databaseURLSchema, normalizeBooleanFlags, parseSettings } from './config.js';
import { runOperator } from './operator.js';
import { loadOperatorConfig, OPERATOR_SETTINGS, operatorFlagOptions } from './operator-config.js';
import { commandHelp, findCommand, generalHelp } from './help.js';
import { realmServerFlagOptions, REALM_SERVER_SETTINGS, runRealmServer } from './realm-server-command.js';
import { seedSampleRealm } from './seed-sample.js';

const warn = (notice: string) => process.stderr.write(`realm-operator: warning: ${notice}\n`);

async function main(argv: string[]): Promise<number> {
  const { values: parsed, positionals } = parseArgs({
    args: normalizeBooleanFlags(argv, [...Object.values(OPERATOR_SETTINGS), ...Object.values(REALM_SERVER_SETTINGS)]),
    allowPositionals: true,
    options: {
      ...operatorFlagOptions,
      ...realmServerFlagOptions,
      'source-url': { type: 'string' },
      owner: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const values = parsed as Record<string, string | boolean | undefined>;
  const str = (name: string) => (typeof values[name] === 'string' ? (values[name] as string) : undefined);
  const command = positionals[0];
  if (!command) {
    process.stdout.write(generalHelp());
    return values.help ? 0 : 2;
  }
  const known = findCommand(command);
  if (!known) {
    process.stderr.write(`unknown command ${JSON.stringify(command)}\n${generalHelp()}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(commandHelp(known));
    return 0;
  }
  if (command === 'realm-server') {
    await runRealmServer(values, process.env);
    return 0;
  }
  if (command === 'operator') {
    const config = loadOperatorConfig(values, process.env);
    const logger = pino({ level: config.logLevel });
    const shutdown = new AbortController();
    for (const name of ['SIGTERM', 'SIGINT'] as const) {
      process.once(name, () => {
        logger.info({ signal: name }, 'shutting down: draining in-flight reconciles');
        shutdown.abort();
      });
    }
    await runOperator(config, shutdown.signal, logger);
    return 0;
  }

  const settings = parseSettings(
    z.object({ databaseURL: databaseURLSchema }),
    { databaseURL: str('database-url') ?? process.env.DATABASE_URL },
    { databaseURL: OPERATOR_SETTINGS.databaseURL },
  );
  const pool = new pg.Pool({ connectionString: settings.databaseURL, max: 2 });
  try {
    switch (command) {
      case 'migrate': {
        const applied = await migrate(pool, { onNotice: warn });
        process.stdout.write(applied.length > 0 ? `applied migrations ${applied.join(', ')}\n` : 'schema is up to date\n');
        return 0;
      }
      case 'check-schema': {
        const missing = await findMissingSchema(pool);
        if (missing.length > 0) throw new SchemaError(missing);
        process.stdout.write('schema is complete\n');
        return 0;
      }
      case 'seed-sample': {
        const realmsRoot = str('realms-root') ?? process.env.REALMS_ROOT;
        if (!realmsRoot) throw new ConfigError(['--realms-root / REALMS_ROOT: is required']);
        const sourceURL = str('source-url') ?? 'http://localhost:4201/alice/blog/';
        const matrixServerName = str('matrix-server-name') ?? process.env.MATRIX_SERVER_NAME;
        const result = await seedSampleRealm(pool, { realmsRoot, sourceURL, owner: str('owner') ?? 'alice', ...(matrixServerName ? { matrixServerName } : {}), onNotice: warn });
        process.stdout.write(`registered source realm ${sourceURL} at ${result.directory}\n`);
        return 0;
      }
      default:
        process.stderr.write(`unknown command ${JSON.stringify(command)}\n${generalHelp()}`);
        return 2;
    }
  } finally {
    await pool.end();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: Error) => {
    const known = error instanceof ConfigError || error instanceof SchemaError || error.message.startsWith('--');
    process.stderr.write(`realm-operator: ${known ? error.message : error.stack}\n`);
    process.exit(1);
  },
);
