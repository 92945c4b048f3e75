/**
 * Child process for rollback crash tests: runs one rollback and SIGKILLs itself when the named
 * step completes, so no ROLLBACK or clean-up of ours runs — as in a real crash.
 *
 * env: DATABASE_URL, REALMS_ROOT, PUBLISHED_URL, VERSION, CRASH_AT
 */
import pg from 'pg';
import { pino } from 'pino';
import { RealmsLayout } from '../../src/dataplane/layout.js';
import { rollbackRealm, type DataPlane } from '../../src/dataplane/publish.js';

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
await rollbackRealm(plane, { publishedRealmURL: env('PUBLISHED_URL'), version: env('VERSION'), history: { limit: 3 } });
await pool.end();
process.stdout.write('completed without crashing\n');
