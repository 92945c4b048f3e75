/**
 * Child process for the incremental-staging crash test: republishes, and SIGKILLs itself while
 * staging, once the staging copy's `cards/` holds CRASH_AFTER_FILES entries (some linked from the
 * live version, some copied) — no `finally` or clean-up of ours runs, as in a real crash.
 *
 * env: DATABASE_URL, REALMS_ROOT, SOURCE_URL, PUBLISHED_URL, CRASH_AFTER_FILES
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { RealmsLayout } from '../../src/dataplane/layout.js';
import { publishRealm } from '../../src/dataplane/publish.js';

const env = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
};

const pool = new pg.Pool({ connectionString: env('DATABASE_URL'), application_name: 'crash-child' });
const crashAfter = Number(env('CRASH_AFTER_FILES'));
const layout = new RealmsLayout(env('REALMS_ROOT'));
const stagedCards = (): number => {
  const [stage] = readdirSync(layout.stagingRoot);
  try {
    return stage ? readdirSync(path.join(layout.stagingRoot, stage, 'cards')).length : 0;
  } catch {
    return 0;
  }
};
await publishRealm(
  {
    pool,
    layout,
    logger: pino({ level: 'silent' }),
    durable: true,
    racyMarginMs: 20,
    onStagingEntry: () => {
      if (stagedCards() >= crashAfter) process.kill(process.pid, 'SIGKILL');
    },
  },
  { sourceRealmURL: env('SOURCE_URL'), publishedRealmURL: env('PUBLISHED_URL') },
);
await pool.end();
process.stdout.write('completed without crashing\n');
