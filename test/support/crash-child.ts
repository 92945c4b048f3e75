/**
 * Child process for crash-injection tests: runs one publish, unpublish or rollback and SIGKILLs itself
 * when the named step completes, so no `finally`, ROLLBACK or clean-up of ours runs — as in a real crash.
 *
 * env: DATABASE_URL, REALMS_ROOT, OPERATION (publish|unpublish|rollback), SOURCE_URL (publish),
 * PUBLISHED_URL, VERSION (rollback), CRASH_AT
 */
import pg from 'pg';
import { pino } from 'pino';
import { RealmsLayout } from '../../src/dataplane/layout.js';
import { publishRealm, rollbackRealm, unpublishRealm, type DataPlane } from '../../src/dataplane/publish.js';

const env = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
};

const pool = new pg.Pool({ connectionString: env('DATABASE_URL'), application_name: 'crash-child' });
const crashAt = env('CRASH_AT');
const plane: DataPlane = {
  pool,
  layout: new RealmsLayout(env('REALMS_ROOT')),
  logger: pino({ level: 'silent' }),
  durable: false,
  onStep: (step) => {
    if (step === crashAt) process.kill(process.pid, 'SIGKILL');
  },
};
const operation = env('OPERATION');
if (operation === 'publish') {
  await publishRealm(plane, { sourceRealmURL: env('SOURCE_URL'), publishedRealmURL: env('PUBLISHED_URL') });
} else if (operation === 'rollback') {
  await rollbackRealm(plane, { publishedRealmURL: env('PUBLISHED_URL'), version: env('VERSION'), history: { limit: 3 } });
} else {
  await unpublishRealm(plane, env('PUBLISHED_URL'));
}
await pool.end();
process.stdout.write('completed without crashing\n');
