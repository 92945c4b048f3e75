/**
 * Standalone migrations: the Boxel tables the operator touches (same names and columns as Boxel's
 * own migrations, created only when absent so a Boxel database is left alone) and this
 * project's tables in the `realm_operator` schema.
 */
import type pg from 'pg';
import { COMPLETION_FUNCTION, COMPLETION_FUNCTION_BODY, COMPLETION_FUNCTION_SQL } from '../listener/replica-registry.js';
import { advisoryLockKey } from '../wire/lock-key.js';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/**
 * Brings the Boxel tables migration 1 created to the shape Boxel's own migrations give them today
 * (cardstack/boxel packages/postgres/migrations/, through 1787258803063_add-media-cache-ledger.js,
 * plus migrations-removal/1783724976754_drop-boxel-index-html-columns.js), so standalone and test
 * databases have the columns, types, defaults, keys, CHECKs, indexes and persistence a Boxel
 * database has. test/integration/standalone-schema.test.ts pins the result, column by column.
 *
 * In a Boxel database (Boxel's node-pg-migrate table `public.migrations` exists) Boxel's
 * migrations own these tables: nothing here alters them. Nor does it alter a table the migrating
 * user does not own. Every step is also guarded by the catalog, so running it over tables
 * already in this shape (Boxel's own included) changes nothing.
 */
const BOXEL_CURRENT_SHAPE_SQL = `
DO $boxel_shape$
DECLARE
  -- Only tables the migrating user owns are reshaped; one owned by another role (a DBA's or Boxel's)
  -- is left as it is, and the start-up schema check names what the operator then lacks.
  owned text[] := ARRAY(SELECT c.relname::text FROM pg_class c
    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND pg_has_role(c.relowner, 'USAGE'));
BEGIN
  IF to_regclass('public.migrations') IS NOT NULL THEN
    RETURN;
  END IF;

  IF 'jobs' = ANY(owned) THEN
    -- jobs as 1727287275038_CreateJobReservationTable.js recreated it: status the enum job_statuses
    -- (created by 1712771547705_initial.js), timeout nullable without a default, created_at and
    -- finished_at timestamps without time zone, created_at defaulting to CURRENT_TIMESTAMP.
    IF to_regtype('public.job_statuses') IS NULL THEN
      CREATE TYPE public.job_statuses AS ENUM ('unfulfilled', 'resolved', 'rejected');
    END IF;
    IF (SELECT atttypid FROM pg_attribute WHERE attrelid = 'public.jobs'::regclass AND attname = 'status') <> 'public.job_statuses'::regtype THEN
      ALTER TABLE public.jobs DROP CONSTRAINT IF EXISTS jobs_status_check;
      ALTER TABLE public.jobs ALTER COLUMN status DROP DEFAULT;
      ALTER TABLE public.jobs ALTER COLUMN status TYPE public.job_statuses USING status::text::public.job_statuses;
      ALTER TABLE public.jobs ALTER COLUMN status SET DEFAULT 'unfulfilled';
    END IF;
    ALTER TABLE public.jobs ALTER COLUMN timeout DROP NOT NULL, ALTER COLUMN timeout DROP DEFAULT;
    IF (SELECT atttypid FROM pg_attribute WHERE attrelid = 'public.jobs'::regclass AND attname = 'created_at') = 'timestamptz'::regtype THEN
      ALTER TABLE public.jobs
        ALTER COLUMN created_at TYPE timestamp USING created_at AT TIME ZONE 'UTC',
        ALTER COLUMN finished_at TYPE timestamp USING finished_at AT TIME ZONE 'UTC';
    END IF;
    ALTER TABLE public.jobs ALTER COLUMN created_at SET DEFAULT CURRENT_TIMESTAMP;
    -- 1736950557343_queue-priority.js, 1785247595829_add-jobs-unfulfilled-concurrency-group-index.js,
    -- 1783724082538_add-jobs-prerender-spawning-job-id-index.js
    CREATE INDEX IF NOT EXISTS jobs_priority_index ON public.jobs (priority);
    CREATE INDEX IF NOT EXISTS jobs_unfulfilled_concurrency_group_idx ON public.jobs (concurrency_group) WHERE status = 'unfulfilled';
    CREATE INDEX IF NOT EXISTS jobs_prerender_html_spawning_job_id_idx ON public.jobs (((args ->> 'spawningJobId')::bigint), id)
      WHERE job_type = 'prerender_html' AND (args ->> 'spawningJobId') IS NOT NULL;

    -- A worker's claim on a job (1727287275038_CreateJobReservationTable.js,
    -- 1777660517426_add-index-on-job-reservations-job-id.js,
    -- 1778020800000_add-completion-reason-to-job-reservations.js).
    CREATE TABLE IF NOT EXISTS public.job_reservations (
      id serial PRIMARY KEY,
      job_id integer NOT NULL REFERENCES public.jobs (id),
      created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
      locked_until timestamp NOT NULL,
      completed_at timestamp,
      worker_id varchar,
      completion_reason text
    );
    CREATE INDEX IF NOT EXISTS job_reservations_job_id_index ON public.job_reservations (job_id);
  END IF;

  IF 'realm_registry' = ANY(owned) THEN
    -- realm_registry (1776960113000_create-realm-registry.js): owner_username NOT NULL (bootstrap rows
    -- use 'system'), source_url and last_published_at only on published rows, the URL unique through
    -- the index realm_registry_url_uniq. Rows written before this migration get Boxel's owner: a
    -- published realm's own realm user, a source realm's <owner> from its <owner>/<endpoint> disk id.
    UPDATE public.realm_registry SET owner_username = CASE kind
        WHEN 'published' THEN 'realm/_published_' || disk_id
        WHEN 'bootstrap' THEN 'system'
        ELSE split_part(disk_id, '/', 1) END
      WHERE owner_username IS NULL;
    ALTER TABLE public.realm_registry ALTER COLUMN owner_username SET NOT NULL;
    UPDATE public.realm_registry SET source_url = NULL, last_published_at = NULL
      WHERE kind <> 'published' AND (source_url IS NOT NULL OR last_published_at IS NOT NULL);
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'public.realm_registry'::regclass AND conname = 'realm_registry_source_url_by_kind') THEN
      ALTER TABLE public.realm_registry ADD CONSTRAINT realm_registry_source_url_by_kind
        CHECK ((kind = 'published' AND source_url IS NOT NULL) OR (kind <> 'published' AND source_url IS NULL));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'public.realm_registry'::regclass AND conname = 'realm_registry_last_published_by_kind') THEN
      ALTER TABLE public.realm_registry ADD CONSTRAINT realm_registry_last_published_by_kind
        CHECK (kind = 'published' OR last_published_at IS NULL);
    END IF;
    CREATE UNIQUE INDEX IF NOT EXISTS realm_registry_url_uniq ON public.realm_registry (url);
    ALTER TABLE public.realm_registry DROP CONSTRAINT IF EXISTS realm_registry_url_key;
    CREATE INDEX IF NOT EXISTS realm_registry_source_url_index ON public.realm_registry (source_url);
    CREATE INDEX IF NOT EXISTS realm_registry_kind_index ON public.realm_registry (kind);
    CREATE INDEX IF NOT EXISTS realm_registry_pinned_idx ON public.realm_registry (pinned) WHERE pinned = true;
  END IF;

  IF 'modules' = ANY(owned) THEN
    -- modules is keyed by md5(url) (1770889690032_index-row-size-max-error.js), has no defaults on
    -- its key columns (1763592496405_create-definitions-table.js), file_alias is text, and the table
    -- is unlogged: it is a cache.
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'public.modules'::regclass AND attname = 'url_hash' AND NOT attisdropped) THEN
      ALTER TABLE public.modules ADD COLUMN url_hash text GENERATED ALWAYS AS (md5(url)) STORED;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                   WHERE i.indrelid = 'public.modules'::regclass AND i.indisprimary AND a.attname = 'url_hash') THEN
      ALTER TABLE public.modules DROP CONSTRAINT IF EXISTS modules_pkey;
      ALTER TABLE public.modules ADD CONSTRAINT modules_pkey PRIMARY KEY (url_hash, cache_scope, auth_user_id);
    END IF;
    ALTER TABLE public.modules ALTER COLUMN cache_scope DROP DEFAULT, ALTER COLUMN auth_user_id DROP DEFAULT;
    IF (SELECT atttypid FROM pg_attribute WHERE attrelid = 'public.modules'::regclass AND attname = 'file_alias') <> 'text'::regtype THEN
      ALTER TABLE public.modules ALTER COLUMN file_alias TYPE text;
    END IF;
    CREATE INDEX IF NOT EXISTS modules_resolved_realm_url_file_alias_index ON public.modules USING hash (file_alias);
    IF (SELECT relpersistence FROM pg_class WHERE oid = 'public.modules'::regclass) <> 'u' THEN
      ALTER TABLE public.modules SET UNLOGGED;
    END IF;
  END IF;

  IF 'realm_metadata' = ANY(owned) THEN
    -- realm_metadata (1777591052962_create-realm-metadata.js, 1782417591926_add-archived-at-to-realm-metadata.js).
    ALTER TABLE public.realm_metadata ADD COLUMN IF NOT EXISTS show_as_catalog boolean;
    ALTER TABLE public.realm_metadata ADD COLUMN IF NOT EXISTS archived_at timestamptz;
    IF (SELECT atttypid FROM pg_attribute WHERE attrelid = 'public.realm_metadata'::regclass AND attname = 'created_at') = 'timestamptz'::regtype THEN
      ALTER TABLE public.realm_metadata
        ALTER COLUMN created_at TYPE timestamp USING created_at AT TIME ZONE 'UTC',
        ALTER COLUMN updated_at TYPE timestamp USING updated_at AT TIME ZONE 'UTC';
    END IF;
  END IF;

  IF 'realm_user_permissions' = ANY(owned) THEN
    -- realm_user_permissions: read and write have no default (1716284017819_add-realm-user-permissions.js);
    -- 1727094475141_add-public-realms-index.js.js indexes (username, read).
    ALTER TABLE public.realm_user_permissions ALTER COLUMN read DROP DEFAULT, ALTER COLUMN write DROP DEFAULT;
    CREATE INDEX IF NOT EXISTS realm_user_permissions_username_read_index ON public.realm_user_permissions (username, read);
  END IF;

  IF 'boxel_index' = ANY(owned) THEN
    -- boxel_index: realm_version is now generation (1783004110683_rename-realm-version-to-generation.js);
    -- file_alias and type are required, type is 'instance' or 'file' (1771254218515_remove-module-index-entries.js
    -- deleted the old 'module' rows first); the columns the index writer fills; its indexes; unlogged.
    IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'public.boxel_index'::regclass AND attname = 'realm_version' AND NOT attisdropped)
       AND NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'public.boxel_index'::regclass AND attname = 'generation' AND NOT attisdropped) THEN
      ALTER TABLE public.boxel_index RENAME COLUMN realm_version TO generation;
    END IF;
    ALTER TABLE public.boxel_index ALTER COLUMN generation DROP DEFAULT;
    UPDATE public.boxel_index SET file_alias = url WHERE file_alias IS NULL;
    ALTER TABLE public.boxel_index ALTER COLUMN file_alias SET NOT NULL, ALTER COLUMN type DROP DEFAULT;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'public.boxel_index'::regclass AND conname = 'boxel_index_type_check') THEN
      DELETE FROM public.boxel_index WHERE type NOT IN ('instance', 'file');
      ALTER TABLE public.boxel_index ADD CONSTRAINT boxel_index_type_check CHECK (type IN ('instance', 'file'));
    END IF;
    ALTER TABLE public.boxel_index
      ADD COLUMN IF NOT EXISTS pristine_doc jsonb,
      ADD COLUMN IF NOT EXISTS search_doc jsonb,
      ADD COLUMN IF NOT EXISTS error_doc jsonb,
      ADD COLUMN IF NOT EXISTS deps jsonb DEFAULT '[]'::jsonb,
      ADD COLUMN IF NOT EXISTS types jsonb,
      ADD COLUMN IF NOT EXISTS display_names jsonb,
      ADD COLUMN IF NOT EXISTS resource_created_at bigint,
      ADD COLUMN IF NOT EXISTS icon_html varchar,
      ADD COLUMN IF NOT EXISTS has_error boolean NOT NULL DEFAULT false,
      ADD COLUMN IF NOT EXISTS last_known_good_deps jsonb,
      ADD COLUMN IF NOT EXISTS diagnostics jsonb;
    CREATE INDEX IF NOT EXISTS boxel_index_deps_index ON public.boxel_index USING gin (deps);
    CREATE INDEX IF NOT EXISTS boxel_index_file_alias_index ON public.boxel_index (file_alias);
    CREATE INDEX IF NOT EXISTS boxel_index_generation_index ON public.boxel_index (generation);
    CREATE INDEX IF NOT EXISTS boxel_index_last_modified_index ON public.boxel_index (last_modified);
    CREATE INDEX IF NOT EXISTS boxel_index_realm_url_type_index ON public.boxel_index (realm_url, type);
    CREATE INDEX IF NOT EXISTS boxel_index_resource_created_at_index ON public.boxel_index (resource_created_at);
    CREATE INDEX IF NOT EXISTS boxel_index_search_doc_index ON public.boxel_index USING gin (search_doc);
    CREATE INDEX IF NOT EXISTS boxel_index_type_index ON public.boxel_index (type);
    CREATE INDEX IF NOT EXISTS boxel_index_types_containment_idx ON public.boxel_index USING gin (COALESCE(types, '[]'::jsonb) jsonb_path_ops);
    CREATE INDEX IF NOT EXISTS boxel_index_url_generation_index ON public.boxel_index (url, generation);
    IF (SELECT relpersistence FROM pg_class WHERE oid = 'public.boxel_index'::regclass) <> 'u' THEN
      ALTER TABLE public.boxel_index SET UNLOGGED;
    END IF;
  END IF;
END
$boxel_shape$;
`;

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'boxel tables the operator touches',
    sql: `
CREATE TABLE IF NOT EXISTS realm_registry (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  url varchar NOT NULL UNIQUE,
  kind varchar NOT NULL CHECK (kind IN ('source', 'published', 'bootstrap')),
  disk_id varchar NOT NULL,
  owner_username varchar,
  source_url varchar,
  last_published_at bigint,
  pinned boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS modules (
  url varchar NOT NULL,
  cache_scope varchar NOT NULL DEFAULT 'public',
  auth_user_id varchar NOT NULL DEFAULT '',
  resolved_realm_url varchar NOT NULL,
  definitions jsonb,
  deps jsonb,
  error_doc jsonb,
  created_at bigint,
  file_alias varchar,
  diagnostics jsonb,
  PRIMARY KEY (url, cache_scope, auth_user_id)
);
CREATE INDEX IF NOT EXISTS modules_resolved_realm_url_index ON modules (resolved_realm_url);
CREATE TABLE IF NOT EXISTS jobs (
  id serial PRIMARY KEY,
  job_type varchar NOT NULL,
  args jsonb,
  concurrency_group varchar,
  timeout integer NOT NULL DEFAULT 60,
  status varchar NOT NULL DEFAULT 'unfulfilled' CHECK (status IN ('unfulfilled', 'resolved', 'rejected')),
  created_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  result jsonb,
  priority integer NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS realm_metadata (
  url varchar PRIMARY KEY,
  publishable boolean,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS realm_user_permissions (
  realm_url varchar NOT NULL,
  username varchar NOT NULL,
  read boolean NOT NULL DEFAULT false,
  write boolean NOT NULL DEFAULT false,
  realm_owner boolean NOT NULL DEFAULT false,
  PRIMARY KEY (realm_url, username)
);
CREATE TABLE IF NOT EXISTS boxel_index (
  url varchar NOT NULL,
  file_alias varchar,
  realm_version integer NOT NULL DEFAULT 0,
  realm_url varchar NOT NULL,
  type varchar NOT NULL DEFAULT 'instance',
  last_modified bigint,
  indexed_at bigint,
  is_deleted boolean,
  PRIMARY KEY (url, realm_url, type)
);
CREATE INDEX IF NOT EXISTS boxel_index_realm_url_index ON boxel_index (realm_url);
`,
  },
  {
    version: 2,
    name: 'realm-operator epochs, replicas, leases and acknowledgements',
    sql: `
-- One sequence orders every publish of every realm; each realm's epoch is the value drawn by its
-- latest publish, so "a replica emptied its cache at sequence position S" covers every epoch <= S.
CREATE SEQUENCE IF NOT EXISTS realm_operator.epoch_seq;
CREATE TABLE IF NOT EXISTS realm_operator.realm_epochs (
  realm_url text PRIMARY KEY,
  epoch bigint NOT NULL,
  -- Reserved before any file moves, so a crashed first publish can be found and undone.
  disk_id text,
  -- The version directory the published symlink points at, as committed; NULL when unpublished.
  content_version text,
  -- Kept one publish longer for readers that resolved the link just before the swap.
  previous_version text,
  content_digest text,
  file_count integer,
  total_bytes bigint,
  published_at timestamptz,
  reindex_epoch bigint,
  reindex_job_id bigint,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS realm_operator.replicas (
  replica_id text PRIMARY KEY,
  registered_at timestamptz NOT NULL DEFAULT now(),
  -- The lease: a replica is live while lease_expires_at > now() (database clock).
  lease_expires_at timestamptz NOT NULL,
  lease_duration_ms integer NOT NULL CHECK (lease_duration_ms > 0),
  renewed_at timestamptz NOT NULL DEFAULT now(),
  -- epoch_seq position read just before the replica last emptied its whole cache (NULL until it
  -- has); it has implicitly acknowledged every epoch at or below it.
  cache_started_epoch bigint,
  cache_started_at timestamptz,
  metadata jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS replicas_lease_expires_at_index ON realm_operator.replicas (lease_expires_at);
CREATE TABLE IF NOT EXISTS realm_operator.replica_acks (
  replica_id text NOT NULL REFERENCES realm_operator.replicas (replica_id) ON DELETE CASCADE,
  realm_url text NOT NULL,
  epoch bigint NOT NULL,
  acked_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (replica_id, realm_url)
);
CREATE INDEX IF NOT EXISTS replica_acks_realm_url_index ON realm_operator.replica_acks (realm_url, epoch);
`,
  },
  {
    version: 3,
    name: 'which PublishedRealm owns a published URL, and for which of its generations it published',
    sql: `
-- "<namespace>/<name>/<uid>" of the PublishedRealm that publishes this URL, so a second object
-- naming the same publishedRealmURL can neither republish nor unpublish it.
ALTER TABLE realm_operator.realm_epochs ADD COLUMN IF NOT EXISTS claimed_by text;
-- What the last publish was for (e.g. "<uid>/<generation>"), committed with the publish itself, so
-- a controller that crashed before writing status does not publish the same generation twice.
ALTER TABLE realm_operator.realm_epochs ADD COLUMN IF NOT EXISTS published_for text;
`,
  },
  {
    version: 4,
    name: "boxel tables in Boxel's current shape",
    sql: BOXEL_CURRENT_SHAPE_SQL,
  },
  {
    version: 5,
    name: 'the generation each publish committed, to fence publishes of older generations',
    sql: `
-- Which object (its claimant, "<namespace>/<name>/<uid>") and which of its generations the last
-- committed publish was for. A publish of the same object's generation at or below it is refused
-- under the realm lock: a leader paused mid-publish must not commit over a newer leader's publish.
ALTER TABLE realm_operator.realm_epochs ADD COLUMN IF NOT EXISTS published_generation bigint;
ALTER TABLE realm_operator.realm_epochs ADD COLUMN IF NOT EXISTS published_generation_of text;
`,
  },
  {
    version: 6,
    name: 'kept published versions, for instant rollback',
    sql: `
-- Every published version the operator keeps on disk for rollback, written in the publish's own
-- transaction (so a row exists exactly for versions that committed) and deleted by the post-commit
-- clean-up that trashes the directory. The live version is realm_epochs.content_version.
CREATE TABLE IF NOT EXISTS realm_operator.published_versions (
  realm_url text NOT NULL,
  version text NOT NULL,
  disk_id text NOT NULL,
  -- The epoch the version was first published at.
  epoch bigint NOT NULL,
  content_digest text NOT NULL,
  file_count integer NOT NULL,
  total_bytes bigint NOT NULL,
  published_at timestamptz NOT NULL DEFAULT now(),
  published_for text,
  -- spec.revision of the publish that made it, as text.
  revision text,
  PRIMARY KEY (realm_url, version)
);
-- How many versions (and bytes) to keep, recorded with each publish or rollback so recovery and
-- clean-up, which run without the PublishedRealm's spec, trim by the same rule. NULL: keep none
-- beyond the live one.
ALTER TABLE realm_operator.realm_epochs ADD COLUMN IF NOT EXISTS history_limit integer;
ALTER TABLE realm_operator.realm_epochs ADD COLUMN IF NOT EXISTS history_max_bytes bigint;
`,
  },
  {
    version: 7,
    name: 'what a committed Realm deletion still has to do',
    sql: `
-- One row per realm a Realm deletion removed (the published realms made from the source, then the
-- source), written in the delete transaction itself, so a crash after COMMIT loses nothing: any
-- operator process finishes it from here (files, wildcard NOTIFY with an epoch, acknowledgements)
-- and deletes the rows last. position is Boxel's order: published realms first, the source last.
-- A URL may have rows of two deletions (a realm created again at a URL whose earlier removal is
-- still waiting for acknowledgements), so rows are keyed by id.
CREATE TABLE IF NOT EXISTS realm_operator.pending_realm_removals (
  id bigserial PRIMARY KEY,
  realm_url text NOT NULL,
  source_url text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('published', 'source')),
  -- Relative to the realms root: <owner>/<endpoint> or _published/<id>.
  disk_id text NOT NULL,
  position integer NOT NULL,
  -- The Realm object ("<namespace>/<name>/<uid>") whose deletion this is.
  claimed_by text,
  files_removed boolean NOT NULL DEFAULT false,
  -- Drawn with the wildcard NOTIFY, in one transaction; NULL until then.
  epoch bigint,
  committed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS pending_realm_removals_source ON realm_operator.pending_realm_removals (source_url, id);
`,
  },
  {
    version: 8,
    name: 'one completion NOTIFY per acknowledged epoch',
    sql: `
-- The last completion a replica announced for a realm (src/listener/replica-registry.ts): the
-- epoch every live replica was done with, and how many registered replicas were done. A replica
-- NOTIFYs the operator only when its upsert here moves (epoch, done) forward, so replicas whose
-- acks commit together announce a completion once, not once each (each NOTIFY wakes every
-- LISTENing backend). One row per realm; a row left by a deleted realm is harmless (epochs only
-- grow).
CREATE TABLE IF NOT EXISTS realm_operator.ack_announcements (
  realm_url text PRIMARY KEY,
  epoch bigint NOT NULL,
  done integer NOT NULL,
  announced_at timestamptz NOT NULL DEFAULT now()
);
`,
  },
];

/**
 * The NOLOGIN group role realm-server replicas connect through (a login role `IN ROLE` it). A
 * replica holds credentials on every pod, so it gets only its registration, lease and
 * acknowledgements, and reads; it cannot UPDATE `realm_epochs` (where a published realm's
 * directory comes from), the registry, `modules` or `jobs`.
 */
export const REPLICA_ROLE = 'realm_operator_replica';

/**
 * Everything the listener (src/listener/replica-registry.ts) and the reference realm server run,
 * each with the check that it is in effect: a GRANT by a user holding the privilege without its
 * grant option only warns, so success is read back from the catalog, not from the statement.
 */
export const REPLICA_ROLE_GRANTS: ReadonlyArray<{ sql: string; holds: string }> = [
  {
    sql: `GRANT USAGE ON SCHEMA realm_operator TO ${REPLICA_ROLE}`,
    holds: `has_schema_privilege($1, 'realm_operator', 'USAGE')`,
  },
  {
    // registerReplica (upsert), renewLease, recordCacheStarted, deregisterReplica.
    sql: `GRANT SELECT, INSERT, UPDATE, DELETE ON realm_operator.replicas TO ${REPLICA_ROLE}`,
    holds: `has_table_privilege($1, 'realm_operator.replicas', 'SELECT, INSERT, UPDATE, DELETE')`,
  },
  {
    // recordAck: INSERT ... ON CONFLICT DO UPDATE SET epoch, acked_at ... RETURNING.
    sql: `GRANT SELECT, INSERT, UPDATE (epoch, acked_at) ON realm_operator.replica_acks TO ${REPLICA_ROLE}`,
    holds: `has_table_privilege($1, 'realm_operator.replica_acks', 'SELECT, INSERT')
      AND has_column_privilege($1, 'realm_operator.replica_acks', 'epoch', 'UPDATE')
      AND has_column_privilege($1, 'realm_operator.replica_acks', 'acked_at', 'UPDATE')`,
  },
  {
    // writeAck / announceIfAllAcked: the completion claim (INSERT ... ON CONFLICT DO UPDATE ... RETURNING).
    // Migration 8 makes the table: a database migrated only part of the way (`through`) has none yet.
    sql: `DO $grant$ BEGIN
      IF to_regclass('realm_operator.ack_announcements') IS NOT NULL THEN
        GRANT SELECT, INSERT, UPDATE ON realm_operator.ack_announcements TO ${REPLICA_ROLE};
      END IF;
    END $grant$`,
    holds: `to_regclass('realm_operator.ack_announcements') IS NULL
      OR has_table_privilege($1, 'realm_operator.ack_announcements', 'SELECT, INSERT, UPDATE')`,
  },
  {
    // writeAckThenAnnounce: the completion check calls the announcement function (ensureCompletionFunction).
    sql: `DO $grant$ BEGIN
      IF to_regprocedure('${COMPLETION_FUNCTION}') IS NOT NULL THEN
        GRANT EXECUTE ON FUNCTION ${COMPLETION_FUNCTION} TO ${REPLICA_ROLE};
      END IF;
    END $grant$`,
    holds: `to_regprocedure('${COMPLETION_FUNCTION}') IS NULL OR has_function_privilege($1, '${COMPLETION_FUNCTION}', 'EXECUTE')`,
  },
  {
    // readRealmEpoch and the realm server's registry join: read only.
    sql: `GRANT SELECT ON realm_operator.realm_epochs TO ${REPLICA_ROLE}`,
    holds: `has_table_privilege($1, 'realm_operator.realm_epochs', 'SELECT')`,
  },
  {
    // readEpochPosition reads last_value/is_called; SELECT on a sequence does not allow nextval().
    sql: `GRANT SELECT ON SEQUENCE realm_operator.epoch_seq TO ${REPLICA_ROLE}`,
    holds: `has_sequence_privilege($1, 'realm_operator.epoch_seq', 'SELECT')`,
  },
  { sql: `GRANT SELECT ON realm_registry TO ${REPLICA_ROLE}`, holds: `has_table_privilege($1, 'public.realm_registry', 'SELECT')` },
  // Permission checks for source realms served to their readers.
  { sql: `GRANT SELECT ON realm_user_permissions TO ${REPLICA_ROLE}`, holds: `has_table_privilege($1, 'public.realm_user_permissions', 'SELECT')` },
];

export interface MigrateOptions {
  /** Told when the replica role cannot be created or granted (and what a DBA should run instead). */
  onNotice?: (message: string) => void;
  /** Apply migrations up to and including this version only (a database as an older release left it). */
  through?: number;
}

/** Serializes concurrent `migrate` runs (operator replicas starting together). */
const MIGRATION_LOCK_URL = 'realm-operator:migrations';

/**
 * Applies every migration not yet recorded, each in its own transaction, then sets up
 * {@link REPLICA_ROLE} where the connecting user may; returns the versions applied.
 */
export async function migrate(pool: pg.Pool, options: MigrateOptions = {}): Promise<number[]> {
  const client = await pool.connect();
  let failure: Error | undefined;
  try {
    // Session-level, so it also covers the CREATE ... IF NOT EXISTS below, which races otherwise.
    await client.query('SELECT pg_advisory_lock($1::bigint)', [advisoryLockKey(MIGRATION_LOCK_URL)]);
    await client.query('CREATE SCHEMA IF NOT EXISTS realm_operator');
    await client.query(`CREATE TABLE IF NOT EXISTS realm_operator.schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const applied: number[] = [];
    for (const migration of MIGRATIONS.filter((m) => options.through === undefined || m.version <= options.through)) {
      await client.query('BEGIN');
      try {
        const done = await client.query('SELECT 1 FROM realm_operator.schema_migrations WHERE version = $1', [migration.version]);
        if (done.rowCount === 0) {
          await client.query(migration.sql);
          await client.query('INSERT INTO realm_operator.schema_migrations (version, name) VALUES ($1, $2)', [
            migration.version,
            migration.name,
          ]);
          applied.push(migration.version);
        }
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw new Error(`migration ${migration.version} (${migration.name}) failed: ${(error as Error).message}`, { cause: error });
      }
    }
    for (const notice of await ensureCompletionFunction(client)) options.onNotice?.(notice);
    for (const notice of await ensureReplicaRole(client)) options.onNotice?.(notice);
    await client.query('SELECT pg_advisory_unlock($1::bigint)', [advisoryLockKey(MIGRATION_LOCK_URL)]);
    return applied;
  } catch (error) {
    failure = error as Error;
    throw error;
  } finally {
    client.release(failure); // after a failure the connection is dropped, which releases the lock
  }
}

/**
 * (Re)creates the listener's completion announcement function (replica-registry.ts
 * COMPLETION_FUNCTION) when it is missing or its body is not this release's: at every `migrate`,
 * not as a numbered migration, so a release that changes the announcement puts its own in place
 * without a new version. Only once migration 8's table exists (it claims there). Listeners use the
 * function only when its body is their own, so a database migrated by another release costs them a
 * round trip, never a different announcement. Returns what could not be done, phrased as the fix
 * (the function or the schema may belong to another role).
 */
async function ensureCompletionFunction(db: pg.ClientBase): Promise<string[]> {
  const { rows } = await db.query<{ claims: boolean; body: string | null }>(
    `SELECT to_regclass('realm_operator.ack_announcements') IS NOT NULL AS claims,
            (SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure($1)) AS body`,
    [COMPLETION_FUNCTION],
  );
  if (!rows[0]?.claims || rows[0].body === COMPLETION_FUNCTION_BODY) return [];
  try {
    await db.query(COMPLETION_FUNCTION_SQL); // outside any transaction here (migrate's are committed)
    return [];
  } catch (error) {
    if ((error as { code?: string }).code !== INSUFFICIENT_PRIVILEGE) throw error;
    return [
      `${await currentUser(db)} may not (re)create ${COMPLETION_FUNCTION} (${(error as Error).message}); realm servers announce completions ` +
        `in a second round trip until the owner of the realm_operator schema runs \`realm-operator migrate\``,
    ];
  }
}

const DUPLICATE_OBJECT = '42710';
const UNIQUE_VIOLATION = '23505';
const INSUFFICIENT_PRIVILEGE = '42501';

/**
 * Creates {@link REPLICA_ROLE} if missing (when the connecting user has CREATEROLE) and grants it
 * {@link REPLICA_ROLE_GRANTS}; both idempotent. Returns what could not be done, phrased as the fix
 * — a Boxel database's tables may belong to another user, who must then run the GRANTs.
 */
export async function ensureReplicaRole(db: pg.ClientBase): Promise<string[]> {
  const exists = async () => ((await db.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [REPLICA_ROLE])).rowCount ?? 0) > 0;
  if (!(await exists())) {
    const { rows } = await db.query<{ may: boolean }>('SELECT rolsuper OR rolcreaterole AS may FROM pg_roles WHERE rolname = current_user');
    if (!rows[0]?.may) {
      return [
        `role ${REPLICA_ROLE} does not exist and ${await currentUser(db)} may not create roles: ` +
          `have a superuser run \`CREATE ROLE ${REPLICA_ROLE} NOLOGIN\`, then run migrate again; realm servers need a login in that role`,
      ];
    }
    try {
      await db.query(`CREATE ROLE ${REPLICA_ROLE} NOLOGIN`);
    } catch (error) {
      // Roles are cluster-wide: a migrate of another database on this server may have just made it.
      const code = (error as { code?: string }).code;
      if (code !== DUPLICATE_OBJECT && code !== UNIQUE_VIOLATION) throw error;
    }
  }
  const refused: string[] = [];
  for (const grant of REPLICA_ROLE_GRANTS) {
    try {
      await db.query(grant.sql);
    } catch (error) {
      if ((error as { code?: string }).code !== INSUFFICIENT_PRIVILEGE) throw error;
    }
    const { rows } = await db.query<{ holds: boolean }>(`SELECT (${grant.holds}) AS holds`, [REPLICA_ROLE]);
    if (!rows[0]?.holds) refused.push(grant.sql);
  }
  if (refused.length === 0) return [];
  return [`${await currentUser(db)} may not grant ${REPLICA_ROLE} everything realm servers need; have the tables' owner run: ${refused.map((g) => `${g};`).join(' ')}`];
}

async function currentUser(db: pg.ClientBase): Promise<string> {
  return (await db.query<{ user: string }>('SELECT current_user AS user')).rows[0]!.user;
}
