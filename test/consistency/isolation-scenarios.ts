/**
 * Scenarios of issue 13: the lease/fence path with a replica that stays alive but is cut off
 * (partitioned from PostgreSQL behind a TCP proxy, or SIGSTOPped past its lease), several realms
 * on several hosts with unpublish and republish, and deliberately faulty replicas the checker
 * must catch (proof that it can fail).
 */
import { RealmsLayout } from '../../src/dataplane/layout.js';
import type { Misbehaviour } from '../support/realm-server-process.js';
import { createSourceRealm } from '../support/realms.js';
import { REALM_FILES, realmContent } from './content.js';
import type { RealmObjectTarget, ScenarioEnv } from './harness.js';
import { sleep } from './reader.js';
import { runScenario, type ScenarioRun } from './scenarios.js';

/** How long a cut-off replica stays cut off after the driver saw Ready (its readers keep reading it). */
const HOLD_AFTER_READY_MS = 1500;

/** Ready without `replica`: it never acknowledged the epoch Ready reports (counted as a fault the test asserts). */
async function countReadyWithout(env: ScenarioEnv, replica: string, what: string): Promise<void> {
  const { status } = await env.getRealm();
  const acked = await env.ackedEpoch(replica, env.publishedURL);
  if (status?.epoch !== undefined && acked < status.epoch) env.count(`Ready without the ${what} replica`);
  else env.notes.push(`${replica} had acknowledged epoch ${acked} of the Ready epoch ${status?.epoch}: Ready did not have to wait for its lease`);
}

/**
 * h. One replica's PostgreSQL connections go through a TCP proxy. Every odd publish: the proxy
 * blackholes (no byte either way, sockets open) shortly BEFORE the PATCH, so the replica can
 * neither hear the invalidation nor renew its lease while it goes on serving HTTP. The publish must
 * reach Ready without it (once its lease lapsed), and while it stays cut off (and after it heals)
 * it must never answer a read started after Ready with older content: it fences (refuses, or
 * serves what is on disk). Probe readers started right after Ready make sure reads that start
 * while it is cut off are judged (its regular reader's request may hang for the whole cut). Then the partition heals, the replica resyncs, and an even publish
 * follows with every replica.
 */
export function partitionedReplica(publishes: number, misbehave?: Misbehaviour): Promise<ScenarioRun> {
  const name = misbehave ? 'partition-faulty' : 'partition';
  return runScenario({ name, publishes, replicaOptions: (index) => (index === 0 ? { viaProxy: true, ...(misbehave ? { misbehave } : {}) } : {}) }, async (env) => {
    const cut = env.replicaIds().find((id) => env.replica(id).proxy)!;
    for (let i = 1; i <= publishes; i++) {
      if (i % 2 === 0) {
        await env.publish(i);
        await sleep(200);
        continue;
      }
      // Its cache is warm (readers read it) when it is cut off.
      env.partitionReplica(cut);
      env.count('replica partitioned from PostgreSQL');
      await sleep(100 + Math.floor(Math.random() * 300));
      await env.publish(i);
      const stopProbes = env.probeReplica(cut);
      try {
        await countReadyWithout(env, cut, 'partitioned');
        await sleep(HOLD_AFTER_READY_MS);
      } finally {
        env.healReplica(cut);
      }
      await env.replica(cut).proc.waitReady(30_000);
      await stopProbes();
      env.count('partition healed, replica resynced');
    }
  });
}

/**
 * i. Every odd publish: a replica (in turn) is SIGSTOPped shortly before the PATCH, so it holds
 * its cache, its sockets and its timers frozen while its lease runs out; Ready must come without
 * it. HOLD_AFTER_READY_MS after the driver saw Ready it is SIGCONTed: the reads its reader
 * started meanwhile are answered then, and none may be older than Ready (its fence must hold on a
 * clock that jumped). It must then resync by itself.
 */
export function pausedReplica(publishes: number): Promise<ScenarioRun> {
  return runScenario({ name: 'pause', publishes }, async (env) => {
    for (let i = 1; i <= publishes; i++) {
      if (i % 2 === 0) {
        await env.publish(i);
        await sleep(200);
        continue;
      }
      const ids = env.replicaIds();
      const paused = ids[((i - 1) / 2) % ids.length]!;
      env.pauseReplica(paused);
      env.count('replica SIGSTOPped');
      await sleep(100 + Math.floor(Math.random() * 300));
      let stopProbes = async () => {};
      try {
        await env.publish(i);
        stopProbes = env.probeReplica(paused);
        await countReadyWithout(env, paused, 'paused');
        await sleep(HOLD_AFTER_READY_MS);
      } finally {
        env.resumeReplica(paused);
      }
      env.count('replica SIGCONTed past its lease');
      await env.replica(paused).proc.waitReady(30_000);
      await stopProbes();
    }
  });
}

/**
 * j. Several realms on several hosts: the main realm on `pub.localhost`, one under a deeper path
 * on `other.localhost`, one on `third.localhost`; revisions are published to each in turn, and
 * every fourth step the second realm is unpublished (its PublishedRealm deleted) and then
 * published again (created anew) at a newer revision. Every replica reads every realm; reads of
 * the second and third realms must also be served by that realm (`x-realm-url`).
 */
export function severalRealms(publishes: number): Promise<ScenarioRun> {
  return runScenario({ name: 'multi', publishes }, async (env) => {
    const layout = new RealmsLayout(env.realmsRoot);
    const realm = async (name: string, host: string, urlPath: string): Promise<RealmObjectTarget> => {
      const sourceURL = `http://localhost:4201/consistency-src-multi-${name}/`;
      const checker = env.newChecker();
      const target: RealmObjectTarget = {
        name,
        sourceURL,
        publishedURL: `http://${host}${urlPath}`,
        sourceDir: await createSourceRealm(env.db.pool, layout, sourceURL, realmContent(0), `consistency/multi-${name}`),
        content: realmContent,
        checker,
        requireRealm: true,
      };
      env.addReadTarget(`${name} (${target.publishedURL})`, { host, realmPath: urlPath, files: REALM_FILES, checker });
      await env.createRealm(target, 0);
      return target;
    };
    const second = await realm('second', 'other.localhost', '/teams/blue/consistency-multi-second/');
    const third = await realm('third', 'third.localhost', '/consistency-multi-third/');
    const targets = [env.main, second, third];
    await sleep(300);
    for (let i = 1; i <= publishes; i++) {
      if (i % 4 === 0) {
        await env.deleteRealm(second);
        env.count('second realm unpublished');
        await sleep(300); // reads of the unpublished realm (nothing is required of them)
        await env.createRealm(second, i);
        env.count('second realm republished');
      } else {
        await env.publish(i, undefined, targets[(i - 1) % targets.length]!);
      }
      await sleep(100 + Math.floor(Math.random() * 200));
    }
  });
}

/**
 * k. Proof that the checker fails: one of the three replicas is the deliberately faulty test
 * replica that acknowledges an invalidation at once but empties its cache `dropLateMs` later.
 * No other fault. The checker must report stale reads after Ready from that replica (and only it).
 */
export function lateCacheDrop(publishes: number, dropLateMs = 1500): Promise<ScenarioRun> {
  return runScenario({ name: 'late-drop', publishes, replicaOptions: (index) => (index === 0 ? { misbehave: { dropCacheLateMs: dropLateMs } } : {}) }, async (env) => {
    for (let i = 1; i <= publishes; i++) {
      await env.publish(i);
      await sleep(dropLateMs + 300);
    }
  });
}
