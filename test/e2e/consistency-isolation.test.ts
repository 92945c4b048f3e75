/**
 * The consistency suite, part 2 (issue 13): a replica that stays alive but is cut off — partitioned
 * from PostgreSQL behind a TCP proxy, or SIGSTOPped past its lease — several realms on several
 * hosts with unpublish and republish, and proof that the checker fails: a deliberately faulty
 * replica that acknowledges before it drops its cache, and one that ignores its lease while cut
 * off, must both be reported with stale reads after Ready.
 *
 * `make test` runs CONSISTENCY_PUBLISHES / 2 publishes per scenario (at least 4; default 6);
 * `make consistency` runs 100. See docs/consistency.md.
 */
import { installCRD } from '../support/e2e.js';
import { expectConsistent } from '../consistency/assertions.js';
import { lateCacheDrop, partitionedReplica, pausedReplica, severalRealms } from '../consistency/isolation-scenarios.js';
import type { ScenarioRun } from '../consistency/scenarios.js';

const BASE = Number(process.env.CONSISTENCY_PUBLISHES ?? 12);
if (!Number.isInteger(BASE) || BASE < 1) throw new Error(`CONSISTENCY_PUBLISHES must be a positive integer, got ${process.env.CONSISTENCY_PUBLISHES}`);
const PUBLISHES = Math.max(4, Math.round(BASE / 2));
/** The faulty-replica proofs need only a few publishes to be caught. */
const PROOF_PUBLISHES = 4;

const budget = (perPublishMs: number, publishes = PUBLISHES) => 90_000 + publishes * perPublishMs;

beforeAll(async () => {
  await installCRD();
}, 60_000);

/**
 * The cut-off replica was read after a Ready that did not wait for it, while still cut off, and
 * answered fresh content or an error, never stale content.
 */
function expectFenced({ result }: ScenarioRun): void {
  expect(result.cutOffReads.stale).toBe(0);
  expect(result.cutOffReads.fresh + result.cutOffReads.error).toBeGreaterThan(0);
}

/** The stale reads of a run, by replica (main realm). */
function staleByReplica({ result }: ScenarioRun): Record<string, number> {
  const by: Record<string, number> = {};
  for (const v of result.violations) by[v.read.replica] = (by[v.read.replica] ?? 0) + 1;
  return by;
}

test(`h. a replica partitioned from PostgreSQL (blackholed proxy) while it serves HTTP: ${PUBLISHES} publishes, Ready without it, 0 stale reads`, async () => {
  const run = await partitionedReplica(PUBLISHES);
  expectConsistent(run);
  const partitions = Math.ceil(PUBLISHES / 2);
  expect(run.result.faults['replica partitioned from PostgreSQL']).toBe(partitions);
  expect(run.result.faults['Ready without the partitioned replica']).toBe(partitions);
  expect(run.result.faults['partition healed, replica resynced']).toBe(partitions);
  // Errors could come only from the partitioned replica, and it was read after Ready while cut off.
  expect(run.result.faulted).toHaveLength(1);
  expectFenced(run);
}, budget(12_000));

test(`i. a replica SIGSTOPped past its lease and SIGCONTed after Ready: ${PUBLISHES} publishes, Ready without it, 0 stale reads`, async () => {
  const run = await pausedReplica(PUBLISHES);
  expectConsistent(run);
  const pauses = Math.ceil(PUBLISHES / 2);
  expect(run.result.faults['replica SIGSTOPped']).toBe(pauses);
  expect(run.result.faults['Ready without the paused replica']).toBe(pauses);
  expect(run.result.faults['replica SIGCONTed past its lease']).toBe(pauses);
  expectFenced(run);
}, budget(12_000));

test(`j. three realms on three hosts, one unpublished and republished: ${PUBLISHES} publishes, 0 stale reads in any realm`, async () => {
  const run = await severalRealms(PUBLISHES);
  expectConsistent(run);
  // Fault-free: no errors anywhere after a Ready.
  expect(run.result.faulted).toEqual([]);
  const others = Object.values(run.result.extra);
  expect(others).toHaveLength(2);
  for (const other of others) expect(other.counts.checkedAfterReady).toBeGreaterThan(10);
  expect(run.result.faults['second realm republished']).toBe(Math.floor(PUBLISHES / 4));
}, budget(6_000));

test('k. proof: a faulty replica that acknowledges before it drops its cache is caught with stale reads after Ready', async () => {
  const run = await lateCacheDrop(PROOF_PUBLISHES);
  const faulty = 'late-drop-r1';
  // Every publish still reaches Ready (the faulty replica acknowledges), and the checker reports
  // stale reads after Ready from the faulty replica, and from no other.
  expect(run.result.publishes).toBe(PROOF_PUBLISHES);
  expect(run.result.counts.violations).toBeGreaterThan(0);
  expect(Object.keys(staleByReplica(run))).toEqual([faulty]);
  expect(run.summary).toContain(`violation: replica ${faulty}`);
  // Stale answers were cache hits served after the replica had acknowledged.
  expect(run.result.violations.every((v) => v.read.cache === 'hit' && v.startAfterReadyMs > 0)).toBe(true);
}, budget(6_000, PROOF_PUBLISHES));

test('l. proof: a faulty replica that ignores its lease while partitioned from PostgreSQL is caught with stale reads after Ready', async () => {
  const run = await partitionedReplica(PROOF_PUBLISHES, { ignoreLease: true });
  const faulty = 'partition-faulty-r1';
  expect(run.result.publishes).toBe(PROOF_PUBLISHES);
  expect(run.result.counts.violations).toBeGreaterThan(0);
  expect(Object.keys(staleByReplica(run))).toEqual([faulty]);
  // ... served while it was cut off, after the Ready that no longer waited for it.
  expect(run.result.cutOffReads.stale).toBeGreaterThan(0);
}, budget(12_000, PROOF_PUBLISHES));
