import { pino } from 'pino';
import { publishRealm } from '../src/dataplane/publish.js';
import { createSourceRealm, makeRealmsRoot } from '../test/support/realms.js';
import { benchDatabase } from './support.js';
const { db, close } = await benchDatabase();
if (process.env.MIN) (db.pool as any).options.min = Number(process.env.MIN);
const realms = await makeRealmsRoot();
let marks = new Map<string, number>();
const plane = { pool: db.pool, layout: realms.layout, logger: pino({ level: 'silent' }), durable: true, onStep: (s: string) => void marks.set(s, performance.now()) };
const source = 'http://bench.localhost/src/';
await createSourceRealm(db.pool, realms.layout, source, { 'a.json': '1' });
for (const pause of [500, 500, 500, 500, 11000, 11000, 11000, 500, 500, 500]) {
  await new Promise((r) => setTimeout(r, pause));
  marks = new Map();
  const r = await publishRealm(plane as any, { sourceRealmURL: source, publishedRealmURL: 'http://bench.localhost/pub/' });
  console.log(`pause ${pause} ms: held ${r.timing.lockHeldMs.toFixed(2)} ms, lock round trip ${(marks.get('locked')! - marks.get('reserved')!).toFixed(2)} ms, pool total ${db.pool.totalCount}`);
}
await realms.cleanup(); await close();
