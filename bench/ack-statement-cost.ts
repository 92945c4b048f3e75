/**
 * Backend CPU of each acknowledgement statement variant, alone in a loop on one connection (no
 * fleet, no NOTIFY listeners): 50 replicas registered, all acked at an older epoch, so every ack
 * sees others missing as in the middle of a fan-out. CPU from /proc/<backend pid>/schedstat; the
 * connection uses generic plans, as the listener's does (realm-listener.ts listen()).
 *
 *   npx tsx bench/ack-statement-cost.ts        (LOOPS=1000 to change; run under flock /work/coord/bench.lock)
 */
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { announceIfAllAcked, writeAck, writeAckThenAnnounce } from '../src/listener/replica-registry.js';
import { benchDatabase } from './support.js';

const { db, close } = await benchDatabase();
const realm = 'http://bench.localhost/statement-cost/';
await db.pool.query(`INSERT INTO realm_operator.realm_epochs (realm_url, epoch) VALUES ($1, 1)`, [realm]);
await db.pool.query(`CREATE TABLE bench_floor_acks (client_id text PRIMARY KEY, round integer NOT NULL, acked_at timestamptz NOT NULL DEFAULT now())`);
for (let i = 0; i < 50; i++) {
  await db.pool.query(`INSERT INTO realm_operator.replicas (replica_id, lease_expires_at, lease_duration_ms, renewed_at, metadata) VALUES ($1, now() + interval '1 hour', 15000, now(), '{}')`, [`r${i}`]);
  await db.pool.query(`INSERT INTO realm_operator.replica_acks (replica_id, realm_url, epoch) VALUES ($1, $2, 1)`, [`r${i}`, realm]);
}
const client = new pg.Client({ connectionString: db.url });
await client.connect();
await client.query(`SELECT set_config('plan_cache_mode', 'force_generic_plan', false)`);
const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
const cpuMs = async () => Number((await readFile(`/proc/${pid}/schedstat`, 'utf8')).split(' ')[0]) / 1e6;
const loops = Number(process.env.LOOPS ?? 1000);
let epoch = 10;

async function measure(name: string, run: (i: number) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < 200; i++) await run(i); // prepared, planned, cached
  const cpuBefore = await cpuMs();
  const wallBefore = performance.now();
  for (let i = 0; i < loops; i++) await run(i);
  const cpu = ((await cpuMs()) - cpuBefore) / loops;
  const wall = (performance.now() - wallBefore) / loops;
  console.log(`${name.padEnd(78)} backend ${(cpu * 1000).toFixed(0).padStart(5)} µs   round trip ${(wall * 1000).toFixed(0).padStart(5)} µs`);
}

await measure('floor: the bare upsert (named)', (i) =>
  client.query({ name: 'floor', text: `INSERT INTO bench_floor_acks (client_id, round) VALUES ($1, $2) ON CONFLICT (client_id) DO UPDATE SET round = EXCLUDED.round, acked_at = now()`, values: ['x', i] }),
);
await measure('writeAck (the ack with its completion check and claim)', () => writeAck(client, 'r0', realm, epoch++));
await measure('writeAck, then announceIfAllAcked (two round trips)', async () => {
  const e = epoch++;
  await writeAck(client, 'r0', realm, e);
  await announceIfAllAcked(client, 'r0', realm, e);
});
await measure('writeAckThenAnnounce (one round trip)', () => writeAckThenAnnounce(client, 'r0', realm, epoch++));
await measure('  of which BEGIN; COMMIT', () => client.query('BEGIN; COMMIT'));
await measure('  of which the completion check (EXECUTE)', () => client.query(`EXECUTE realm_operator_ack_then_announce_check('r0', '${realm}', ${epoch++}, 'bench')`));
await measure('the announcement, not completing (the function)', () => client.query(`SELECT realm_operator.announce_completion('r0', '${realm}', ${epoch++}, 'bench')`));
await measure('the announcement, not completing (announceIfAllAcked: a statement of its own)', () => announceIfAllAcked(client, 'r0', realm, epoch++));
// The last ack of a publish: every replica done (acked far ahead), so each announcement, at a new
// epoch, builds its proof, claims and NOTIFYs.
await client.query(`UPDATE realm_operator.replica_acks SET epoch = 1000000000000 WHERE realm_url = '${realm}'`);
await measure('the completing announcement (the function: proof, claim, NOTIFY)', async () => {
  const { rows } = await client.query(`SELECT realm_operator.announce_completion('r0', '${realm}', ${epoch++}, 'bench') AS written`);
  if (rows[0]?.written !== 'written-notified') throw new Error('the announcement did not complete the set');
});
await measure('the completing announcement (announceIfAllAcked: a statement of its own)', async () => {
  if (!(await announceIfAllAcked(client, 'r0', realm, epoch++))) throw new Error('the announcement did not complete the set');
});
await client.query('SET plan_cache_mode = force_custom_plan');
await measure('the completing announcement, custom plans (what `auto` fell into)', () => client.query(`SELECT realm_operator.announce_completion('r0', '${realm}', ${epoch++}, 'bench')`));
await client.end();
await close();
