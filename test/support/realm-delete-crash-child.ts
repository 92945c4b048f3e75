/**
 * Child process for Realm deletion crash tests: reconciles one Realm that is being deleted until
 * its finalizer is released, as the operator's Realm controller does, and SIGKILLs itself when the
 * named deletion step completes (the CRASH_AFTER-th time, default the first), so no status write,
 * ROLLBACK or clean-up of ours runs — as in a real crash. Without CRASH_AT it runs to the end: the
 * fresh operator process that finishes the deletion.
 *
 * env: DATABASE_URL, REALMS_ROOT, NAMESPACE, NAME, SERVER_URL, CRASH_AT?, CRASH_AFTER?, plus the
 * test environment's kubeconfig variables (test/support/kube.ts).
 */
import pg from 'pg';
import { pino } from 'pino';
import { REALM_KIND, REALM_PLURAL, type Realm, type RealmStatus } from '../../src/api/v1alpha1/realm-types.js';
import { RealmsLayout } from '../../src/dataplane/layout.js';
import type { RealmDeletionStep } from '../../src/dataplane/realm-lifecycle.js';
import { CustomResourceKube } from '../../src/reconciler/published-realm/kube.js';
import { RealmReconciler } from '../../src/reconciler/realm/reconciler.js';
import { testKubeConfig } from './kube.js';

const env = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
};

const pool = new pg.Pool({ connectionString: env('DATABASE_URL'), application_name: 'realm-delete-crash-child' });
const logger = pino({ level: 'silent' });
const crashAt = process.env.CRASH_AT as RealmDeletionStep | undefined;
let remaining = Number(process.env.CRASH_AFTER ?? '1');
const key = { namespace: env('NAMESPACE'), name: env('NAME') };
const kube = new CustomResourceKube<Realm, RealmStatus>(testKubeConfig(), logger, 'realm-delete-crash-child', undefined, { kind: REALM_KIND, plural: REALM_PLURAL });
const reconciler = new RealmReconciler({
  kube,
  plane: { pool, layout: new RealmsLayout(env('REALMS_ROOT')), logger, durable: false },
  logger,
  defaultServerURL: env('SERVER_URL'),
  ackWaitMs: 5_000,
  ackRequeueMs: 100,
  // Only this Realm's deletion: no background sweep of other objects' leftovers.
  orphanSweepMs: 0,
  onDeletionStep: (step) => {
    if (step === crashAt && --remaining === 0) process.kill(process.pid, 'SIGKILL');
  },
});
for (let attempt = 0; attempt < 50 && (await kube.get(key)); attempt++) {
  const { requeueAfterMs } = await reconciler.reconcile(key);
  if (requeueAfterMs) await new Promise((resolve) => setTimeout(resolve, Math.min(requeueAfterMs, 200)));
}
const left = await kube.get(key);
await pool.end();
if (left) throw new Error(`the Realm ${key.namespace}/${key.name} still exists after 50 reconciles: ${JSON.stringify(left.status)}`);
process.stdout.write('completed without crashing\n');
