/**
 * `realm-operator operator`: the PublishedRealm operator process, in or out of cluster.
 *
 * Wiring only — one place, as in controller-runtime's cmd/main.go: configuration, the database
 * (schema checked at start-up), the Kubernetes client (in-cluster service account, or KUBECONFIG /
 * ~/.kube/config), an informer on PublishedRealms (runs on every replica, so a new leader starts
 * warm), the controller (leader only), leader election on a Lease, the probe and metrics servers,
 * and SIGTERM: stop taking work, drain in-flight reconciles, release the lease, exit 0.
 */
import fs from 'node:fs/promises';
import { pino, type Logger } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { GROUP, PLURAL, VERSION, type PublishedRealm } from '../api/v1alpha1/published-realm-types.js';
import type { PublishAuthorization } from '../dataplane/authorization.js';
import { setReplicaLeaseGrace } from '../dataplane/ack-status.js';
import { setStagingLeaseLinger } from '../dataplane/staging-guard.js';
import { createPool } from '../dataplane/db.js';
import { RealmsLayout } from '../dataplane/layout.js';
import { assertSchema } from '../dataplane/schema-check.js';
import { StagingSlots } from '../dataplane/staging-slots.js';
import { registerRealmUser } from '../matrix/realm-user.js';
import { PublishedRealmKube } from '../reconciler/published-realm/kube.js';
import { PublishedRealmReconciler } from '../reconciler/published-realm/reconciler.js';
import { createRealmController } from '../reconciler/realm/controller.js';
import { registerStateMetrics } from '../reconciler/state-metrics.js';
import { Controller, formatKey, Informer, installProcessGuard, KeepAliveConnection, loadDefaultConnection, LeaderElector, Manager, notOwnWrite, OwnWrites, specOrLifecycleChanged, type KubeConnection } from '../runtime/index.js';
import { kubeAccessReviewer, MetricsAccess, serveMetrics } from './metrics-server.js';
import { operatorPoolConfig, parseBindAddress, type OperatorConfig } from './operator-config.js';

export const CONTROLLER_NAME = 'publishedrealm';

export async function runOperator(config: OperatorConfig, signal: AbortSignal, logger: Logger = pino({ level: config.logLevel })): Promise<void> {
  logger.info(
    { identity: config.identity, namespace: config.watchNamespace || '(all)', leaderElection: config.leaderElection, matrix: config.matrix?.matrixURL ?? '(not configured: realm users are not registered)' },
    'starting realm-operator',
  );
  const realmsRoot = await fs.stat(config.realmsRoot).catch(() => undefined);
  if (!realmsRoot?.isDirectory()) {
    throw new Error(`--realms-root / REALMS_ROOT: ${config.realmsRoot} is not a directory; mount the shared realms volume there`);
  }

  const pool = createPool(operatorPoolConfig(config), (error) =>
    logger.warn({ err: error }, 'a database connection failed; work using it is retried'),
  );
  // Every liveness read goes through this pool (ack waits, live pods): a replica's lease counts this much longer.
  setReplicaLeaseGrace(pool, config.replicaLeaseGrace);
  // Publishes that follow each other within 250 ms share one staging lock (its lock and unlock once per burst).
  setStagingLeaseLinger(pool, 250);
  try {
    await assertSchema(pool);
    // One pool of kept-alive connections for every request the runtime and the reconciler make.
    const connection = new KeepAliveConnection(await defaultKubeConnection(logger));
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });

    const informer = new Informer<PublishedRealm & { metadata: { name: string; namespace: string } }>({
      kubeConfig: connection,
      resource: { group: GROUP, version: VERSION, plural: PLURAL },
      ...(config.watchNamespace ? { namespace: config.watchNamespace } : {}),
      name: PLURAL,
      logger: logger.child({ component: 'informer' }),
      metricsRegistry: registry,
    });
    const endpointSlices = config.realmServerService ? realmServerEndpoints(config.realmServerService, connection, logger, registry) : undefined;
    const ownWrites = new OwnWrites();
    // Realms (source realms): on when the Realm CRD is installed. --realm-server-url gives Realms without spec.serverURL their server.
    const realmController = await createRealmController({
      connection,
      plane: { pool, layout: new RealmsLayout(config.realmsRoot), logger: logger.child({ controller: 'realm' }), durable: config.durable },
      logger,
      registry,
      ownWrites,
      identity: config.identity,
      ...(config.watchNamespace ? { watchNamespace: config.watchNamespace } : {}),
      concurrency: config.maxConcurrentReconciles,
      resyncPeriodMs: config.resyncPeriod,
      drainTimeoutMs: config.shutdownTimeout,
      ackWaitMs: config.ackWait,
      ackRequeueMs: config.ackRequeue,
      stalledRetryMs: config.stalledRetry,
      ...(config.realmServerURL ? { defaultServerURL: config.realmServerURL } : {}),
      // PublishedRealms naming the Realm in sourceRealmRef: reconciled now (the controller exists by the time this is called).
      onSourceChanged: (key) => {
        for (const object of informer.list()) {
          const ref = (object.spec as { sourceRealmRef?: { name?: unknown } } | undefined)?.sourceRealmRef;
          if (object.metadata.namespace === key.namespace && ref?.name === key.name) controller.queue.add(formatKey(object.metadata));
        }
      },
    });
    // Per-object conditions and acknowledgements: the informers' events note what changed, a scrape updates those series.
    registerStateMetrics(registry, { publishedRealms: informer, realms: realmController?.informer });
    const kube = new PublishedRealmKube(connection, logger.child({ component: 'events' }), config.identity, ownWrites);
    const reconciler = new PublishedRealmReconciler({
      kube,
      cached: (key) => informer.get(key),
      pool,
      layout: new RealmsLayout(config.realmsRoot),
      logger: logger.child({ controller: CONTROLLER_NAME }),
      ackWaitMs: config.ackWait,
      ackRequeueMs: config.ackRequeue,
      // Set once the controller exists: a parked acknowledgement wait enqueues its key when done.
      wake: (key) => controller.queue.add(formatKey(key)),
      stalledRetryMs: config.stalledRetry,
      durable: config.durable,
      ...faultInjection(logger),
      ...(endpointSlices ? { expectedReplicaPods: async () => readyEndpointPods(endpointSlices.list()) } : {}),
      realmLimits: { maxFiles: config.maxRealmFiles, maxBytes: config.maxRealmBytes },
      copyHardLinkedFiles: config.copyHardLinkedFiles,
      stagingSlots: new StagingSlots(config.maxConcurrentStagings),
      ...(config.matrix ? { registerRealmUser: (username: string) => registerRealmUser({ ...config.matrix!, username }) } : {}),
      ...(config.matrixServerName ? { matrixServerName: config.matrixServerName } : {}),
      ...publishAuthorization(config, logger),
      // spec.sourceRealmRef: the Realm from the informer's cache, else the API server.
      ...(realmController ? { readRealm: async (key: { namespace: string; name: string }) => realmController.informer.get(key) ?? (await realmController.kube.get(key)) } : {}),
    });
    const controller = new Controller({
      name: CONTROLLER_NAME,
      reconciler,
      source: informer,
      concurrency: config.maxConcurrentReconciles,
      resyncPeriodMs: config.resyncPeriod,
      drainTimeoutMs: config.shutdownTimeout,
      // Our own status writes (and label edits) must not re-enqueue: spec, deletion and finalizers do,
      // except our own finalizer patches (the reconcile that wrote one went on from it). First, so
      // every own write's entry is consumed whatever the other predicate says.
      predicates: [notOwnWrite(ownWrites), specOrLifecycleChanged()],
      logger, // the Controller adds `controller` itself
      metricsRegistry: registry,
    });
    const leaderElector = config.leaderElection
      ? new LeaderElector({
          kubeConfig: connection,
          namespace: config.leaderElectionNamespace,
          name: config.leaderElectionID,
          identity: config.identity,
          leaseDurationMs: config.leaseDuration,
          renewDeadlineMs: config.renewDeadline,
          retryPeriodMs: config.retryPeriod,
          logger: logger.child({ component: 'leader-election' }),
          metricsRegistry: registry,
        })
      : undefined;

    const probes = parseBindAddress(config.healthProbeBindAddress);
    const manager = new Manager({
      server: probes ? { host: probes.host, port: probes.port } : false,
      ...(leaderElector ? { leaderElector } : {}),
      gracefulShutdownTimeoutMs: config.shutdownTimeout + 5_000,
      logger: logger.child({ component: 'manager' }),
      metricsRegistry: registry,
      // With --metrics-secure the probe port must not serve the metrics unauthenticated.
      serveMetrics: !config.metricsSecure,
    });
    // A leaked rejection or exception must not exit the process (and stop every realm): log it,
    // count it and fail readiness with the reason.
    const removeProcessGuard = installProcessGuard({
      logger,
      onFault: (reason) => manager.markUnhealthy(reason),
      metricsRegistry: registry,
      metricName: 'realm_operator_unhandled_errors_total',
    });
    injectProcessFault(logger);
    manager.add(informer).add(controller);
    if (realmController) manager.add(realmController.informer).add(realmController.controller).add(realmController.orphanSweep);
    if (endpointSlices) manager.add(endpointSlices);
    const metricsServer = await serveMetrics({
      address: config.metricsBindAddress,
      registry,
      logger,
      ...(config.metricsSecure
        ? { secure: { access: new MetricsAccess(kubeAccessReviewer(connection)), certFile: config.metricsCertFile, keyFile: config.metricsKeyFile } }
        : {}),
    });
    try {
      await manager.start(signal);
    } finally {
      removeProcessGuard();
      metricsServer?.close();
      // Series counts the rate limit held back are written now, not lost with the process.
      await Promise.race([Promise.all([kube.events.close(), realmController?.kube.events.close()]), new Promise((resolve) => setTimeout(resolve, 5_000).unref())]);
      reconciler.close();
      connection.destroy();
    }
  } finally {
    await pool.end();
  }
  logger.info('realm-operator stopped');
}

/**
 * The Kubernetes credentials, in client-go's order ($KUBECONFIG, ~/.kube/config, the pod's service
 * account) without loading @kubernetes/client-node (~55 MB of RSS on its own); client-node's
 * KubeConfig only for what needs it (exec or auth-provider credentials, several kubeconfig files).
 */
async function defaultKubeConnection(logger: Logger): Promise<KubeConnection> {
  const connection = loadDefaultConnection();
  if (connection) return connection;
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromDefault();
  logger.info('Kubernetes credentials through @kubernetes/client-node (exec or auth-provider credentials, several kubeconfig files, or none found)');
  return kubeConfig;
}

interface EndpointSlice {
  metadata: { name: string; namespace: string };
  endpoints?: Array<{ addresses?: string[]; conditions?: { ready?: boolean }; targetRef?: { name?: string } }>;
}

/**
 * The realm-server Service's EndpointSlices: the pods that receive traffic. Pods among them that
 * never register with the listener (unmodified Boxel servers) make a publish notify-only.
 */
function realmServerEndpoints(service: string, kubeConfig: KubeConnection, logger: Logger, registry: Registry): Informer<EndpointSlice> {
  const [namespace, name] = service.split('/') as [string, string];
  return new Informer<EndpointSlice>({
    kubeConfig,
    resource: { group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices' },
    namespace,
    labelSelector: `kubernetes.io/service-name=${name}`,
    name: `endpointslices/${service}`,
    logger: logger.child({ component: 'informer', service }),
    metricsRegistry: registry,
  });
}

export function readyEndpointPods(slices: EndpointSlice[]): string[] {
  const pods = new Set<string>();
  for (const slice of slices) {
    for (const endpoint of slice.endpoints ?? []) {
      if (endpoint.conditions?.ready === false) continue;
      const id = endpoint.targetRef?.name ?? endpoint.addresses?.[0];
      if (id) pods.add(id);
    }
  }
  return [...pods].sort();
}

/**
 * Test-only fault injection: with REALM_OPERATOR_FAULT_CRASH_AT_STEP=<step> (a publish or
 * unpublish step name, e.g. `swapped`) the process SIGKILLs itself when that step completes, so
 * end-to-end tests can crash the operator at every step of a publish. Unset in production.
 */
function faultInjection(logger: Logger): { onStep?: (step: string) => void } {
  const crashAt = process.env.REALM_OPERATOR_FAULT_CRASH_AT_STEP;
  if (!crashAt) return {};
  logger.warn({ step: crashAt }, 'fault injection enabled: this process will SIGKILL itself at that publish step');
  return {
    onStep: (step) => {
      if (step !== crashAt) return;
      logger.warn({ step }, 'fault injection: crashing now');
      process.kill(process.pid, 'SIGKILL');
    },
  };
}

/**
 * Test-only fault injection: REALM_OPERATOR_FAULT_UNHANDLED=rejection|exception makes the process
 * leak an unhandled promise rejection (or throw an uncaught exception) once, shortly after start,
 * so end-to-end tests can check that the process guard keeps the operator running. Unset in production.
 */
function injectProcessFault(logger: Logger): void {
  const kind = process.env.REALM_OPERATOR_FAULT_UNHANDLED;
  if (kind !== 'rejection' && kind !== 'exception') return;
  logger.warn({ kind }, 'fault injection enabled: this process will leak an unhandled error');
  setTimeout(() => {
    if (kind === 'exception') throw new Error('fault injection: an exception nobody catches');
    void Promise.reject(new Error('fault injection: a promise nobody awaits rejected'));
  }, 200);
}

/**
 * Boxel's publish rules from the settings, logged once so an operator without a domain rule says so.
 * The space domain is a published-realm domain too, as in Boxel.
 */
function publishAuthorization(config: OperatorConfig, logger: Logger): { authorization?: PublishAuthorization } {
  if (!config.authorizePublishers) {
    logger.warn('--authorize-publishers=false: publishes and unpublishes are NOT checked against Boxel\'s rules (realm-owner, publishable, domains, own-space path)');
    return {};
  }
  const domains = [...config.publishedRealmDomains, ...(config.publishedRealmSpaceDomain ? [config.publishedRealmSpaceDomain] : [])];
  if (domains.length === 0) {
    logger.warn('no --published-realm-domains / PUBLISHED_REALM_DOMAINS: published realms may use any host (the domain rule is off); realm-owner and publishable are checked');
  } else {
    logger.info({ publishedRealmDomains: domains, spaceDomain: config.publishedRealmSpaceDomain }, 'publish authorization: realm-owner, publishable, published-realm domains, own-space path');
  }
  const overrides = Object.keys(config.publishedRealmDomainOverrides).length;
  if (overrides > 0) logger.info({ domainOverrides: config.publishedRealmDomainOverrides }, 'PUBLISHED_REALM_DOMAIN_OVERRIDES: these source realms may also be published on their custom domain by a publisher with write on them');
  return {
    authorization: {
      publishedRealmDomains: domains,
      ...(config.publishedRealmSpaceDomain ? { spaceDomain: config.publishedRealmSpaceDomain } : {}),
      ...(overrides > 0 ? { domainOverrides: config.publishedRealmDomainOverrides } : {}),
    },
  };
}
