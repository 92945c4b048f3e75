/**
 * A small, generic controller runtime (informer → keyed work queue → reconcile, leader election,
 * manager). It knows nothing about realms.
 */
export { Controller, TerminalError, type ControllerOptions, type ObjectKey, type ReconcileResult, type Reconciler, type WatchedSource } from './controller.js';
export {
  DEFAULT_EVENT_RATE_LIMIT,
  DEFAULT_SERIES_WINDOW_MS,
  EventRecorder,
  isomorphismKey,
  SeriesTracker,
  TokenBucket,
  type EventInput,
  type EventRecorderOptions,
  type EventType,
  type ObjectReference,
  type TokenBucketPolicy,
} from './event-recorder.js';
export {
  DEFAULT_INFORMER_BACKOFF,
  Informer,
  isGone,
  resourcePath,
  type InformerEventHandler,
  type InformerOptions,
  type InformerStatus,
  type ObjectSource,
  type ResourceRef,
  type WatchRestartReason,
} from './informer.js';
export { DEFAULT_MAX_SOCKETS, KeepAliveConnection } from './keep-alive.js';
export {
  KubeApiError,
  kubeRequest,
  kubeWatch,
  statusCodeOf,
  type KubeConnection,
  type KubeRequest,
  type KubeStatus,
  type WatchLike,
} from './kube-client.js';
export { inClusterConnection, loadDefaultConnection, loadKubeconfig, parseKubeconfig, StaticKubeConnection, type ResolvedConnection } from './kubeconfig.js';
export {
  LeaderElector,
  LeadershipLostError,
  type LeaderCallbacks,
  type LeaderElectionOutcome,
  type LeaderElectorOptions,
} from './leader-election.js';
export { decideLease, formatMicroTime, observeLease, type LeaseDecision, type LeaseRecord, type ObservedLease } from './lease-record.js';
export { Manager, type ManagerOptions, type ReadinessReport, type Runnable } from './manager.js';
export { accepts, anyOf, generationChanged, lifecycleChanged, metadataKeysChanged, notOwnWrite, OwnWrites, specOrLifecycleChanged, type Predicate } from './predicates.js';
export { installProcessGuard, type ProcessFaultKind, type ProcessGuardOptions } from './process-guard.js';
export { runtimeMetrics, type RuntimeMetrics } from './metrics.js';
export { formatKey, keyOfObject, parseKey, type KubeObject } from './object-key.js';
export { DEFAULT_RETRY_BACKOFF, WorkQueue, type WorkQueueObserver, type WorkQueueOptions } from './work-queue.js';
