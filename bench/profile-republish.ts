/**
 * Profiles incremental republishes of one realm (default 10,000 files, one file changed each
 * time): a CPU profile of `publishRealm` alone, taken with node:inspector around the timed
 * publishes only (not the set-up), written as a .cpuprofile for Chrome DevTools or speedscope.
 * Where bench-staging's incremental republish goes beyond its hard-link floor. The profile is the
 * main thread's: the link worker's synchronous calls (staging/link-unchanged.ts) are not in it, and
 * show as idle time while the main thread waits for a batch.
 *
 *   npx tsx bench/profile-republish.ts    (PROFILE_FILES=10000 PROFILE_ROUNDS=5 PROFILE_OUT=/tmp/republish.cpuprofile)
 */
import fs from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import path from 'node:path';
import { pino } from 'pino';
import { publishRealm, type DataPlane } from '../src/dataplane/publish.js';
import { DEFAULT_RACY_MARGIN_MS } from '../src/dataplane/staging-manifest.js';
import { createSourceRealm, makeRealmsRoot } from '../test/support/realms.js';
import { benchDatabase } from './support.js';

const FILES = Number(process.env.PROFILE_FILES ?? 10_000);
const ROUNDS = Number(process.env.PROFILE_ROUNDS ?? 5);
const OUT = process.env.PROFILE_OUT ?? '/tmp/republish.cpuprofile';

const { db, close } = await benchDatabase();
const realms = await makeRealmsRoot();
try {
  const plane: DataPlane = { pool: db.pool, layout: realms.layout, logger: pino({ level: 'silent' }), durable: true };
  const files: Record<string, string> = {};
  for (let i = 0; i < FILES; i++) files[`dir-${i % 20}/card-${i}.json`] = JSON.stringify({ i, body: 'x'.repeat(480) });
  const source = 'http://bench.localhost/profile-src/';
  const published = 'http://bench.localhost/profile-pub/';
  const sourceDir = await createSourceRealm(db.pool, realms.layout, source, files);
  // Older than the racy margin, so the next publishes may trust (and link) every file.
  await new Promise((resolve) => setTimeout(resolve, DEFAULT_RACY_MARGIN_MS + 200));
  await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
  await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 200 });
  await session.post('Profiler.start');
  const stageMs: number[] = [];
  const linkedCopied: string[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    await fs.writeFile(path.join(sourceDir, `dir-${round % 20}/card-${round}.json`), JSON.stringify({ round }));
    const result = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
    stageMs.push(Math.round(result.timing.stageMs));
    linkedCopied.push(`${result.linkedFiles}/${result.copiedFiles}`);
  }
  const { profile } = await session.post('Profiler.stop');
  await fs.writeFile(OUT, JSON.stringify(profile));
  session.disconnect();
  console.log(`${ROUNDS} incremental republishes of ${FILES} files, staging ms: ${stageMs.join(' ')} (linked/copied ${linkedCopied.join(' ')}); profile: ${OUT}`);
} finally {
  await close();
  await realms.cleanup();
}
