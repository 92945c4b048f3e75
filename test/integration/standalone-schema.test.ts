/**
 * The standalone schema is Boxel's: every Boxel table `migrate` creates has, after migrating, the
 * exact columns, types, NOT NULLs, defaults, generated columns, keys, CHECKs, indexes, persistence
 * and enum labels Boxel's own migrations give it. Nothing of Boxel runs here; EXPECTED is written
 * from Boxel's migrations (cardstack/boxel packages/postgres/migrations/, through
 * 1787258803063_add-media-cache-ledger.js, and migrations-removal/1783724976754_drop-boxel-index-html-columns.js),
 * file by file as cited, and was checked against a database those migrations built on PostgreSQL 17.
 */
import pg from 'pg';
import { migrate, MIGRATIONS } from '../../src/dataplane/migrations.js';
import { findMissingSchema } from '../../src/dataplane/schema-check.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

interface TableShape {
  /** pg_class.relpersistence: 'p' logged, 'u' unlogged. */
  persistence: 'p' | 'u';
  /** column → `<type>[ NOT NULL][ DEFAULT <expr>| GENERATED <expr>]`, as the catalog prints them. */
  columns: Record<string, string>;
  /** constraint name → pg_get_constraintdef. */
  constraints: Record<string, string>;
  /** index name → pg_indexes.indexdef. */
  indexes: Record<string, string>;
}

const EXPECTED: Record<string, TableShape> = {
  // 1776960113000_create-realm-registry.js; 1785953445767_realm-registry-timestamps-tz.js (timestamptz).
  realm_registry: {
    persistence: 'p',
    columns: {
      id: 'uuid NOT NULL DEFAULT gen_random_uuid()',
      url: 'character varying NOT NULL',
      kind: 'character varying NOT NULL',
      disk_id: 'character varying NOT NULL',
      owner_username: 'character varying NOT NULL',
      source_url: 'character varying',
      last_published_at: 'bigint',
      pinned: 'boolean NOT NULL DEFAULT false',
      created_at: 'timestamp with time zone NOT NULL DEFAULT now()',
      updated_at: 'timestamp with time zone NOT NULL DEFAULT now()',
    },
    constraints: {
      realm_registry_pkey: 'PRIMARY KEY (id)',
      realm_registry_kind_check:
        "CHECK (((kind)::text = ANY ((ARRAY['source'::character varying, 'published'::character varying, 'bootstrap'::character varying])::text[])))",
      realm_registry_source_url_by_kind:
        "CHECK (((((kind)::text = 'published'::text) AND (source_url IS NOT NULL)) OR (((kind)::text <> 'published'::text) AND (source_url IS NULL))))",
      realm_registry_last_published_by_kind: "CHECK ((((kind)::text = 'published'::text) OR (last_published_at IS NULL)))",
    },
    indexes: {
      realm_registry_pkey: 'CREATE UNIQUE INDEX realm_registry_pkey ON public.realm_registry USING btree (id)',
      realm_registry_url_uniq: 'CREATE UNIQUE INDEX realm_registry_url_uniq ON public.realm_registry USING btree (url)',
      realm_registry_kind_index: 'CREATE INDEX realm_registry_kind_index ON public.realm_registry USING btree (kind)',
      realm_registry_source_url_index: 'CREATE INDEX realm_registry_source_url_index ON public.realm_registry USING btree (source_url)',
      realm_registry_pinned_idx: 'CREATE INDEX realm_registry_pinned_idx ON public.realm_registry USING btree (pinned) WHERE (pinned = true)',
    },
  },
  // 1763592496405_create-definitions-table.js (unlogged); 1770889690032_index-row-size-max-error.js
  // (url_hash key, hash index on file_alias); 1780059236455_rename-timing-diagnostics-to-diagnostics.js.
  modules: {
    persistence: 'u',
    columns: {
      url: 'character varying NOT NULL',
      cache_scope: 'character varying NOT NULL',
      auth_user_id: 'character varying NOT NULL',
      resolved_realm_url: 'character varying NOT NULL',
      definitions: 'jsonb',
      deps: 'jsonb',
      error_doc: 'jsonb',
      created_at: 'bigint',
      file_alias: 'text',
      url_hash: 'text NOT NULL GENERATED md5((url)::text)',
      diagnostics: 'jsonb',
    },
    constraints: { modules_pkey: 'PRIMARY KEY (url_hash, cache_scope, auth_user_id)' },
    indexes: {
      modules_pkey: 'CREATE UNIQUE INDEX modules_pkey ON public.modules USING btree (url_hash, cache_scope, auth_user_id)',
      modules_resolved_realm_url_file_alias_index: 'CREATE INDEX modules_resolved_realm_url_file_alias_index ON public.modules USING hash (file_alias)',
      modules_resolved_realm_url_index: 'CREATE INDEX modules_resolved_realm_url_index ON public.modules USING btree (resolved_realm_url)',
    },
  },
  // 1727287275038_CreateJobReservationTable.js (recreates jobs: job_type, concurrency_group, timeout,
  // status, timestamps; the enum is 1712771547705_initial.js's); 1736950557343_queue-priority.js;
  // 1783724082538_add-jobs-prerender-spawning-job-id-index.js; 1785247595829_add-jobs-unfulfilled-concurrency-group-index.js.
  jobs: {
    persistence: 'p',
    columns: {
      id: "integer NOT NULL DEFAULT nextval('jobs_id_seq'::regclass)",
      job_type: 'character varying NOT NULL',
      args: 'jsonb',
      concurrency_group: 'character varying',
      timeout: 'integer',
      status: "job_statuses NOT NULL DEFAULT 'unfulfilled'::job_statuses",
      created_at: 'timestamp without time zone NOT NULL DEFAULT CURRENT_TIMESTAMP',
      finished_at: 'timestamp without time zone',
      result: 'jsonb',
      priority: 'integer NOT NULL DEFAULT 0',
    },
    constraints: { jobs_pkey: 'PRIMARY KEY (id)' },
    indexes: {
      jobs_pkey: 'CREATE UNIQUE INDEX jobs_pkey ON public.jobs USING btree (id)',
      jobs_priority_index: 'CREATE INDEX jobs_priority_index ON public.jobs USING btree (priority)',
      jobs_unfulfilled_concurrency_group_idx:
        "CREATE INDEX jobs_unfulfilled_concurrency_group_idx ON public.jobs USING btree (concurrency_group) WHERE (status = 'unfulfilled'::job_statuses)",
      jobs_prerender_html_spawning_job_id_idx:
        "CREATE INDEX jobs_prerender_html_spawning_job_id_idx ON public.jobs USING btree ((((args ->> 'spawningJobId'::text))::bigint), id) WHERE (((job_type)::text = 'prerender_html'::text) AND ((args ->> 'spawningJobId'::text) IS NOT NULL))",
    },
  },
  // 1727287275038_CreateJobReservationTable.js; 1777660517426_add-index-on-job-reservations-job-id.js;
  // 1778020800000_add-completion-reason-to-job-reservations.js.
  job_reservations: {
    persistence: 'p',
    columns: {
      id: "integer NOT NULL DEFAULT nextval('job_reservations_id_seq'::regclass)",
      job_id: 'integer NOT NULL',
      created_at: 'timestamp without time zone NOT NULL DEFAULT CURRENT_TIMESTAMP',
      locked_until: 'timestamp without time zone NOT NULL',
      completed_at: 'timestamp without time zone',
      worker_id: 'character varying',
      completion_reason: 'text',
    },
    constraints: { job_reservations_pkey: 'PRIMARY KEY (id)', job_reservations_job_id_fkey: 'FOREIGN KEY (job_id) REFERENCES jobs(id)' },
    indexes: {
      job_reservations_pkey: 'CREATE UNIQUE INDEX job_reservations_pkey ON public.job_reservations USING btree (id)',
      job_reservations_job_id_index: 'CREATE INDEX job_reservations_job_id_index ON public.job_reservations USING btree (job_id)',
    },
  },
  // 1777591052962_create-realm-metadata.js (show_as_catalog, publishable, timestamps);
  // 1782417591926_add-archived-at-to-realm-metadata.js.
  realm_metadata: {
    persistence: 'p',
    columns: {
      url: 'character varying NOT NULL',
      show_as_catalog: 'boolean',
      publishable: 'boolean',
      created_at: 'timestamp without time zone NOT NULL DEFAULT now()',
      updated_at: 'timestamp without time zone NOT NULL DEFAULT now()',
      archived_at: 'timestamp with time zone',
    },
    constraints: { realm_metadata_pkey: 'PRIMARY KEY (url)' },
    indexes: { realm_metadata_pkey: 'CREATE UNIQUE INDEX realm_metadata_pkey ON public.realm_metadata USING btree (url)' },
  },
  // 1716284017819_add-realm-user-permissions.js; 1720544504545_fix-user-permissions-pk.js;
  // 1724937919834_realm-owner-permission.js; 1727094475141_add-public-realms-index.js.js.
  realm_user_permissions: {
    persistence: 'p',
    columns: {
      realm_url: 'character varying NOT NULL',
      username: 'character varying NOT NULL',
      read: 'boolean NOT NULL',
      write: 'boolean NOT NULL',
      realm_owner: 'boolean NOT NULL DEFAULT false',
    },
    constraints: { realm_user_permissions_pkey: 'PRIMARY KEY (realm_url, username)' },
    indexes: {
      realm_user_permissions_pkey: 'CREATE UNIQUE INDEX realm_user_permissions_pkey ON public.realm_user_permissions USING btree (realm_url, username)',
      realm_user_permissions_username_read_index:
        'CREATE INDEX realm_user_permissions_username_read_index ON public.realm_user_permissions USING btree (username, read)',
    },
  },
  // 1712771547705_initial.js (unlogged) through 1783004110683_rename-realm-version-to-generation.js,
  // 1767624996365_add-type-to-index-pk.js, 1771254218515_remove-module-index-entries.js (type CHECK),
  // 1769004232071_add-has-error-to-index.js, 1770139812965_add-last-known-good-deps.js,
  // 1735668047598_add-boxel-index-indicies.js, 1784272066344_types-containment-gin-index.js, and
  // migrations-removal/1783724976754_drop-boxel-index-html-columns.js (the HTML columns are gone).
  boxel_index: {
    persistence: 'u',
    columns: {
      url: 'character varying NOT NULL',
      file_alias: 'character varying NOT NULL',
      type: 'character varying NOT NULL',
      generation: 'integer NOT NULL',
      realm_url: 'character varying NOT NULL',
      pristine_doc: 'jsonb',
      search_doc: 'jsonb',
      error_doc: 'jsonb',
      deps: "jsonb DEFAULT '[]'::jsonb",
      types: 'jsonb',
      indexed_at: 'bigint',
      is_deleted: 'boolean',
      last_modified: 'bigint',
      display_names: 'jsonb',
      resource_created_at: 'bigint',
      icon_html: 'character varying',
      has_error: 'boolean NOT NULL DEFAULT false',
      last_known_good_deps: 'jsonb',
      diagnostics: 'jsonb',
    },
    constraints: {
      boxel_index_pkey: 'PRIMARY KEY (url, realm_url, type)',
      boxel_index_type_check: "CHECK (((type)::text = ANY ((ARRAY['instance'::character varying, 'file'::character varying])::text[])))",
    },
    indexes: {
      boxel_index_pkey: 'CREATE UNIQUE INDEX boxel_index_pkey ON public.boxel_index USING btree (url, realm_url, type)',
      boxel_index_deps_index: 'CREATE INDEX boxel_index_deps_index ON public.boxel_index USING gin (deps)',
      boxel_index_file_alias_index: 'CREATE INDEX boxel_index_file_alias_index ON public.boxel_index USING btree (file_alias)',
      boxel_index_generation_index: 'CREATE INDEX boxel_index_generation_index ON public.boxel_index USING btree (generation)',
      boxel_index_last_modified_index: 'CREATE INDEX boxel_index_last_modified_index ON public.boxel_index USING btree (last_modified)',
      boxel_index_realm_url_index: 'CREATE INDEX boxel_index_realm_url_index ON public.boxel_index USING btree (realm_url)',
      boxel_index_realm_url_type_index: 'CREATE INDEX boxel_index_realm_url_type_index ON public.boxel_index USING btree (realm_url, type)',
      boxel_index_resource_created_at_index: 'CREATE INDEX boxel_index_resource_created_at_index ON public.boxel_index USING btree (resource_created_at)',
      boxel_index_search_doc_index: 'CREATE INDEX boxel_index_search_doc_index ON public.boxel_index USING gin (search_doc)',
      boxel_index_type_index: 'CREATE INDEX boxel_index_type_index ON public.boxel_index USING btree (type)',
      boxel_index_types_containment_idx:
        "CREATE INDEX boxel_index_types_containment_idx ON public.boxel_index USING gin (COALESCE(types, '[]'::jsonb) jsonb_path_ops)",
      boxel_index_url_generation_index: 'CREATE INDEX boxel_index_url_generation_index ON public.boxel_index USING btree (url, generation)',
    },
  },
};

/** 1712771547705_initial.js: `createType('job_statuses', ['unfulfilled', 'resolved', 'rejected'])`. */
const JOB_STATUSES = ['unfulfilled', 'resolved', 'rejected'];

/** The shape of each of `tables` in `public`, read from pg_catalog. */
async function readShapes(db: pg.Pool, tables: string[]): Promise<Record<string, TableShape>> {
  const shapes: Record<string, TableShape> = {};
  for (const table of tables) {
    const { rows: rel } = await db.query<{ relpersistence: 'p' | 'u' }>(
      `SELECT relpersistence FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relname = $1`,
      [table],
    );
    if (!rel[0]) continue;
    const { rows: columns } = await db.query<{ name: string; shape: string }>(
      `SELECT a.attname AS name,
              format_type(a.atttypid, a.atttypmod)
                || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
                || CASE WHEN d.adbin IS NULL THEN ''
                        WHEN a.attgenerated = 's' THEN ' GENERATED ' || pg_get_expr(d.adbin, d.adrelid)
                        ELSE ' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid) END AS shape
         FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = ('public.' || $1)::regclass AND a.attnum > 0 AND NOT a.attisdropped`,
      [table],
    );
    const { rows: constraints } = await db.query<{ name: string; def: string }>(
      `SELECT conname AS name, pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = ('public.' || $1)::regclass`,
      [table],
    );
    const { rows: indexes } = await db.query<{ name: string; def: string }>(
      `SELECT indexname AS name, indexdef AS def FROM pg_indexes WHERE schemaname = 'public' AND tablename = $1`,
      [table],
    );
    shapes[table] = {
      persistence: rel[0].relpersistence,
      columns: Object.fromEntries(columns.map((c) => [c.name, c.shape])),
      constraints: Object.fromEntries(constraints.map((c) => [c.name, c.def])),
      indexes: Object.fromEntries(indexes.map((i) => [i.name, i.def])),
    };
  }
  return shapes;
}

async function enumLabels(db: pg.Pool, type: string): Promise<string[]> {
  const { rows } = await db.query<{ label: string }>(
    `SELECT e.enumlabel AS label FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
      WHERE t.typname = $1 AND t.typnamespace = 'public'::regnamespace ORDER BY e.enumsortorder`,
    [type],
  );
  return rows.map((r) => r.label);
}

const TABLES = Object.keys(EXPECTED);

describe("the standalone schema is Boxel's current schema (real PostgreSQL)", () => {
  const opened: TestDatabase[] = [];
  async function database(options: { migrate?: boolean } = {}): Promise<TestDatabase> {
    const db = await createTestDatabase(options);
    opened.push(db);
    return db;
  }
  afterAll(async () => {
    for (const db of opened) await db.drop();
  });

  test('a freshly migrated database has every Boxel table we create in exactly Boxel\'s shape', async () => {
    const db = await database();
    expect(await readShapes(db.pool, TABLES)).toEqual(EXPECTED);
    expect(await enumLabels(db.pool, 'job_statuses')).toEqual(JOB_STATUSES);
    expect(await findMissingSchema(db.pool)).toEqual([]);
  });

  test('a database an older release migrated is brought to the same shape, its rows kept in Boxel\'s form', async () => {
    const db = await database({ migrate: false });
    expect(await migrate(db.pool, { through: 3 })).toEqual([1, 2, 3]);
    // Rows in the old shapes, including ones Boxel's constraints no longer allow.
    await db.pool.query(`INSERT INTO realm_registry (url, kind, disk_id, owner_username, source_url, last_published_at) VALUES
      ('http://localhost:4201/ann/src/', 'source', 'ann/src', NULL, 'http://stray/', 5),
      ('https://ann.boxel.site/', 'published', '0d6f1e2a-0000-4000-8000-000000000001', NULL, 'http://localhost:4201/ann/src/', 1000),
      ('http://localhost:4201/base/', 'bootstrap', '/srv/base', NULL, NULL, NULL),
      ('http://localhost:4201/bob/src/', 'source', 'bob/src', 'bob', NULL, NULL)`);
    await db.pool.query(`INSERT INTO boxel_index (url, realm_url, realm_version, type) VALUES
      ('https://ann.boxel.site/a.json', 'https://ann.boxel.site/', 7, 'instance'),
      ('https://ann.boxel.site/m.gts', 'https://ann.boxel.site/', 7, 'module')`);
    const { rows: job } = await db.pool.query<{ id: number }>(
      `INSERT INTO jobs (job_type, concurrency_group, status, created_at) VALUES ('from-scratch-index', 'indexing:x', 'resolved', '2026-01-02T03:04:05Z') RETURNING id`,
    );
    await db.pool.query(`INSERT INTO modules (url, resolved_realm_url, definitions) VALUES ('https://ann.boxel.site/m.gts', 'https://ann.boxel.site/', '{}')`);
    await db.pool.query(`INSERT INTO realm_metadata (url, publishable) VALUES ('https://ann.boxel.site/', false)`);

    expect(await migrate(db.pool)).toEqual(MIGRATIONS.map((m) => m.version).filter((v) => v > 3));
    expect(await readShapes(db.pool, TABLES)).toEqual(EXPECTED);
    expect(await enumLabels(db.pool, 'job_statuses')).toEqual(JOB_STATUSES);
    expect(await findMissingSchema(db.pool)).toEqual([]);

    // Owners as Boxel names them; only published rows keep source_url and last_published_at.
    expect((await db.pool.query('SELECT url, owner_username, source_url, last_published_at FROM realm_registry ORDER BY url')).rows).toEqual([
      { url: 'http://localhost:4201/ann/src/', owner_username: 'ann', source_url: null, last_published_at: null },
      { url: 'http://localhost:4201/base/', owner_username: 'system', source_url: null, last_published_at: null },
      { url: 'http://localhost:4201/bob/src/', owner_username: 'bob', source_url: null, last_published_at: null },
      {
        url: 'https://ann.boxel.site/',
        owner_username: 'realm/_published_0d6f1e2a-0000-4000-8000-000000000001',
        source_url: 'http://localhost:4201/ann/src/',
        last_published_at: '1000',
      },
    ]);
    // realm_version became generation; the 'module' entry Boxel deleted is gone; file_alias filled.
    expect((await db.pool.query('SELECT url, file_alias, type, generation, has_error, deps FROM boxel_index')).rows).toEqual([
      { url: 'https://ann.boxel.site/a.json', file_alias: 'https://ann.boxel.site/a.json', type: 'instance', generation: 7, has_error: false, deps: [] },
    ]);
    // The status is the enum value; the instant is kept (as UTC wall-clock time).
    expect(
      (await db.pool.query(`SELECT id, status, status = 'resolved'::job_statuses AS is_enum, to_char(created_at, 'YYYY-MM-DD HH24:MI:SS') AS created FROM jobs`)).rows,
    ).toEqual([{ id: job[0]!.id, status: 'resolved', is_enum: true, created: '2026-01-02 03:04:05' }]);
    expect((await db.pool.query(`SELECT url_hash = md5(url) AS keyed, cache_scope, auth_user_id FROM modules`)).rows).toEqual([
      { keyed: true, cache_scope: 'public', auth_user_id: '' },
    ]);
    expect((await db.pool.query('SELECT url, publishable, show_as_catalog, archived_at FROM realm_metadata')).rows).toEqual([
      { url: 'https://ann.boxel.site/', publishable: false, show_as_catalog: null, archived_at: null },
    ]);
  });

  test("Boxel's constraints now hold in a standalone database: owner required, source and publish time only on published rows, index types", async () => {
    const db = await database();
    const refused = async (sql: string) => (await db.pool.query(sql).then(() => undefined, (e: { code?: string; constraint?: string; column?: string }) => e)) ?? {};
    expect(await refused(`INSERT INTO realm_registry (url, kind, disk_id) VALUES ('http://x/a/', 'source', 'x/a')`)).toMatchObject({ code: '23502', column: 'owner_username' });
    expect(await refused(`INSERT INTO realm_registry (url, kind, disk_id, owner_username) VALUES ('http://x/b/', 'published', 'b', 'o')`)).toMatchObject({
      code: '23514',
      constraint: 'realm_registry_source_url_by_kind',
    });
    expect(await refused(`INSERT INTO realm_registry (url, kind, disk_id, owner_username, last_published_at) VALUES ('http://x/c/', 'source', 'x/c', 'o', 1)`)).toMatchObject({
      code: '23514',
      constraint: 'realm_registry_last_published_by_kind',
    });
    expect(await refused(`INSERT INTO boxel_index (url, file_alias, type, generation, realm_url) VALUES ('http://x/a/m', 'm', 'module', 1, 'http://x/a/')`)).toMatchObject({
      code: '23514',
      constraint: 'boxel_index_type_check',
    });
    expect(await refused(`INSERT INTO jobs (job_type, status) VALUES ('x', 'done')`)).toMatchObject({ code: '22P02' }); // not a job_statuses label
    expect(await refused(`INSERT INTO job_reservations (job_id, locked_until) VALUES (424242, now())`)).toMatchObject({
      code: '23503',
      constraint: 'job_reservations_job_id_fkey',
    });
  });

  test('re-running the shape migration over a database already in that shape changes nothing', async () => {
    const db = await database();
    const before = await readShapes(db.pool, TABLES);
    await db.pool.query('DELETE FROM realm_operator.schema_migrations WHERE version = 4');
    expect(await migrate(db.pool)).toEqual([4]);
    expect(await readShapes(db.pool, TABLES)).toEqual(before);
  });

  test("in a Boxel database (Boxel's migrations table exists) the shape migration alters none of Boxel's tables", async () => {
    const db = await database({ migrate: false });
    await migrate(db.pool, { through: 3 });
    // node-pg-migrate's bookkeeping table, as Boxel's packages/postgres/scripts/run-migrations.sh names it.
    await db.pool.query('CREATE TABLE public.migrations (id serial PRIMARY KEY, name varchar(255) NOT NULL, run_on timestamp NOT NULL)');
    const before = await readShapes(db.pool, TABLES);
    expect(await migrate(db.pool)).toEqual(MIGRATIONS.map((m) => m.version).filter((v) => v > 3));
    expect(await readShapes(db.pool, TABLES)).toEqual(before);
    // What the operator then needs is reported, with Boxel's own migrations as the fix.
    expect(await findMissingSchema(db.pool)).toEqual(
      expect.arrayContaining([
        'table public.job_reservations',
        'column public.boxel_index.generation',
        'column public.modules.url_hash',
        'column public.jobs.status of type job_statuses (it is varchar)',
      ]),
    );
  });
});
