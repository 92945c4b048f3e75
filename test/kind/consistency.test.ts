/**
 * Consistency in the real cluster: a run of publishes of one PublishedRealm with a reader on every
 * realm-server pod (test/consistency's checker and reader, each pod reached by its own
 * `kubectl port-forward`), while the cluster does what clusters do — the realm-server Deployment is
 * scaled up and down as an autoscaler would (the scale subresource), a pod is deleted (graceful), a
 * realm-server container's process is SIGKILLed from the node, the Deployment is rolled
 * (`kubectl rollout restart`), and the operator pod holding the leader Lease is deleted.
 *
 * Each fault runs while revisions are published back to back, and one more publish follows it.
 * Required: every publish reaches Ready, and no read that started after Ready for revision N
 * returned an older revision (0 stale reads), nor a torn file, nor another pod's answer; no pod
 * went back to an older revision of a file (0 regressions); and reads after a Ready failed (non-200
 * or transport error) only on pods the test faulted (deleted, killed, scaled down, rolled away).
 *
 * T_N here is when the driver's poll saw Ready (the operator in the cluster logs at info, without
 * the debug line test/consistency/ready-time.ts reads), on the readers' clock (`Date.now()`):
 * reads between the status write and the poll are not checked in this suite; the process-level
 * suite (test/e2e/consistency*.test.ts) checks them.
 */
import { ConsistencyChecker, now, percentile } from '../consistency/checker.js';
import { checkBody, REALM_FILES, realmContent } from '../consistency/content.js';
import {
  api,
  closeApi,
  getFromEveryRealmServer,
  getPod,
  killContainerProcess,
  kubectl,
  leaderPod,
  listPods,
  must,
  realmServerPods,
  sleep,
  SYSTEM_NAMESPACE,
  waitFor,
  waitRealmServersSettled,
} from '../support/kind.js';
import { KindRealm } from '../support/kind-realm.js';
import { PodReaders } from '../support/kind-readers.js';
import { Toolbox } from '../support/kind-toolbox.js';

const BASE_REPLICAS = 3;
const SCALED_REPLICAS = 5;
const HOST = 'consistency.localhost';

const checker = new ConsistencyChecker();
let toolbox: Toolbox;
let realm: KindRealm;
let readers: PodReaders | undefined;
let revision = 0;
const publishes: Array<{ revision: number; latencyMs: number; during: string }> = [];
const faults: Array<{ name: string; detail: string; publishes: number; reads: number; ms: number }> = [];

/** Pods the test faulted: only these may fail reads after a Ready. */
const faultedPods = new Set<string>();

async function publishNext(during: string): Promise<void> {
  revision += 1;
  const sent = now();
  checker.settle(sent);
  const published = revision;
  // On the readers' clock (the argument is another clock's time of the same moment).
  await realm.publish(published, () => checker.markReady(published, now()));
  publishes.push({ revision: published, latencyMs: now() - sent, during });
}

/** Runs `fault` while publishing revision after revision (at least one during it), then one more publish. */
async function duringPublishes(name: string, fault: () => Promise<string>): Promise<void> {
  const started = now();
  const readsBefore = checker.counts.reads;
  const publishesBefore = publishes.length;
  let outcome: { detail: string } | { error: unknown } | undefined;
  const running = fault().then(
    (detail) => void (outcome = { detail }),
    (error: unknown) => void (outcome = { error }),
  );
  try {
    do await publishNext(name);
    while (!outcome);
  } finally {
    await running;
  }
  if ('error' in outcome) throw outcome.error;
  await publishNext(`after ${name}`);
  faults.push({ name, detail: outcome.detail, publishes: publishes.length - publishesBefore, reads: checker.counts.reads - readsBefore, ms: Math.round(now() - started) });
}

async function scaleRealmServers(replicas: number): Promise<void> {
  // What an autoscaler does: write the Deployment's scale subresource.
  await api({
    method: 'PATCH',
    path: `/apis/apps/v1/namespaces/${SYSTEM_NAMESPACE}/deployments/realm-server/scale`,
    contentType: 'application/merge-patch+json',
    body: { spec: { replicas } },
  });
}

function summary(): string {
  const c = checker.counts;
  const latencies = publishes.map((p) => p.latencyMs);
  const ms = (v: number) => `${Math.round(v)} ms`;
  return [
    `kind consistency: ${publishes.length} publishes, every one Ready; publish→Ready p50 ${ms(percentile(latencies, 50))}, p95 ${ms(percentile(latencies, 95))}, max ${ms(Math.max(...latencies))}`,
    `  reads ${c.reads}: ok ${c.ok} (checked after a Ready ${c.checkedAfterReady}), transport errors ${c.transportErrors}, non-200 ${JSON.stringify(c.non200)}, cache ${JSON.stringify(c.cache)}`,
    `  STALE READS AFTER READY (violations) ${c.violations}, corrupt ${c.corrupt}, wrong pod ${c.wrongReplica}, REGRESSIONS ${c.regressions} ${JSON.stringify(c.regressionsByReplica)}`,
    `  ERRORS AFTER READY ${c.errorsAfterReady} ${JSON.stringify(c.errorsAfterReadyByReplica)} (allowed only from faulted pods ${JSON.stringify([...faultedPods])})`,
    ...faults.map((f) => `  fault ${f.name}: ${f.detail}; ${f.publishes} publishes, ${f.reads} reads, ${(f.ms / 1000).toFixed(1)} s`),
    `  per pod ${JSON.stringify(checker.replicaCounts())}`,
    `  port-forwards per pod ${JSON.stringify(Object.fromEntries(readers?.forwardsByPod ?? []))}`,
    ...(readers?.problems.length ? [`  reader problems: ${readers.problems.slice(0, 5).join(' | ')}`] : []),
    ...checker.violations.slice(0, 5).map(
      (v) =>
        `  violation: pod ${v.read.replica} ${v.read.file} revision ${v.read.revision} (x-cache ${v.read.cache}, epoch ${v.read.epoch}) read ${v.startAfterReadyMs.toFixed(1)} ms after Ready for ${v.requiredRevision}; ` +
        `recent: ${v.recentReads.slice(-6).map((x) => `${x.file}:${x.status ?? x.error}/${x.revision}/${x.cache}`).join(' ')}`,
    ),
    ...checker.corruptReads.slice(0, 3).map((r) => `  corrupt: ${JSON.stringify(r).slice(0, 400)}`),
    ...checker.errorSamples.slice(0, 3).map((r) => `  error sample: ${r.replica} ${r.file} ${r.status ?? ''} ${r.error ?? ''}`.slice(0, 300)),
    ...checker.errorAfterReadySamples.slice(0, 5).map((x) => `  error after Ready for ${x.readyRevision}: ${x.read.replica} ${x.read.file} ${x.read.status ?? 'transport'} ${x.read.error ?? ''} ${x.startAfterReadyMs} ms after`.slice(0, 300)),
    ...checker.regressionSamples.slice(0, 5).map((x) => `  regression: ${x.read.replica} ${x.read.file} revision ${x.previous.revision} then ${x.read.revision}`),
  ].join('\n');
}

beforeAll(async () => {
  await waitRealmServersSettled(BASE_REPLICAS);
  toolbox = await Toolbox.start('consistency');
  realm = new KindRealm(toolbox, { name: 'consistency', host: HOST, content: realmContent, readyTimeoutMs: 180_000 });
  await realm.prepare();
  await realm.create(() => checker.markReady(0, now()));
  readers = new PodReaders({ host: HOST, realmPath: realm.realmPath, files: REALM_FILES, checker, pauseMs: 25 }).start();
  await waitFor(async () => readers!.pods().length >= BASE_REPLICAS, 120_000, () => `readers on ${BASE_REPLICAS} pods; have ${readers!.pods().join(', ')}; ${readers!.problems.join(' | ')}`, 500);
}, 360_000);

let summarized = false;

afterAll(async () => {
  await readers?.stop();
  checker.finish();
  if (readers && !summarized) console.log(summary());
  const warnings = await kubectl(['get', 'events', '-n', SYSTEM_NAMESPACE, '--field-selector', 'type=Warning']);
  if (warnings.stdout) console.log(`Warning events in ${SYSTEM_NAMESPACE}:\n${warnings.stdout.slice(-4000)}`);
  // Leave the cluster as the suite found it.
  await scaleRealmServers(BASE_REPLICAS).catch(() => undefined);
  await waitRealmServersSettled(BASE_REPLICAS).catch((error: Error) => console.warn(`cleanup: ${error.message}`));
  await realm?.close();
  await toolbox?.delete();
  closeApi();
}, 420_000);

test('scale up and down, pod deletion, kill -9, rollout restart and leader loss during publishes: every publish Ready, 0 stale reads', async () => {
  await publishNext('warm-up');

  await duringPublishes(`scale realm-server ${BASE_REPLICAS} -> ${SCALED_REPLICAS}`, async () => {
    await scaleRealmServers(SCALED_REPLICAS);
    await waitRealmServersSettled(SCALED_REPLICAS);
    // The scale-down next removes the newest pods: each must have served a read first (a reader
    // needs a sync and a port-forward after Ready, which once left a pod 4 reads before it went).
    await waitFor(
      async () => {
        const counts = checker.replicaCounts();
        return (await realmServerPods()).every((pod) => (counts[pod.name]?.ok ?? 0) > 0);
      },
      60_000,
      () => `an OK read from each of the ${SCALED_REPLICAS} pods; per pod ${JSON.stringify(checker.replicaCounts())}; ${readers!.problems.join(' | ')}`,
      250,
    );
    return `${SCALED_REPLICAS} ready pods`;
  });

  await duringPublishes(`scale realm-server ${SCALED_REPLICAS} -> ${BASE_REPLICAS}`, async () => {
    const before = (await realmServerPods()).map((p) => p.name);
    await scaleRealmServers(BASE_REPLICAS);
    await waitRealmServersSettled(BASE_REPLICAS);
    const after = new Set((await realmServerPods()).map((p) => p.name));
    for (const pod of before) if (!after.has(pod)) faultedPods.add(pod);
    return `${BASE_REPLICAS} ready pods`;
  });

  await duringPublishes('delete a realm-server pod (graceful)', async () => {
    const victim = (await realmServerPods())[0]!.name;
    faultedPods.add(victim);
    await must(['delete', 'pod', '-n', SYSTEM_NAMESPACE, victim, '--wait=true', '--timeout=120s']);
    await waitRealmServersSettled(BASE_REPLICAS);
    return `deleted ${victim}`;
  });

  await duringPublishes('kill -9 a realm-server container', async () => {
    const victim = (await realmServerPods()).at(-1)!.name;
    faultedPods.add(victim);
    const { restartsBefore, node } = await killContainerProcess(SYSTEM_NAMESPACE, victim, 'realm-server');
    const restarted = await waitFor(
      async () => {
        const container = (await getPod(SYSTEM_NAMESPACE, victim))?.containers.find((c) => c.name === 'realm-server');
        return container !== undefined && container.restarts > restartsBefore && container.ready ? container : undefined;
      },
      180_000,
      async () => `${victim}'s realm-server container to restart and be ready: ${JSON.stringify(await getPod(SYSTEM_NAMESPACE, victim))}`,
      500,
    );
    // 128 + 9: the process died of SIGKILL, not of anything else.
    if (restarted.lastExitCode !== 137) throw new Error(`${victim}'s realm-server container ended with exit code ${restarted.lastExitCode}, not 137 (SIGKILL)`);
    await waitRealmServersSettled(BASE_REPLICAS);
    return `SIGKILLed ${victim}'s process from node ${node}; the container restarted (exit code 137)`;
  });

  await duringPublishes('rollout restart realm-server', async () => {
    const before = new Set((await listPods(SYSTEM_NAMESPACE, 'app.kubernetes.io/name=realm-server,pod-template-hash')).map((p) => p.name));
    for (const pod of before) faultedPods.add(pod);
    await must(['rollout', 'restart', '-n', SYSTEM_NAMESPACE, 'deployment/realm-server']);
    await waitRealmServersSettled(BASE_REPLICAS);
    const after = (await realmServerPods()).map((p) => p.name);
    if (after.some((name) => before.has(name))) throw new Error(`after the rollout old pods remain: ${after.join(', ')}`);
    return `replaced ${[...before].join(', ')} by ${after.join(', ')}`;
  });

  await duringPublishes('delete the leader operator pod', async () => {
    const leader = await leaderPod();
    if (!leader || !(await getPod(SYSTEM_NAMESPACE, leader))) throw new Error(`the Lease names no running operator pod: ${leader}`);
    await must(['delete', 'pod', '-n', SYSTEM_NAMESPACE, leader, '--wait=false']);
    const next = await waitFor(
      async () => {
        const holder = await leaderPod();
        return holder && holder !== leader && (await getPod(SYSTEM_NAMESPACE, holder))?.ready ? holder : undefined;
      },
      120_000,
      async () => `another operator pod to take the Lease from ${leader}; holder ${await leaderPod()}`,
      500,
    );
    await must(['rollout', 'status', '-n', SYSTEM_NAMESPACE, 'deployment/realm-operator', '--timeout=180s']);
    return `deleted ${leader}; ${next} leads`;
  });

  // Readers keep reading the last revision for a moment, so reads after the last Ready are checked too.
  await sleep(3000);
  await readers!.stop();
  checker.finish();
  console.log(summary());
  summarized = true;

  const counts = checker.counts;
  expect(publishes.length).toBe(revision);
  expect(faults.map((f) => f.name)).toHaveLength(6);
  expect({ violations: counts.violations, corrupt: counts.corrupt, wrongPod: counts.wrongReplica }).toEqual({ violations: 0, corrupt: 0, wrongPod: 0 });
  // No pod went back to an older revision; no pod the test left alone failed a read after a Ready.
  expect({ regressions: counts.regressions, samples: checker.regressionSamples }).toEqual({ regressions: 0, samples: [] });
  expect(checker.errorsAfterReadyExcept(faultedPods)).toEqual({});
  expect(counts.checkedAfterReady).toBeGreaterThan(100);
  // Readers followed the Deployment: the 3 first pods, the 2 scaled up, the replacements; every pod
  // that was ever Ready was read.
  const podsRead = Object.entries(checker.replicaCounts()).filter(([, r]) => r.ok > 0).map(([pod]) => pod);
  expect(podsRead.length).toBeGreaterThanOrEqual(BASE_REPLICAS + (SCALED_REPLICAS - BASE_REPLICAS) + 1 + BASE_REPLICAS);
  expect([...readers!.podsSeenReady].filter((pod) => !podsRead.includes(pod))).toEqual([]);
  // And every pod serves the last revision now.
  const answers = await getFromEveryRealmServer(HOST, `${realm.realmPath}${REALM_FILES[0]}`);
  expect(answers.size).toBe(BASE_REPLICAS);
  for (const [pod, answer] of answers) expect({ pod, status: answer.status, body: checkBody(REALM_FILES[0]!, answer.body) }).toEqual({ pod, status: 200, body: { kind: 'ok', revision } });
}, 900_000);
