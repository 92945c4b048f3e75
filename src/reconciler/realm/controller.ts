/**
 * Wiring of the Realm controller into the operator process: an informer on Realms, the
 * reconciler and a controller on the same runtime, client and metrics as PublishedRealm's.
 * Started only when the API server serves the Realm CRD, so a cluster that installed only the
 * PublishedRealm CRD (an upgrade in progress) keeps a ready operator; the log says why it is off.
 */
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { GROUP, REALM_KIND, REALM_PLURAL, VERSION, type Realm, type RealmStatus } from '../../api/v1alpha1/realm-types.js';
import type { DataPlane } from '../../dataplane/publish.js';
import { Controller, Informer, kubeRequest, notOwnWrite, specOrLifecycleChanged, type KubeConnection, type OwnWrites } from '../../runtime/index.js';
import { realmURLProblem } from '../../wire/realm-url.js';
import { CustomResourceKube, type ObjectKey } from '../published-realm/kube.js';
import { OrphanedRemovalSweep } from './orphaned-removal-sweep.js';
import { RealmReconciler } from './reconciler.js';

export const REALM_CONTROLLER_NAME = 'realm';

export interface RealmControllerOptions {
  connection: KubeConnection;
  plane: DataPlane;
  logger: Logger;
  registry: Registry;
  ownWrites: OwnWrites;
  identity: string;
  watchNamespace?: string;
  concurrency: number;
  resyncPeriodMs: number;
  drainTimeoutMs: number;
  ackWaitMs: number;
  ackRequeueMs: number;
  stalledRetryMs: number;
  /** The realm server URL for Realms without spec.serverURL (REALM_SERVER_URL). */
  defaultServerURL?: string;
  /** See RealmReconcilerOptions.onSourceChanged. */
  onSourceChanged?: (key: ObjectKey) => void;
}

export interface RealmControllerParts {
  informer: Informer<Realm & { metadata: { name: string; namespace: string } }>;
  controller: Controller;
  kube: CustomResourceKube<Realm, RealmStatus>;
  /** Finishes deletions whose Realm object is gone, even with no Realm left to reconcile (leader only). */
  orphanSweep: OrphanedRemovalSweep;
}

/** Whether the API server serves `realms.realm-operator.dev` (the CRD is installed and established). */
export async function realmResourceServed(connection: KubeConnection): Promise<boolean> {
  try {
    const list = await kubeRequest<{ resources?: Array<{ name: string }> }>(connection, { path: `/apis/${GROUP}/${VERSION}` });
    return (list.resources ?? []).some((r) => r.name === REALM_PLURAL);
  } catch {
    return false;
  }
}

/** The Realm controller's parts, or undefined (logged) when the Realm CRD is not installed. */
export async function createRealmController(options: RealmControllerOptions): Promise<RealmControllerParts | undefined> {
  if (options.defaultServerURL) {
    const problem = realmURLProblem(options.defaultServerURL, 'REALM_SERVER_URL');
    if (problem) throw new Error(`${problem.message}; set REALM_SERVER_URL to the realm server's URL, e.g. https://app.boxel.ai/`);
  }
  if (!(await realmResourceServed(options.connection))) {
    options.logger.warn(`the ${REALM_PLURAL}.${GROUP} CRD is not installed: the Realm controller is off (kubectl apply -k crds/ installs it; restart the operator afterwards)`);
    return undefined;
  }
  const informer = new Informer<Realm & { metadata: { name: string; namespace: string } }>({
    kubeConfig: options.connection,
    resource: { group: GROUP, version: VERSION, plural: REALM_PLURAL },
    ...(options.watchNamespace ? { namespace: options.watchNamespace } : {}),
    name: REALM_PLURAL,
    logger: options.logger.child({ component: 'informer' }),
    metricsRegistry: options.registry,
  });
  const kube = new CustomResourceKube<Realm, RealmStatus>(options.connection, options.logger.child({ component: 'events' }), options.identity, options.ownWrites, {
    kind: REALM_KIND,
    plural: REALM_PLURAL,
  });
  const reconciler = new RealmReconciler({
    kube,
    cached: (key) => informer.get(key),
    plane: options.plane,
    logger: options.logger.child({ controller: REALM_CONTROLLER_NAME }),
    ackWaitMs: options.ackWaitMs,
    ackRequeueMs: options.ackRequeueMs,
    stalledRetryMs: options.stalledRetryMs,
    ...(options.defaultServerURL ? { defaultServerURL: options.defaultServerURL } : {}),
    ...(options.onSourceChanged ? { onSourceChanged: options.onSourceChanged } : {}),
  });
  const controller = new Controller({
    name: REALM_CONTROLLER_NAME,
    reconciler,
    source: informer,
    concurrency: options.concurrency,
    resyncPeriodMs: options.resyncPeriodMs,
    drainTimeoutMs: options.drainTimeoutMs,
    predicates: [notOwnWrite(options.ownWrites), specOrLifecycleChanged()],
    logger: options.logger,
    metricsRegistry: options.registry,
  });
  options.logger.info({ defaultServerURL: options.defaultServerURL ?? '(unset: Realms need spec.serverURL)' }, 'Realm controller on');
  return { informer, controller, kube, orphanSweep: new OrphanedRemovalSweep(reconciler) };
}

