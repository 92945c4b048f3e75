/**
 * What a reconciler suite against the run's real kube-apiserver and a real PostgreSQL sets up:
 * the PublishedRealm CRD, its own namespace, its own database and realms root; and a reconciler
 * client that keeps every status it wrote.
 */
import type { PublishedRealm, PublishedRealmStatus } from '../../src/api/v1alpha1/published-realm-types.js';
import { PublishedRealmKube, type ObjectKey } from '../../src/reconciler/published-realm/kube.js';
import { kubeRequest } from '../../src/runtime/kube-client.js';
import { createTestDatabase, type TestDatabase } from './database.js';
import { installCRD } from './e2e.js';
import { testKubeConfig } from './kube.js';
import { makeRealmsRoot } from './realms.js';

export interface ReconcilerSuite {
  db: TestDatabase;
  realms: Awaited<ReturnType<typeof makeRealmsRoot>>;
}

/** For beforeAll: the CRD installed, `namespace` created, a database and a realms root. */
export async function setUpReconcilerSuite(namespace: string): Promise<ReconcilerSuite> {
  const db = await createTestDatabase();
  const realms = await makeRealmsRoot();
  await installCRD();
  await kubeRequest(testKubeConfig(), { method: 'POST', path: '/api/v1/namespaces', body: { metadata: { name: namespace } } });
  return { db, realms };
}

/** For afterAll: the namespace, the database and the realms root removed. */
export async function tearDownReconcilerSuite(namespace: string, suite: ReconcilerSuite | undefined): Promise<void> {
  await kubeRequest(testKubeConfig(), { method: 'DELETE', path: `/api/v1/namespaces/${namespace}` }).catch(() => undefined);
  await suite?.db.drop();
  await suite?.realms.cleanup();
}

/** The reconciler's Kubernetes client, keeping every status it wrote as the API server returned it. */
export class StatusRecordingKube extends PublishedRealmKube {
  readonly written: PublishedRealm[] = [];

  override async updateStatus(
    key: ObjectKey,
    mutate: (status: PublishedRealmStatus, realm: PublishedRealm) => PublishedRealmStatus,
    known?: PublishedRealm,
  ): ReturnType<PublishedRealmKube['updateStatus']> {
    const result = await super.updateStatus(key, mutate, known);
    if (result && result.after !== result.before) this.written.push(structuredClone(result.after));
    return result;
  }
}
