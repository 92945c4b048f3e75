/**
 * End to end: a real kube-apiserver, a real PostgreSQL, the operator as a separate process, and a
 * realm-server replica running the listener library. Needs `make test` (it builds dist/ and starts
 * the control plane and PostgreSQL).
 */
import fs from 'node:fs/promises';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { GROUP, PLURAL } from '../../src/api/v1alpha1/published-realm-types.js';
import { RealmListener } from '../../src/listener/realm-listener.js';
import { REALM_FILE_CHANGES_CHANNEL, REALM_REGISTRY_CHANNEL } from '../../src/wire/channels.js';
import { must, setUpE2E, type E2EEnvironment } from '../support/e2e.js';
import { kubectl } from '../support/kube.js';
import { startOperator, waitForHTTP, type OperatorProcess } from '../support/operator-process.js';
import { createSourceRealm, eventually, readTree, recordNotifications, writeFiles } from '../support/realms.js';
import { RecordingCaches } from '../support/recording-caches.js';

let NS: string;
let LEASE_NS: string;
let env: E2EEnvironment;

let db: E2EEnvironment['db'];
let realms: E2EEnvironment['realms'];
let operator: OperatorProcess;
let replica: RealmListener;
const replicaCaches = new RecordingCaches();


function manifest(name: string, spec: Record<string, unknown>): string {
  return JSON.stringify({ apiVersion: `${GROUP}/v1alpha1`, kind: 'PublishedRealm', metadata: { name, namespace: NS }, spec });
}

async function getRealm(name: string): Promise<{ metadata: Record<string, any>; spec: Record<string, any>; status?: Record<string, any> }> {
  return JSON.parse(await must(['get', `${PLURAL}.${GROUP}`, name, '-n', NS, '-o', 'json']));
}

async function waitReady(name: string, timeout = '60s'): Promise<void> {
  const result = await kubectl(['wait', `${PLURAL}.${GROUP}/${name}`, '-n', NS, '--for=condition=Ready', `--timeout=${timeout}`]);
  if (result.code !== 0) {
    const realm = await getRealm(name).catch(() => undefined);
    throw new Error(`${name} not Ready: ${result.stderr}\nstatus: ${JSON.stringify(realm?.status)}\noperator:\n${operator.logs().slice(-15).map((l) => JSON.stringify(l)).join('\n')}`);
  }
}

async function epochOf(url: string): Promise<number> {
  const { rows } = await db.pool.query('SELECT epoch FROM realm_operator.realm_epochs WHERE realm_url = $1', [url]);
  return Number(rows[0]?.epoch ?? 0);
}

async function events(name: string): Promise<Array<{ reason: string; type: string; message: string }>> {
  const out = JSON.parse(await must(['get', 'events', '-n', NS, '--field-selector', `involvedObject.name=${name}`, '-o', 'json']));
  return out.items.map((e: { reason: string; type: string; message: string }) => ({ reason: e.reason, type: e.type, message: e.message }));
}

beforeAll(async () => {
  env = await setUpE2E('e2e');
  ({ db, realms, namespace: NS, leaseNamespace: LEASE_NS } = env);
  replica = new RealmListener({
    connection: db.url,
    replicaId: 'e2e-replica',
    caches: replicaCaches,
    logger: pino({ level: 'silent' }),
    metricsRegistry: new Registry(),
    heartbeatIntervalMs: 500,
    leaseDurationMs: 5000,
  });
  replica.start();
  await replica.waitUntilReady(10_000);
  operator = await startOperator({ databaseURL: db.url, realmsRoot: realms.root, identity: 'operator-a', leaderElectionNamespace: LEASE_NS, namespace: NS });
  await waitForHTTP(operator, `${operator.healthURL}/readyz`);
}, 60_000);

afterAll(async () => {
  await operator?.stop();
  await replica?.stop();
  await env?.cleanup();
});

describe('PublishedRealm lifecycle', () => {
  const source = 'http://localhost:4201/e2e/blog/';
  const published = 'http://published.localhost:4201/e2e/blog/';

  test('apply → Ready with complete status; `kubectl wait --for=condition=Ready` returns', async () => {
    replicaCaches.add(published);
    await createSourceRealm(db.pool, realms.layout, source, { 'index.json': '{"v":1}', 'cards/a.gts': 'a1' });
    const applied = Date.now();
    await must(['apply', '-f', '-'], manifest('blog', { sourceRealmURL: source, publishedRealmURL: published, revision: '1', owner: 'e2e' }));
    await waitReady('blog');
    const latency = Date.now() - applied;
    process.stderr.write(`apply → Ready: ${latency} ms\n`);

    const realm = await getRealm('blog');
    expect(realm.metadata.finalizers).toEqual(['realm-operator.dev/unpublish']);
    expect(realm.status).toMatchObject({
      observedGeneration: realm.metadata.generation,
      publishedGeneration: realm.metadata.generation,
      publishedRevision: '1',
      fileCount: 2,
      totalBytes: 9,
      replicas: { acknowledged: 1, expected: 1, mode: 'Acknowledged' },
    });
    expect(realm.status!.contentDigest).toMatch(/^sha256:/);
    expect(realm.status!.epoch).toBe(await epochOf(published));
    expect(realm.status!.conditions).toEqual([expect.objectContaining({ type: 'Ready', status: 'True', reason: 'Published', observedGeneration: realm.metadata.generation })]);
    expect(await readTree(realms.layout.publishedDir(realm.status!.diskId))).toEqual({ 'index.json': '{"v":1}', 'cards/a.gts': 'a1' });
    // The reindex was enqueued, once, after the acknowledgement.
    const jobs = await db.pool.query(`SELECT id, args FROM jobs WHERE concurrency_group = $1`, [`indexing:${published}`]);
    expect(jobs.rows).toHaveLength(1);
    expect(realm.status!.reindexJobId).toBe(jobs.rows[0].id);
    // Boxel's realm identity: the published realm's own user, whatever spec.owner (deprecated) says.
    expect(jobs.rows[0].args).toMatchObject({ realmURL: published, realmUsername: `realm/_published_${realm.status!.diskId}` });
    // One reason per thing: the publish (ContentPublished) and the reindex. Ready's transition
    // (Published) has an Event of its own only when the acknowledgements outlasted the reconcile
    // that published (one Event per successful publish otherwise), so it may or may not be there.
    const reasons = (await events('blog')).map((e) => e.reason);
    expect(reasons).toEqual(expect.arrayContaining(['ContentPublished', 'ReindexEnqueued']));
    expect(reasons.filter((r) => r === 'ContentPublished')).toHaveLength(1);
    expect((await events('blog')).find((e) => e.reason === 'ContentPublished')!.message).toMatch(/^Published 2 files \(9 bytes\) at epoch \d+/);
    // The printer columns show what a person needs.
    const table = await must(['get', `${PLURAL}.${GROUP}`, 'blog', '-n', NS]);
    expect(table.split('\n')[0]).toMatch(/NAME\s+SOURCE\s+PUBLISHED\s+READY\s+FILES\s+VERSION\s+AGE/);
    expect(table.split('\n')[1]).toMatch(new RegExp(`blog\\s+${source}\\s+${published}\\s+True\\s+2\\s+${realm.status!.liveVersion}\\s+`));
  });

  test('a new revision republishes new content at a higher epoch; metadata-only changes and restarts republish nothing', async () => {
    const before = await getRealm('blog');
    const epoch = before.status!.epoch as number;
    await writeFiles(realms.layout.sourceDir((await db.pool.query('SELECT disk_id FROM realm_registry WHERE url = $1', [source])).rows[0].disk_id), {
      'index.json': '{"v":2}',
    });
    // A label change bumps no generation: nothing is republished.
    await must(['label', `${PLURAL}.${GROUP}`, 'blog', '-n', NS, 'team=docs']);
    await new Promise((r) => setTimeout(r, 1500));
    expect(await epochOf(published)).toBe(epoch);

    await must(['patch', `${PLURAL}.${GROUP}`, 'blog', '-n', NS, '--type=merge', '-p', '{"spec":{"revision":"2"}}']);
    await eventually(async () => (await getRealm('blog')).status?.publishedRevision === '2', 30_000, () => 'publishedRevision 2');
    await waitReady('blog');
    const after = await getRealm('blog');
    expect(after.status!.epoch).toBeGreaterThan(epoch);
    expect(after.status!.observedGeneration).toBe(after.metadata.generation);
    expect(await readTree(realms.layout.publishedDir(after.status!.diskId))).toEqual({ 'index.json': '{"v":2}', 'cards/a.gts': 'a1' });
    expect(replicaCaches.count(`dropAll ${published}`)).toBeGreaterThanOrEqual(2);

    // Restart the operator: nothing is republished.
    const settledEpoch = await epochOf(published);
    await operator.stop('SIGTERM');
    operator = await startOperator({ databaseURL: db.url, realmsRoot: realms.root, identity: 'operator-a2', leaderElectionNamespace: LEASE_NS, namespace: NS });
    await waitForHTTP(operator, `${operator.healthURL}/readyz`);
    // The old leader released its lease on SIGTERM, so the new process leads at once; give its
    // workers time to reconcile every object once.
    await operator.waitForLog((l) => l.msg === 'acquired the leader lease', 10_000);
    await operator.waitForLog((l) => l.msg === 'replicas acknowledged', 10_000);
    await new Promise((r) => setTimeout(r, 1000));
    expect(await epochOf(published)).toBe(settledEpoch);
    expect((await events('blog')).filter((e) => e.reason === 'ContentRepublished')).toHaveLength(1);
  });

  test('delete → unpublished (registry row, directory, wildcard NOTIFY) and the finalizer released', async () => {
    const realm = await getRealm('blog');
    const recorder = await recordNotifications(db.url, [REALM_FILE_CHANGES_CHANNEL, REALM_REGISTRY_CHANNEL]);
    try {
      await must(['delete', `${PLURAL}.${GROUP}`, 'blog', '-n', NS, '--timeout=30s']);
      await recorder.waitFor((n) => n.payload === `${published}:*`);
      await recorder.waitFor((n) => n.payload === `delete:${published}`);
    } finally {
      await recorder.close();
    }
    expect((await kubectl(['get', `${PLURAL}.${GROUP}`, 'blog', '-n', NS])).code).not.toBe(0);
    expect((await db.pool.query('SELECT 1 FROM realm_registry WHERE url = $1', [published])).rows).toEqual([]);
    await expect(fs.lstat(realms.layout.publishedDir(realm.status!.diskId))).rejects.toMatchObject({ code: 'ENOENT' });
    // The source realm is untouched.
    expect((await db.pool.query('SELECT kind FROM realm_registry WHERE url = $1', [source])).rows).toEqual([{ kind: 'source' }]);
  });
});

describe('problems a person must fix', () => {
  test('a spec that passes admission but not the controller\'s validation becomes Stalled, not a crash loop', async () => {
    // CEL has no IPv6 parser: a non-canonical IPv6 literal gets past the API server, zod refuses it.
    await must(['apply', '-f', '-'], manifest('noncanonical', { sourceRealmURL: 'http://localhost:4201/e2e/x/', publishedRealmURL: 'http://[0:0::1]/x/' }));
    await eventually(async () => (await getRealm('noncanonical')).status?.conditions?.some((c: { type: string }) => c.type === 'Stalled') ?? false, 20_000, () => 'Stalled');
    const realm = await getRealm('noncanonical');
    expect(realm.status!.conditions).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ type: 'Ready', status: 'False', reason: 'InvalidSpec' }),
        expect.objectContaining({ type: 'Stalled', status: 'True', reason: 'InvalidSpec', message: expect.stringContaining('spec.publishedRealmURL: is not in canonical form; use "http://[::1]/x/"') }),
      ]),
    );
    // publishedRealmURL is immutable: the fix offered is delete and recreate, never an edit.
    const stalledMessage = realm.status!.conditions.find((c: { type: string }) => c.type === 'Stalled').message as string;
    expect(stalledMessage).toContain('delete this PublishedRealm and create it again with a valid publishedRealmURL');
    expect(stalledMessage).not.toContain('Fix the PublishedRealm');
    expect((await events('noncanonical')).some((e) => e.type === 'Warning' && e.reason === 'InvalidSpec')).toBe(true);
    expect(operator.child.exitCode).toBeNull();
    await must(['delete', `${PLURAL}.${GROUP}`, 'noncanonical', '-n', NS, '--timeout=30s']);
  });

  test('a missing source realm is Stalled until it appears, then Ready', async () => {
    const src = 'http://localhost:4201/e2e/later/';
    await must(['apply', '-f', '-'], manifest('later', { sourceRealmURL: src, publishedRealmURL: 'http://pub.localhost/later/' }));
    await eventually(async () => (await getRealm('later')).status?.conditions?.some((c: { reason: string }) => c.reason === 'SourceRealmUnavailable') ?? false, 20_000);
    await createSourceRealm(db.pool, realms.layout, src, { 'x.txt': 'x' });
    await waitReady('later');
    await must(['delete', `${PLURAL}.${GROUP}`, 'later', '-n', NS, '--timeout=30s']);
  });

  test("Boxel's rules are on by default: a publisher without realm-owner is Stalled NotAuthorized with the fix, until granted", async () => {
    const src = 'http://localhost:4201/e2e/authz/';
    const pub = 'http://pub.localhost/authz/';
    await createSourceRealm(db.pool, realms.layout, src, { 'x.txt': 'x' });
    await must(['apply', '-f', '-'], manifest('authz', { sourceRealmURL: src, publishedRealmURL: pub, publisher: '@eve:localhost' }));
    await eventually(async () => (await getRealm('authz')).status?.conditions?.some((c: { reason: string }) => c.reason === 'NotAuthorized') ?? false, 20_000, () => 'NotAuthorized');
    const stalled = (await getRealm('authz')).status!.conditions!.find((c: { type: string }) => c.type === 'Stalled');
    expect(stalled?.message).toBe(
      `@eve:localhost does not hold realm-owner on the source realm ${src}, so may not publish it; set spec.publisher to a Matrix user id that owns the source realm, or grant that user realm-owner on it in Boxel.`,
    );
    expect((await db.pool.query('SELECT 1 FROM realm_registry WHERE url = $1', [pub])).rows).toEqual([]);
    // Refused before it held the URL's claim: no finalizer.
    expect((await getRealm('authz')).metadata.finalizers).toBeUndefined();
    await db.pool.query(`INSERT INTO realm_user_permissions (realm_url, username, read, write, realm_owner) VALUES ($1, '@eve:localhost', true, true, true)`, [src]);
    await waitReady('authz');
    expect((await getRealm('authz')).metadata.finalizers).toEqual(['realm-operator.dev/unpublish']);
    const epoch = await epochOf(pub);

    // realm-owner revoked after the publish: the next reconcile (here a reindex setting changed) is
    // Stalled NotAuthorized; the realm stays published at the same epoch.
    await db.pool.query(`UPDATE realm_user_permissions SET realm_owner = false WHERE realm_url = $1 AND username = '@eve:localhost'`, [src]);
    await must(['patch', `${PLURAL}.${GROUP}`, 'authz', '-n', NS, '--type=merge', '-p', '{"spec":{"reindex":{"priority":11}}}']);
    await eventually(async () => (await getRealm('authz')).status?.conditions?.some((c: { reason: string }) => c.reason === 'NotAuthorized') ?? false, 20_000, () => 'NotAuthorized after revocation');
    const revoked = (await getRealm('authz')).status!.conditions!.find((c: { type: string }) => c.type === 'Stalled');
    expect(revoked?.message).toContain(`@eve:localhost does not hold realm-owner on the source realm ${src}, so may not publish it`);
    expect(revoked?.message).toContain(`epoch ${epoch} stays served as it is`);
    expect(await epochOf(pub)).toBe(epoch);
    expect((await db.pool.query('SELECT 1 FROM realm_registry WHERE url = $1', [pub])).rows).toHaveLength(1);
    // Granted again: the Stalled re-check makes it Ready without a republish.
    await db.pool.query(`UPDATE realm_user_permissions SET realm_owner = true WHERE realm_url = $1 AND username = '@eve:localhost'`, [src]);
    await waitReady('authz');
    expect(await epochOf(pub)).toBe(epoch);
    await must(['delete', `${PLURAL}.${GROUP}`, 'authz', '-n', NS, '--timeout=30s']);
    expect((await db.pool.query('SELECT 1 FROM realm_registry WHERE url = $1', [pub])).rows).toEqual([]);
  });

  test('suspend says Suspended and stops republishing until it is lifted', async () => {
    const src = 'http://localhost:4201/e2e/susp/';
    const pub = 'http://pub.localhost/susp/';
    await createSourceRealm(db.pool, realms.layout, src, { 'x.txt': 'x' });
    await must(['apply', '-f', '-'], manifest('susp', { sourceRealmURL: src, publishedRealmURL: pub, revision: 1 }));
    await waitReady('susp');
    const epoch = await epochOf(pub);
    await must(['patch', `${PLURAL}.${GROUP}`, 'susp', '-n', NS, '--type=merge', '-p', '{"spec":{"suspend":true,"revision":2}}']);
    await eventually(async () => (await getRealm('susp')).status?.conditions?.some((c: { reason: string }) => c.reason === 'Suspended') ?? false, 20_000, () => 'Suspended');
    const suspended = await getRealm('susp');
    expect(suspended.status!.conditions).toEqual([expect.objectContaining({ type: 'Ready', status: 'False', reason: 'Suspended' })]);
    expect(await epochOf(pub)).toBe(epoch);
    await must(['patch', `${PLURAL}.${GROUP}`, 'susp', '-n', NS, '--type=merge', '-p', '{"spec":{"suspend":false}}']);
    await eventually(async () => (await epochOf(pub)) > epoch, 20_000, () => 'republish after resume');
    await waitReady('susp');
    await must(['delete', `${PLURAL}.${GROUP}`, 'susp', '-n', NS, '--timeout=30s']);
  });

  test('a second PublishedRealm for a URL already published is Stalled and its deletion leaves the URL published', async () => {
    const src = 'http://localhost:4201/e2e/dup/';
    const pub = 'http://pub.localhost/dup/';
    await createSourceRealm(db.pool, realms.layout, src, { 'x.txt': 'x' });
    await must(['apply', '-f', '-'], manifest('dup-one', { sourceRealmURL: src, publishedRealmURL: pub }));
    await waitReady('dup-one');
    await must(['apply', '-f', '-'], manifest('dup-two', { sourceRealmURL: src, publishedRealmURL: pub }));
    await eventually(async () => (await getRealm('dup-two')).status?.conditions?.some((c: { reason: string }) => c.reason === 'URLAlreadyPublished') ?? false, 20_000);
    // Stalled is quiet: its re-checks (1 s, 2 s, … here) write nothing and record no new Event.
    const stalledVersion = (await getRealm('dup-two')).metadata.resourceVersion;
    await new Promise((r) => setTimeout(r, 3500));
    expect((await getRealm('dup-two')).metadata.resourceVersion).toBe(stalledVersion);
    expect((await events('dup-two')).filter((e) => e.reason === 'URLAlreadyPublished')).toHaveLength(1);
    expect(operator.logs().filter((l) => l.msg === 'stalled; re-checking later' && String(l.publishedRealm).endsWith('/dup-two')).length).toBeGreaterThanOrEqual(2);
    await must(['delete', `${PLURAL}.${GROUP}`, 'dup-two', '-n', NS, '--timeout=30s']);
    expect((await db.pool.query('SELECT kind FROM realm_registry WHERE url = $1', [pub])).rows).toEqual([{ kind: 'published' }]);
    await must(['delete', `${PLURAL}.${GROUP}`, 'dup-one', '-n', NS, '--timeout=30s']);
    expect((await db.pool.query('SELECT 1 FROM realm_registry WHERE url = $1', [pub])).rows).toEqual([]);
  });
});

describe('the API server refuses invalid manifests with readable messages', () => {
  const ok = { sourceRealmURL: 'http://localhost:4201/a/', publishedRealmURL: 'http://pub.localhost/a/' };
  test.each([
    ['a URL without the trailing slash', { ...ok, publishedRealmURL: 'http://pub.localhost/a' }, 'publishedRealmURL must end with "/"'],
    ['an ftp URL', { ...ok, sourceRealmURL: 'ftp://localhost/a/' }, 'sourceRealmURL must use http:// or https://'],
    ['a query string', { ...ok, publishedRealmURL: 'http://pub.localhost/a/?x=1/' }, 'publishedRealmURL must not have a query string or fragment'],
    ['a fragment', { ...ok, publishedRealmURL: 'http://pub.localhost/a/#x/' }, 'publishedRealmURL must not have a query string or fragment'],
    ['an upper-case host', { ...ok, publishedRealmURL: 'http://PUB.localhost/a/' }, 'publishedRealmURL must have a lower-case scheme and host'],
    ['credentials', { ...ok, publishedRealmURL: 'http://u:p@pub.localhost/a/' }, 'publishedRealmURL must not contain credentials'],
    ['not a URL', { ...ok, sourceRealmURL: 'just words/' }, 'sourceRealmURL must be an absolute URL'],
    ['the same URL twice', { ...ok, publishedRealmURL: ok.sourceRealmURL }, 'sourceRealmURL and publishedRealmURL must differ'],
    ['a missing source (neither sourceRealmURL nor sourceRealmRef)', { publishedRealmURL: ok.publishedRealmURL }, 'set exactly one of sourceRealmURL (a URL) and sourceRealmRef (a Realm in this namespace)'],
    ['an oversized URL', { ...ok, publishedRealmURL: `http://pub.localhost/${'a'.repeat(2100)}/` }, 'spec.publishedRealmURL: Too long: may not be more than 2048'],
    ['an oversized revision', { ...ok, revision: 'r'.repeat(300) }, 'revision must be at most 253 characters'],
    ['a priority out of range', { ...ok, reindex: { priority: 5000 } }, 'spec.reindex.priority: Invalid value: 5000: spec.reindex.priority in body should be less than or equal to 1000'],
    ['a wrong type', { ...ok, suspend: 'yes' }, 'spec.suspend: Invalid value: "string": spec.suspend in body must be of type boolean'],
    ['"/:" (Boxel would misread every payload)', { ...ok, publishedRealmURL: 'http://pub.localhost/u/:r/' }, 'publishedRealmURL must not contain "/:": Boxel\'s realm_file_changes parser splits'],
    ['"/:" in the source', { ...ok, sourceRealmURL: 'http://localhost:4201/:a/' }, 'sourceRealmURL must not contain "/:"'],
    ['an upper-case scheme', { ...ok, publishedRealmURL: 'HTTP://pub.localhost/a/' }, 'publishedRealmURL must use http:// or https:// (in lower case) followed by a host'],
    ['a dot segment', { ...ok, publishedRealmURL: 'http://pub.localhost/x/../a/' }, 'publishedRealmURL must not contain "." or ".." path segments'],
    ['an encoded dot segment', { ...ok, publishedRealmURL: 'http://pub.localhost/x/%2E%2E/a/' }, 'publishedRealmURL must not contain "." or ".." path segments'],
    ['an explicit default port', { ...ok, publishedRealmURL: 'http://pub.localhost:80/a/' }, 'publishedRealmURL must not give the scheme\'s default port (:80 for http, :443 for https): remove it'],
    ['a trailing-dot host', { ...ok, publishedRealmURL: 'http://pub.localhost.:4201/a/' }, 'publishedRealmURL must not end its host with "."'],
    ['a percent-encoded letter', { ...ok, publishedRealmURL: 'http://pub.localhost/%61/' }, 'publishedRealmURL must not percent-encode letters, digits'],
    ['a publisher that is not a Matrix user id', { ...ok, publisher: 'alice' }, 'publisher must be a Matrix user id "@localpart:server"'],
  ])('%s', async (_name, spec, message) => {
    const result = await kubectl(['apply', '-f', '-'], { input: manifest(`invalid-${Math.random().toString(36).slice(2, 7)}`, spec) });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(message);
  });

  test('`kubectl explain` documents every field', async () => {
    const spec = await must(['explain', `${PLURAL}.spec`, '--api-version', `${GROUP}/v1alpha1`]);
    expect(spec).toContain('What to publish and where.');
    expect(spec).toMatch(/publishedRealmURL\s+<string> -required-/);
    expect(spec.replace(/\s+/g, ' ')).toContain('Immutable; to publish elsewhere, create another PublishedRealm.');
    expect(spec.replace(/\s+/g, ' ')).toContain('gets read and realm-owner on the published realm, as in Boxel');
    expect(spec.replace(/\s+/g, ' ')).toContain('Deprecated and ignored: Boxel records the published realm\'s own realm user');
    const reindex = await must(['explain', `${PLURAL}.spec.reindex.priority`, '--api-version', `${GROUP}/v1alpha1`]);
    expect(reindex).toContain('Priority of the reindex job (Boxel publishes use 10).');
    const status = await must(['explain', `${PLURAL}.status.replicas.mode`, '--api-version', `${GROUP}/v1alpha1`]);
    expect(status).toContain('NotifyOnly');
  });

  test('publishedRealmURL cannot be changed', async () => {
    await createSourceRealm(db.pool, realms.layout, 'http://localhost:4201/e2e/imm/', { 'x.txt': 'x' });
    await must(['apply', '-f', '-'], manifest('immutable', { sourceRealmURL: 'http://localhost:4201/e2e/imm/', publishedRealmURL: 'http://pub.localhost/imm/' }));
    const result = await kubectl(['patch', `${PLURAL}.${GROUP}`, 'immutable', '-n', NS, '--type=merge', '-p', '{"spec":{"publishedRealmURL":"http://pub.localhost/elsewhere/"}}']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('publishedRealmURL is immutable; delete this PublishedRealm and create a new one to publish at another URL');
    await waitReady('immutable');
    await must(['delete', `${PLURAL}.${GROUP}`, 'immutable', '-n', NS, '--timeout=30s']);
  });
});

describe('a leaked error does not take the operator down', () => {
  test.each(['rejection', 'exception'] as const)('an unhandled %s is logged with its stack, counted, fails /readyz with the reason, and the process keeps reconciling', async (kind) => {
    // Its own namespaces, so it neither competes for the suite operator's lease nor reconciles its objects.
    const guardNS = `${NS}-guard-${kind.slice(0, 3)}`;
    await must(['create', 'namespace', guardNS]);
    const faulty = await startOperator({
      databaseURL: db.url,
      realmsRoot: realms.root,
      identity: `operator-faulty-${kind}`,
      leaderElectionNamespace: guardNS,
      namespace: guardNS,
      env: { REALM_OPERATOR_FAULT_UNHANDLED: kind },
    });
    try {
      const logged = await faulty.waitForLog((l) => l.level === 50 && l.kind === (kind === 'rejection' ? 'unhandledRejection' : 'uncaughtException'), 20_000);
      expect(String((logged.err as { stack?: string }).stack)).toContain('fault injection');
      const readyz = await fetch(`${faulty.healthURL}/readyz`);
      expect(readyz.status).toBe(503);
      expect(((await readyz.json()) as { reasons: string[] }).reasons).toEqual(
        expect.arrayContaining([expect.stringMatching(kind === 'rejection' ? /^unhandledRejection: Error: fault injection/ : /^uncaughtException: Error: fault injection/)]),
      );
      const metrics = await (await fetch(`${faulty.metricsURL}/metrics`)).text();
      expect(metrics).toContain(`realm_operator_unhandled_errors_total{kind="${kind === 'rejection' ? 'unhandledRejection' : 'uncaughtException'}"} 1`);
      // Still alive, and still doing its job.
      expect(faulty.child.exitCode).toBeNull();
      const src = `http://localhost:4201/e2e/guard-${kind}/`;
      await createSourceRealm(db.pool, realms.layout, src, { 'x.txt': 'x' });
      await must(['apply', '-f', '-'], JSON.stringify({
        apiVersion: `${GROUP}/v1alpha1`,
        kind: 'PublishedRealm',
        metadata: { name: 'guarded', namespace: guardNS },
        spec: { sourceRealmURL: src, publishedRealmURL: `http://pub.localhost/guard-${kind}/` },
      }));
      const wait = await kubectl(['wait', `${PLURAL}.${GROUP}/guarded`, '-n', guardNS, '--for=condition=Ready', '--timeout=60s']);
      expect(wait.stderr).toBe('');
      expect(faulty.child.exitCode).toBeNull();
      await must(['delete', `${PLURAL}.${GROUP}`, 'guarded', '-n', guardNS, '--timeout=30s']);
    } finally {
      await faulty.stop();
      await kubectl(['delete', 'namespace', guardNS, '--wait=false']);
    }
  });
});
