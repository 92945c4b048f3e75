/**
 * Boxel's NOTIFY channels and payload sentinels (DESIGN §3). These names are a wire contract with
 * unmodified Boxel realm servers: never rename them.
 */

/** `<realmURL>:<localPath>` for one path, `<realmURL>:*` for a whole realm. */
export const REALM_FILE_CHANGES_CHANNEL = 'realm_file_changes';
/** JSON: `{"k":"realm","r":url}`, `{"k":"module","r":url,"m":[...]}` or `{"k":"global"}`. */
export const MODULE_CACHE_INVALIDATED_CHANNEL = 'module_cache_invalidated';
/**
 * `upsert:<url>` or `delete:<url>`, but only a hint: Boxel's replicas re-read `realm_registry` on
 * any notification here and never read the payload (packages/realm-server/lib/
 * realm-registry-reconciler.ts), so a listener must act on every one, whatever it carries. A
 * source realm's delete sends one `delete:<source URL>` for it and all its published realms.
 */
export const REALM_REGISTRY_CHANNEL = 'realm_registry';
/** Empty payload; wakes job workers after a `jobs` insert. */
export const JOBS_CHANNEL = 'jobs';
/**
 * This project's own channel: a replica NOTIFYs it after recording an acknowledgement so the
 * operator's wait wakes at once instead of on its next poll. Payload: `{"r":realm URL,"e":epoch,
 * "id":replica}` (the operator also accepts a bare realm URL, which older replicas sent).
 */
export const REPLICA_ACKS_CHANNEL = 'realm_operator_replica_acks';

/** The path that means "every cached path of this realm". */
export const REALM_FILE_CHANGES_WILDCARD = '*';

/** PostgreSQL refuses NOTIFY payloads of 8000 bytes or more. */
export const MAX_NOTIFY_PAYLOAD_BYTES = 7999;
/** Boxel chunks module invalidations under this many bytes per payload. */
export const MODULE_INVALIDATION_CHUNK_BYTES = 7000;

/** The channels a realm-server replica LISTENs on. */
export const LISTENED_CHANNELS = [
  REALM_FILE_CHANGES_CHANNEL,
  MODULE_CACHE_INVALIDATED_CHANNEL,
  REALM_REGISTRY_CHANNEL,
] as const;
export type ListenedChannel = (typeof LISTENED_CHANNELS)[number];
