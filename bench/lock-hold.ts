/**
 * Lock hold during publish for realms of 10, 1,000 and 10,000 files: our publish stages outside the
 * advisory lock, so the hold should stay flat in realm size. Each size is republished (one changed
 * file) three ways:
 *
 * - back to back;
 * - after a quiet spell longer than pg-pool's 10 s idle timeout, on the data plane's pool as the
 *   operator makes it (src/dataplane/db.ts: WARM_CONNECTIONS kept open);
 * - the same quiet spell on a pool that keeps none, as the operator's did before: the publish gets a
 *   new connection, whose backend prepares, plans and loads its catalog caches inside the lock.
 *
 * Printed: p50 and max of the hold and p50 of its first part, the round trip that takes the lock and
 * reads the checks' rows (the hold counts from sending it).
 *
 *   make bench-lock   (LOCK_SIZES=10,1000,10000 LOCK_ROUNDS=7 LOCK_QUIET_ROUNDS=3 LOCK_QUIET_MS=11000 LOCK_DURABLE=false)
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { pino } from 'pino';
import { publishRealm, type DataPlane } from '../src/dataplane/publish.js';
import { DEFAULT_RACY_MARGIN_MS } from '../src/dataplane/staging-manifest.js';
import { createSourceRealm, makeRealmsRoot } from '../test/support/realms.js';
import { benchDatabase, fmt, percentile } from './support.js';

const sizes = (process.env.LOCK_SIZES ?? '10,1000,10000').split(',').map(Number);
const rounds = Number(process.env.LOCK_ROUNDS ?? 7);
const quietRounds = Number(process.env.LOCK_QUIET_ROUNDS ?? 3);
const quietMs = Number(process.env.LOCK_QUIET_MS ?? 11_000);
const durable = process.env.LOCK_DURABLE !== 'false';
const WARM_UP = 3;
const run = promisify(execFile);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const { db, close } = await benchDatabase();
// pg-pool's defaults: idle connections closed after 10 s, none kept.
const coldPool = new pg.Pool({ connectionString: db.url, max: 20 });
const realms = await makeRealmsRoot();
const logger = pino({ level: 'silent' });
const planeOf = (pool: pg.Pool): DataPlane => ({ pool, layout: realms.layout, logger, durable });
const MODES = [
  { name: 'back to back', plane: planeOf(db.pool), pauseMs: 0, rounds },
  { name: `after ${quietMs / 1000} s quiet`, plane: planeOf(db.pool), pauseMs: quietMs, rounds: quietRounds },
  { name: `after ${quietMs / 1000} s quiet, no warm connections`, plane: planeOf(coldPool), pauseMs: quietMs, rounds: quietRounds },
];
const rows: Array<{ size: number; mode: string; held: number[]; lockRoundTrip: number[]; stage: number[] }> = [];

for (const size of sizes) {
  const files: Record<string, string> = { 'probe.json': '0' };
  for (let i = 0; i < size; i++) files[`dir-${i % 20}/card-${i}.json`] = JSON.stringify({ i, body: 'x'.repeat(512) });
  const source = `http://bench.localhost/src-${size}/`;
  const sourceDir = await createSourceRealm(db.pool, realms.layout, source, files);
  const published = `http://bench.localhost/pub-${size}/`;
  let round = 0;
  const publish = async (plane: DataPlane) => {
    await fs.writeFile(path.join(sourceDir, 'probe.json'), String(++round)); // one changed file
    await run('sync', ['-f', realms.root]); // nothing left dirty for the publish's own syncs
    return publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
  };
  await publish(MODES[0]!.plane); // creates the registry row; republishes are measured
  // Files younger than the racy margin are copied, not linked; a real realm was edited long before.
  await sleep(DEFAULT_RACY_MARGIN_MS + 200);
  for (const mode of MODES) {
    for (let i = 0; i < WARM_UP; i++) await publish(mode.plane); // the pool's connections prepared, the code optimized
    const row = { size, mode: mode.name, held: [] as number[], lockRoundTrip: [] as number[], stage: [] as number[] };
    for (let i = 0; i < mode.rounds; i++) {
      if (mode.pauseMs) await sleep(mode.pauseMs);
      const result = await publish(mode.plane);
      row.held.push(result.timing.lockHeldMs);
      row.lockRoundTrip.push(result.timing.lockWaitMs);
      row.stage.push(result.timing.stageMs);
    }
    rows.push(row);
  }
  process.stderr.write(`${size} files: done\n`);
}

const base = percentile(rows[0]!.held, 50);
process.stdout.write(`\nlock hold during publish (republishes with one changed file, durable=${durable}), ${new Date().toISOString()}\n`);
for (const row of rows) {
  const held = percentile(row.held, 50);
  process.stdout.write(
    [
      `${String(row.size).padStart(6)} files, ${row.mode.padEnd(38)} (${row.held.length})`,
      `lock held p50 ${fmt(held)} ms max ${fmt(Math.max(...row.held))} ms (${(held / base).toFixed(2)}x the ${sizes[0]}-file hold back to back)`,
      `lock round trip p50 ${fmt(percentile(row.lockRoundTrip, 50))} ms`,
      `staging p50 ${fmt(percentile(row.stage, 50))} ms`,
    ].join(' | ') + '\n',
  );
}
await coldPool.end();
await realms.cleanup();
await close();
