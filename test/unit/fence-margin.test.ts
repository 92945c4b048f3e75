/** Issue 13 item 1: the replica's fence margin and the operator's lease grace, as settings. */
import { loadOperatorConfig } from '../../src/cli/operator-config.js';
import { loadRealmServerConfig } from '../../src/cli/realm-server-command.js';
import { defaultFenceMarginMs, fenceDeadline, leaseTimingProblems } from '../../src/listener/fence.js';
import { RealmListener } from '../../src/listener/realm-listener.js';
import { RecordingCaches } from '../support/recording-caches.js';

test('the default margin is max(500 ms, 10 % of the lease)', () => {
  expect(defaultFenceMarginMs(15_000)).toBe(1_500);
  expect(defaultFenceMarginMs(3_000)).toBe(500);
  expect(defaultFenceMarginMs(60_000)).toBe(6_000);
});

test('the fence is the renewal send time plus the lease minus the margin', () => {
  expect(fenceDeadline(10_000, 15_000, 1_500)).toBe(23_500);
  expect(fenceDeadline(10_000, 15_000, 0)).toBe(25_000);
});

test('a margin that is not shorter than the lease, or leaves no time between renewals, is refused with the fix', () => {
  expect(leaseTimingProblems({ leaseDurationMs: 15_000, heartbeatIntervalMs: 2_000, fenceMarginMs: 1_500 })).toEqual([]);
  expect(leaseTimingProblems({ leaseDurationMs: 15_000, heartbeatIntervalMs: 2_000, fenceMarginMs: 15_000 })).toEqual([
    expect.stringMatching(/fenceMarginMs \(15000 ms\) must be shorter than leaseDurationMs \(15000 ms\).*lower the margin \(default for this lease: 1500 ms\)/),
  ]);
  expect(leaseTimingProblems({ leaseDurationMs: 15_000, heartbeatIntervalMs: 2_000, fenceMarginMs: 13_000 })).toEqual([
    expect.stringMatching(/heartbeatIntervalMs \(2000 ms\) must be shorter than leaseDurationMs − fenceMarginMs \(15000 − 13000 = 2000 ms\)/),
  ]);
  expect(leaseTimingProblems({ leaseDurationMs: 15_000, heartbeatIntervalMs: 2_000, fenceMarginMs: -1 })).toEqual([expect.stringMatching(/fenceMarginMs must be zero or a positive/)]);
  expect(leaseTimingProblems({ leaseDurationMs: 15_000, heartbeatIntervalMs: 2_000, fenceMarginMs: Number.NaN })).toHaveLength(1);
});

test('RealmListener refuses a margin >= its lease at construction, and takes a usable one', () => {
  const options = { connection: 'postgres://u@localhost/db', replicaId: 'r', caches: new RecordingCaches() };
  expect(() => new RealmListener({ ...options, leaseDurationMs: 3_000, fenceMarginMs: 3_000 })).toThrow(/RealmListener: fenceMarginMs \(3000 ms\) must be shorter than leaseDurationMs/);
  expect(() => new RealmListener({ ...options, leaseDurationMs: 3_000, heartbeatIntervalMs: 2_500 })).toThrow(/heartbeatIntervalMs \(2500 ms\) must be shorter than leaseDurationMs − fenceMarginMs \(3000 − 500 = 2500 ms\)/);
  expect(new RealmListener({ ...options, leaseDurationMs: 3_000, heartbeatIntervalMs: 1_000, fenceMarginMs: 1_000 }).status().leaseRemainingMs).toBe(0);
  // Without acknowledgements there is no lease, so nothing to check.
  expect(() => new RealmListener({ ...options, acknowledge: false, leaseDurationMs: 3_000, fenceMarginMs: 5_000 })).not.toThrow();
});

describe('realm server settings', () => {
  const base = { 'database-url': 'postgres://u:p@localhost/db', 'realms-root': '/realms' };

  test('--fence-margin / LISTENER_FENCE_MARGIN: default max(500ms, 10% of the lease), or as given', () => {
    expect(loadRealmServerConfig(base, {}).fenceMargin).toBe(1_500);
    expect(loadRealmServerConfig({ ...base, 'lease-duration': '60s' }, {}).fenceMargin).toBe(6_000);
    expect(loadRealmServerConfig(base, { LISTENER_FENCE_MARGIN: '3s' }).fenceMargin).toBe(3_000);
    expect(loadRealmServerConfig({ ...base, 'fence-margin': '0ms' }, {}).fenceMargin).toBe(0);
  });

  test('a margin >= the lease is refused naming the flags, the variables and the fix', () => {
    expect(() => loadRealmServerConfig({ ...base, 'fence-margin': '15s' }, {})).toThrow(
      /--fence-margin \/ LISTENER_FENCE_MARGIN \(15000 ms\) must be shorter than --lease-duration \/ LISTENER_LEASE_DURATION \(15000 ms\).*lower the margin/,
    );
    expect(() => loadRealmServerConfig({ ...base, 'fence-margin': '14s' }, {})).toThrow(/--heartbeat-interval \/ LISTENER_HEARTBEAT_INTERVAL \(2000 ms\) must be shorter than/);
    expect(() => loadRealmServerConfig({ ...base, 'fence-margin': 'soon' }, {})).toThrow(/--fence-margin \/ LISTENER_FENCE_MARGIN: "soon" is not a duration/);
  });
});

test('operator --replica-lease-grace / REPLICA_LEASE_GRACE: default 2s', () => {
  const base = { 'database-url': 'postgres://u:p@localhost/db', 'realms-root': '/realms' };
  expect(loadOperatorConfig(base, {}).replicaLeaseGrace).toBe(2_000);
  expect(loadOperatorConfig({ ...base, 'replica-lease-grace': '5s' }, {}).replicaLeaseGrace).toBe(5_000);
  expect(loadOperatorConfig(base, { REPLICA_LEASE_GRACE: '0s' }).replicaLeaseGrace).toBe(0);
  expect(() => loadOperatorConfig(base, { REPLICA_LEASE_GRACE: 'later' })).toThrow(/--replica-lease-grace \/ REPLICA_LEASE_GRACE: "later" is not a duration/);
});
