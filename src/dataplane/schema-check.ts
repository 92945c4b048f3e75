/**
 * Start-up check that every table and column the operator and listener use exists, so a missing
 * migration is reported by name with its fix instead of surfacing later as an SQL error.
 */
import type { Queryable } from './db.js';

/**
 * `schema.table` → columns we read or write (the public.* tables in Boxel's current shape, which
 * migration 4 gives a standalone database: `boxel_index.generation`, `job_reservations`).
 */
export const REQUIRED_COLUMNS: Readonly<Record<string, readonly string[]>> = {
  'public.realm_registry': ['id', 'url', 'kind', 'disk_id', 'owner_username', 'source_url', 'last_published_at', 'pinned', 'created_at', 'updated_at'],
  'public.modules': ['url', 'cache_scope', 'auth_user_id', 'resolved_realm_url', 'url_hash'],
  'public.jobs': ['id', 'job_type', 'args', 'concurrency_group', 'timeout', 'status', 'created_at', 'priority'],
  'public.job_reservations': ['job_id', 'locked_until', 'completed_at'],
  'public.realm_metadata': ['url', 'publishable', 'updated_at'],
  'public.realm_user_permissions': ['realm_url', 'username', 'read', 'write', 'realm_owner'],
  'public.boxel_index': ['url', 'realm_url', 'type', 'generation', 'is_deleted', 'has_error', 'error_doc', 'diagnostics', 'last_modified'],
  'realm_operator.realm_epochs': ['realm_url', 'epoch', 'disk_id', 'claimed_by', 'published_for', 'published_generation', 'published_generation_of', 'content_version', 'previous_version', 'content_digest', 'file_count', 'total_bytes', 'published_at', 'reindex_epoch', 'reindex_job_id', 'history_limit', 'history_max_bytes'],
  'realm_operator.published_versions': ['realm_url', 'version', 'disk_id', 'epoch', 'content_digest', 'file_count', 'total_bytes', 'published_at', 'published_for', 'revision'],
  'realm_operator.pending_realm_removals': ['id', 'realm_url', 'source_url', 'kind', 'disk_id', 'position', 'claimed_by', 'files_removed', 'epoch', 'committed_at'],
  'realm_operator.replicas': ['replica_id', 'lease_expires_at', 'lease_duration_ms', 'renewed_at', 'cache_started_epoch', 'cache_started_at', 'metadata'],
  'realm_operator.replica_acks': ['replica_id', 'realm_url', 'epoch', 'acked_at'],
};

/** Column types our SQL depends on: `jobs.status` compared with Boxel's enum labels. */
export const REQUIRED_TYPES: Readonly<Record<string, string>> = {
  'public.jobs.status': 'job_statuses',
};

export class SchemaError extends Error {
  constructor(readonly missing: string[]) {
    super(
      `the database schema is incomplete: missing ${missing.join(', ')}. ` +
        'Fix: run `realm-operator migrate` against this database (DATABASE_URL); in a Boxel database, ' +
        "run Boxel's own migrations first for the public.* tables.",
    );
    this.name = 'SchemaError';
  }
}

/** Lists what is missing, as `table` or `table.column`; empty when the schema is complete. */
export async function findMissingSchema(db: Queryable, required = REQUIRED_COLUMNS, types = REQUIRED_TYPES): Promise<string[]> {
  const { rows } = await db.query<{ table_schema: string; table_name: string; column_name: string; udt_name: string }>(
    `SELECT table_schema, table_name, column_name, udt_name FROM information_schema.columns
      WHERE table_schema = ANY($1::text[])`,
    [[...new Set(Object.keys(required).map((t) => t.split('.')[0]))]],
  );
  const present = new Map<string, Set<string>>();
  const typed = new Map<string, string>();
  for (const row of rows) {
    const table = `${row.table_schema}.${row.table_name}`;
    if (!present.has(table)) present.set(table, new Set());
    present.get(table)!.add(row.column_name);
    typed.set(`${table}.${row.column_name}`, row.udt_name);
  }
  const { rows: sequences } = await db.query(`SELECT 1 FROM pg_sequences WHERE schemaname = 'realm_operator' AND sequencename = 'epoch_seq'`);
  const missing: string[] = sequences.length === 0 ? ['sequence realm_operator.epoch_seq'] : [];
  for (const [table, columns] of Object.entries(required)) {
    const have = present.get(table);
    if (!have) {
      missing.push(`table ${table}`);
      continue;
    }
    for (const column of columns) if (!have.has(column)) missing.push(`column ${table}.${column}`);
  }
  for (const [column, type] of Object.entries(types)) {
    const actual = typed.get(column);
    if (actual !== undefined && actual !== type) missing.push(`column ${column} of type ${type} (it is ${actual})`);
  }
  return missing;
}

/** Throws a {@link SchemaError} naming every missing table and column. */
export async function assertSchema(db: Queryable): Promise<void> {
  const missing = await findMissingSchema(db);
  if (missing.length > 0) throw new SchemaError(missing);
}
