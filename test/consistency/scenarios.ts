/**
 * The scenarios of the consistency suite (issue 5; f and g from issue 8). Each builds its own world (see
 * harness.ts): 3 realm-server replicas and one operator unless stated, a PublishedRealm Ready at
 * revision 0, a reader per replica, then `publishes` revisions with the scenario's fault
 * injected while they are in flight. Each returns its counts; the caller asserts.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { RealmsLayout } from '../../src/dataplane/layout.js';
import { startEmbeddedPostgres } from '../support/embedded-postgres.js';
import type { OperatorProcess } from '../support/operator-process.js';
import { createSourceRealm, writeFiles } from '../support/realms.js';
import { fileContent } from './content.js';
import { formatResult, ScenarioEnv, withTimeout, type RealmObjectTarget, type ScenarioEnvOptions, type ScenarioResult } from './harness.js';
import { sleep } from './reader.js';

export const PUBLISH_STEPS = ['staged', 'reserved', 'locked', 'installed', 'swapped', 'recorded', 'committed', 'cleaned'] as const;

const random = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1));
const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!;

/** Pause between publishes, so caches fill (and are hit) between invalidations. */
const settle = () => sleep(random(50, 300));

export interface ScenarioRun {
  result: ScenarioResult;
  /** Printed summary (also written to stderr). */
  summary: string;
}

/**
 * Creates the world, starts `replicas` replicas and the operator(s) `setup` asks for, publishes
 * revision 0, starts reading, runs `body`, and always tears everything down. A failure inside
 * `body` is rethrown after the summary of what was measured up to then is printed.
 */
export async function runScenario(
  options: ScenarioEnvOptions & {
    replicas?: number;
    publishes: number;
    prepare?: (env: ScenarioEnv) => Promise<void>;
    /** How the n-th first replica (0-based) is started (e.g. behind a proxy, or faulty). */
    replicaOptions?: (index: number) => Parameters<ScenarioEnv['startReplica']>[0];
  },
  body: (env: ScenarioEnv) => Promise<void>,
): Promise<ScenarioRun> {
  const env = await ScenarioEnv.create(options);
  let failure: unknown;
  try {
    await options.prepare?.(env);
    // All settled before a failure is thrown: a replica still starting when teardown ran would outlive it.
    const started = await Promise.allSettled(Array.from({ length: options.replicas ?? 3 }, (_, index) => env.startReplica(options.replicaOptions?.(index))));
    for (const outcome of started) if (outcome.status === 'rejected') throw outcome.reason;
    await env.startOperator();
    await env.createRealm();
    await env.recordReplicaSessions();
    env.startReaders();
    await sleep(200);
    await body(env);
    await sleep(300); // a last stretch of reads after the final Ready
  } catch (error) {
    failure = error;
  }
  await env.close().catch((error: Error) => env.notes.push(`teardown: ${error.message}`));
  const result = env.result(options.publishes);
  const summary = formatResult(result);
  process.stderr.write(`${summary}\n`);
  if (failure) {
    if (failure instanceof Error) failure.message += `\n(measured so far)\n${summary}`;
    throw failure;
  }
  return { result, summary };
}

/** a. No faults. */
export function noFaults(publishes: number): Promise<ScenarioRun> {
  return runScenario({ name: 'nofault', publishes }, async (env) => {
    for (let i = 1; i <= publishes; i++) {
      await env.publish(i);
      await settle();
    }
  });
}

/** b. A replica's listener connection killed with pg_terminate_backend during every publish (and between some). */
export function listenerKilled(publishes: number): Promise<ScenarioRun> {
  return runScenario({ name: 'listener', publishes }, async (env) => {
    const kill = async (replicaId: string) => {
      const { rows } = await env.db.pool.query<{ killed: boolean }>(
        `SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()`,
        [`realm-listener:${replicaId}`],
      );
      const killed = rows.filter((r) => r.killed).length;
      env.count(killed > 0 ? 'listener connection terminated' : 'listener not connected at that moment');
    };
    for (let i = 1; i <= publishes; i++) {
      const ids = env.replicaIds();
      await env.publish(i, async () => {
        await sleep(random(0, 150));
        await kill(ids[i % ids.length]!);
        // Every third publish, a second replica too, a little later (often while the first resyncs).
        if (i % 3 === 0) {
          await sleep(random(0, 100));
          await kill(ids[(i + 1) % ids.length]!);
        }
      });
      if (i % 4 === 0) await kill(pick(env.replicaIds())); // while idle: the cache must be rebuilt after resync
      await settle();
    }
  });
}

/** c. Replicas SIGKILLed (restarted under the same id, or not), scaled up to 5 and down (SIGTERM) to 3, during publishes. */
export function replicaChurn(publishes: number): Promise<ScenarioRun> {
  const cycle = ['kill-restart', 'scale-up', 'scale-up', 'kill', 'kill-restart', 'scale-down'] as const;
  return runScenario({ name: 'churn', publishes }, async (env) => {
    for (let i = 1; i <= publishes; i++) {
      let action: (typeof cycle)[number] = cycle[(i - 1) % cycle.length]!;
      const n = env.replicaIds().length;
      if (action === 'scale-up' && n >= 5) action = 'scale-down';
      if ((action === 'scale-down' || action === 'kill') && n <= 3) action = 'scale-up';
      await env.publish(i, async () => {
        await sleep(random(0, 150));
        const victim = pick(env.replicaIds());
        switch (action) {
          case 'kill-restart':
            await env.stopReplica(victim, 'SIGKILL');
            await env.startReplica({ id: victim });
            env.count('SIGKILL + restart');
            break;
          case 'kill':
            await env.stopReplica(victim, 'SIGKILL');
            env.count('SIGKILL (scale down by crash)');
            break;
          case 'scale-up':
            await env.startReplica();
            env.count('scale up');
            break;
          case 'scale-down':
            await env.stopReplica(victim, 'SIGTERM');
            env.count('scale down (SIGTERM)');
            break;
        }
      });
      await settle();
    }
    env.notes.push(`replicas at the end: ${env.replicaIds().join(', ')}`);
  });
}

/**
 * d. The operator SIGKILLed at each step of a publish (a process with
 * REALM_OPERATOR_FAULT_CRASH_AT_STEP, then a normal one finishes), and leader failovers (a
 * standby takes over when the leader is SIGKILLed mid-publish). Odd publishes are faulted,
 * cycling through the 8 steps and the failover; even ones are plain. At least 18 publishes, so
 * every fault happens at least once.
 */
export function operatorCrashes(requested: number): Promise<ScenarioRun> {
  const faults = [...PUBLISH_STEPS, 'failover'] as const;
  const publishes = Math.max(requested, faults.length * 2);
  return runScenario({ name: 'operator', publishes }, async (env) => {
    const running = () => env.operators.filter((o) => o.child.exitCode === null && o.child.signalCode === null);
    for (let i = 1; i <= publishes; i++) {
      if (i % 2 === 0) {
        await env.publish(i);
        await settle();
        continue;
      }
      const fault = faults[((i - 1) / 2) % faults.length]!;
      if (fault === 'failover') {
        const leaders = running();
        if (leaders.length !== 1) throw new Error(`expected one running operator before a failover, found ${leaders.map((o) => o.identity).join(', ')}`);
        const leader = leaders[0]!;
        await env.startOperator(); // the standby
        const seen = new Set(leader.logs());
        await env.publish(i, async () => {
          await leader.waitForLog((l) => l.msg === 'publishing' && !seen.has(l), 30_000);
          await env.stopOperator(leader, 'SIGKILL');
          env.count('leader SIGKILLed mid-publish (failover)');
        });
      } else {
        // The crashing operator must lead: stop the others first (SIGTERM releases the lease).
        await Promise.all(running().map((o) => env.stopOperator(o, 'SIGTERM')));
        const crasher: OperatorProcess = await env.startOperator({ crashAtStep: fault });
        await env.publish(i, async () => {
          const exit = await withTimeout(crasher.exited, 45_000, `the operator with REALM_OPERATOR_FAULT_CRASH_AT_STEP=${fault} did not crash within 45 s;\n${env.operatorLogTail(20)}`);
          if (exit.signal !== 'SIGKILL') throw new Error(`the operator crashing at ${fault} exited with ${JSON.stringify(exit)}, not SIGKILL;\n${env.operatorLogTail(20)}`);
          env.count(`SIGKILL at step ${fault}`);
          await env.startOperator();
        });
      }
      await settle();
    }
  });
}

/** e. PostgreSQL restarted (fast shutdown, ~1 s down, start) during every third publish; everything must recover by itself. */
export async function postgresRestarts(publishes: number): Promise<ScenarioRun> {
  const postgres = await startEmbeddedPostgres();
  let down = false;
  try {
    return await runScenario({ name: 'postgres', publishes, adminURL: postgres.adminURL, readyTimeoutMs: 90_000 }, async (env) => {
      for (let i = 1; i <= publishes; i++) {
        const restart = i % 3 === 1;
        await env.publish(i, restart ? async () => {
          await sleep(random(0, 200));
          // Every replica loses its database: each may refuse reads (never serve stale ones) until it is back.
          for (const id of env.replicaIds()) env.markFaulted(id);
          down = true;
          await postgres.stop();
          await sleep(1000);
          await postgres.start();
          down = false;
          env.count('PostgreSQL restart');
        } : undefined);
        await settle();
      }
    });
  } finally {
    if (down) await postgres.start().catch(() => undefined);
    await postgres.destroy();
  }
}

/** The files of the nested realm (paths relative to it). */
export const NESTED_FILES: readonly string[] = ['index.json', 'cards/1.json', 'people/team/leads.json', 'deep/a/b/c/d/leaf.json'];
const NESTED_SEGMENT = 'inner/';
const nestedContent = (revision: number) => Object.fromEntries(NESTED_FILES.map((f) => [f, fileContent(f, revision)]));

/**
 * f. A realm at a URL nested inside the published realm's URL appears and disappears while both
 * are published. The parent realm holds its own copies of the nested paths, so a replica that
 * resolves them to the parent serves a complete file of the parent (200), not a 404. Cycle of
 * four publishes: "Boxel" registers the nested URL (a published realm in Boxel's own layout, as
 * the operator only takes over nested URLs that are already registered) and a PublishedRealm
 * takes it over; the parent is republished; the nested realm is republished; the parent is
 * republished and the nested PublishedRealm deleted (unpublished). Readers on every replica
 * read the nested paths: after the nested realm is Ready for revision i they must get the nested
 * realm (`x-realm-url`) at revision ≥ i.
 */
export function nestedRealm(publishes: number): Promise<ScenarioRun> {
  return runScenario(
    { name: 'nested', publishes, extraSourceFiles: (revision) => Object.fromEntries(NESTED_FILES.map((f) => [`${NESTED_SEGMENT}${f}`, fileContent(f, revision)])) },
    async (env) => {
      const layout = new RealmsLayout(env.realmsRoot);
      const checker = env.newChecker();
      const sourceURL = 'http://localhost:4201/consistency-src-nested-inner/';
      const inner: RealmObjectTarget = {
        name: 'inner',
        sourceURL,
        publishedURL: `${env.publishedURL}${NESTED_SEGMENT}`,
        sourceDir: await createSourceRealm(env.db.pool, layout, sourceURL, nestedContent(0), 'consistency/nested-inner'),
        content: nestedContent,
        checker,
        requireRealm: true,
      };
      env.addReadTarget('nested realm', { realmPath: `${env.realmPath}${NESTED_SEGMENT}`, files: NESTED_FILES, checker });
      // Let every replica cache the parent's copies of the nested paths first.
      await sleep(300);
      for (let i = 1; i <= publishes; i++) {
        switch ((i - 1) % 4) {
          case 0:
            await registerAsBoxel(env, layout, inner.publishedURL, nestedContent(i));
            env.count('nested URL registered (Boxel layout)');
            await env.createRealm(inner, i);
            env.count('nested realm published');
            break;
          case 1:
            await env.publish(i);
            break;
          case 2:
            await env.publish(i, undefined, inner);
            env.count('nested realm republished');
            break;
          case 3:
            await env.publish(i);
            await env.deleteRealm(inner);
            env.count('nested realm unpublished');
            break;
        }
        await settle();
      }
    },
  );
}

/**
 * What Boxel's publish leaves for a realm it published: `_published/<uuid>/` as a plain
 * directory, a `published` registry row, and `realm_registry 'upsert:<url>'` plus the wildcard
 * NOTIFY in one transaction.
 */
async function registerAsBoxel(env: ScenarioEnv, layout: RealmsLayout, url: string, files: Record<string, string>): Promise<void> {
  const diskId = randomUUID();
  await writeFiles(layout.publishedDir(diskId), files);
  const client = await env.db.pool.connect();
  try {
    await client.query('BEGIN');
    await client.query(
      `INSERT INTO realm_registry (url, kind, disk_id, owner_username, source_url, last_published_at) VALUES ($1, 'published', $2, 'boxel', $3, $4)`,
      [url, diskId, env.sourceURL, Date.now()],
    );
    await client.query(`SELECT pg_notify('realm_registry', $1), pg_notify('realm_file_changes', $2)`, [`upsert:${url}`, `${url}:*`]);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

const NOBODY = 65534;

/**
 * g. The source realm holds a mode-000 file in a sub-directory and a mode-000 sub-directory, and
 * during every publish files and whole directories appear and vanish in it. The operator runs
 * unprivileged (as uid 65534 when the tests run as root) so the mode-000 entries are genuinely
 * unreadable to it (root reads them regardless). Every publish must become Ready, the operator must never exit by
 * itself, and readers see no stale or torn file; the unreadable file is left out.
 */
export function unreadableSource(publishes: number): Promise<ScenarioRun> {
  return runScenario(
    {
      name: 'unreadable',
      publishes,
      operatorUid: NOBODY,
      prepare: async (env) => {
        await writeFiles(env.sourceDir, { 'private/secret.json': '{"secret":true}', 'locked/inside.json': '{"locked":true}' });
        await fs.chmod(path.join(env.sourceDir, 'private/secret.json'), 0o000);
        await fs.chmod(path.join(env.sourceDir, 'locked'), 0o000);
      },
    },
    async (env) => {
      for (const operator of env.operators) {
        const status = await fs.readFile(`/proc/${operator.child.pid}/status`, 'utf8').catch(() => '');
        const uid = /^Uid:\s+(\d+)/m.exec(status)?.[1];
        if (uid !== undefined && uid !== '0') env.count('operator ran unprivileged');
      }
      for (let i = 1; i <= publishes; i++) {
        await env.publish(i, async () => {
          // Files and directories created and deleted while the operator stages the realm.
          const until = Date.now() + random(100, 400);
          let n = 0;
          while (Date.now() < until) {
            const dir = path.join(env.sourceDir, 'churn', `d${n % 3}`);
            await writeFiles(dir, { 'a.json': `{"n":${n}}`, 'sub/b.json': `{"n":${n}}` });
            await sleep(random(0, 5));
            await (n % 2 === 0 ? fs.rm(dir, { recursive: true, force: true }) : fs.rm(path.join(dir, 'a.json'), { force: true }));
            n += 1;
          }
          env.count('source entries created and deleted mid-publish', n);
        });
        await settle();
      }
      const { rows } = await env.db.pool.query<{ disk_id: string }>('SELECT disk_id FROM realm_registry WHERE url = $1', [env.publishedURL]);
      const publishedDir = new RealmsLayout(env.realmsRoot).publishedDir(rows[0]!.disk_id);
      const present = async (rel: string) => fs.access(path.join(publishedDir, rel)).then(() => true, () => false);
      if (!(await present('private/secret.json')) && !(await present('locked/inside.json')) && (await present('index.json'))) {
        env.count('unreadable entries left out of the published realm');
      }
    },
  );
}
