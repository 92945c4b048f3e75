/**
 * Acknowledged fan-out (issue 11, benchmark 3): one wildcard invalidation committed by the
 * publisher, N listener-library replicas in separate processes, time from COMMIT until the
 * operator's wait (the shared waiter, src/dataplane/ack-waiter.ts) returns "every live replica
 * acknowledged". Beside it, in the same run and with the same N processes per fleet, two floors:
 *
 * - receive: bare `pg` LISTEN clients that only receive the NOTIFY (delivery alone);
 * - receive + ack: bare clients that receive and write one ack row (the least any acknowledged
 *   protocol can do) — the goal's denominator;
 * - receive + ack + tell: the same, NOTIFYing the publisher back in the ack's statement, timed
 *   when the publisher has heard from all N (the least a protocol can do whose publisher learns
 *   of the acks, as ours must): shows how much of the gap is that one extra hop.
 *
 * The three kinds of round are interleaved in a shuffled order, so load from the rest of the
 * machine falls on all of them alike: ratios within the run are what counts. The bare clients
 * use a database of their own on the same server (see `floorDb`), so neither fleet's NOTIFYs
 * wake the other's backends.
 *
 *   make bench-fanout            (FANOUT_N=1,10,50 FANOUT_ROUNDS=40 FANOUT_CPU_ROUNDS=20
 *                                 FANOUT_IN_PROCESS_ROUNDS=200 to change)
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sharedReplicaAckWaiter } from '../src/dataplane/ack-waiter.js';
import { waitForReplicaAcks } from '../src/dataplane/acknowledgements.js';
import { notifyAllFileChanges } from '../src/dataplane/invalidation.js';
import { RealmListener } from '../src/listener/index.js';
import { printTable, writeResults, type BenchGoal, type BenchTable } from './lib/results.js';
import pg from 'pg';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { ACK_FLOOR_CHANNEL, benchDatabase, fmt, percentile, RECEIVE_FLOOR_CHANNEL, TELL_FLOOR_CHANNEL, TOLD_CHANNEL, wallMs } from './support.js';

const counts = (process.env.FANOUT_N ?? '1,10,50').split(',').map(Number);
const rounds = Number(process.env.FANOUT_ROUNDS ?? 40);
const warmup = 3;
const GOAL_RATIO = 1.5;
const realmURL = 'http://bench.localhost/fanout/';
const child = path.join(import.meta.dirname, 'fanout-child.ts');
const started = new Date();

const { db, another, close } = await benchDatabase();
await db.pool.query(`INSERT INTO realm_operator.realm_epochs (realm_url, epoch) VALUES ($1, 0)`, [realmURL]);
/**
 * The floors' clients use a database of their own on the same server: PostgreSQL (≤ 18) signals
 * every backend LISTENing in the NOTIFYing transaction's database, whatever the channel, and only
 * those. In one shared database each fleet's NOTIFYs also woke the other fleet's N idle backends,
 * which no deployment has (a realm server's database holds its replicas and operator, not a second
 * fleet): a tax of N wake-ups per NOTIFYing commit, charged more to whichever kind commits more of
 * them. Apart, a commit wakes its own fleet (and, in ours, the operator's LISTEN) as in production.
 */
const floorDb = await another();
await floorDb.pool.query(`CREATE TABLE bench_floor_acks (client_id text PRIMARY KEY, round integer NOT NULL, acked_at timestamptz NOT NULL DEFAULT now())`);
// The publisher's side of the receive+ack+tell floor: hears each client's NOTIFY back.
const told = new pg.Client({ connectionString: floorDb.url });
await told.connect();
await told.query(`LISTEN ${TOLD_CHANNEL}`);
let toldCount = 0;
let onToldAll: (() => void) | undefined;
told.on('notification', () => {
  toldCount += 1;
  onToldAll?.();
});

interface Fleet {
  /** The fleet's processes. */
  pids: number[];
  /** Resolves with each process's report time once all N reported for the round. */
  nextRound(): Promise<number[]>;
  stop(): Promise<void>;
}

async function startFleet(mode: 'raw' | 'listener', n: number): Promise<Fleet> {
  const children: ChildProcess[] = [];
  let times: number[] = [];
  let onAll: (() => void) | undefined;
  const ready = Array.from({ length: n }, (_, i) => {
    const proc = fork(child, [], {
      execArgv: ['--import', 'tsx'],
      env: { ...process.env, DATABASE_URL: mode === 'raw' ? floorDb.url : db.url, REALM_URL: realmURL, MODE: mode, REPLICA_ID: `bench-${mode}-${i}` },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    children.push(proc);
    return new Promise<void>((resolve, reject) => {
      proc.on('exit', (code) => reject(new Error(`${mode} process ${i} exited (${code}) before it was ready`)));
      proc.on('message', (m: { type: string; at: number }) => {
        if (m.type === 'ready') resolve();
        if (m.type === 'done') {
          times.push(m.at);
          if (times.length === n) onAll?.();
        }
      });
    });
  });
  await Promise.all(ready);
  return {
    pids: children.map((c) => c.pid!),
    nextRound() {
      times = [];
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${mode} round: ${times.length} of ${n} reported in 60 s`)), 60_000);
        onAll = () => (clearTimeout(timer), resolve(times));
      });
    },
    async stop() {
      await Promise.all(children.map((c) => new Promise<void>((r) => (c.removeAllListeners('exit'), c.on('exit', () => r()), c.disconnect()))));
    },
  };
}

/** BEGIN; (epoch bump for the listener round); NOTIFY; COMMIT — returns the wall time COMMIT was sent. */
async function commitNotification(kind: Kind, round: number): Promise<{ committedAt: number; epoch: number }> {
  const client = await (kind === 'listener' ? db : floorDb).pool.connect();
  try {
    await client.query('BEGIN');
    let epoch = 0;
    if (kind === 'listener') {
      const { rows } = await client.query(
        `UPDATE realm_operator.realm_epochs SET epoch = nextval('realm_operator.epoch_seq') WHERE realm_url = $1 RETURNING epoch`,
        [realmURL],
      );
      epoch = Number(rows[0].epoch);
      await notifyAllFileChanges(client, realmURL);
    } else {
      const channel = { receive: RECEIVE_FLOOR_CHANNEL, ack: ACK_FLOOR_CHANNEL, tell: TELL_FLOOR_CHANNEL }[kind];
      await client.query('SELECT pg_notify($1, $2)', [channel, String(round)]);
    }
    const committedAt = wallMs();
    await client.query('COMMIT');
    return { committedAt, epoch };
  } finally {
    client.release();
  }
}

type Kind = 'receive' | 'ack' | 'tell' | 'listener';
const KINDS: Kind[] = ['receive', 'ack', 'tell', 'listener'];
interface Measured {
  receive: number[];
  ack: number[];
  /** The publisher heard all N acks (receive+ack+tell floor). */
  tell: number[];
  /** Every replica's ack row written (as each replica saw its INSERT return). */
  replicas: number[];
  /** The operator's wait returned complete: the acknowledged fan-out. */
  listener: number[];
}

function shuffled<T>(items: T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/**
 * One replica in THIS process, before any fleet starts: no IPC, no other bench process, so what
 * differs from the bare clients is the library's own work (hint + wildcard, ack statement with its
 * NOTIFY, the operator's waiter), not scheduling. Rounds interleaved as in the fleets.
 */
async function inProcess(rounds: number): Promise<Record<'ack' | 'tell' | 'replica' | 'acknowledged', number[]>> {
  const out = { ack: [] as number[], tell: [] as number[], replica: [] as number[], acknowledged: [] as number[] };
  const client = new pg.Client({ connectionString: floorDb.url });
  await client.connect();
  let clientDone: (() => void) | undefined;
  client.on('notification', (m) => {
    const upsert = `INSERT INTO bench_floor_acks (client_id, round) VALUES ('in-process', $1) ON CONFLICT (client_id) DO UPDATE SET round = EXCLUDED.round, acked_at = now()`;
    const statement = m.channel === TELL_FLOOR_CHANNEL ? `WITH acked AS (${upsert} RETURNING client_id) SELECT pg_notify('${TOLD_CHANNEL}', client_id) FROM acked` : upsert;
    void client.query({ name: m.channel, text: statement, values: [Number(m.payload)] }).then(() => m.channel === ACK_FLOOR_CHANNEL && clientDone?.());
  });
  await client.query(`LISTEN ${ACK_FLOOR_CHANNEL}; LISTEN ${TELL_FLOOR_CHANNEL}`);
  const noCache = { dropPath: () => undefined, dropAll: () => undefined, bumpDefinitionsGeneration: () => undefined };
  const listener = new RealmListener({
    connection: db.url,
    replicaId: 'bench-in-process',
    caches: { find: () => noCache, all: () => [noCache] },
    logger: pino({ level: 'silent' }),
    metricsRegistry: new Registry(),
  });
  let replicaDone: (() => void) | undefined;
  listener.on('acknowledged', () => replicaDone?.());
  listener.start();
  await listener.waitUntilReady(60_000);
  for (let round = 0; round < rounds + warmup; round++) {
    for (const kind of shuffled(['ack', 'tell', 'listener'] as const)) {
      if (kind === 'listener') {
        const replica = new Promise<number>((resolve) => (replicaDone = () => resolve(wallMs())));
        const { committedAt, epoch } = await commitNotification('listener', round);
        const waited = await waitForReplicaAcks(db.pool, { realmURL, epoch, timeoutMs: 30_000 });
        const returnedAt = wallMs();
        if (!waited.complete) throw new Error(`in-process round ${round}: not acknowledged`);
        const replicaAt = await replica;
        if (round >= warmup) out.acknowledged.push(returnedAt - committedAt), out.replica.push(replicaAt - committedAt);
      } else {
        toldCount = 0;
        const heard = new Promise<number>((resolve) => {
          if (kind === 'ack') clientDone = () => resolve(wallMs());
          else onToldAll = () => toldCount === 1 && resolve(wallMs());
        });
        const { committedAt } = await commitNotification(kind, round);
        const at = await heard;
        if (round >= warmup) out[kind].push(at - committedAt);
      }
    }
  }
  await listener.stop();
  await client.end();
  await db.pool.query('DELETE FROM realm_operator.replicas');
  return out;
}

/**
 * CPU time per publish, by process group, from /proc/<pid>/schedstat (nanoseconds on a CPU; exact,
 * unlike utime's clock ticks). PostgreSQL backends are told apart by application_name: the floors'
 * clients name themselves after their replica id, the listener `realm-listener:<id>`; everything
 * else of the server (the publisher's pool, the operator's LISTEN, background workers) is "other".
 */
const CPU_KINDS: Kind[] = ['ack', 'tell', 'listener'];
const CPU_GROUPS = ['bench process', 'fleet processes', 'fleet backends', 'other PostgreSQL'] as const;
type CpuGroup = (typeof CPU_GROUPS)[number];
interface CpuPerPublish {
  kind: Kind;
  /** Milliseconds of CPU per publish in each group. */
  ms: Record<CpuGroup, number>;
}
const cpuRounds = Number(process.env.FANOUT_CPU_ROUNDS ?? 20);

async function cpuMs(pid: number | 'self'): Promise<number> {
  try {
    return Number((await readFile(`/proc/${pid}/schedstat`, 'utf8')).split(' ')[0]) / 1e6;
  } catch {
    return 0; // gone (a background worker that exited): its share is lost, not invented
  }
}

/**
 * CPU ms so far of each group: the processes of the fleet the rounds use (the other fleet's only
 * renew leases meanwhile), and every backend of the server (both databases).
 */
async function cpuByGroup(fleet: Fleet): Promise<Record<CpuGroup, number>> {
  const { rows } = await db.pool.query<{ pid: number; application_name: string }>('SELECT pid, application_name FROM pg_stat_activity');
  const isFleetBackend = (name: string) => name.startsWith('bench-raw-') || name.startsWith('realm-listener:bench-listener-');
  const sum = async (pids: number[]) => (await Promise.all(pids.map(cpuMs))).reduce((a, b) => a + b, 0);
  const fleetBackends = rows.filter((r) => isFleetBackend(r.application_name)).map((r) => r.pid);
  const otherBackends = rows.filter((r) => !isFleetBackend(r.application_name)).map((r) => r.pid);
  return {
    'bench process': await cpuMs('self'),
    'fleet processes': await sum(fleet.pids),
    'fleet backends': await sum(fleetBackends),
    'other PostgreSQL': await sum(otherBackends),
  };
}

const single = await inProcess(Number(process.env.FANOUT_IN_PROCESS_ROUNDS ?? 200));
process.stderr.write(`in one process: receive+ack p50 ${fmt(percentile(single.ack, 50))} ms, acknowledged p50 ${fmt(percentile(single.acknowledged, 50))} ms\n`);

const perN: { n: number; measured: Measured; readsPerRound: number; notificationsPerRound: number; cpu: CpuPerPublish[] }[] = [];
const waiter = sharedReplicaAckWaiter(db.pool);
for (const n of counts) {
  const fleetStart = performance.now();
  const [raw, listeners] = await Promise.all([startFleet('raw', n), startFleet('listener', n)]);
  process.stderr.write(`N=${n}: ${2 * n} processes ready in ${Math.round(performance.now() - fleetStart)} ms\n`);
  const measured: Measured = { receive: [], ack: [], tell: [], replicas: [], listener: [] };
  const statsBefore = { ...waiter.stats };
  /** One round of `kind`: commit, wait for all N, record the time when `record`. */
  const runRound = async (kind: Kind, round: number, record: boolean) => {
    const fleet = kind === 'listener' ? listeners : raw;
    const all = fleet.nextRound();
    if (kind === 'tell') {
      toldCount = 0;
      const heard = new Promise<number>((resolve) => (onToldAll = () => toldCount === n && resolve(wallMs())));
      const { committedAt } = await commitNotification(kind, round);
      const heardAt = await heard;
      await all;
      if (record) measured.tell.push(heardAt - committedAt);
    } else {
      const { committedAt, epoch } = await commitNotification(kind, round);
      if (kind === 'listener') {
        const waited = await waitForReplicaAcks(db.pool, { realmURL, epoch, timeoutMs: 30_000 });
        const returnedAt = wallMs();
        if (!waited.complete) throw new Error(`N=${n} round ${round}: replicas missing ${waited.missing.join(', ')}`);
        if (waited.acknowledged.length !== n) throw new Error(`N=${n} round ${round}: ${waited.acknowledged.length} live replicas, expected ${n}`);
        const times = await all;
        if (record) {
          measured.listener.push(returnedAt - committedAt);
          measured.replicas.push(Math.max(...times) - committedAt);
        }
      } else {
        const times = await all;
        if (record) measured[kind as 'receive' | 'ack'].push(Math.max(...times) - committedAt);
      }
    }
    await new Promise((r) => setTimeout(r, 5)); // let the last round's stragglers settle
  };
  for (let round = 0; round < rounds + warmup; round++) {
    for (const kind of shuffled(KINDS)) await runRound(kind, round, round >= warmup);
  }
  const total = rounds + warmup;
  const readsPerRound = (waiter.stats.reads - statsBefore.reads) / total;
  const notificationsPerRound = (waiter.stats.notifications - statsBefore.notifications) / total;
  // CPU per publish: each kind alone for cpuRounds rounds, every process's CPU time before and after.
  const cpu: CpuPerPublish[] = [];
  for (const kind of cpuRounds > 0 ? CPU_KINDS : []) {
    const fleet = kind === 'listener' ? listeners : raw;
    const before = await cpuByGroup(fleet);
    for (let round = 0; round < cpuRounds; round++) await runRound(kind, rounds + warmup + round, false);
    const after = await cpuByGroup(fleet);
    cpu.push({ kind, ms: Object.fromEntries(CPU_GROUPS.map((g) => [g, (after[g] - before[g]) / cpuRounds])) as Record<CpuGroup, number> });
  }
  perN.push({ n, measured, readsPerRound, notificationsPerRound, cpu });
  await Promise.all([raw.stop(), listeners.stop()]);
  await db.pool.query('DELETE FROM realm_operator.replicas');
  const last = perN.at(-1)!;
  process.stderr.write(
    `N=${n}: receive p50 ${fmt(percentile(measured.receive, 50))} ms, receive+ack p50 ${fmt(percentile(measured.ack, 50))} ms, ` +
      `receive+ack+tell p50 ${fmt(percentile(measured.tell, 50))} ms, ` +
      `acknowledged p50 ${fmt(percentile(measured.listener, 50))} ms, ${last.readsPerRound.toFixed(2)} status reads and ${last.notificationsPerRound.toFixed(2)} ack NOTIFYs per publish\n`,
  );
}

const p = (values: number[], q: number) => Number(fmt(percentile(values, q)));
const ratio = (a: number[], b: number[]) => Number((percentile(a, 50) / percentile(b, 50)).toFixed(2));
const latency: BenchTable = {
  title: 'Acknowledged fan-out beside its floors (ms from COMMIT to the last of N; p50 / p99)',
  columns: ['N', 'receive p50', 'p99', 'receive+ack p50', 'p99', 'receive+ack+tell p50', 'p99', 'replicas acked p50', 'p99', 'acknowledged p50', 'p99', 'status reads/publish', 'ack NOTIFYs/publish'],
  rows: perN.map(({ n, measured: m, readsPerRound, notificationsPerRound }) => [
    n,
    p(m.receive, 50),
    p(m.receive, 99),
    p(m.ack, 50),
    p(m.ack, 99),
    p(m.tell, 50),
    p(m.tell, 99),
    p(m.replicas, 50),
    p(m.replicas, 99),
    p(m.listener, 50),
    p(m.listener, 99),
    Number(readsPerRound.toFixed(2)),
    Number(notificationsPerRound.toFixed(2)),
  ]),
  note:
    `${rounds} rounds per kind and N after ${warmup} warm-up rounds, kinds interleaved in shuffled order; the bare clients in a database of their own on the same server ` +
    '(PostgreSQL wakes every LISTENing backend of a NOTIFYing commit\'s database, so in one database each fleet\'s NOTIFYs woke the other fleet too). receive: bare LISTEN clients; ' +
    'receive+ack: bare clients that write one ack row (a named prepared statement, as the listener\'s ack is); receive+ack+tell: the same with a NOTIFY back, timed when the publisher heard all N; ' +
    'replicas acked: listener-library replicas (epoch from the hint, drop cache, then one round trip: the ack row, its COMMIT and the completion check, which calls the announcement when nobody is missing; one NOTIFY to the operator per completion), timed by each replica when that round trip returned ' +
    "(under CPU contention a replica may be scheduled after the operator already heard it); acknowledged: the operator's shared waiter returned " +
    'complete (what a publish waits for). One process per replica in every fleet.',
};
const ratios: BenchTable = {
  title: 'Ratios of medians (same run)',
  columns: ['N', 'acknowledged / receive+ack', 'receive+ack+tell / receive+ack', 'acknowledged / receive+ack+tell', 'replicas acked / receive+ack', 'acknowledged / receive'],
  rows: perN.map(({ n, measured: m }) => [n, ratio(m.listener, m.ack), ratio(m.tell, m.ack), ratio(m.listener, m.tell), ratio(m.replicas, m.ack), ratio(m.listener, m.receive)]),
};
const cpuTotal = (c: CpuPerPublish | undefined) => (c ? CPU_GROUPS.reduce((a, g) => a + c.ms[g], 0) : NaN);
const cpuOf = (n: number, kind: Kind) => perN.find((x) => x.n === n)!.cpu.find((c) => c.kind === kind);
const cpuTable: BenchTable = {
  title: 'CPU per publish (ms on any core; each kind alone after the timed rounds)',
  columns: ['N', 'kind', ...CPU_GROUPS, 'total', '× receive+ack'],
  rows: perN.flatMap(({ n, cpu }) =>
    cpu.map((c) => [n, c.kind === 'listener' ? 'acknowledged (ours)' : c.kind === 'ack' ? 'receive+ack' : 'receive+ack+tell', ...CPU_GROUPS.map((g) => Number(c.ms[g].toFixed(2))), Number(cpuTotal(c).toFixed(2)), Number((cpuTotal(c) / cpuTotal(cpuOf(n, 'ack'))).toFixed(2))]),
  ),
  note:
    `${cpuRounds} rounds of each kind alone per N (FANOUT_CPU_ROUNDS), every process's CPU time from /proc/<pid>/schedstat before and after. ` +
    'fleet processes: the Node processes of the fleet the kind uses; fleet backends: both fleets\' PostgreSQL backends (a NOTIFYing commit wakes every LISTENing backend ' +
    'of its database: each fleet has a database of its own, as a deployment would); other PostgreSQL: the publisher\'s pool, the operator\'s LISTEN connection and background processes; bench process: the publisher and the operator\'s waiter. ' +
    'On 2 cores, with every process runnable at once, the fan-out takes at least total ÷ 2.',
};
const cpus = os.cpus().length;
const readsOf = (n: number) => perN.find((x) => x.n === n)!.readsPerRound.toFixed(2);
const notificationsOf = (n: number) => perN.find((x) => x.n === n)!.notificationsPerRound.toFixed(2);
/** The CPU side of a missed goal, from the CPU table. */
function cpuWhy(n: number): string {
  const ours = cpuOf(n, 'listener');
  const floor = cpuOf(n, 'ack');
  if (!ours || !floor) return '';
  const ms = (c: CpuPerPublish, g: CpuGroup) => c.ms[g].toFixed(1);
  return (
    `(3) CPU per publish (all processes, each kind alone): ours ${cpuTotal(ours).toFixed(1)} ms, receive+ack ${cpuTotal(floor).toFixed(1)} ms ` +
    `(${(cpuTotal(ours) / cpuTotal(floor)).toFixed(2)}×) — replica processes ${ms(ours, 'fleet processes')} vs ${ms(floor, 'fleet processes')} ms, ` +
    `their backends ${ms(ours, 'fleet backends')} vs ${ms(floor, 'fleet backends')} ms, the operator side ${(ours.ms['bench process'] + ours.ms['other PostgreSQL']).toFixed(1)} vs ` +
    `${(floor.ms['bench process'] + floor.ms['other PostgreSQL']).toFixed(1)} ms. ` +
    'Every NOTIFYing commit wakes every LISTENing backend of its database (the fleet\'s and the operator\'s): a publish of ours has two (the publisher\'s hint and wildcard, and the one completion NOTIFY), the floor one; ' +
    'each listener receives two notifications (the hint and Boxel\'s wildcard), a bare client one; the publisher also bumps the epoch (one more statement), and the operator parses the completion\'s proof. ' +
    (n > 1
      ? 'Per replica ours sends one round trip, as the floor does, but runs four statements in it where the floor runs one: BEGIN, the ack (on a table with two indexes, so not a HOT update), COMMIT and the completion check (is any live replica still missing? two index probes; the last ack\'s check also calls the announcement, which claims and builds the proof), ' +
        'which every ack must carry because acks committing together cannot see each other and the last to commit must still tell the operator; ' +
        'without a lock serializing every ack of a publish (a convoy on a saturated machine) no replica can know it is not the last.'
      : 'With one replica the ack itself completes the set: its statement also checks that no other replica is registered and NOTIFYs, where the floor only writes a row.')
  );
}

const goals: BenchGoal[] = perN.map(({ n, measured: m }) => {
  const r = ratio(m.listener, m.ack);
  const met = r <= GOAL_RATIO;
  return {
    goal: `Acknowledged fan-out at ${n} replica${n === 1 ? '' : 's'}`,
    target: `≤ ${GOAL_RATIO}× receive+ack floor (p50)`,
    measured: `${r}× (${fmt(percentile(m.listener, 50))} ms vs ${fmt(percentile(m.ack, 50))} ms)`,
    met,
    ...(met
      ? {}
      : {
          why:
            `all from this run: (1) the publisher must learn of the acks, which the receive+ack floor never does; the floor that does ` +
            `(receive+ack+tell: bare clients that also NOTIFY the publisher) is already ${ratio(m.tell, m.ack)}× receive+ack here, and ours is ` +
            `${ratio(m.listener, m.tell)}× that one. (2) The replica side (every listener's ack row written) is ${ratio(m.replicas, m.ack)}× receive+ack, ` +
            `where in one process without the fleet the library costs ${ratio(single.replica, single.ack)}× (ack written) and ` +
            `${ratio(single.acknowledged, single.ack)}× (operator's wait returned): the rest is ${n} Node process${n === 1 ? '' : 'es'} per fleet ` +
            `contending for ${cpus} cores (load average ${os.loadavg()[0]!.toFixed(1)} at the end), which costs a listener replica (two notifications, ` +
            `lease heartbeats, a bigger process) more than a bare client. Per publish: the epoch comes with the NOTIFY (no read), the ack is one ` +
            `round trip (the ack row, its COMMIT and the completion check, which calls the announcement when nobody is missing), the operator heard ${notificationsOf(n)} ack NOTIFYs ` +
            `(one NOTIFY per completion: each wakes every LISTENing backend; it carries the completion proof, so the wait ends on it) and made ${readsOf(n)} status reads ` +
            `(none when the waiter's LISTEN was up before the COMMIT: docs/protocol.md §5). ` +
            cpuWhy(n),
        }),
  };
});

const inOneProcess: BenchTable = {
  title: 'One replica in the bench process itself (ms from COMMIT; p50 / p99; ratio of medians to receive+ack)',
  columns: ['measured', 'p50', 'p99', '× receive+ack'],
  rows: [
    ['receive+ack (bare client)', p(single.ack, 50), p(single.ack, 99), 1],
    ['receive+ack+tell (bare client, publisher heard it)', p(single.tell, 50), p(single.tell, 99), ratio(single.tell, single.ack)],
    ['listener library: ack written', p(single.replica, 50), p(single.replica, 99), ratio(single.replica, single.ack)],
    ["listener library: operator's wait returned", p(single.acknowledged, 50), p(single.acknowledged, 99), ratio(single.acknowledged, single.ack)],
  ],
  note:
    `${single.ack.length} rounds each, interleaved, before any fleet started: no IPC and no other bench process, so the difference from the ` +
    "bare client is the library's own work (two notifications, the ack statement with its completion claim and NOTIFY — one replica's ack always completes the set — whose completion proof ends the operator's wait with no status read), not scheduling.",
};
for (const table of [latency, ratios, cpuTable, inOneProcess]) printTable(table);
console.log('\nGoals');
for (const g of goals) console.log(`${g.met ? 'met   ' : 'MISSED'}  ${g.goal}: ${g.measured} (target ${g.target})${g.why ? `\n        why: ${g.why}` : ''}`);

const file = await writeResults({
  bench: 'fanout',
  command: 'make bench-fanout',
  startedAt: started.toISOString(),
  durationSeconds: Math.round((Date.now() - started.getTime()) / 1000),
  tables: [latency, ratios, cpuTable, inOneProcess],
  series: [
    {
      title: 'Fan-out latency, median ms from COMMIT',
      xLabel: 'replicas (N)',
      yLabel: 'ms (p50)',
      lines: [
        { name: 'receive (floor)', points: perN.map(({ n, measured: m }) => [n, percentile(m.receive, 50)]) },
        { name: 'receive+ack (floor)', points: perN.map(({ n, measured: m }) => [n, percentile(m.ack, 50)]) },
        { name: 'receive+ack+tell (floor)', points: perN.map(({ n, measured: m }) => [n, percentile(m.tell, 50)]) },
        { name: 'replicas acked', points: perN.map(({ n, measured: m }) => [n, percentile(m.replicas, 50)]) },
        { name: 'acknowledged (operator)', points: perN.map(({ n, measured: m }) => [n, percentile(m.listener, 50)]) },
      ],
    },
    {
      title: 'Acknowledged fan-out / receive+ack floor (medians)',
      xLabel: 'replicas (N)',
      yLabel: 'ratio',
      lines: [
        { name: 'acknowledged / receive+ack', points: perN.map(({ n, measured: m }) => [n, ratio(m.listener, m.ack)]) },
        { name: 'receive+ack+tell / receive+ack', points: perN.map(({ n, measured: m }) => [n, ratio(m.tell, m.ack)]) },
        { name: `goal (${GOAL_RATIO}×)`, points: perN.map(({ n }) => [n, GOAL_RATIO]) },
      ],
    },
  ],
  goals,
  raw: perN.map(({ n, measured: m, readsPerRound, notificationsPerRound, cpu }) => ({
    n,
    cpu,
    rounds: m.listener.length,
    readsPerRound,
    notificationsPerRound,
    p50: { receive: percentile(m.receive, 50), ack: percentile(m.ack, 50), tell: percentile(m.tell, 50), replicas: percentile(m.replicas, 50), acknowledged: percentile(m.listener, 50) },
    p99: { receive: percentile(m.receive, 99), ack: percentile(m.ack, 99), tell: percentile(m.tell, 99), replicas: percentile(m.replicas, 99), acknowledged: percentile(m.listener, 99) },
  })),
});
console.log(`\nwrote ${path.relative(process.cwd(), file)}`);
await told.end();
await close();
