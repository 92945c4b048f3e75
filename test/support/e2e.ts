/** Shared set-up of end-to-end suites: kubectl that throws, the CRD, and a namespace pair per suite. */
import path from 'node:path';
import { GROUP, PLURAL } from '../../src/api/v1alpha1/published-realm-types.js';
import { createTestDatabase, type TestDatabase } from './database.js';
import { kubectl } from './kube.js';
import { makeRealmsRoot } from './realms.js';

export const CRD_FILE = path.resolve(import.meta.dirname, '../../crds', `${GROUP}_${PLURAL}.yaml`);
/** `publishedrealms.realm-operator.dev`, for kubectl. */
export const RESOURCE = `${PLURAL}.${GROUP}`;

/** Runs kubectl and returns stdout; throws with stderr on a non-zero exit. */
export async function must(args: string[], input?: string): Promise<string> {
  const result = await kubectl(args, { input });
  if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${result.code}): ${result.stderr.slice(0, 4000)}`);
  return result.stdout;
}

/** Installs (idempotently, server-side) and waits for the PublishedRealm CRD. */
export async function installCRD(): Promise<void> {
  await must(['apply', '--server-side', '-f', CRD_FILE]);
  await must(['wait', '--for=condition=Established', `crd/${RESOURCE}`, '--timeout=30s']);
}

export interface E2EEnvironment {
  /** Namespace for the suite's PublishedRealms. */
  namespace: string;
  /** Namespace for the operator's leader-election Lease. */
  leaseNamespace: string;
  db: TestDatabase;
  realms: Awaited<ReturnType<typeof makeRealmsRoot>>;
  cleanup(): Promise<void>;
}

/** A database, a realms root, the CRD and two fresh namespaces named after `prefix`. */
export async function setUpE2E(prefix: string): Promise<E2EEnvironment> {
  const namespace = `${prefix}-${Math.random().toString(36).slice(2, 8)}`;
  const leaseNamespace = `${namespace}-system`;
  const db = await createTestDatabase();
  const realms = await makeRealmsRoot();
  await installCRD();
  await must(['create', 'namespace', namespace]);
  await must(['create', 'namespace', leaseNamespace]);
  return {
    namespace,
    leaseNamespace,
    db,
    realms,
    async cleanup() {
      // Without a controller-manager a deleted namespace never finishes terminating: do not wait.
      await kubectl(['delete', 'namespace', namespace, leaseNamespace, '--wait=false']);
      await db.drop();
      await realms.cleanup();
    },
  };
}
