/**
 * Lock hold time during publish for realms of 10, 1,000 and 10,000 files. Our publish stages
 * outside the advisory lock, so the hold time should stay flat; the copy time (what a Boxel-style
 * publish, which copies under the lock, would hold it for) is measured in the same run as the
 * baseline.
 *
 * Each size is republished twice over: alone, and with a copy of the same tree made and the
 * previous copy deleted between rounds (`cp -a` + `rm -r`, no Boxel code) — what the Boxel
 * sequence does to the file system between our rounds in bench/boxel-comparison.ts. Printed: p50
 * and max of the hold, and p50 of its first part, the round trip that takes the lock and reads the
 * checks' rows (the hold counts from sending it).
 *
 *   make bench-lock            (LOCK_SIZES=10,1000,10000 LOCK_ROUNDS=7 LOCK_DURABLE=false to change)
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { publishRealm, type PublishStep } from '../src/dataplane/publish.js';
import { DEFAULT_RACY_MARGIN_MS } from '../src/dataplane/staging-manifest.js';
import { createSourceRealm, makeRealmsRoot } from '../test/support/realms.js';
import { benchDatabase, fmt, percentile } from './support.js';

const sizes = (process.env.LOCK_SIZES ?? '10,1000,10000').split(',').map(Number);
const rounds = Number(process.env.LOCK_ROUNDS ?? 7);
const durable = process.env.LOCK_DURABLE !== 'false';
const run = promisify(execFile);

const { db, close } = await benchDatabase();
const realms = await makeRealmsRoot();
let marks = new Map<PublishStep, number>();
const plane = { pool: db.pool, layout: realms.layout, logger: pino({ level: 'silent' }), durable, onStep: (step: string) => void marks.set(step as PublishStep, performance.now()) };
type Mode = 'alone' | 'churn';
interface Row {
  size: number;
  mode: Mode;
  held: number[];
  lockRoundTrip: number[];
  stage: number[];
  total: number[];
}
const rows: Row[] = [];

/** `cp -a` of the source to a fresh scratch copy, `rm -r` of the previous one: another writer's churn on the same file system. */
async function churn(sourceDir: string): Promise<void> {
  const next = path.join(realms.root, 'churn-next');
  const previous = path.join(realms.root, 'churn-previous');
  await run('cp', ['-a', sourceDir, next]);
  await fs.rm(previous, { recursive: true, force: true });
  await fs.rename(next, previous);
}

for (const size of sizes) {
  const files: Record<string, string> = { 'probe.json': '0' };
  for (let i = 0; i < size; i++) files[`dir-${i % 20}/card-${i}.json`] = JSON.stringify({ i, body: 'x'.repeat(512) });
  const source = `http://bench.localhost/src-${size}/`;
  const sourceDir = await createSourceRealm(db.pool, realms.layout, source, files);
  const published = `http://bench.localhost/pub-${size}/`;
  await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published }); // creates the registry row; republishes are measured
  // Files younger than the racy margin are copied, not linked; a real realm was edited long before.
  await new Promise((resolve) => setTimeout(resolve, DEFAULT_RACY_MARGIN_MS + 200));
  let round = 0;
  for (const mode of ['alone', 'churn'] as const) {
    const row: Row = { size, mode, held: [], lockRoundTrip: [], stage: [], total: [] };
    for (let i = 0; i < rounds; i++) {
      if (mode === 'churn') await churn(sourceDir);
      await fs.writeFile(path.join(sourceDir, 'probe.json'), String(++round)); // one changed file
      await run('sync', ['-f', realms.root]); // nothing left dirty for the publish's own syncs
      marks = new Map();
      const result = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
      row.held.push(result.timing.lockHeldMs);
      row.lockRoundTrip.push(marks.get('locked')! - marks.get('reserved')!);
      row.stage.push(result.timing.stageMs);
      row.total.push(result.timing.totalMs);
    }
    rows.push(row);
  }
  process.stderr.write(`${size} files: done\n`);
}

const base = percentile(rows.find((r) => r.mode === 'alone')!.held, 50);
process.stdout.write(`\nlock hold during publish (${rounds} republishes with one changed file per size and mode, durable=${durable}), ${new Date().toISOString()}\n`);
for (const row of rows) {
  const held = percentile(row.held, 50);
  process.stdout.write(
    [
      `${String(row.size).padStart(6)} files ${row.mode.padEnd(5)}`,
      `lock held p50 ${fmt(held)} ms max ${fmt(Math.max(...row.held))} ms (${(held / base).toFixed(2)}x the ${sizes[0]}-file hold alone)`,
      `lock round trip p50 ${fmt(percentile(row.lockRoundTrip, 50))} ms`,
      `staging p50 ${fmt(percentile(row.stage, 50))} ms`,
      `publish total p50 ${fmt(percentile(row.total, 50))} ms`,
    ].join(' | ') + '\n',
  );
}
await realms.cleanup();
await close();
