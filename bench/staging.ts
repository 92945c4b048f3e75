/**
 * Staging speed (issue 11, goals on republish and first publish), every comparison in one run on
 * the same trees, rounds interleaved so machine load falls on all of them alike:
 *
 * - `cp -a` + `sync -f` of the source tree (syncfs(2) of the volume, the same call our staging
 *   makes; a global `sync` would also flush whatever the other processes on the machine wrote);
 * - a first publish (a new published URL: every file copied, one syncfs);
 * - a full-copy republish (`incremental: false`: every file copied again — what a republish cost
 *   before staging was incremental, minus the per-file fsync);
 * - an incremental republish after one file changed (unchanged files hard-linked from the live version);
 * - its floors: the three calls it makes per unchanged file (lstat, link, lstat), bare, then one
 *   syncfs — once through fs.promises (libuv's thread pool, 64 at a time), once as synchronous calls
 *   in a worker thread (what staging does since, staging/link-unchanged.ts).
 *
 * Publishes run `publishRealm` against a real PostgreSQL, durable (as the operator runs). Staging
 * time is from the start of the publish to the staged copy being durable (the checks before it
 * included); "to commit" adds the locked swap and COMMIT. Medians and p99 over the rounds.
 *
 *   make bench-staging      (STAGING_SIZES=10,1000,10000 STAGING_ROUNDS=15,9,5 to change)
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import { pino } from 'pino';
import { publishRealm, unpublishRealm, type DataPlane, type PublishResult } from '../src/dataplane/publish.js';
import { DEFAULT_RACY_MARGIN_MS } from '../src/dataplane/staging-manifest.js';
import { createSourceRealm, makeRealmsRoot } from '../test/support/realms.js';
import { printGoals, printTable, writeResults, type BenchGoal, type BenchTable } from './lib/results.js';
import { benchDatabase, fmt, percentile } from './support.js';

const run = promisify(execFile);
const startedAt = new Date();
const sizes = (process.env.STAGING_SIZES ?? '10,1000,10000').split(',').map(Number);
const roundsFor = (process.env.STAGING_ROUNDS ?? '15,9,5').split(',').map(Number);

type Mode = 'cp -a + sync' | 'first publish' | 'full-copy republish' | 'incremental republish (1 changed)' | 'hard-link floor + sync' | 'hard-link floor, sync calls in a worker + sync';
const MODES: Mode[] = ['cp -a + sync', 'first publish', 'full-copy republish', 'incremental republish (1 changed)', 'hard-link floor + sync', 'hard-link floor, sync calls in a worker + sync'];

interface Sample {
  stageMs: number;
  /** Of which making the copy durable (syncfs). */
  syncMs: number;
  commitMs: number;
  totalMs: number;
  linked: number;
  copied: number;
}

const { db, close } = await benchDatabase();
const realms = await makeRealmsRoot();
const plane: DataPlane = { pool: db.pool, layout: realms.layout, logger: pino({ level: 'silent' }), durable: true };

/**
 * Flushes what earlier steps left dirty (a removed version's unlinks, the last copy's writeback), so
 * each timed step pays for its own writes only; not timed.
 */
async function settle(): Promise<void> {
  await run('sync', ['-f', realms.root]);
}

/** A publish, timed to the staged copy being durable, to COMMIT, and to the end (clean-up included). */
async function timedPublish(extra: Partial<DataPlane>, sourceRealmURL: string, publishedRealmURL: string): Promise<Sample> {
  await settle();
  const started = performance.now();
  let commitMs = NaN;
  const result: PublishResult = await publishRealm(
    {
      ...plane,
      ...extra,
      onStep: (step) => {
        if (step === 'committed') commitMs = performance.now() - started;
      },
    },
    { sourceRealmURL, publishedRealmURL },
  );
  return { stageMs: result.timing.stageMs, syncMs: result.timing.stageSyncMs, commitMs, totalMs: performance.now() - started, linked: result.linkedFiles, copied: result.copiedFiles };
}

async function copyAndSync(sourceDir: string, dest: string): Promise<Sample> {
  await settle();
  const started = performance.now();
  await run('cp', ['-a', sourceDir, dest]);
  const copied = performance.now();
  await run('sync', ['-f', dest]);
  const ms = performance.now() - started;
  await fs.rm(dest, { recursive: true, force: true });
  return { stageMs: ms, syncMs: ms - (copied - started), commitMs: ms, totalMs: ms, linked: 0, copied: NaN };
}

/**
 * The least an incremental republish can do per unchanged file, with no walk, manifest, digest or
 * database: lstat the source, link the previous version's file, lstat the link (the check that it is
 * the inode staged), 64 at a time as staging does; then one syncfs.
 */
async function hardLinkFloor(sourceDir: string, relPaths: string[], dest: string): Promise<Sample> {
  await settle();
  const dirs = [...new Set(relPaths.map((rel) => path.dirname(rel)))];
  await Promise.all(dirs.map((dir) => fs.mkdir(path.join(dest, dir), { recursive: true })));
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next < relPaths.length) {
        const rel = relPaths[next++]!;
        await fs.lstat(path.join(sourceDir, rel), { bigint: true });
        await fs.link(path.join(sourceDir, rel), path.join(dest, rel));
        await fs.lstat(path.join(dest, rel), { bigint: true });
      }
    }),
  );
  const linked = performance.now();
  await run('sync', ['-f', dest]);
  const ms = performance.now() - started;
  await fs.rm(dest, { recursive: true, force: true });
  return { stageMs: ms, syncMs: ms - (linked - started), commitMs: ms, totalMs: ms, linked: relPaths.length, copied: 0 };
}

/** The same three calls per file as {@link hardLinkFloor}, synchronous, in a worker thread (its start-up not timed). */
async function hardLinkFloorInWorker(sourceDir: string, relPaths: string[], dest: string): Promise<Sample> {
  await settle();
  const dirs = [...new Set(relPaths.map((rel) => path.dirname(rel)))];
  await Promise.all(dirs.map((dir) => fs.mkdir(path.join(dest, dir), { recursive: true })));
  const worker = new Worker(
    `const fs = require('node:fs');
     const { parentPort } = require('node:worker_threads');
     parentPort.on('message', ({ sourceDir, dest, relPaths }) => {
       for (const rel of relPaths) {
         fs.lstatSync(sourceDir + '/' + rel, { bigint: true });
         fs.linkSync(sourceDir + '/' + rel, dest + '/' + rel);
         fs.lstatSync(dest + '/' + rel, { bigint: true });
       }
       parentPort.postMessage('done');
     });`,
    { eval: true },
  );
  try {
    await new Promise((resolve) => worker.once('online', resolve));
    const started = performance.now();
    await new Promise((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
      worker.postMessage({ sourceDir, dest, relPaths });
    });
    const linked = performance.now();
    await run('sync', ['-f', dest]);
    const ms = performance.now() - started;
    return { stageMs: ms, syncMs: ms - (linked - started), commitMs: ms, totalMs: ms, linked: relPaths.length, copied: 0 };
  } finally {
    await worker.terminate();
    await fs.rm(dest, { recursive: true, force: true });
  }
}

const samples = new Map<number, Map<Mode, Sample[]>>();
for (const [index, size] of sizes.entries()) {
  const rounds = roundsFor[index] ?? roundsFor[roundsFor.length - 1]!;
  const files: Record<string, string> = {};
  for (let i = 0; i < size; i++) files[`dir-${i % 20}/card-${i}.json`] = JSON.stringify({ i, body: 'x'.repeat(480) });
  const source = `http://bench.localhost/staging-src-${size}/`;
  const sourceDir = await createSourceRealm(db.pool, realms.layout, source, files);
  // Files written less than the racy margin before a copy are not trusted to be unchanged later;
  // a real realm was edited long before it is published.
  await new Promise((resolve) => setTimeout(resolve, DEFAULT_RACY_MARGIN_MS + 200));
  const republished = `http://bench.localhost/staging-pub-${size}/`;
  await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: republished });
  const bySize = new Map<Mode, Sample[]>(MODES.map((m) => [m, []]));
  samples.set(size, bySize);
  for (let round = 0; round < rounds; round++) {
    bySize.get('cp -a + sync')!.push(await copyAndSync(sourceDir, path.join(realms.root, `cp-${size}-${round}`)));
    const fresh = `http://bench.localhost/staging-first-${size}-${round}/`;
    bySize.get('first publish')!.push(await timedPublish({}, source, fresh));
    bySize.get('full-copy republish')!.push(await timedPublish({ incremental: false }, source, republished));
    // Republish once without timing so the live version's manifest is the incremental one's.
    await timedPublish({}, source, republished);
    const changed = round % size;
    await fs.writeFile(path.join(sourceDir, `dir-${changed % 20}/card-${changed}.json`), JSON.stringify({ round, body: 'changed' }));
    bySize.get('incremental republish (1 changed)')!.push(await timedPublish({}, source, republished));
    bySize.get('hard-link floor + sync')!.push(await hardLinkFloor(sourceDir, Object.keys(files), path.join(realms.root, `links-${size}-${round}`)));
    bySize
      .get('hard-link floor, sync calls in a worker + sync')!
      .push(await hardLinkFloorInWorker(sourceDir, Object.keys(files), path.join(realms.root, `worker-links-${size}-${round}`)));
    await unpublishRealm(plane, fresh);
  }
  process.stderr.write(`${size} files: ${rounds} rounds done\n`);
}

const med = (values: number[]) => percentile(values, 50);
const p99 = (values: number[]) => percentile(values, 99);
const tables: BenchTable[] = [];
const goals: BenchGoal[] = [];
const raw: Record<string, unknown> = {};
for (const [size, bySize] of samples) {
  const cp = med(bySize.get('cp -a + sync')!.map((s) => s.stageMs));
  const full = med(bySize.get('full-copy republish')!.map((s) => s.stageMs));
  const fullCommit = med(bySize.get('full-copy republish')!.map((s) => s.commitMs));
  tables.push({
    title: `Staging, ${size.toLocaleString('en-US')} files (${bySize.get('cp -a + sync')!.length} rounds, durable)`,
    columns: ['mode', 'stage p50 ms', 'stage p99 ms', 'of which syncfs p50 ms', 'to commit p50 ms', 'total p50 ms', 'files linked/copied', '÷ cp -a + sync', '÷ full-copy republish'],
    rows: MODES.map((mode) => {
      const list = bySize.get(mode)!;
      const stage = med(list.map((s) => s.stageMs));
      const last = list[list.length - 1]!;
      return [
        mode,
        fmt(stage),
        fmt(p99(list.map((s) => s.stageMs))),
        fmt(med(list.map((s) => s.syncMs))),
        fmt(med(list.map((s) => s.commitMs))),
        fmt(med(list.map((s) => s.totalMs))),
        mode === 'cp -a + sync' ? '-' : `${last.linked}/${last.copied}`,
        (stage / cp).toFixed(2),
        mode === 'cp -a + sync' ? '-' : (stage / full).toFixed(3),
      ];
    }),
    note:
      'stage: publish start → staged copy durable (one syncfs); to commit: + locked swap and COMMIT; total: + clean-up of superseded versions. ' +
      `cp -a + sync: cp -a then sync -f (syncfs) of the copy. Full-copy republish to commit p50 ${fmt(fullCommit)} ms.`,
  });
  raw[String(size)] = Object.fromEntries([...bySize].map(([mode, list]) => [mode, list]));
}

const largest = Math.max(...sizes);
const big = samples.get(largest)!;
const bigStage = (mode: Mode) => med(big.get(mode)!.map((s) => s.stageMs));
// Against both full copies of the same realm (a republish with incremental staging off, and a first
// publish), the larger ratio counting: they do the same work, and their difference is noise.
const incrementalRatio = Math.max(
  bigStage('incremental republish (1 changed)') / bigStage('full-copy republish'),
  bigStage('incremental republish (1 changed)') / bigStage('first publish'),
);
const firstRatio = bigStage('first publish') / bigStage('cp -a + sync');
goals.push(
  {
    goal: `Republish of a ${largest.toLocaleString('en-US')}-file realm with one changed file vs a full-copy publish of it (staging, p50; the worse of the two full copies)`,
    target: '≤ 0.1×',
    measured:
      `${incrementalRatio.toFixed(3)}× (${fmt(bigStage('incremental republish (1 changed)'))} ms vs ${fmt(bigStage('full-copy republish'))} ms for a full-copy republish, ` +
      `${fmt(bigStage('first publish'))} ms for a first publish)`,
    met: incrementalRatio <= 0.1,
    ...(incrementalRatio > 0.1 && {
      why:
        `an incremental republish lstats, hard-links and re-lstats every unchanged file (the last to check the link is the inode staged), synchronously in a worker thread, where a full copy makes about ten calls per file; ` +
        `those three calls alone, with nothing else (no walk, manifest, digest or database; "hard-link floor, sync calls in a worker + sync" in the table), took ${fmt(bigStage('hard-link floor, sync calls in a worker + sync'))} ms in this run: ` +
        `${(bigStage('hard-link floor, sync calls in a worker + sync') / bigStage('full-copy republish')).toFixed(3)}× the full-copy republish, so ours is ${(bigStage('incremental republish (1 changed)') / bigStage('hard-link floor, sync calls in a worker + sync')).toFixed(2)}× its floor. ` +
        'The rest (bench/profile-republish.ts): reading the previous manifest, the digest lines, the publish\'s database round trips',
    }),
  },
  {
    goal: `First publish of a ${largest.toLocaleString('en-US')}-file realm vs cp -a + sync of the same tree (p50)`,
    target: '≤ 1.5×',
    measured: `${firstRatio.toFixed(2)}× (${fmt(bigStage('first publish'))} ms vs ${fmt(bigStage('cp -a + sync'))} ms)`,
    met: firstRatio <= 1.5,
    ...(firstRatio > 1.5 && {
      why: 'each file is a chain of ~10 asynchronous calls through libuv (lstat, open O_NOFOLLOW, fstat, open, read, write, chmod, fstat ×2, close ×2) plus hashing, where cp makes them synchronously in C',
    }),
  },
);

for (const table of tables) printTable(table);
printGoals(goals);
const file = await writeResults({
  bench: 'staging',
  command: 'make bench-staging',
  startedAt: startedAt.toISOString(),
  durationSeconds: Math.round((Date.now() - startedAt.getTime()) / 1000),
  tables,
  series: [
    {
      title: 'Staging time by realm size (p50)',
      xLabel: 'files',
      yLabel: 'ms',
      lines: MODES.map((mode) => ({ name: mode, points: [...samples].map(([size, bySize]) => [size, med(bySize.get(mode)!.map((s) => s.stageMs))] as [number, number]) })),
    },
  ],
  goals,
  raw,
});
console.log(`\nresults: ${file}`);
await realms.cleanup();
await close();
