/**
 * The five scenarios of the consistency suite (issue 5). Each builds its own world (see
 * harness.ts): 3 realm-server replicas and one operator unless stated, a PublishedRealm Ready at
 * revision 0, a reader per replica, then `publishes` revisions with the scenario's fault
 * injected while they are in flight. Each returns its counts; the caller asserts.
 */
import { startEmbeddedPostgres } from '../support/embedded-postgres.js';
import type { OperatorProcess } from '../support/operator-process.js';
import { formatResult, ScenarioEnv, withTimeout, type ScenarioEnvOptions, type ScenarioResult } from './harness.js';
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
async function runScenario(
  options: ScenarioEnvOptions & { replicas?: number; publishes: number },
  body: (env: ScenarioEnv) => Promise<void>,
): Promise<ScenarioRun> {
  const env = await ScenarioEnv.create(options);
  let failure: unknown;
  try {
    await Promise.all(Array.from({ length: options.replicas ?? 3 }, () => env.startReplica()));
    await env.startOperator();
    await env.createRealm();
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
