/**
 * The end-to-end consistency suite (issues 5 and 8): after a PublishedRealm reports Ready for revision
 * i, no realm-server replica serves content older than i, even under faults. Real processes: the
 * operator, 3–5 realm-server replicas, PostgreSQL, a kube-apiserver. A reader per replica reads
 * every file of the published realm continuously while revisions are published; a read that
 * starts after Ready for i was decided (the operator's log line before the status write, see
 * test/consistency/ready-time.ts) and returns revision < i is a violation. Errors after Ready
 * are allowed only from replicas the scenario faulted, regressions nowhere (see
 * test/consistency/assertions.ts); docs/consistency.md describes it all.
 *
 * The realm servers connect through their own login in `realm_operator_replica` (as deploy/ runs
 * them), so the suite also proves that role suffices end to end; the operators use the admin's.
 *
 * `make test` runs a reduced form (CONSISTENCY_PUBLISHES, default 12 publishes per scenario; the
 * operator-crash scenario always does at least 18 so each of its 9 faults happens);
 * `make consistency` runs 200 per scenario.
 */
import path from 'node:path';
import { GROUP, PLURAL } from '../../src/api/v1alpha1/published-realm-types.js';
import { kubectl } from '../support/kube.js';
import { expectConsistent } from '../consistency/assertions.js';
import { listenerKilled, nestedRealm, noFaults, operatorCrashes, postgresRestarts, replicaChurn, unreadableSource, type ScenarioRun } from '../consistency/scenarios.js';

const PUBLISHES = Number(process.env.CONSISTENCY_PUBLISHES ?? 12);
if (!Number.isInteger(PUBLISHES) || PUBLISHES < 1) throw new Error(`CONSISTENCY_PUBLISHES must be a positive integer, got ${process.env.CONSISTENCY_PUBLISHES}`);
const CRD_FILE = path.resolve(import.meta.dirname, '../../crds', `${GROUP}_${PLURAL}.yaml`);

/** Per-test time budget: set-up plus a generous allowance per publish. */
const budget = (perPublishMs: number, publishes = PUBLISHES) => 90_000 + publishes * perPublishMs;

async function must(args: string[]): Promise<string> {
  const result = await kubectl(args);
  if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${result.code}): ${result.stderr}`);
  return result.stdout;
}

beforeAll(async () => {
  await must(['apply', '--server-side', '-f', CRD_FILE]);
  await must(['wait', '--for=condition=Established', `crd/${PLURAL}.${GROUP}`, '--timeout=30s']);
}, 60_000);

test(`a. no faults: ${PUBLISHES} publishes, 3 replicas, 0 stale reads, the cache is used`, async () => {
  const run = await noFaults(PUBLISHES);
  expectConsistent(run);
  expect(run.result.counts.cache.hit ?? 0).toBeGreaterThan(0);
  // Fault-free: not one error, before or after any Ready.
  expect(run.result.faulted).toEqual([]);
  expect(run.result.counts.transportErrors).toBe(0);
  expect(run.result.counts.non200).toEqual({});
}, budget(3_000));

test(`b. listener connections terminated during publishes: ${PUBLISHES} publishes, 0 stale reads`, async () => {
  const run = await listenerKilled(PUBLISHES);
  expectConsistent(run);
  expect(run.result.faults['listener connection terminated'] ?? 0).toBeGreaterThanOrEqual(Math.min(PUBLISHES, 3));
}, budget(6_000));

test(`c. replicas SIGKILLed, restarted, scaled up and down during publishes: ${PUBLISHES} publishes, 0 stale reads`, async () => {
  const run = await replicaChurn(PUBLISHES);
  expectConsistent(run);
  const f = run.result.faults;
  expect((f['SIGKILL + restart'] ?? 0) + (f['SIGKILL (scale down by crash)'] ?? 0)).toBeGreaterThanOrEqual(Math.min(PUBLISHES, 3));
  expect(f['scale up'] ?? 0).toBeGreaterThanOrEqual(1);
  if (PUBLISHES >= 6) expect((f['scale down (SIGTERM)'] ?? 0) + (f['SIGKILL (scale down by crash)'] ?? 0)).toBeGreaterThanOrEqual(1);
}, budget(10_000));

test(`d. the operator SIGKILLed at every publish step, and leader failovers: ≥18 publishes, 0 stale reads`, async () => {
  const run = await operatorCrashes(PUBLISHES);
  const publishes = Math.max(PUBLISHES, 18);
  expectConsistent(run, { minPublishes: publishes, allowRollbacksOfUnreadyContent: 'an operator killed after the swap and before the commit: recovery re-points the link to the committed revision' });
  for (const step of ['staged', 'reserved', 'locked', 'installed', 'swapped', 'recorded', 'committed', 'cleaned']) {
    expect(run.result.faults[`SIGKILL at step ${step}`] ?? 0).toBeGreaterThanOrEqual(1);
  }
  expect(run.result.faults['leader SIGKILLed mid-publish (failover)'] ?? 0).toBeGreaterThanOrEqual(1);
}, budget(15_000, Math.max(PUBLISHES, 18)));

test(`e. PostgreSQL restarted during publishes: ${PUBLISHES} publishes, 0 stale reads, everything recovers by itself`, async () => {
  const run = await postgresRestarts(PUBLISHES);
  expectConsistent(run, { allowRollbacksOfUnreadyContent: 'a publish whose commit was lost with PostgreSQL: recovery re-points the link to the committed revision' });
  expect(run.result.faults['PostgreSQL restart'] ?? 0).toBeGreaterThanOrEqual(Math.min(Math.ceil(PUBLISHES / 3), 3));
}, budget(12_000));

test(`f. a realm at a URL nested inside the published realm's URL, registered and removed during publishes: ${PUBLISHES} publishes, readers of the nested paths on every replica, 0 violations`, async () => {
  const run = await nestedRealm(PUBLISHES);
  expectConsistent(run);
  const nested = run.result.extra['nested realm']!;
  expect(nested.counts.violations).toBe(0);
  expect(nested.violations).toEqual([]);
  expect(nested.counts.corrupt).toBe(0);
  // The nested paths were read, and checked against the nested realm, after each of its Readys.
  const cycles = Math.ceil(PUBLISHES / 4);
  expect(run.result.faults['nested realm published']).toBe(cycles);
  expect(nested.counts.checkedAfterReady).toBeGreaterThan(cycles * 10);
}, budget(5_000));

test(`g. an unreadable file and directory in the source realm, entries vanishing mid-publish, an unprivileged operator: ${PUBLISHES} publishes, 0 violations, the operator never exits by itself`, async () => {
  const run = await unreadableSource(PUBLISHES);
  expectConsistent(run);
  expect(run.result.faults['operator ran unprivileged'] ?? 0).toBeGreaterThanOrEqual(1);
  expect(run.result.faults['source entries created and deleted mid-publish'] ?? 0).toBeGreaterThanOrEqual(PUBLISHES);
  expect(run.result.faults['unreadable entries left out of the published realm']).toBe(1);
}, budget(4_000));
