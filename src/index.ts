/**
 * `realm-operator`: the operator side — realm URL and lock-key rules, the publish data plane,
 * migrations, and acknowledgement waits. Realm servers import `realm-operator/listener` instead.
 */
export { advisoryLockKey } from './wire/lock-key.js';
export { assertRealmURL, realmURLProblem, RealmURLError, MAX_REALM_URL_BYTES } from './wire/realm-url.js';
export * from './wire/channels.js';
export * from './wire/payloads.js';
export { notify, withRealmLock, withRealmLockTimed, type Queryable, type RealmLockOptions, type RealmLockTiming } from './dataplane/db.js';
export { migrate, MIGRATIONS } from './dataplane/migrations.js';
export { assertSchema, findMissingSchema, SchemaError, REQUIRED_COLUMNS } from './dataplane/schema-check.js';
export { RealmsLayout } from './dataplane/layout.js';
export { clearRealmDefinitions, clearModuleDefinitions, notifyAllFileChanges, notifyRealmRegistry } from './dataplane/invalidation.js';
export {
  publishRealm,
  unpublishRealm,
  recoverPublishedRealm,
  type DataPlane,
  type PublishRequest,
  type PublishResult,
  type PublishStep,
  type UnpublishResult,
  type UnpublishStep,
  type RecoveryResult,
} from './dataplane/publish.js';
export { ClaimConflictError, PublishError, readRealmEpochRow, type ClaimOptions, type RealmEpochRow } from './dataplane/realm-state.js';
export { enqueueReindex, REINDEX_JOB_TYPE, type ReindexRequest, type ReindexResult } from './dataplane/reindex.js';
export {
  readReplicaAckStatus,
  waitForReplicaAcks,
  pruneExpiredReplicas,
  type ReplicaAckStatus,
  type WaitForAcksOptions,
  type WaitForAcksResult,
} from './dataplane/acknowledgements.js';
