/**
 * Profiles incremental republishes of one realm (default 10,000 files, one file changed each
 * time) as the operator runs them: {@link checkPublishable} with the operator's default size limit
 * (`--max-realm-files` 100,000) on the rows the reconciler reads (the claimant's own publish: no
 * size pre-walk), then `publishRealm` given those checks with the clean-up deferred as the
 * reconciler does ("returned" is where it writes Ready; the clean-up follows), not durable by default
 * (bench-publish's PUBLISH_DURABLE=false). Prints, per round, where the time went — the checks,
 * staging, the locked section and each step after it (from `onStep`) — and writes a CPU profile
 * of the timed rounds only (node:inspector, not the set-up) as a .cpuprofile for Chrome DevTools
 * or speedscope. The profile is the main thread's: the link worker's synchronous calls
 * (staging/link-unchanged.ts) are not in it, and show as idle time while the main thread waits.
 *
 *   npx tsx bench/profile-republish.ts
 *     (PROFILE_FILES=10000 PROFILE_ROUNDS=5 PROFILE_OUT=/tmp/republish.cpuprofile PROFILE_DURABLE=false PROFILE_MAX_FILES=100000)
 */
import fs from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import path from 'node:path';
import { pino } from 'pino';
import { checkPublishable, publishRealm, type DataPlane, type PublishStep, type UnpublishStep } from '../src/dataplane/publish.js';
import { readPublishTargetRows } from '../src/dataplane/realm-state.js';
import { DEFAULT_RACY_MARGIN_MS } from '../src/dataplane/staging-manifest.js';
import { createSourceRealm, makeRealmsRoot } from '../test/support/realms.js';
import { benchDatabase, fmt, median } from './support.js';

const FILES = Number(process.env.PROFILE_FILES ?? 10_000);
const ROUNDS = Number(process.env.PROFILE_ROUNDS ?? 5);
const OUT = process.env.PROFILE_OUT ?? '/tmp/republish.cpuprofile';
const DURABLE = (process.env.PROFILE_DURABLE ?? 'false') === 'true';
const MAX_FILES = process.env.PROFILE_MAX_FILES === '' ? undefined : Number(process.env.PROFILE_MAX_FILES ?? 100_000);

const { db, close } = await benchDatabase();
const realms = await makeRealmsRoot();
try {
  let marks: Array<[string, number]> = [];
  const mark = (name: string): void => void marks.push([name, performance.now()]);
  const plane: DataPlane = {
    pool: db.pool,
    layout: realms.layout,
    logger: pino({ level: 'silent' }),
    durable: DURABLE,
    ...(MAX_FILES !== undefined && { limits: { maxFiles: MAX_FILES } }),
    onStep: (step: PublishStep | UnpublishStep) => mark(step),
  };
  const files: Record<string, string> = {};
  for (let i = 0; i < FILES; i++) files[`dir-${i % 20}/card-${i}.json`] = JSON.stringify({ i, body: 'x'.repeat(480) });
  const source = 'http://bench.localhost/profile-src/';
  const published = 'http://bench.localhost/profile-pub/';
  const sourceDir = await createSourceRealm(db.pool, realms.layout, source, files);
  // Older than the racy margin, so the next publishes may trust (and link) every file.
  await new Promise((resolve) => setTimeout(resolve, DEFAULT_RACY_MARGIN_MS + 200));
  const request = { sourceRealmURL: source, publishedRealmURL: published, claim: { claimant: 'bench/profile/uid' } };
  // Two untimed publishes: the second one leaves a superseded version to clean up, as every later one does.
  await publishRealm(plane, request);
  await publishRealm(plane, request);
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 200 });
  await session.post('Profiler.start');
  const phases = new Map<string, number[]>();
  const linkedCopied: string[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    await fs.writeFile(path.join(sourceDir, `dir-${round % 20}/card-${round}.json`), JSON.stringify({ round }));
    marks = [];
    mark('start');
    const rows = await readPublishTargetRows(db.pool, source, published, undefined, { epochRow: 'read' });
    const checked = await checkPublishable(plane, request, rows);
    mark('checked');
    const result = await publishRealm(plane, request, { checked, deferCleanUp: true });
    mark('returned');
    await result.cleanUp?.();
    mark('cleaned up');
    linkedCopied.push(`${result.linkedFiles}/${result.copiedFiles}`);
    const record = (name: string, ms: number) => phases.set(name, [...(phases.get(name) ?? []), ms]);
    for (let i = 1; i < marks.length; i++) record(`${marks[i - 1]![0]} → ${marks[i]![0]}`, marks[i]![1] - marks[i - 1]![1]);
    record('publishRealm: stageMs', result.timing.stageMs);
    record('publishRealm: lockHeldMs', result.timing.lockHeldMs);
    record('start → returned (Ready)', marks.find(([name]) => name === 'returned')![1] - marks[0]![1]);
    record('total', marks.at(-1)![1] - marks[0]![1]);
  }
  const { profile } = await session.post('Profiler.stop');
  await fs.writeFile(OUT, JSON.stringify(profile));
  session.disconnect();
  console.log(`${ROUNDS} incremental republishes of ${FILES} files (durable=${DURABLE}, maxFiles=${MAX_FILES ?? 'none'}), linked/copied ${linkedCopied.join(' ')}; median ms:`);
  for (const [name, values] of phases) console.log(`  ${name.padEnd(28)} ${fmt(median(values)).padStart(8)}   (${values.map((v) => Math.round(v)).join(' ')})`);
  console.log(`profile: ${OUT}`);
} finally {
  await close();
  await realms.cleanup();
}
