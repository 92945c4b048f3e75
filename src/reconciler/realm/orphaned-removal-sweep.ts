/**
 * The leader's periodic sweep of Realm deletions whose object is gone (RealmReconciler's
 * finishOrphanedRemovals). Reconciles also trigger it, but with no Realm object left in the cluster
 * nothing is reconciled: without this runnable a deletion whose finalizer was removed by hand
 * would wait for the next Realm ever created.
 */
import type { Runnable } from '../../runtime/index.js';
import { sleep } from '../../runtime/sleep.js';
import type { RealmReconciler } from './reconciler.js';

export class OrphanedRemovalSweep implements Runnable {
  readonly name = 'realm-orphaned-removal-sweep';
  /** Leader only: two operators finishing the same rows would only race to the same end, but waste work. */
  readonly needLeaderElection = true;

  constructor(private readonly reconciler: RealmReconciler) {}

  async start(signal: AbortSignal): Promise<void> {
    const every = this.reconciler.orphanSweepEveryMs;
    if (every <= 0) return;
    while (!signal.aborted) {
      await this.reconciler.sweepOrphanedRemovals(true);
      await sleep(every, signal);
    }
  }
}
