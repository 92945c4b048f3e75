/**
 * `realm-operator/listener`: what a realm-server replica imports. No Kubernetes dependency.
 */
export {
  LISTENED_CHANNELS,
  MAX_NOTIFY_PAYLOAD_BYTES,
  MODULE_CACHE_INVALIDATED_CHANNEL,
  REALM_FILE_CHANGES_CHANNEL,
  REALM_FILE_CHANGES_WILDCARD,
  REALM_REGISTRY_CHANNEL,
  REPLICA_ACKS_CHANNEL,
  JOBS_CHANNEL,
} from '../wire/channels.js';
export {
  parseRealmFileChangePayload,
  parseModuleCacheInvalidation,
  parseRealmRegistryPayload,
  isWildcardChange,
  localPathMismatch,
  type LocalPathMismatch,
  type RealmFileChange,
  type ModuleCacheInvalidation,
  type RealmRegistryChange,
} from '../wire/payloads.js';
export { backoffDelay, DEFAULT_BACKOFF, type BackoffPolicy } from './backoff.js';
export { defaultFenceMarginMs, fenceDeadline, leaseTimingProblems, type LeaseTiming } from './fence.js';
export { listenerMetrics, type ListenerMetrics } from './metrics.js';
export {
  RealmListener,
  type DropPathResult,
  type ListenerState,
  type ListenerStatus,
  type RealmCache,
  type RealmCaches,
  type RealmListenerOptions,
} from './realm-listener.js';
export * as replicaRegistry from './replica-registry.js';
