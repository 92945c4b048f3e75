/**
 * Leader election between real electors on a real Lease: takeover after a crash (waits out the
 * lease), takeover after a graceful release (at once), losing the lease, and racing to create it.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { kubeRequest, type KubeConnection } from '../../src/runtime/kube-client.js';
import { LeaderElector, LeadershipLostError, type LeaderElectionOutcome, type LeaderElectorOptions } from '../../src/runtime/leader-election.js';
import { testKubeConfig } from '../support/kube.js';

const logger = pino({ level: process.env.RUNTIME_TEST_LOG ?? 'silent' });
const suffix = randomBytes(3).toString('hex');
const kube = testKubeConfig();
const namespace = `rt-lease-${suffix}`;
// Short, but in the same proportions as the defaults (15 s / 10 s / 2 s).
const TIMING = { leaseDurationMs: 3_000, renewDeadlineMs: 2_000, retryPeriodMs: 200 };

interface Lease {
  metadata: { resourceVersion: string };
  spec: { holderIdentity?: string; leaseDurationSeconds?: number; leaseTransitions?: number; renewTime?: string; acquireTime?: string };
}

const leasePath = (name: string) => `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases/${name}`;
const readLease = (name: string) => kubeRequest<Lease>(kube, { path: leasePath(name) });

async function eventually(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** An elector whose callbacks are recorded with timestamps. */
function candidate(lease: string, identity: string, options: Partial<LeaderElectorOptions> = {}) {
  const registry = new Registry();
  const elector = new LeaderElector({ kubeConfig: kube, namespace, name: lease, identity, ...TIMING, logger, metricsRegistry: registry, ...options });
  const state = {
    startedAt: undefined as number | undefined,
    stoppedAt: undefined as number | undefined,
    workDoneAt: undefined as number | undefined,
    leaderSignal: undefined as AbortSignal | undefined,
  };
  const abort = new AbortController();
  let drainMs = 0;
  const outcome: Promise<LeaderElectionOutcome> = elector.run(abort.signal, {
    async onStartedLeading(leaderSignal) {
      state.startedAt = performance.now();
      state.leaderSignal = leaderSignal;
      await new Promise<void>((resolve) => leaderSignal.addEventListener('abort', () => resolve(), { once: true }));
      await new Promise((r) => setTimeout(r, drainMs)); // the leader's work draining
      state.workDoneAt = performance.now();
    },
    onStoppedLeading() {
      state.stoppedAt = performance.now();
    },
  });
  return {
    elector,
    registry,
    state,
    outcome,
    leading: () => state.startedAt !== undefined && state.stoppedAt === undefined,
    setDrain(ms: number) {
      drainMs = ms;
    },
    async stop(): Promise<LeaderElectionOutcome> {
      abort.abort();
      return outcome;
    },
  };
}

async function masterStatus(registry: Registry, lease: string): Promise<number | undefined> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === 'leader_election_master_status');
  return (metric?.values as Array<{ value: number; labels: Record<string, string> }> | undefined)?.find((v) => v.labels.name === lease)?.value;
}

beforeAll(async () => {
  await kubeRequest(kube, { method: 'POST', path: '/api/v1/namespaces', body: { metadata: { name: namespace } } });
});

afterAll(async () => {
  await kubeRequest(kube, { method: 'DELETE', path: `/api/v1/namespaces/${namespace}` }).catch(() => undefined);
});

describe('LeaderElector (real API server)', () => {
  test('one leads; when it dies without releasing, the other takes over only after the lease expires', async () => {
    const first = candidate('crash', 'first', { releaseOnCancel: false });
    await eventually(() => first.leading(), 'first to lead');
    const second = candidate('crash', 'second');
    try {
      expect(first.elector.isLeader()).toBe(true);
      expect(await masterStatus(first.registry, 'crash')).toBe(1);
      await new Promise((r) => setTimeout(r, 1_500)); // several retry periods: second keeps trying and failing
      expect(second.state.startedAt).toBeUndefined();
      expect(second.elector.isLeader()).toBe(false);
      expect(second.elector.observedLeader()).toBe('first');
      expect(await masterStatus(second.registry, 'crash')).toBe(0);
      expect((await readLease('crash')).spec).toMatchObject({ holderIdentity: 'first', leaseDurationSeconds: 3, leaseTransitions: 0 });

      const renewTime = (await readLease('crash')).spec.renewTime!;
      expect(renewTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/); // MicroTime, as written
      expect(await first.stop()).toBe('stopped'); // a crash, as far as the lease knows: nothing released
      const stoppedAt = performance.now();
      expect(first.state.leaderSignal?.aborted).toBe(true);
      expect(first.state.stoppedAt).toBeDefined();
      expect((await readLease('crash')).spec.holderIdentity).toBe('first');

      await eventually(() => second.leading(), 'second to take over', 8_000);
      const waited = second.state.startedAt! - stoppedAt;
      // It waited for the lease (3 s after it last saw the record change, which was at most one
      // retry period before the crash), and not much longer than the lease plus a jittered retry.
      expect(waited).toBeGreaterThanOrEqual(TIMING.leaseDurationMs - TIMING.retryPeriodMs - 300);
      expect(waited).toBeLessThan(TIMING.leaseDurationMs + 2.2 * TIMING.retryPeriodMs + 2_000);
      expect((await readLease('crash')).spec).toMatchObject({ holderIdentity: 'second', leaseTransitions: 1 });
    } finally {
      await second.stop();
    }
  });

  test('a graceful shutdown keeps renewing while the work drains, then releases, and the successor takes over at once', async () => {
    const first = candidate('graceful', 'first');
    await eventually(() => first.leading(), 'first to lead');
    first.setDrain(4_000); // longer than the lease: it must keep renewing meanwhile
    const second = candidate('graceful', 'second');
    try {
      await new Promise((r) => setTimeout(r, 500));
      const stopping = first.stop();
      await new Promise((r) => setTimeout(r, TIMING.leaseDurationMs + 500));
      // Still draining, past a whole lease duration: leaderSignal aborted, but the lease is still
      // held — renewed, or the second would have taken it by now.
      expect(first.state.leaderSignal?.aborted).toBe(true);
      expect(first.state.workDoneAt).toBeUndefined();
      expect(second.state.startedAt).toBeUndefined();
      expect((await readLease('graceful')).spec.holderIdentity).toBe('first');
      expect(await stopping).toBe('released');
      const releasedAt = performance.now();
      expect(first.state.workDoneAt).toBeDefined();
      expect(second.state.startedAt === undefined || second.state.startedAt > first.state.workDoneAt!).toBe(true);
      expect(first.elector.isLeader()).toBe(false);
      expect(await masterStatus(first.registry, 'graceful')).toBe(0);

      await eventually(() => second.leading(), 'second to take over');
      // Well inside the 3 s lease: it did not wait for an expiry.
      expect(second.state.startedAt! - releasedAt).toBeLessThan(1_500);
      expect((await readLease('graceful')).spec).toMatchObject({ holderIdentity: 'second', leaseTransitions: 1 });
    } finally {
      await second.stop();
    }
    // The last one out leaves the lease free.
    expect((await readLease('graceful')).spec).toMatchObject({ holderIdentity: '', leaseDurationSeconds: 1 });
  });

  test('a leader that cannot renew within the renew deadline loses leadership: leaderSignal aborts, isLeader turns false', async () => {
    const leader = candidate('stolen', 'leader');
    await eventually(() => leader.leading(), 'leader to lead');
    // Someone else takes the lease by force (as if we had been partitioned away and it expired): a
    // merge patch without a resourceVersion, which a renewal landing meanwhile cannot turn into a 409.
    await kubeRequest(kube, {
      method: 'PATCH',
      path: leasePath('stolen'),
      contentType: 'application/merge-patch+json',
      body: { spec: { holderIdentity: 'thief', leaseDurationSeconds: 60, renewTime: new Date().toISOString().replace('Z', '000Z') } },
    });
    const stolenAt = performance.now();
    expect(await leader.outcome).toBe('lost');
    const lostAt = leader.state.stoppedAt!;
    expect(lostAt - stolenAt).toBeGreaterThanOrEqual(TIMING.renewDeadlineMs - TIMING.retryPeriodMs - 100);
    expect(lostAt - stolenAt).toBeLessThan(TIMING.renewDeadlineMs + 2_000);
    expect(leader.state.leaderSignal?.reason).toBeInstanceOf(LeadershipLostError);
    expect(leader.elector.isLeader()).toBe(false);
    expect(await masterStatus(leader.registry, 'stolen')).toBe(0);
    expect((await readLease('stolen')).spec.holderIdentity).toBe('thief'); // and it did not fight back
  });

  test("a leader renews with one PUT per retry period and no read (client-go's optimistic renewal)", async () => {
    const requests: Record<string, number> = {};
    const counting: KubeConnection = {
      getCurrentCluster: () => kube.getCurrentCluster(),
      async applyToHTTPSOptions(options) {
        requests[options.method ?? 'GET'] = (requests[options.method ?? 'GET'] ?? 0) + 1;
        await kube.applyToHTTPSOptions(options);
      },
    };
    const leader = candidate('renew', 'leader', { kubeConfig: counting });
    try {
      await eventually(() => leader.leading(), 'leader to lead');
      const atStart = { GET: requests.GET ?? 0, PUT: requests.PUT ?? 0 };
      const renewTimes = new Set<string>();
      await eventually(async () => {
        renewTimes.add((await readLease('renew')).spec.renewTime!);
        return renewTimes.size >= 4;
      }, 'four renewals');
      expect((requests.GET ?? 0) - atStart.GET).toBe(0);
      expect((requests.PUT ?? 0) - atStart.PUT).toBeGreaterThanOrEqual(3);
      expect(leader.elector.isLeader()).toBe(true);
      expect((await readLease('renew')).spec).toMatchObject({ holderIdentity: 'leader', leaseTransitions: 0 });
    } finally {
      await leader.stop();
    }
  });

  test('candidates racing for a lease that does not exist yet: exactly one wins', async () => {
    const racers = ['r1', 'r2', 'r3'].map((id) => candidate('race', id));
    try {
      await eventually(() => racers.some((r) => r.leading()), 'someone to lead');
      for (let i = 0; i < 40; i++) {
        expect(racers.filter((r) => r.elector.isLeader())).toHaveLength(1);
        await new Promise((r) => setTimeout(r, 25));
      }
      const winner = racers.find((r) => r.leading())!;
      expect((await readLease('race')).spec).toMatchObject({ holderIdentity: winner.elector.identity, leaseTransitions: 0 });
    } finally {
      await Promise.all(racers.map((r) => r.stop()));
    }
  });
});
