/**
 * A minimal realm-server replica for the interim demo: caches file bytes of one published realm
 * and runs the listener library. The parent asks it over IPC to read a file and reports whether
 * the bytes came from its cache. (The full reference realm server comes with the controller.)
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { RealmListener, type RealmCache } from '../src/listener/index.js';

const realmURL = process.env.REALM_URL!;
const realmsRoot = process.env.REALMS_ROOT!;
const db = new pg.Pool({ connectionString: process.env.DATABASE_URL!, max: 2 });
const bytes = new Map<string, string>();
const cache: RealmCache = {
  dropPath: (p) => void bytes.delete(p),
  dropAll: () => bytes.clear(),
  bumpDefinitionsGeneration: () => undefined,
};
const listener = new RealmListener({
  connection: process.env.DATABASE_URL!,
  replicaId: process.env.REPLICA_ID!,
  caches: { find: (u) => (u === realmURL ? cache : undefined), all: () => [cache] },
  logger: pino({ level: 'silent' }),
  metricsRegistry: new Registry(),
});
listener.on('acknowledged', (a: { epoch: number; seconds: number }) => process.send?.({ type: 'acked', ...a }));
listener.start();
await listener.waitUntilReady(30_000);
process.send?.({ type: 'ready' });

process.on('message', async (m: { type: string; path: string }) => {
  if (m.type !== 'read') return;
  const hit = listener.cacheTrusted ? bytes.get(m.path) : undefined;
  if (hit !== undefined) return process.send?.({ type: 'read', content: hit, fromCache: true });
  const { rows } = await db.query(`SELECT disk_id FROM realm_registry WHERE url = $1`, [realmURL]);
  const content = await fs.readFile(path.join(realmsRoot, '_published', rows[0].disk_id, m.path), 'utf8');
  if (listener.cacheTrusted) bytes.set(m.path, content);
  process.send?.({ type: 'read', content, fromCache: false });
});
process.on('disconnect', () => void Promise.all([listener.stop(), db.end()]).then(() => process.exit(0)));
