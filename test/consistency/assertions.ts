/**
 * What every consistency scenario must show, for the main realm and every other realm it read:
 * no stale read after Ready, no torn file, no answer from another replica, no error after Ready
 * except from a replica the scenario faulted, and no replica going back to an older revision.
 */
import { REPLICA_ROLE } from '../../src/dataplane/migrations.js';
import type { CheckerCounts } from './checker.js';
import { summarizeExit, type ScenarioResult } from './harness.js';
import type { ScenarioRun } from './scenarios.js';

export interface ConsistencyExpectations {
  /** Publishes that must have reached Ready (default: all requested). */
  minPublishes?: number;
  /**
   * Regressions a scenario may show, and why: only rollbacks of content that was never Ready
   * (an operator killed between the swap and the commit, a commit lost with PostgreSQL), each
   * checked to be one. Default: none.
   */
  allowRollbacksOfUnreadyContent?: string;
  /** Replicas expected in `listenerUsers` (default 3). */
  replicas?: number;
}

/** Errors after a Ready from replicas the scenario did not fault, per checked realm. */
export function unexpectedErrorsAfterReady(result: ScenarioResult): Record<string, Record<string, number>> {
  const faulted = new Set(result.faulted);
  const outside = (counts: CheckerCounts) => Object.fromEntries(Object.entries(counts.errorsAfterReadyByReplica).filter(([replica]) => !faulted.has(replica)));
  const all = { main: outside(result.counts), ...Object.fromEntries(Object.entries(result.extra).map(([name, x]) => [name, outside(x.counts)])) };
  return Object.fromEntries(Object.entries(all).filter(([, byReplica]) => Object.keys(byReplica).length > 0));
}

export function expectConsistent({ result }: ScenarioRun, options: ConsistencyExpectations = {}): void {
  const c = result.counts;
  expect(result.publishes).toBe(options.minPublishes ?? result.publishesRequested);
  const checked = [{ name: 'main', counts: c, violations: result.violations, regressions: result.regressionSamples }, ...Object.entries(result.extra).map(([name, x]) => ({ name, counts: x.counts, violations: x.violations, regressions: x.regressionSamples }))];
  for (const realm of checked) {
    // No stale read after Ready, from anyone (faulted or not).
    expect({ realm: realm.name, violations: realm.counts.violations, samples: realm.violations }).toEqual({ realm: realm.name, violations: 0, samples: [] });
    expect({ realm: realm.name, corrupt: realm.counts.corrupt, wrongReplica: realm.counts.wrongReplica }).toEqual({ realm: realm.name, corrupt: 0, wrongReplica: 0 });
    if (options.allowRollbacksOfUnreadyContent === undefined) {
      expect({ realm: realm.name, regressions: realm.counts.regressions, samples: realm.regressions }).toEqual({ realm: realm.name, regressions: 0, samples: [] });
    } else {
      // Each one went back from a revision that was not Ready yet when the older answer's read started.
      const ofReadyContent = realm.regressions.filter((r) => r.lastReady !== undefined && r.lastReady.revision >= r.previous.revision!);
      expect({ realm: realm.name, regressionsOfReadyContent: ofReadyContent }).toEqual({ realm: realm.name, regressionsOfReadyContent: [] });
    }
  }
  // Non-200 answers and transport errors after Ready only from replicas the scenario faulted.
  expect(unexpectedErrorsAfterReady(result)).toEqual({});
  // No orphans: every realm-server and operator process the scenario started has exited.
  expect(result.leftoverProcesses).toEqual([]);
  // No process died unless the scenario killed it (the full output of each is in the printed summary).
  expect(result.unexpectedExits.map(summarizeExit)).toEqual([]);
  // The rule was exercised: many successful reads started after a Ready.
  expect(c.checkedAfterReady).toBeGreaterThan(result.publishes * 10);
  // ... by realm servers connected as deploy/ runs them: through their own login, a member of the
  // least-privilege group role only, never with the operator's credentials.
  const sessions = result.replicaSessions!;
  expect(sessions).toMatchObject({ elevated: false, memberOf: [REPLICA_ROLE] });
  expect(Object.keys(sessions.listenerUsers)).toHaveLength(options.replicas ?? 3);
  expect(sessions.listenerUsers).toEqual(Object.fromEntries(Object.keys(sessions.listenerUsers).map((id) => [id, sessions.login])));
}
