/**
 * Fan-out benchmark: one wildcard invalidation committed by the publisher, N listener-library
 * replicas in separate processes, time until ALL have cleared and acknowledged (the publisher's
 * wait included), beside N raw `pg` LISTEN clients measured in the same run (the floor: delivery
 * only). Prints p50/p99 per N and the ratio listener/raw.
 *
 *   make bench-fanout            (FANOUT_N=1,10,50 FANOUT_ROUNDS=40 to change)
 */
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { waitForReplicaAcks } from '../src/dataplane/acknowledgements.js';
import { notifyAllFileChanges } from '../src/dataplane/invalidation.js';
import { benchDatabase, fmt, percentile, wallMs } from './support.js';

const counts = (process.env.FANOUT_N ?? '1,10,50').split(',').map(Number);
const rounds = Number(process.env.FANOUT_ROUNDS ?? 40);
const realmURL = 'http://bench.localhost/fanout/';
const child = path.join(import.meta.dirname, 'fanout-child.ts');

const { db, close } = await benchDatabase();
await db.pool.query(`INSERT INTO realm_operator.realm_epochs (realm_url, epoch) VALUES ($1, 0)`, [realmURL]);

interface Fleet {
  children: ChildProcess[];
  nextRound(): Promise<number[]>;
  stop(): Promise<void>;
}

async function startFleet(mode: 'raw' | 'listener', n: number): Promise<Fleet> {
  const children: ChildProcess[] = [];
  const pending: Array<(at: number) => void> = [];
  let times: number[] = [];
  let onAll: (() => void) | undefined;
  const ready = Array.from({ length: n }, (_, i) => {
    const proc = fork(child, [], {
      execArgv: ['--import', 'tsx'],
      env: { ...process.env, DATABASE_URL: db.url, REALM_URL: realmURL, MODE: mode, REPLICA_ID: `bench-${mode}-${i}` },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    children.push(proc);
    return new Promise<void>((resolve) =>
      proc.on('message', (m: { type: string; at: number }) => {
        if (m.type === 'ready') resolve();
        if (m.type === 'done') {
          times.push(m.at);
          if (times.length === n) onAll?.();
        }
      }),
    );
  });
  void pending;
  await Promise.all(ready);
  return {
    children,
    async nextRound() {
      times = [];
      return new Promise((resolve) => {
        onAll = () => resolve(times);
      });
    },
    async stop() {
      await Promise.all(children.map((c) => new Promise<void>((r) => (c.on('exit', () => r()), c.disconnect()))));
    },
  };
}

/** Commits an epoch bump + wildcard NOTIFY, as a publish's transaction does; returns the commit time. */
async function publishInvalidation(): Promise<{ committedAt: number; epoch: number }> {
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    const { rows } = await client.query(`UPDATE realm_operator.realm_epochs SET epoch = nextval('realm_operator.epoch_seq') WHERE realm_url = $1 RETURNING epoch`, [realmURL]);
    await notifyAllFileChanges(client, realmURL);
    const before = wallMs();
    await client.query('COMMIT');
    return { committedAt: before, epoch: Number(rows[0].epoch) };
  } finally {
    client.release();
  }
}

const results: string[] = [];
for (const n of counts) {
  const measured: Record<'raw' | 'listener' | 'listenerWait', number[]> = { raw: [], listener: [], listenerWait: [] };
  for (const mode of ['raw', 'listener'] as const) {
    const startedFleet = performance.now();
    const fleet = await startFleet(mode, n);
    process.stderr.write(`N=${n} ${mode}: ${n} processes ready in ${Math.round(performance.now() - startedFleet)} ms\n`);
    for (let round = 0; round < rounds + 3; round++) {
      const all = fleet.nextRound();
      const { committedAt, epoch } = await publishInvalidation();
      const wait = mode === 'listener' ? waitForReplicaAcks(db.pool, { realmURL, epoch, timeoutMs: 30_000, pollIntervalMs: 1000 }) : undefined;
      const times = await all;
      const waited = await wait;
      if (waited && !waited.complete) throw new Error(`round ${round}: replicas missing ${waited.missing.join(', ')}`);
      if (round < 3) continue; // warm-up
      measured[mode].push(Math.max(...times) - committedAt);
      if (waited) measured.listenerWait.push(wallMs() - committedAt);
    }
    await fleet.stop();
    if (mode === 'listener') await db.pool.query('DELETE FROM realm_operator.replicas');
  }
  const raw50 = percentile(measured.raw, 50);
  const lis50 = percentile(measured.listener, 50);
  results.push(
    [
      `N=${String(n).padStart(2)}`,
      `raw LISTEN all received p50 ${fmt(raw50)} ms p99 ${fmt(percentile(measured.raw, 99))} ms`,
      `listener all cleared+acked p50 ${fmt(lis50)} ms p99 ${fmt(percentile(measured.listener, 99))} ms`,
      `operator wait returned p50 ${fmt(percentile(measured.listenerWait, 50))} ms p99 ${fmt(percentile(measured.listenerWait, 99))} ms`,
      `ratio listener/raw p50 ${(lis50 / raw50).toFixed(2)}x`,
    ].join(' | '),
  );
  process.stdout.write(`${results.at(-1)}\n`);
}
process.stdout.write(`\nfan-out, ${rounds} rounds per N after 3 warm-up rounds, ${new Date().toISOString()}\n${results.join('\n')}\n`);
await close();
