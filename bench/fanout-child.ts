/**
 * One fan-out benchmark process: either a listener-library replica (MODE=listener) or a raw `pg`
 * LISTEN client (MODE=raw). Reports to the parent over IPC the wall time at which it acknowledged
 * (listener) or received (raw) each wildcard invalidation.
 */
import pg from 'pg';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { RealmListener, type RealmCache } from '../src/listener/index.js';

const url = process.env.DATABASE_URL!;
const realmURL = process.env.REALM_URL!;
const send = (message: unknown) => process.send?.(message);
const wallMs = () => performance.timeOrigin + performance.now();

if (process.env.MODE === 'raw') {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  client.on('notification', (m) => {
    if (m.payload === `${realmURL}:*`) send({ type: 'done', at: wallMs() });
  });
  await client.query('LISTEN realm_file_changes');
  send({ type: 'ready' });
  process.on('disconnect', () => void client.end().then(() => process.exit(0)));
} else {
  let cached = new Map<string, string>([['a.gts', 'x']]);
  const cache: RealmCache = {
    dropPath: (p) => void cached.delete(p),
    dropAll: () => void (cached = new Map()),
    bumpDefinitionsGeneration: () => undefined,
  };
  const listener = new RealmListener({
    connection: url,
    replicaId: process.env.REPLICA_ID!,
    caches: { find: (u) => (u === realmURL ? cache : undefined), all: () => [cache] },
    logger: pino({ level: 'silent' }),
    metricsRegistry: new Registry(),
  });
  listener.on('acknowledged', () => send({ type: 'done', at: wallMs() }));
  listener.start();
  await listener.waitUntilReady(60_000);
  send({ type: 'ready' });
  process.on('disconnect', () => void listener.stop().then(() => process.exit(0)));
}
