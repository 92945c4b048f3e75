/**
 * One fan-out benchmark process, a separate process per replica as in a real deployment:
 *
 * - MODE=listener: a listener-library replica (RealmListener) with a tiny cache; reports the wall
 *   time at which it acknowledged each wildcard invalidation.
 * - MODE=raw: the floors, a bare `pg` client LISTENing on two bench channels. On
 *   `bench_fanout_receive` it only reports receipt (the delivery floor); on `bench_fanout_ack` it
 *   writes one ack row and reports when the INSERT returned (the least any acknowledged protocol
 *   can do); on `bench_fanout_tell` it writes the ack row and NOTIFYs the publisher back in the
 *   same statement (the least a protocol can do whose publisher learns of the acks, as ours must).
 *   The bare clients use a database of their own (bench/fanout.ts floorDb), so a round's NOTIFYs
 *   wake only the fleet it measures.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import path from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { RealmListener, type RealmCache } from '../src/listener/index.js';
import { ACK_FLOOR_CHANNEL, RECEIVE_FLOOR_CHANNEL, TELL_FLOOR_CHANNEL, TOLD_CHANNEL } from './support.js';

const url = process.env.DATABASE_URL!;
const realmURL = process.env.REALM_URL!;
const replicaId = process.env.REPLICA_ID!;
const send = (message: unknown) => process.send?.(message);
const wallMs = () => performance.timeOrigin + performance.now();

/**
 * FANOUT_CPU_PROFILE_DIR: profile this process from ready until it is told to stop (start-up and
 * module loading left out), written as <dir>/<replica id>.cpuprofile for Chrome DevTools or
 * bench/cpu-profile-summary.ts.
 */
async function profiledUntilStop(stop: () => Promise<void>): Promise<() => Promise<void>> {
  const dir = process.env.FANOUT_CPU_PROFILE_DIR;
  if (!dir) return stop;
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 1000 }); // µs: finer sampling stalled a 20-process fleet past its 5 s heartbeat timeout
  await session.post('Profiler.start');
  return async () => {
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(path.join(dir, `${replicaId}.cpuprofile`), JSON.stringify(profile));
    await stop();
  };
}

if (process.env.MODE === 'raw') {
  const client = new pg.Client({ connectionString: url, application_name: replicaId });
  await client.connect();
  client.on('notification', (m) => {
    if (m.channel === RECEIVE_FLOOR_CHANNEL) return send({ type: 'done', at: wallMs() });
    const upsert = `INSERT INTO bench_floor_acks (client_id, round) VALUES ($1, $2)
         ON CONFLICT (client_id) DO UPDATE SET round = EXCLUDED.round, acked_at = now()`;
    const statement =
      m.channel === ACK_FLOOR_CHANNEL
        ? upsert
        : m.channel === TELL_FLOOR_CHANNEL
          ? `WITH acked AS (${upsert} RETURNING client_id) SELECT pg_notify('${TOLD_CHANNEL}', client_id) FROM acked`
          : undefined;
    if (!statement) return;
    // Named (prepared once per connection), as the listener's ack is: the floor pays no parse and plan either.
    void client.query({ name: m.channel, text: statement, values: [replicaId, Number(m.payload)] }).then(() => send({ type: 'done', at: wallMs() }));
  });
  await client.query(`LISTEN ${RECEIVE_FLOOR_CHANNEL}; LISTEN ${ACK_FLOOR_CHANNEL}; LISTEN ${TELL_FLOOR_CHANNEL}`);
  const stop = await profiledUntilStop(() => client.end());
  send({ type: 'ready' });
  process.on('disconnect', () => void stop().then(() => process.exit(0)));
} else {
  let cached = new Map<string, string>([['a.gts', 'x']]);
  const cache: RealmCache = {
    dropPath: (p) => void cached.delete(p),
    dropAll: () => void (cached = new Map()),
    bumpDefinitionsGeneration: () => undefined,
  };
  const listener = new RealmListener({
    connection: url,
    replicaId,
    caches: { find: (u) => (u === realmURL ? cache : undefined), all: () => [cache] },
    logger: pino({ level: process.env.FANOUT_LOG_LEVEL ?? 'silent' }, pino.destination(2)), // FANOUT_LOG_LEVEL=warn to see reconnects
    metricsRegistry: new Registry(),
  });
  listener.on('acknowledged', () => send({ type: 'done', at: wallMs() }));
  listener.start();
  await listener.waitUntilReady(120_000);
  const stop = await profiledUntilStop(() => listener.stop());
  send({ type: 'ready' });
  process.on('disconnect', () => void stop().then(() => process.exit(0)));
}
