/**
 * Child process for the unreadable-file tests: drops to uid/gid 65534 ("nobody") when started as
 * root — root reads mode-000 files regardless, so only an unprivileged process sees EACCES — then
 * runs one publish and prints the result as JSON. Records any unhandledRejection and exits 70 if
 * there was one, so a staging promise left unawaited is visible even if the publish "succeeds".
 *
 * env: DATABASE_URL, REALMS_ROOT, SOURCE_URL, PUBLISHED_URL
 */
import pg from 'pg';
import { pino } from 'pino';
import { RealmsLayout } from '../../src/dataplane/layout.js';
import { publishRealm } from '../../src/dataplane/publish.js';

const unhandled: string[] = [];
process.on('unhandledRejection', (reason) => unhandled.push(String(reason)));

const env = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
};

const NOBODY = 65534;
if (process.getuid?.() === 0) {
  process.setgroups?.([]);
  process.setgid?.(NOBODY);
  process.setuid?.(NOBODY);
}

const pool = new pg.Pool({ connectionString: env('DATABASE_URL'), application_name: 'staging-child' });
const warnings: unknown[] = [];
const logger = pino({ level: 'warn' }, { write: (line: string) => warnings.push(JSON.parse(line)) });
let outcome: unknown;
try {
  const result = await publishRealm(
    { pool, layout: new RealmsLayout(env('REALMS_ROOT')), logger, durable: false },
    { sourceRealmURL: env('SOURCE_URL'), publishedRealmURL: env('PUBLISHED_URL') },
  );
  outcome = { ok: true, uid: process.getuid?.(), result, warnings };
} catch (error) {
  outcome = { ok: false, uid: process.getuid?.(), error: (error as Error).message, warnings };
}
await pool.end();
// Give a stray rejection a turn to surface before reporting.
await new Promise((resolve) => setTimeout(resolve, 50));
process.stdout.write(`${JSON.stringify({ ...(outcome as object), unhandled })}\n`);
process.exit(unhandled.length > 0 ? 70 : 0);
