/**
 * Against Boxel's own publish sequence (bench/peers/boxel-sequence.ts), on the same source realm,
 * the same PostgreSQL and the same volume, in one run:
 *
 * 1. Advisory-lock hold and publish latency, republishing realms of 10 / 1,000 / 10,000 files with
 *    one changed file, three replicas running. Ours: `publishRealm` (staged outside the lock) +
 *    wait for every replica's acknowledgement + reindex enqueue — what `Ready` means. Boxel's: the
 *    handler's run (copy and swap inside the lock, NOTIFYs autocommitted, reindex enqueued at once,
 *    no wait for peers).
 * 2. Stale reads: three replicas per side, each an in-memory file cache (the reference server's
 *    RealmFileCache) over the shared volume with one reader loop; ours are kept coherent by the
 *    listener library, Boxel's by a plain LISTEN connection that drops the realm's cache on
 *    `<url>:*` and is never re-opened (Boxel's listener does not reconnect). Mid-run, one replica's
 *    listener connection is terminated (pg_terminate_backend). A read is stale when it began after
 *    publish k was done (ours: Ready; Boxel's: the handler returned) and returned an older round;
 *    a missing read found no published realm at all (Boxel's move-aside gap).
 *
 * Before the interleaved rounds, each size is republished by ours alone (BOXEL_ALONE_ROUNDS, after
 * warm-up rounds), with the lock hold split into its parts for both: whether the hold grows with the
 * realm is a property of our publish, and interleaved, each of our rounds follows a Boxel-side copy
 * of a realm of that size (seconds long at 10,000 files; see the table's note).
 *
 *   make bench-boxel   (BOXEL_SIZES=10,1000,10000 BOXEL_ROUNDS=15,10,3 BOXEL_ALONE_ROUNDS=10 BOXEL_STALE_FILES=1000 BOXEL_STALE_PUBLISHES=24)
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { pino } from 'pino';
import { waitForReplicaAcks } from '../src/dataplane/acknowledgements.js';
import { publishRealm, type DataPlane, type PublishStep } from '../src/dataplane/publish.js';
import { enqueueReindex } from '../src/dataplane/reindex.js';
import { DEFAULT_RACY_MARGIN_MS } from '../src/dataplane/staging-manifest.js';
import { RealmListener, type RealmCaches } from '../src/listener/index.js';
import { RealmFileCache } from '../src/realm-server/file-cache.js';
import { createSourceRealm, makeRealmsRoot } from '../test/support/realms.js';
import { boxelPublish } from './peers/boxel-sequence.js';
import { printGoals, printTable, writeResults, type BenchGoal, type BenchTable } from './lib/results.js';
import { benchDatabase, fmt, percentile, wallMs } from './support.js';

const startedAt = new Date();
const sizes = (process.env.BOXEL_SIZES ?? '10,1000,10000').split(',').map(Number);
const roundsFor = (process.env.BOXEL_ROUNDS ?? '15,10,3').split(',').map(Number);
const aloneRounds = Number(process.env.BOXEL_ALONE_ROUNDS ?? 10);
const ALONE_WARM_UP = 5;
const staleFiles = Number(process.env.BOXEL_STALE_FILES ?? 1000);
const stalePublishes = Number(process.env.BOXEL_STALE_PUBLISHES ?? 24);
const REPLICAS = 3;
const PROBE = 'probe.json';

const { db, close } = await benchDatabase();
const realms = await makeRealmsRoot();
const logger = pino({ level: 'silent' });
/** When each step of our publish in progress was reached (publishes run one at a time here). */
let stepMarks: Array<[PublishStep, number]> = [];
const plane: DataPlane = { pool: db.pool, layout: realms.layout, logger, durable: true, onStep: (step) => void stepMarks.push([step as PublishStep, performance.now()]) };
/**
 * The lock hold's parts: the round trip that takes the lock and reads the checks' rows (BEGIN,
 * pg_advisory_xact_lock and the first statement, from sending it to its answer — what the hold
 * counts from: the publish's lockWaitMs), then between consecutive steps of our publish: recovery
 * and the checks again with the registry write (to `installed`), the link swap with its directory
 * fsync, the definitions/epoch/NOTIFY statements, and COMMIT.
 */
const HOLD_PARTS = [
  ['lock-round-trip', 'lock-round-trip', 'lock + checks round trip'],
  ['locked', 'installed', 'recovery, checks, registry'],
  ['installed', 'swapped', 'link swap + fsync'],
  ['swapped', 'recorded', 'definitions, epoch, NOTIFY'],
  ['recorded', 'committed', 'COMMIT'],
] as const;
type HoldParts = Record<(typeof HOLD_PARTS)[number][2], number>;
function holdParts(lockRoundTripMs: number): HoldParts {
  const at = new Map<string, number>(stepMarks);
  return Object.fromEntries(
    HOLD_PARTS.map(([from, to, name]) => [name, from === 'lock-round-trip' ? lockRoundTripMs : (at.get(to) ?? NaN) - (at.get(from) ?? NaN)]),
  ) as HoldParts;
}
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/**
 * Flushes what the other side's last publish left dirty (Boxel's copy is never synced), so an fsync
 * in the measured publish does not pay for it; not timed.
 */
const settle = () => promisify(execFile)('sync', ['-f', realms.root]);

type Side = 'ours' | 'boxel';

/** A realm-server replica as far as reads go: a file cache over the published directory, kept coherent by its side's listener. */
interface Replica {
  id: string;
  /** Reads `rel` of the realm at `url` whose directory is `dir`; `undefined` when it is missing. */
  read(url: string, dir: string, rel: string): Promise<string | undefined>;
  /** Terminates its listener's database connection. */
  killListener(): Promise<void>;
  stop(): Promise<void>;
}

function cachesFor(map: Map<string, RealmFileCache>): RealmCaches {
  return { find: (url) => map.get(url), all: () => map.values() };
}

async function readThrough(cache: RealmFileCache, file: string, useCache: boolean): Promise<string | undefined> {
  const hit = useCache ? cache.get(file) : undefined;
  if (hit) return hit.bytes.toString('utf8');
  const ticket = cache.beginRead(file);
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  if (useCache) cache.fill(ticket, bytes);
  return bytes.toString('utf8');
}

async function terminate(applicationName: string): Promise<void> {
  await db.pool.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [applicationName]);
}

async function startOurReplica(id: string): Promise<Replica> {
  const caches = new Map<string, RealmFileCache>();
  const applicationName = `bench-ours-${id}`;
  const listener = new RealmListener({
    connection: { connectionString: db.url, application_name: applicationName },
    replicaId: id,
    caches: cachesFor(caches),
    leaseDurationMs: 3000,
    heartbeatIntervalMs: 300,
    heartbeatTimeoutMs: 1500,
    backoff: { initialMs: 20, maxMs: 500 },
    logger,
  });
  listener.start();
  await listener.waitUntilReady();
  return {
    id,
    async read(url, dir, rel) {
      let cache = caches.get(url);
      if (!cache) caches.set(url, (cache = new RealmFileCache()));
      // A replica whose listener is not connected (or whose lease lapsed) reads from disk.
      return readThrough(cache, path.join(dir, rel), listener.cacheTrusted);
    },
    killListener: () => terminate(applicationName),
    stop: () => listener.stop(),
  };
}

async function startBoxelReplica(id: string): Promise<Replica> {
  const caches = new Map<string, RealmFileCache>();
  const applicationName = `bench-boxel-${id}`;
  const client = new pg.Client({ connectionString: db.url, application_name: applicationName });
  // Boxel's listener logs a lost connection and carries on without it: no reconnect.
  client.on('error', () => undefined);
  client.on('notification', (message) => {
    const payload = message.payload ?? '';
    if (message.channel !== 'realm_file_changes' || !payload.endsWith('/:*')) return;
    caches.get(payload.slice(0, -'/:*'.length + 1))?.dropAll();
  });
  await client.connect();
  await client.query('LISTEN realm_file_changes');
  return {
    id,
    async read(url, dir, rel) {
      let cache = caches.get(url);
      if (!cache) caches.set(url, (cache = new RealmFileCache()));
      return readThrough(cache, path.join(dir, rel), true);
    },
    killListener: () => terminate(applicationName),
    stop: () => client.end().catch(() => undefined),
  };
}

/** The source realm: `files` cards plus the probe, whose content is the publish round. */
async function makeSource(files: number, name: string): Promise<{ url: string; dir: string }> {
  const tree: Record<string, string> = { [PROBE]: JSON.stringify({ round: 0 }) };
  for (let i = 0; i < files; i++) tree[`dir-${i % 20}/card-${i}.json`] = JSON.stringify({ i, body: 'x'.repeat(480) });
  const url = `http://bench.localhost/${name}/`;
  return { url, dir: await createSourceRealm(db.pool, realms.layout, url, tree) };
}

interface PublishSample {
  lockHeldMs: number;
  latencyMs: number;
  /** Ours only: the hold's parts. */
  parts?: HoldParts;
}

/** One publish of round `round` on `side`, to done (ours: every replica acknowledged, reindex enqueued). */
async function publishOnce(side: Side, source: { url: string; dir: string }, publishedURL: string, round: number): Promise<PublishSample & { diskId: string }> {
  await fs.writeFile(path.join(source.dir, PROBE), JSON.stringify({ round }));
  const started = performance.now();
  if (side === 'boxel') {
    const result = await boxelPublish(db.pool, { realmsRoot: realms.root, sourceDir: source.dir, sourceRealmURL: source.url, publishedRealmURL: publishedURL });
    return { lockHeldMs: result.lockHeldMs, latencyMs: performance.now() - started, diskId: result.diskId };
  }
  stepMarks = [];
  const result = await publishRealm(plane, { sourceRealmURL: source.url, publishedRealmURL: publishedURL });
  const parts = holdParts(result.timing.lockWaitMs);
  const acks = await waitForReplicaAcks(db.pool, { realmURL: publishedURL, epoch: result.epoch, timeoutMs: 30_000 });
  if (!acks.complete) throw new Error(`replicas ${acks.missing.join(', ')} did not acknowledge epoch ${result.epoch}`);
  await enqueueReindex(db.pool, { realmURL: publishedURL, epoch: result.epoch });
  return { lockHeldMs: result.timing.lockHeldMs, latencyMs: performance.now() - started, diskId: result.diskId, parts };
}

const publishedDirOf = (side: Side, diskId: string) => (side === 'ours' ? realms.layout.publishedDir(diskId) : path.join(realms.root, '_published', diskId));

const replicas: Record<Side, Replica[]> = { ours: [], boxel: [] };
for (let i = 1; i <= REPLICAS; i++) {
  replicas.ours.push(await startOurReplica(`r${i}`));
  replicas.boxel.push(await startBoxelReplica(`r${i}`));
}

// 1. Lock hold and latency by realm size: ours alone first, then both sides interleaved.
const sized = new Map<number, Record<Side, PublishSample[]>>();
const alone = new Map<number, PublishSample[]>();
const sources = new Map<number, { url: string; dir: string }>();
for (const size of sizes) sources.set(size, await makeSource(size, `boxel-cmp-src-${size}`));
// Files younger than the racy margin are copied, not linked; a real realm was edited long before.
await sleep(DEFAULT_RACY_MARGIN_MS + 200);
for (const [index, size] of sizes.entries()) {
  const rounds = roundsFor[index] ?? roundsFor[roundsFor.length - 1]!;
  const source = sources.get(size)!;
  const urls: Record<Side, string> = { ours: `http://bench.localhost/ours-${size}/`, boxel: `http://bench.localhost/boxel-${size}/` };
  const samples: Record<Side, PublishSample[]> = { ours: [], boxel: [] };
  for (const side of ['ours', 'boxel'] as const) await publishOnce(side, source, urls[side], 0); // first publishes: not measured
  const oursAlone: PublishSample[] = [];
  // Warm-up rounds first: the first republishes on fresh pooled connections prepare and plan their
  // statements, and the process's code is not yet optimized (the smallest size, measured first,
  // would otherwise carry that alone).
  for (let round = 1; round <= ALONE_WARM_UP + aloneRounds; round++) {
    await settle();
    const { lockHeldMs, latencyMs, parts } = await publishOnce('ours', source, urls.ours, round);
    if (round > ALONE_WARM_UP) oursAlone.push({ lockHeldMs, latencyMs, ...(parts ? { parts } : {}) });
  }
  alone.set(size, oursAlone);
  for (let round = ALONE_WARM_UP + aloneRounds + 1; round <= ALONE_WARM_UP + aloneRounds + rounds; round++) {
    // Boxel's first: each of our interleaved rounds follows one of its publishes (the first too).
    for (const side of ['boxel', 'ours'] as const) {
      await settle();
      const { lockHeldMs, latencyMs, parts } = await publishOnce(side, source, urls[side], round);
      samples[side].push({ lockHeldMs, latencyMs, ...(parts ? { parts } : {}) });
    }
  }
  sized.set(size, samples);
  process.stderr.write(`${size} files: ${aloneRounds} republishes of ours alone, ${rounds} per side interleaved\n`);
}

// 2. Stale reads with one replica's listener connection killed mid-run.
interface StaleCounts {
  reads: number;
  stale: number;
  missing: number;
}
const staleSource = await makeSource(staleFiles, 'boxel-cmp-stale-src');
await sleep(DEFAULT_RACY_MARGIN_MS + 200);
const staleResults: Record<Side, Map<string, StaleCounts>> = { ours: new Map(), boxel: new Map() };
const staleLatency: Record<Side, number[]> = { ours: [], boxel: [] };
for (const side of ['ours', 'boxel'] as const) {
  const url = `http://bench.localhost/${side}-stale/`;
  const first = await publishOnce(side, staleSource, url, 0);
  const dir = publishedDirOf(side, first.diskId);
  /** done[k] = when publish k was done; reads that began after it must see round ≥ k. */
  const done: number[] = [wallMs()];
  let running = true;
  const loops = replicas[side].map(async (replica) => {
    const counts: StaleCounts = { reads: 0, stale: 0, missing: 0 };
    staleResults[side].set(replica.id, counts);
    while (running) {
      const began = wallMs();
      let expected = 0;
      for (let k = done.length - 1; k >= 0; k--) if (done[k]! <= began) { expected = k; break; }
      const body = await replica.read(url, dir, PROBE);
      counts.reads += 1;
      if (body === undefined) counts.missing += 1;
      else if ((JSON.parse(body) as { round: number }).round < expected) counts.stale += 1;
      await sleep(2);
    }
  });
  for (let round = 1; round <= stalePublishes; round++) {
    if (round === Math.ceil(stalePublishes / 3)) await replicas[side][0]!.killListener();
    const sample = await publishOnce(side, staleSource, url, round);
    done[round] = wallMs();
    staleLatency[side].push(sample.latencyMs);
    await sleep(50);
  }
  running = false;
  await Promise.all(loops);
  process.stderr.write(`stale reads, ${side}: done\n`);
}
for (const side of ['ours', 'boxel'] as const) for (const replica of replicas[side]) await replica.stop();

// Report.
const med = (v: number[]) => percentile(v, 50);
const p99 = (v: number[]) => percentile(v, 99);
const tables: BenchTable[] = [];
tables.push({
  title: 'Advisory-lock hold and publish latency, republish with one changed file (3 replicas)',
  columns: ['files', 'rounds', 'ours lock p50 ms', 'ours lock p99 ms', 'Boxel lock p50 ms', 'Boxel lock p99 ms', 'ours ÷ Boxel lock', 'ours latency p50 ms', 'Boxel latency p50 ms', 'ours ÷ Boxel latency'],
  rows: [...sized].map(([size, s]) => {
    const ol = med(s.ours.map((x) => x.lockHeldMs));
    const bl = med(s.boxel.map((x) => x.lockHeldMs));
    const ot = med(s.ours.map((x) => x.latencyMs));
    const bt = med(s.boxel.map((x) => x.latencyMs));
    return [size, s.ours.length, fmt(ol), fmt(p99(s.ours.map((x) => x.lockHeldMs))), fmt(bl), fmt(p99(s.boxel.map((x) => x.lockHeldMs))), (ol / bl).toFixed(3), fmt(ot), fmt(bt), (ot / bt).toFixed(2)];
  }),
  note: 'Latency — ours: publish + every live replica acknowledged + reindex enqueued (what Ready means); Boxel: the handler’s run, which waits for no replica.',
});
const partsP50 = (samples: PublishSample[]) => HOLD_PARTS.map(([, , name]) => fmt(med(samples.map((x) => x.parts![name]))));
tables.push({
  title: 'Our advisory-lock hold by step (p50 ms): alone, and interleaved with the Boxel sequence',
  columns: ['files', 'run', 'rounds', 'lock held p50', 'lock held max', ...HOLD_PARTS.map(([, , name]) => name)],
  rows: [...sized].flatMap(([size, s]) => [
    [size, 'alone', alone.get(size)!.length, fmt(med(alone.get(size)!.map((x) => x.lockHeldMs))), fmt(Math.max(...alone.get(size)!.map((x) => x.lockHeldMs))), ...partsP50(alone.get(size)!)],
    [size, 'interleaved', s.ours.length, fmt(med(s.ours.map((x) => x.lockHeldMs))), fmt(Math.max(...s.ours.map((x) => x.lockHeldMs))), ...partsP50(s.ours)],
  ]),
  note:
    'alone: ours republished with nothing else between its rounds (a `sync -f` before each); interleaved: the rounds of the table above, each right after the Boxel sequence ' +
    'copied the realm and deleted its previous copy on the same file system. The hold counts from sending the round trip that takes the lock (a wait for the lock counts as held). ' +
    'The interleaved 10,000-file hold once grew (14–16 ms in every `make bench` of sessions 9 and 10), all of it in the lock round trip: the Boxel side’s copies take ' +
    '~11 s, longer than the pool’s 10 s idle timeout, so ours ran on a new connection whose backend prepared, planned and loaded its catalog caches inside the lock. ' +
    'The data plane’s pool now keeps warm connections (src/dataplane/db.ts WARM_CONNECTIONS), as this bench’s does.',
});
const staleRow = (side: Side) => {
  const counts = [...staleResults[side].values()];
  const total = (k: keyof StaleCounts) => counts.reduce((n, c) => n + c[k], 0);
  return [side === 'ours' ? 'ours (listener library)' : 'Boxel sequence', stalePublishes, total('reads'), total('stale'), total('missing'), [...staleResults[side]].map(([id, c]) => `${id}: ${c.stale}/${c.reads}`).join(', '), fmt(med(staleLatency[side]))];
};
tables.push({
  title: `Stale reads, ${staleFiles.toLocaleString('en-US')}-file realm, replica r1's listener connection terminated before publish ${Math.ceil(stalePublishes / 3)}`,
  columns: ['side', 'publishes', 'reads', 'stale reads', 'missing reads', 'stale/reads by replica', 'latency p50 ms'],
  rows: [staleRow('ours'), staleRow('boxel')],
  note: 'stale: began after publish k was done and returned an older round; missing: the published directory was absent (Boxel’s move-aside gap).',
});

const at1000 = sized.get(1000);
const lockRatio = at1000 ? med(at1000.ours.map((x) => x.lockHeldMs)) / med(at1000.boxel.map((x) => x.lockHeldMs)) : NaN;
const oursLocks = [...sized.values()].map((s) => med(s.ours.map((x) => x.lockHeldMs)));
const aloneLocks = [...alone.values()].map((s) => med(s.map((x) => x.lockHeldMs)));
// Flat = no growth with realm size: the largest realm's hold against the smallest's (holds of a few
// ms to tens of ms wander either way with the machine's load, so a max ÷ min would measure noise).
// Judged on both: ours alone, and interleaved, where each of our rounds follows the other side's
// copy of a realm of that size (seconds long at 10,000 files).
const growthOf = (locks: number[]) => locks[locks.length - 1]! / locks[0]!;
const growth = Math.max(growthOf(aloneLocks), growthOf(oursLocks));
const oursStale = Number(staleRow('ours')[3]);
const boxelStale = Number(staleRow('boxel')[3]);
const goals: BenchGoal[] = [
  {
    goal: 'Advisory-lock hold at 1,000 files vs the Boxel sequence (p50)',
    target: '≤ 0.1×',
    measured: Number.isNaN(lockRatio) ? 'not measured (1,000 not in BOXEL_SIZES)' : `${lockRatio.toFixed(3)}×`,
    met: lockRatio <= 0.1,
  },
  {
    goal: `Advisory-lock hold flat in realm size (ours, p50 across ${sizes.join(' / ')} files, alone and interleaved with the Boxel sequence)`,
    target: `flat: ${sizes[sizes.length - 1]} files ≤ 2× ${sizes[0]} files, both`,
    measured: `alone ${aloneLocks.map(fmt).join(' / ')} ms (${growthOf(aloneLocks).toFixed(2)}×); interleaved ${oursLocks.map(fmt).join(' / ')} ms (${growthOf(oursLocks).toFixed(2)}×)`,
    met: growth <= 2,
  },
  {
    goal: 'Stale reads with a replica’s listener connection killed mid-run',
    target: 'ours 0; Boxel reported',
    measured: `ours ${oursStale}, Boxel ${boxelStale}`,
    met: oursStale === 0,
  },
];
for (const table of tables) printTable(table);
printGoals(goals);
const file = await writeResults({
  bench: 'boxel-comparison',
  command: 'make bench-boxel',
  startedAt: startedAt.toISOString(),
  durationSeconds: Math.round((Date.now() - startedAt.getTime()) / 1000),
  tables,
  series: [
    {
      title: 'Advisory-lock hold by realm size (p50)',
      xLabel: 'files',
      yLabel: 'ms',
      lines: [
        { name: 'ours alone', points: [...alone].map(([size, s]) => [size, med(s.map((x) => x.lockHeldMs))] as [number, number]) },
        ...(['ours', 'boxel'] as const).map((side) => ({
          name: side === 'ours' ? 'ours, interleaved' : 'Boxel sequence',
          points: [...sized].map(([size, s]) => [size, med(s[side].map((x) => x.lockHeldMs))] as [number, number]),
        })),
      ],
    },
  ],
  goals,
  raw: { sized: Object.fromEntries(sized), alone: Object.fromEntries(alone), stale: Object.fromEntries((['ours', 'boxel'] as const).map((s) => [s, Object.fromEntries(staleResults[s])])) },
});
console.log(`\nresults: ${file}`);
await realms.cleanup();
await close();
