/**
 * Lock hold time during publish for realms of 100, 1,000 and 10,000 files. Our publish stages
 * outside the advisory lock, so the hold time should stay flat; the copy time (what a Boxel-style
 * publish, which copies under the lock, would hold it for) is measured in the same run as the
 * baseline. Prints p50/max and ratios.
 *
 *   make bench-lock            (LOCK_SIZES=100,1000,10000 LOCK_ROUNDS=7 to change)
 */
import { pino } from 'pino';
import { publishRealm } from '../src/dataplane/publish.js';
import { createSourceRealm, makeRealmsRoot } from '../test/support/realms.js';
import { benchDatabase, fmt, percentile } from './support.js';

const sizes = (process.env.LOCK_SIZES ?? '100,1000,10000').split(',').map(Number);
const rounds = Number(process.env.LOCK_ROUNDS ?? 7);
const durable = process.env.LOCK_DURABLE !== 'false';

const { db, close } = await benchDatabase();
const realms = await makeRealmsRoot();
const plane = { pool: db.pool, layout: realms.layout, logger: pino({ level: 'silent' }), durable };
const rows: Array<{ size: number; held: number[]; stage: number[]; total: number[] }> = [];

for (const size of sizes) {
  const files: Record<string, string> = {};
  for (let i = 0; i < size; i++) files[`dir-${i % 20}/card-${i}.json`] = JSON.stringify({ i, body: 'x'.repeat(512) });
  const source = `http://bench.localhost/src-${size}/`;
  await createSourceRealm(db.pool, realms.layout, source, files);
  const row = { size, held: [] as number[], stage: [] as number[], total: [] as number[] };
  for (let round = 0; round < rounds + 1; round++) {
    const result = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: `http://bench.localhost/pub-${size}/` });
    if (round === 0) continue; // first publish creates the registry row; measure republishes
    row.held.push(result.timing.lockHeldMs);
    row.stage.push(result.timing.stageMs);
    row.total.push(result.timing.totalMs);
  }
  rows.push(row);
  process.stderr.write(`${size} files: done\n`);
}

const base = percentile(rows[0]!.held, 50);
process.stdout.write(`\nlock hold during publish (${rounds} republishes per size, durable=${durable}), ${new Date().toISOString()}\n`);
for (const row of rows) {
  const held = percentile(row.held, 50);
  const stage = percentile(row.stage, 50);
  process.stdout.write(
    [
      `${String(row.size).padStart(6)} files`,
      `lock held p50 ${fmt(held)} ms max ${fmt(Math.max(...row.held))} ms (${(held / base).toFixed(2)}x the ${rows[0]!.size}-file hold)`,
      `copy outside the lock p50 ${fmt(stage)} ms (a copy-under-lock publish would hold ${(stage / held).toFixed(0)}x longer)`,
      `publish total p50 ${fmt(percentile(row.total, 50))} ms`,
    ].join(' | ') + '\n',
  );
}
await realms.cleanup();
await close();
