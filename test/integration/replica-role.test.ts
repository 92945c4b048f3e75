/**
 * Realm servers' own database role (`realm_operator_replica`), on the real PostgreSQL: a login in
 * it runs the listener and the reference realm server end to end, and cannot do what a
 * compromised replica would want to (point a published realm at /etc, rewrite the registry,
 * enqueue jobs, advance epochs).
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import pg from 'pg';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { waitForReplicaAcks } from '../../src/dataplane/acknowledgements.js';
import { ensureReplicaRole, migrate, REPLICA_ROLE } from '../../src/dataplane/migrations.js';
import { publishRealm } from '../../src/dataplane/publish.js';
import { announceIfAllAcked, COMPLETION_FUNCTION, COMPLETION_FUNCTION_BODY, registerReplica, writeAck } from '../../src/listener/replica-registry.js';
import { RealmServer } from '../../src/realm-server/realm-server.js';
import { adminURL, createReplicaLogin, createTestDatabase, type TestDatabase } from '../support/database.js';
import { createSourceRealm, dataPlane, makeRealmsRoot, writeFiles } from '../support/realms.js';

const INSUFFICIENT_PRIVILEGE = '42501';

let db: TestDatabase;
let realms: Awaited<ReturnType<typeof makeRealmsRoot>>;
const logins: string[] = [];

/** A LOGIN role in the replica group, as the kind overlay's postgres init creates `realm_server`. */
async function replicaLogin(): Promise<{ name: string; url: string }> {
  const login = await createReplicaLogin(db.pool, db.url, `realm_server_${randomBytes(4).toString('hex')}`);
  logins.push(login.name);
  return login;
}

function get(port: number, host: string, path: string): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers: { host } }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Runs `sql` as `url`'s user; resolves with the PostgreSQL error code, or 'ok'. */
async function attempt(url: string, sql: string, values: unknown[] = []): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql, values);
    return 'ok';
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  } finally {
    await client.end();
  }
}

/** Runs migrate as `role` (password 'migrator') on `databaseURL`'s database; resolves with its notices (throws if it fails). */
async function migrateAs(databaseURL: string, role: string): Promise<string[]> {
  const url = new URL(databaseURL);
  url.username = role;
  url.password = 'migrator';
  const pool = new pg.Pool({ connectionString: url.toString(), max: 2 });
  const notices: string[] = [];
  try {
    await migrate(pool, { onNotice: (n) => notices.push(n) });
    return notices;
  } finally {
    await pool.end();
  }
}

beforeAll(async () => {
  db = await createTestDatabase(); // migrated as a superuser: the role exists and is granted
  realms = await makeRealmsRoot();
});

afterAll(async () => {
  await db?.drop();
  await realms?.cleanup();
  const admin = new pg.Client({ connectionString: adminURL() });
  await admin.connect();
  try {
    for (const name of logins) await admin.query(`DROP ROLE IF EXISTS ${name}`);
  } finally {
    await admin.end();
  }
});

test('migrate creates the NOLOGIN group role', async () => {
  const { rows } = await db.pool.query('SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolinherit FROM pg_roles WHERE rolname = $1', [REPLICA_ROLE]);
  expect(rows).toEqual([{ rolcanlogin: false, rolsuper: false, rolcreaterole: false, rolcreatedb: false, rolinherit: true }]);
});

test('making a replica login again under the same name is idempotent: one role, still only in the group, the newer password', async () => {
  const first = await replicaLogin();
  const again = await createReplicaLogin(db.pool, db.url, first.name);
  const { rows } = await db.pool.query(
    `SELECT r.rolcanlogin, r.rolsuper, ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid) AS member_of
       FROM pg_roles r WHERE r.rolname = $1`,
    [first.name],
  );
  expect(rows).toEqual([{ rolcanlogin: true, rolsuper: false, member_of: [REPLICA_ROLE] }]);
  expect(await attempt(again.url, 'SELECT 1')).toBe('ok');
  expect(await attempt(first.url, 'SELECT 1').catch((error: { code?: string }) => error.code)).toBe('28P01'); // invalid_password
});

test('a login in the role may claim a completion: acks of two replicas, the second claims and NOTIFYs, an announcement after it sends nothing', async () => {
  const login = await replicaLogin();
  const client = new pg.Client({ connectionString: login.url });
  await client.connect();
  try {
    for (const id of ['role-claim-a', 'role-claim-b']) await registerReplica(client, id, 60_000);
    const realmURL = 'http://pub.localhost/role-claim/';
    expect(await writeAck(client, 'role-claim-a', realmURL, 7)).toBe('written');
    expect(await writeAck(client, 'role-claim-b', realmURL, 7)).toBe('written-notified');
    expect(await announceIfAllAcked(client, 'role-claim-a', realmURL, 7)).toBe(false);
    const { rows } = await db.pool.query('SELECT epoch, done FROM realm_operator.ack_announcements WHERE realm_url = $1', [realmURL]);
    expect(rows).toEqual([{ epoch: '7', done: 2 }]);
  } finally {
    await client.query('DELETE FROM realm_operator.replicas WHERE replica_id LIKE $1', ['role-claim-%']);
    await client.end();
  }
});

test('a login in the role runs a real realm server: it registers, acknowledges a publish and serves the published realm', async () => {
  const login = await replicaLogin();
  const source = 'http://localhost:4201/role/src/';
  const published = 'http://pub.localhost/role/';
  const sourceDir = await createSourceRealm(db.pool, realms.layout, source, { 'index.json': '{"v":1}' });
  // The operator (the superuser pool here) publishes; the replica only reads and acknowledges.
  await publishRealm(dataPlane(db.pool, realms.layout), { sourceRealmURL: source, publishedRealmURL: published });
  const server = new RealmServer({
    databaseURL: login.url,
    layout: realms.layout,
    replicaId: 'role-replica',
    logger: pino({ level: 'silent' }),
    metricsRegistry: new Registry(),
    listener: { heartbeatIntervalMs: 200, leaseDurationMs: 3000, backoff: { initialMs: 50, maxMs: 300 } },
  });
  try {
    const port = await server.start(0);
    await server.listener.waitUntilReady(10_000);
    // Registered under the login (its row was written by that user, not by the test).
    const { rows } = await db.pool.query(
      `SELECT r.replica_id, a.usename FROM realm_operator.replicas r JOIN pg_stat_activity a ON a.application_name = 'realm-listener:' || r.replica_id
        WHERE r.replica_id = 'role-replica' AND r.lease_expires_at > now() AND r.cache_started_epoch IS NOT NULL`,
    );
    expect(rows).toEqual([{ replica_id: 'role-replica', usename: login.name }]);

    expect(await get(port, 'pub.localhost', '/role/index.json')).toMatchObject({ status: 200, body: '{"v":1}' });
    await writeFiles(sourceDir, { 'index.json': '{"v":2}' });
    const result = await publishRealm(dataPlane(db.pool, realms.layout), { sourceRealmURL: source, publishedRealmURL: published });
    const acks = await waitForReplicaAcks(db.pool, { realmURL: published, epoch: result.epoch, timeoutMs: 10_000 });
    expect(acks).toMatchObject({ complete: true, acknowledged: ['role-replica'] });
    expect((await db.pool.query('SELECT epoch FROM realm_operator.replica_acks WHERE replica_id = $1 AND realm_url = $2', ['role-replica', published])).rows).toEqual([
      { epoch: String(result.epoch) },
    ]);
    const after = await get(port, 'pub.localhost', '/role/index.json');
    expect(after).toMatchObject({ status: 200, body: '{"v":2}' });
    expect(Number(after.headers['x-realm-epoch'])).toBe(result.epoch);
  } finally {
    await server.stop();
  }
  // Graceful shutdown deregistered it: DELETE on its own registration is granted.
  expect((await db.pool.query(`SELECT 1 FROM realm_operator.replicas WHERE replica_id = 'role-replica'`)).rows).toEqual([]);
}, 60_000);

describe('what a compromised replica cannot do', () => {
  let url: string;
  beforeAll(async () => {
    url = (await replicaLogin()).url;
    await db.pool.query(
      `INSERT INTO realm_operator.realm_epochs (realm_url, epoch, disk_id, content_version) VALUES ('http://pub.localhost/victim/', 1, 'victim', 'v1')
       ON CONFLICT (realm_url) DO NOTHING`,
    );
  });

  test.each([
    ['point a published realm at /etc (the issue\'s attack)', `UPDATE realm_operator.realm_epochs SET content_version = '../../etc' WHERE realm_url = 'http://pub.localhost/victim/'`],
    ['rewrite a realm\'s epoch row', `UPDATE realm_operator.realm_epochs SET disk_id = '../../etc'`],
    ['insert an epoch row', `INSERT INTO realm_operator.realm_epochs (realm_url, epoch) VALUES ('http://x/', 1)`],
    ['delete an epoch row', `DELETE FROM realm_operator.realm_epochs`],
    ['advance the epoch sequence', `SELECT nextval('realm_operator.epoch_seq')`],
    ['rewrite the registry', `UPDATE realm_registry SET disk_id = '../../etc'`],
    ['register a realm', `INSERT INTO realm_registry (url, kind, disk_id) VALUES ('http://evil/', 'published', 'x')`],
    ['write modules', `DELETE FROM modules`],
    ['enqueue a job', `INSERT INTO jobs (job_type) VALUES ('from-scratch-index')`],
    ['touch jobs', `UPDATE jobs SET status = 'resolved'`],
    ['grant itself permissions', `INSERT INTO realm_user_permissions (realm_url, username, read) VALUES ('http://x/', 'me', true)`],
    ['read the migration history\'s table for writing', `DELETE FROM realm_operator.schema_migrations`],
    ['rewrite an acknowledgement\'s owner', `UPDATE realm_operator.replica_acks SET replica_id = 'someone-else'`],
    ['create a table in realm_operator', `CREATE TABLE realm_operator.mine (x int)`],
    // Its disk_id is a path the operator removes: a replica must not be able to name one.
    ['queue a directory for removal', `INSERT INTO realm_operator.pending_realm_removals (realm_url, source_url, kind, disk_id, position) VALUES ('http://x/', 'http://x/', 'source', '../../etc', 0)`],
    ['read the pending removals', `SELECT disk_id FROM realm_operator.pending_realm_removals`],
  ])('refused: %s', async (_what, sql) => {
    expect(await attempt(url, sql)).toBe(INSUFFICIENT_PRIVILEGE);
  });

  test('the epoch row is untouched', async () => {
    expect((await db.pool.query(`SELECT content_version, disk_id FROM realm_operator.realm_epochs WHERE realm_url = 'http://pub.localhost/victim/'`)).rows).toEqual([
      { content_version: 'v1', disk_id: 'victim' },
    ]);
  });

  test('running migrate again changes nothing it may do', async () => {
    expect(await migrate(db.pool)).toEqual([]);
    expect(await attempt(url, `UPDATE realm_operator.realm_epochs SET content_version = '../../etc'`)).toBe(INSUFFICIENT_PRIVILEGE);
    expect(await attempt(url, `SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM realm_operator.epoch_seq`)).toBe('ok');
  });
});

test('a migrating user that may not grant on tables it does not own is told exactly what to run', async () => {
  // As in a Boxel database: realm_registry belongs to someone else (here the superuser).
  const owner = `realm_migrator_${randomBytes(4).toString('hex')}`;
  logins.push(owner);
  const other = await createTestDatabase({ migrate: false });
  try {
    await other.pool.query(`CREATE ROLE ${owner} LOGIN PASSWORD 'migrator'`);
    await other.pool.query(`CREATE TABLE realm_registry (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), url varchar NOT NULL UNIQUE,
      kind varchar NOT NULL, disk_id varchar NOT NULL, owner_username varchar, source_url varchar, last_published_at bigint,
      pinned boolean NOT NULL DEFAULT false, created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now())`);
    await other.pool.query(`GRANT ALL ON SCHEMA public TO ${owner}; GRANT ALL ON realm_registry TO ${owner}`);
    await other.pool.query(`GRANT CREATE ON DATABASE ${new URL(other.url).pathname.slice(1)} TO ${owner}`);
    const notices = await migrateAs(other.url, owner);
    expect(notices).toEqual([
      `${owner} may not grant ${REPLICA_ROLE} everything realm servers need; have the tables' owner run: GRANT SELECT ON realm_registry TO ${REPLICA_ROLE};`,
    ]);
    // The superuser runs what it was told; then the role is complete.
    const client = await other.pool.connect();
    try {
      expect(await ensureReplicaRole(client)).toEqual([]);
    } finally {
      client.release();
    }
  } finally {
    await other.drop();
  }
});

test('a migrating user that may not replace the completion function is told who must migrate, and nothing changes', async () => {
  // The function belongs to the superuser that migrated; another release's body is in place.
  const foreign = `CREATE OR REPLACE FUNCTION ${COMPLETION_FUNCTION} RETURNS text LANGUAGE plpgsql AS $$ BEGIN RETURN 'written'; END $$`;
  const bodyNow = async () => (await db.pool.query<{ prosrc: string }>('SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure($1)', [COMPLETION_FUNCTION])).rows[0]?.prosrc;
  await db.pool.query(foreign);
  const foreignBody = await bodyNow();
  const migrator = `realm_migrator_${randomBytes(4).toString('hex')}`;
  logins.push(migrator);
  const database = new URL(db.url).pathname.slice(1);
  // Enough to run migrate over a migrated database, not to own what it made.
  await db.pool.query(`CREATE ROLE ${migrator} LOGIN PASSWORD 'migrator'`);
  await db.pool.query(`GRANT CREATE ON DATABASE ${database} TO ${migrator}; GRANT USAGE, CREATE ON SCHEMA realm_operator TO ${migrator}; GRANT SELECT ON realm_operator.schema_migrations TO ${migrator}`);
  const notices = await migrateAs(db.url, migrator);
  expect(notices.filter((n) => n.includes('announce_completion'))).toEqual([
    expect.stringMatching(
      new RegExp(`^${migrator} may not \\(re\\)create realm_operator\\.announce_completion\\(text, text, bigint, text\\) \\(must be owner of function announce_completion\\); realm servers announce completions in a second round trip until the owner of the realm_operator schema runs \`realm-operator migrate\`$`),
    ),
  ]);
  expect(await bodyNow()).toBe(foreignBody);
  // The owner's migrate then puts this release's body back.
  await migrate(db.pool);
  expect(await bodyNow()).toBe(COMPLETION_FUNCTION_BODY);
  await db.pool.query(`REVOKE ALL ON DATABASE ${database} FROM ${migrator}; REVOKE ALL ON SCHEMA realm_operator FROM ${migrator}; REVOKE ALL ON realm_operator.schema_migrations FROM ${migrator}`);
});
