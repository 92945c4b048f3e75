/**
 * Rollback in the cluster, as users do it: revisions 0, 1 and 2 are published (versions V0, V1,
 * V2), then `kubectl realm rollback <name> --to-version V1 --wait` runs through the real kubectl on
 * the host against the kind cluster (the plugin in bin/ on PATH), then `spec.rollbackTo` is
 * cleared, which publishes the source's current content (revision 2) again as a new version.
 * A consistency reader on every realm-server pod (test/support/kind-readers.ts) reads throughout.
 *
 * How the checker judges a rollback: its rule is "after Ready for rank N, no read returns a lower
 * rank", per replica "never a lower rank than one already served". Ranks are the order in which
 * content becomes live, not the content's revision: V0 = 0, V1 = 1, V2 = 2, the rollback to V1 = 3,
 * the republish of revision 2 = 4. A read is ranked by the phase it started in: before the
 * rollback was requested, revision r is rank r; after, revision 1 is the rollback (3) and revision
 * 2 is still V2 (2) until the clear is requested, then the republish (4). So after the rollback's
 * Ready (when the plugin returned) a read of revision 2 or 0 is a stale read, and a pod that served
 * the rolled-back content and then V2's again regressed; the one step back the rollback itself
 * takes (revision 2 → 1) is progress in rank. The rollback's T is when the operator decided Ready:
 * its info line `writing Ready` (epoch, reason RolledBack), logged just before the status write,
 * read with `kubectl logs`, so reads between the write and the plugin's return are judged too
 * (`checkedBeforeSeen`). The other Readys' T is when the driver's poll saw them.
 */
import { GROUP, PLURAL, VERSION, type PublishedRealm } from '../../src/api/v1alpha1/published-realm-types.js';
import path from 'node:path';
import { ConsistencyChecker, now, type ReadRecord } from '../consistency/checker.js';
import { checkBody, REALM_FILES, realmContent } from '../consistency/content.js';
import { api, closeApi, getFromEveryRealmServer, kindKubeconfig, kubectlBinary, operatorLogs, readyDecidedAt, realmServerPods, run, waitFor } from '../support/kind.js';
import { KindRealm, readyCondition } from '../support/kind-realm.js';
import { PodReaders } from '../support/kind-readers.js';
import { Toolbox } from '../support/kind-toolbox.js';

const HOST = 'rollback.localhost';
const BIN = path.resolve(import.meta.dirname, '../../bin');

/** Ranks the revision a read returned by the phase the read started in (see the header). */
class RankedChecker extends ConsistencyChecker {
  rollbackRequestedAt = Infinity;
  clearRequestedAt = Infinity;

  override record(read: ReadRecord): void {
    super.record(read.revision === undefined ? read : { ...read, revision: this.rank(read.revision, read.start) });
  }

  private rank(revision: number, start: number): number {
    if (start > this.clearRequestedAt) return ({ 1: 3, 2: 4 } as Record<number, number>)[revision] ?? revision;
    if (start > this.rollbackRequestedAt) return revision === 1 ? 3 : revision;
    return revision;
  }
}

const checker = new RankedChecker();
let toolbox: Toolbox;
let realm: KindRealm;
let readers: PodReaders | undefined;

const objectPath = () => `/apis/${GROUP}/${VERSION}/namespaces/${realm.namespace}/${PLURAL}/${realm.objectName}`;

/** Waits until the object is Ready with `reason` for its generation and `accept` holds. */
async function waitReadyWith(reason: string, accept: (object: PublishedRealm) => boolean): Promise<PublishedRealm> {
  let last: PublishedRealm | undefined;
  return waitFor(
    async () => {
      last = await realm.get();
      const ready = readyCondition(last);
      const current = ready?.status === 'True' && ready.reason === reason && ready.observedGeneration === last!.metadata.generation && last!.status?.observedGeneration === last!.metadata.generation;
      return current && accept(last!) ? last : undefined;
    },
    90_000,
    async () => `Ready ${reason}; last status ${JSON.stringify(last?.status)}\n${await operatorLogs(30)}`,
    100,
  );
}

/** Every realm-server pod serves `revision` of a file now. */
async function expectEveryPodServes(revision: number): Promise<void> {
  const file = REALM_FILES[3]!;
  const answers = await getFromEveryRealmServer(HOST, `${realm.realmPath}${file}`);
  expect(answers.size).toBe((await realmServerPods()).length);
  for (const [pod, answer] of answers) expect({ pod, status: answer.status, body: checkBody(file, answer.body) }).toEqual({ pod, status: 200, body: { kind: 'ok', revision } });
}

/** Waits until the readers have had `count` more reads judged after the last Ready. */
async function readOn(count: number): Promise<void> {
  const target = checker.counts.checkedAfterReady + count;
  await waitFor(
    async () => {
      // Every mark to come is taken later (now()), so reads that started by now can be judged.
      checker.settle(now());
      return checker.counts.checkedAfterReady >= target;
    },
    60_000, () => `${count} more reads after Ready; ${JSON.stringify(checker.counts)}`, 200);
}

beforeAll(async () => {
  toolbox = await Toolbox.start('rollback');
  realm = new KindRealm(toolbox, { name: 'rollback', host: HOST, content: realmContent });
  await realm.prepare();
  await realm.create(() => checker.markReady(0, now()));
  const pods = (await realmServerPods()).length;
  readers = new PodReaders({ host: HOST, realmPath: realm.realmPath, files: REALM_FILES, checker, pauseMs: 25 }).start();
  await waitFor(async () => readers!.pods().length >= pods, 120_000, () => `readers on ${pods} pods; have ${readers!.pods().join(', ')}; ${readers!.problems.join(' | ')}`, 500);
}, 300_000);

afterAll(async () => {
  await readers?.stop();
  await realm?.close();
  await toolbox?.delete();
  closeApi();
}, 180_000);

test('kubectl realm rollback --wait under readers on every pod: 0 stale reads after Ready, no regressions; clearing rollbackTo republishes', async () => {
  // --- V1 and V2 -------------------------------------------------------------------------------
  checker.settle(now());
  await realm.publish(1, () => checker.markReady(1, now()));
  const v1 = (await realm.get())!.status!.liveVersion!;
  checker.settle(now());
  await realm.publish(2, () => checker.markReady(2, now()));
  const v2 = (await realm.get())!.status!;
  expect(v2.liveVersion).not.toBe(v1);
  expect(v2.versions!.map((v) => v.version)).toContain(v1);
  await readOn(50);

  // --- the rollback, through the real kubectl and the plugin ----------------------------------------
  checker.rollbackRequestedAt = now();
  checker.settle(checker.rollbackRequestedAt);
  const plugin = await run(kubectlBinary(), ['realm', 'rollback', realm.objectName, '-n', realm.namespace, '--to-version', v1, '--wait'], {
    env: { ...process.env, PATH: `${BIN}${path.delimiter}${path.dirname(kubectlBinary())}${path.delimiter}${process.env.PATH}`, KUBECONFIG: kindKubeconfig(), DATABASE_URL: '' },
    timeoutMs: 120_000,
  });
  const rolledBackSeen = now();
  expect({ code: plugin.code, stderr: plugin.stderr }).toEqual({ code: 0, stderr: '' });
  expect(plugin.stdout).toMatch(/^Ready: Rolled back to kept version/m);
  const rolledBack = await waitReadyWith('RolledBack', (o) => o.status?.liveVersion === v1);
  // T is when the operator decided Ready (its info line before the status write), not when the plugin saw it.
  const decidedAt = await readyDecidedAt(`${realm.namespace}/${realm.objectName}`, rolledBack.status!.epoch!, 'RolledBack');
  expect(decidedAt).toBeDefined();
  expect(decidedAt!).toBeGreaterThan(checker.rollbackRequestedAt);
  expect(decidedAt!).toBeLessThanOrEqual(rolledBackSeen);
  checker.markReady(3, decidedAt!, { seenAt: rolledBackSeen });
  expect((rolledBack.spec as { rollbackTo?: string }).rollbackTo).toBe(v1);
  await expectEveryPodServes(1);
  await readOn(150);

  // --- clearing rollbackTo publishes the source's content (revision 2) again ------------------------
  checker.clearRequestedAt = now();
  checker.settle(checker.clearRequestedAt);
  await api({ method: 'PATCH', path: objectPath(), contentType: 'application/merge-patch+json', body: { spec: { rollbackTo: null } } });
  const republished = await waitReadyWith('Published', (o) => o.status?.liveVersion !== undefined && o.status.liveVersion !== v1 && o.status.liveVersion !== v2.liveVersion);
  checker.markReady(4, now());
  expect(republished.status!.publishedRevision).toBe('2');
  await expectEveryPodServes(2);
  await readOn(150);

  await readers!.stop();
  checker.finish();
  const c = checker.counts;
  const summary = `kind rollback: reads ${c.reads}, ok ${c.ok}, checked after a Ready ${c.checkedAfterReady} (before the plugin saw the rollback's Ready ${c.checkedBeforeSeen}), stale ${c.violations}, regressions ${c.regressions}, corrupt ${c.corrupt}, wrong pod ${c.wrongReplica}, errors after Ready ${c.errorsAfterReady}; per pod ${JSON.stringify(checker.replicaCounts())}`;
  console.log(summary);
  expect({ violations: c.violations, samples: checker.violations.slice(0, 3) }).toEqual({ violations: 0, samples: [] });
  expect({ regressions: c.regressions, samples: checker.regressionSamples.slice(0, 3) }).toEqual({ regressions: 0, samples: [] });
  expect({ corrupt: c.corrupt, wrongPod: c.wrongReplica }).toEqual({ corrupt: 0, wrongPod: 0 });
  // No pod was faulted: none may fail a read after a Ready.
  expect(checker.errorsAfterReadyExcept([])).toEqual({});
  expect(c.checkedAfterReady).toBeGreaterThan(350);
  expect([...readers!.podsSeenReady].filter((pod) => !(checker.replicaCounts()[pod]?.ok ?? 0))).toEqual([]);
}, 300_000);
