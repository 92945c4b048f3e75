/**
 * Child process for crash-injection tests: runs one publish or unpublish and SIGKILLs itself when
 * the named step completes, so no `finally`, ROLLBACK or clean-up of ours runs — as in a real crash.
 *
 * env: DATABASE_URL, REALMS_ROOT, OPERATION (publish|unpublish), SOURCE_URL, PUBLISHED_URL, CRASH_AT
 */
import pg from 'pg';
import { pino } from 'pino';
import { RealmsLayout } from '../../src/dataplane/layout.js';
import { publishRealm, unpublishRealm, type DataPlane } from '../../src/dataplane/publish.js';

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
if (env('OPERATION') === 'publish') {
  await publishRealm(plane, { sourceRealmURL: env('SOURCE_URL'), publishedRealmURL: env('PUBLISHED_URL') });
} else {
  await unpublishRealm(plane, env('PUBLISHED_URL'));
}
await pool.end();
process.stdout.write('completed without crashing\n');
