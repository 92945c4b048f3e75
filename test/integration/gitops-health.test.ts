/**
 * What GitOps tools report for realm-operator's resources, computed by the tools' own logic on
 * real objects: the operator's reconciler drives PublishedRealms through every state against a
 * real kube-apiserver and PostgreSQL (a registered replica that acknowledges only when the test
 * says so gives "awaiting acknowledgement"), and each object, as the API server returned it, goes
 * to
 * - kstatus (sigs.k8s.io/cli-utils, built from the Go module proxy as hack/tools/kstatus-check):
 *   the library Flux's kustomize-controller (`wait: true`, `healthChecks`) and `flux` use;
 * - deploy/argocd/health.lua run by Lua 5.1 (Argo CD runs health checks in gopher-lua, Lua 5.1
 *   semantics), with the object as the global `obj`, as Argo CD does.
 * Tools come from hack/gitops-tools.sh (cached; `make test` builds them first).
 *
 * Adding a resource or a state is a producer in PRODUCERS and rows in EXPECTED.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import YAML from 'yaml';
import { API_VERSION, GROUP, KIND, PLURAL, VERSION, type PublishedRealm } from '../../src/api/v1alpha1/published-realm-types.js';
import { recordAck } from '../../src/listener/replica-registry.js';
import { REALM_KIND, REALM_PLURAL, type Realm, type RealmStatus } from '../../src/api/v1alpha1/realm-types.js';
import { CustomResourceKube } from '../../src/reconciler/published-realm/kube.js';
import { PublishedRealmReconciler } from '../../src/reconciler/published-realm/reconciler.js';
import { RealmReconciler } from '../../src/reconciler/realm/reconciler.js';
import { kubeRequest } from '../../src/runtime/kube-client.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { installCRD, must } from '../support/e2e.js';
import { testKubeConfig } from '../support/kube.js';
import { StatusRecordingKube } from '../support/reconciler-suite.js';
import { createSourceRealm, dataPlane, makeRealmsRoot, silentLogger, writeFiles } from '../support/realms.js';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');
const HEALTH_LUA = path.join(ROOT, 'deploy/argocd/health.lua');
const ARGOCD_CM = path.join(ROOT, 'deploy/argocd/argocd-cm.yaml');

/** The states every resource is driven through (issue 12). */
type State =
  | 'new'
  | 'publishing'
  | 'awaiting acks'
  | 'Ready'
  | 'spec changed'
  | 'Stalled'
  | 'rolling back'
  | 'rolled back'
  | 'rollback version not kept'
  | 'suspended'
  | 'deleting'
  | 'deleting, awaiting acks'
  | 'source Realm not Ready'
  | 'source Realm deleted';
type KStatus = 'InProgress' | 'Failed' | 'Current' | 'Terminating' | 'Unknown';
type ArgoHealth = 'Healthy' | 'Progressing' | 'Degraded' | 'Suspended' | 'Missing' | 'Unknown';
type FluxVerdict = 'Current' | 'InProgress' | 'Failed';
type Kind = 'PublishedRealm' | 'Realm';

interface Expected {
  kind: Kind;
  state: State;
  /** kstatus's status, as kstatus-check prints it. */
  kstatus: KStatus;
  argo: ArgoHealth;
}

/**
 * The verdicts the test asserts. Flux's verdict follows from kstatus ({@link fluxVerdict}); Argo
 * CD's maps onto it ({@link argoAsFlux}), and the two agree in every state.
 * `new`: kstatus would call an object without any status Current, so Flux would pass a
 * just-applied PublishedRealm before the operator looked at it; the CRDs default `status` to
 * `{observedGeneration: 0}` (crd.ts withPendingStatusDefault), which the API server fills in, so
 * kstatus says InProgress, as the Argo check (waiting for status.observedGeneration) does.
 */
const EXPECTED: Expected[] = [
  { kind: 'PublishedRealm', state: 'new', kstatus: 'InProgress', argo: 'Progressing' },
  { kind: 'PublishedRealm', state: 'publishing', kstatus: 'InProgress', argo: 'Progressing' },
  { kind: 'PublishedRealm', state: 'awaiting acks', kstatus: 'InProgress', argo: 'Progressing' },
  { kind: 'PublishedRealm', state: 'Ready', kstatus: 'Current', argo: 'Healthy' },
  { kind: 'PublishedRealm', state: 'spec changed', kstatus: 'InProgress', argo: 'Progressing' },
  { kind: 'PublishedRealm', state: 'Stalled', kstatus: 'Failed', argo: 'Degraded' },
  { kind: 'PublishedRealm', state: 'suspended', kstatus: 'InProgress', argo: 'Suspended' },
  // spec.rollbackTo: swapping and awaiting acks is progress, RolledBack is Ready, a version that is not kept needs a person.
  { kind: 'PublishedRealm', state: 'rolling back', kstatus: 'InProgress', argo: 'Progressing' },
  { kind: 'PublishedRealm', state: 'rolled back', kstatus: 'Current', argo: 'Healthy' },
  { kind: 'PublishedRealm', state: 'rollback version not kept', kstatus: 'Failed', argo: 'Degraded' },
  { kind: 'PublishedRealm', state: 'deleting', kstatus: 'Terminating', argo: 'Progressing' },
  // spec.sourceRealmRef: a Realm not created yet is waited for; a deleted one needs a person.
  { kind: 'PublishedRealm', state: 'source Realm not Ready', kstatus: 'InProgress', argo: 'Progressing' },
  { kind: 'PublishedRealm', state: 'source Realm deleted', kstatus: 'Failed', argo: 'Degraded' },
  // A Realm is created in one reconcile (no publishing or acknowledgement phase) and has no
  // suspend; replicas acknowledge its deletion.
  { kind: 'Realm', state: 'new', kstatus: 'InProgress', argo: 'Progressing' },
  { kind: 'Realm', state: 'Ready', kstatus: 'Current', argo: 'Healthy' },
  { kind: 'Realm', state: 'spec changed', kstatus: 'InProgress', argo: 'Progressing' },
  { kind: 'Realm', state: 'Stalled', kstatus: 'Failed', argo: 'Degraded' },
  { kind: 'Realm', state: 'deleting', kstatus: 'Terminating', argo: 'Progressing' },
  { kind: 'Realm', state: 'deleting, awaiting acks', kstatus: 'Terminating', argo: 'Progressing' },
];

/** Flux's kustomize-controller waits until every object is Current and fails on Failed; anything else (InProgress, Terminating, Unknown) it keeps waiting on. */
function fluxVerdict(status: KStatus): FluxVerdict {
  return status === 'Current' || status === 'Failed' ? status : 'InProgress';
}

function argoAsFlux(health: ArgoHealth): FluxVerdict {
  if (health === 'Healthy') return 'Current';
  if (health === 'Degraded') return 'Failed';
  return 'InProgress';
}

interface Verdict {
  kstatus: { status: KStatus; message: string };
  argo: { status: ArgoHealth; message: string };
}

const kube = testKubeConfig();
const namespace = `gitops-${randomBytes(3).toString('hex')}`;
const REPLICA = `gitops-replica-${namespace}`;
let tools: string;
let db: TestDatabase;
let realms: Awaited<ReturnType<typeof makeRealmsRoot>>;
/** kind → state → the object as the API server returned it. */
const observed = new Map<Kind, Map<State, unknown>>();
const verdicts = new Map<string, Verdict>();


const collection = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}`;
const getRealm = (name: string) => kubeRequest<PublishedRealm>(kube, { path: `${collection}/${name}` });
const readyReason = (realm: PublishedRealm) => realm.status?.conditions?.find((c) => c.type === 'Ready')?.reason;

/** Drives PublishedRealms through every state with the operator's reconciler. */
async function publishedRealmStates(): Promise<Map<State, unknown>> {
  const states = new Map<State, unknown>();
  const source = `http://localhost:4201/gitops/src-${namespace}/`;
  const publishedURL = `http://gitops.localhost/${namespace}/`;
  const sourceDir = await createSourceRealm(db.pool, realms.layout, source, { 'index.json': '{}' }, `gitops/${namespace}`);
  const recording = new StatusRecordingKube(kube, silentLogger, 'gitops-health-test');
  const reconciler = new PublishedRealmReconciler({
    kube: recording,
    pool: db.pool,
    layout: realms.layout,
    logger: silentLogger,
    durable: false,
    authorization: undefined,
    ackWaitMs: 200,
    ackRequeueMs: 60_000,
    // Publishing is written before every publish, so the test sees that state (by default only a slow publish writes it).
    publishingWriteAfterMs: 0,
    readRealm: async ({ namespace: ns, name }) => {
      const list = await kubeRequest<{ items: Realm[] }>(kube, { path: `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${REALM_PLURAL}?fieldSelector=metadata.name%3D${name}` });
      return list.items[0];
    },
  });
  try {
    const key = { namespace, name: 'site' };
    states.set(
      'new',
      await kubeRequest<PublishedRealm>(kube, {
        method: 'POST',
        path: collection,
        body: { apiVersion: API_VERSION, kind: KIND, metadata: { name: key.name, namespace }, spec: { sourceRealmURL: source, publishedRealmURL: publishedURL, reindex: { enabled: false } } },
      }),
    );

    await reconciler.reconcile(key);
    const publishing = recording.written.find((r) => readyReason(r) === 'Publishing');
    expect(publishing).toBeDefined();
    states.set('publishing', publishing);
    const awaiting = await getRealm(key.name);
    expect(readyReason(awaiting)).toBe('AwaitingAcknowledgement');
    states.set('awaiting acks', awaiting);

    const { rows } = await db.pool.query<{ epoch: string }>('SELECT epoch FROM realm_operator.realm_epochs WHERE realm_url = $1', [publishedURL]);
    await recordAck(db.pool, REPLICA, publishedURL, Number(rows[0]!.epoch));
    await reconciler.reconcile(key);
    const ready = await getRealm(key.name);
    expect(readyReason(ready)).toBe('Published');
    states.set('Ready', ready);

    const mergePatch = (body: unknown) => kubeRequest<PublishedRealm>(kube, { method: 'PATCH', path: `${collection}/${key.name}`, contentType: 'application/merge-patch+json', body });
    const ackAndReconcile = async () => {
      const epoch = await db.pool.query<{ epoch: string }>('SELECT epoch FROM realm_operator.realm_epochs WHERE realm_url = $1', [publishedURL]);
      await recordAck(db.pool, REPLICA, publishedURL, Number(epoch.rows[0]!.epoch));
      await reconciler.reconcile(key);
      return getRealm(key.name);
    };
    // A second publish, then spec.rollbackTo the first version.
    const v1 = ready.status!.liveVersion!;
    await writeFiles(sourceDir, { 'index.json': '{"v":2}' });
    await mergePatch({ spec: { revision: 2 } });
    await reconciler.reconcile(key);
    expect(readyReason(await ackAndReconcile())).toBe('Published');
    await mergePatch({ spec: { rollbackTo: v1 } });
    await reconciler.reconcile(key);
    const rollingBack = recording.written.find((r) => readyReason(r) === 'RollingBack');
    expect(rollingBack).toBeDefined();
    states.set('rolling back', rollingBack);
    const rolledBack = await ackAndReconcile();
    expect(readyReason(rolledBack)).toBe('RolledBack');
    states.set('rolled back', rolledBack);
    await mergePatch({ spec: { rollbackTo: 'v1700000000000-00000000' } });
    await reconciler.reconcile(key);
    const notKept = await getRealm(key.name);
    expect(notKept.status?.conditions?.find((c) => c.type === 'Stalled')).toMatchObject({ status: 'True', reason: 'VersionNotKept' });
    states.set('rollback version not kept', notKept);
    await mergePatch({ spec: { rollbackTo: v1 } });
    await reconciler.reconcile(key);
    const back = await getRealm(key.name);
    expect(readyReason(back)).toBe('RolledBack');

    const changed = await mergePatch({ spec: { reindex: { enabled: true } } });
    expect(changed.metadata.generation).toBe((back.metadata.generation ?? 0) + 1);
    states.set('spec changed', changed);

    await mergePatch({ spec: { suspend: true } });
    await reconciler.reconcile(key);
    const suspended = await getRealm(key.name);
    expect(readyReason(suspended)).toBe('Suspended');
    states.set('suspended', suspended);

    // The finalizer holds the object while the operator unpublishes; the test never lets it.
    await kubeRequest(kube, { method: 'DELETE', path: `${collection}/${key.name}` });
    const deleting = await getRealm(key.name);
    expect(deleting.metadata.deletionTimestamp).toBeDefined();
    states.set('deleting', deleting);

    // A source realm that Boxel does not have: the operator stalls (a person must fix the spec).
    const missing = { namespace, name: 'no-source' };
    await kubeRequest(kube, {
      method: 'POST',
      path: collection,
      body: { apiVersion: API_VERSION, kind: KIND, metadata: { name: missing.name, namespace }, spec: { sourceRealmURL: `http://localhost:4201/gitops/missing-${namespace}/`, publishedRealmURL: `http://gitops.localhost/missing-${namespace}/`, reindex: { enabled: false } } },
    });
    await reconciler.reconcile(missing);
    const stalled = await getRealm(missing.name);
    expect(stalled.status?.conditions?.find((c) => c.type === 'Stalled')).toMatchObject({ status: 'True' });
    states.set('Stalled', stalled);

    const byRef = async (name: string, realmName: string) => {
      await kubeRequest(kube, {
        method: 'POST',
        path: collection,
        body: { apiVersion: API_VERSION, kind: KIND, metadata: { name, namespace }, spec: { sourceRealmRef: { name: realmName }, publishedRealmURL: `http://gitops.localhost/${name}-${namespace}/`, reindex: { enabled: false } } },
      });
      await reconciler.reconcile({ namespace, name });
      return getRealm(name);
    };
    // A Realm the Realm controller has not created yet.
    await kubeRequest(kube, { method: 'POST', path: `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${REALM_PLURAL}`, body: { apiVersion: API_VERSION, kind: REALM_KIND, metadata: { name: 'pending', namespace }, spec: { owner: '@gitops:localhost', endpoint: 'pending' } } });
    const waiting = await byRef('waits-for-realm', 'pending');
    expect(readyReason(waiting)).toBe('SourceRealmNotReady');
    states.set('source Realm not Ready', waiting);
    const orphaned = await byRef('realm-deleted', 'deleted-realm');
    expect(orphaned.status?.conditions?.find((c) => c.type === 'Stalled')).toMatchObject({ status: 'True', reason: 'SourceRealmNotFound' });
    states.set('source Realm deleted', orphaned);
  } finally {
    reconciler.close();
  }
  return states;
}

/** Drives Realms through every state with the operator's Realm reconciler. */
async function realmStates(): Promise<Map<State, unknown>> {
  const states = new Map<State, unknown>();
  const realmCollection = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${REALM_PLURAL}`;
  const server = `http://realms-${namespace}.test:4201/`;
  const owner = '@gitops:localhost';
  const reconciler = new RealmReconciler({
    kube: new CustomResourceKube<Realm, RealmStatus>(kube, silentLogger, 'gitops-health-test', undefined, { kind: REALM_KIND, plural: REALM_PLURAL }),
    plane: dataPlane(db.pool, realms.layout),
    logger: silentLogger,
    defaultServerURL: server,
    ackWaitMs: 200,
  });
  const create = (name: string, spec: Record<string, unknown>) =>
    kubeRequest<Realm>(kube, { method: 'POST', path: realmCollection, body: { apiVersion: API_VERSION, kind: REALM_KIND, metadata: { name, namespace }, spec } });
  const read = (name: string) => kubeRequest<Realm>(kube, { path: `${realmCollection}/${name}` });
  const reason = (realm: Realm, type: string) => realm.status?.conditions?.find((c) => c.type === type && c.status === 'True')?.reason;

  states.set('new', await create('notes', { owner, endpoint: 'notes' }));
  await reconciler.reconcile({ namespace, name: 'notes' });
  const ready = await read('notes');
  expect(reason(ready, 'Ready')).toBe('Created');
  states.set('Ready', ready);
  const changed = await kubeRequest<Realm>(kube, { method: 'PATCH', path: `${realmCollection}/notes`, contentType: 'application/merge-patch+json', body: { spec: { name: 'Renamed notes' } } });
  expect(changed.metadata.generation).toBe((ready.metadata.generation ?? 0) + 1);
  states.set('spec changed', changed);

  // The registered replica does not acknowledge: deletion waits for it.
  await kubeRequest(kube, { method: 'DELETE', path: `${realmCollection}/notes` });
  states.set('deleting', await read('notes'));
  await reconciler.reconcile({ namespace, name: 'notes' });
  const awaiting = await read('notes');
  expect(awaiting.status?.conditions?.find((c) => c.type === 'Ready')?.reason).toBe('AwaitingAcknowledgement');
  states.set('deleting, awaiting acks', awaiting);

  // A realm already at the URL: refused until a person changes the spec.
  await createSourceRealm(db.pool, realms.layout, `${server}gitops/taken/`, { 'index.json': '{}' }, `gitops/taken-${namespace}`);
  await create('taken', { owner, endpoint: 'taken' });
  await reconciler.reconcile({ namespace, name: 'taken' });
  const stalled = await read('taken');
  expect(reason(stalled, 'Stalled')).toBe('URLTaken');
  states.set('Stalled', stalled);
  return states;
}

/** How each kind's states are produced; a kind listed in EXPECTED must have one. */
const PRODUCERS: Record<Kind, () => Promise<Map<State, unknown>>> = {
  PublishedRealm: publishedRealmStates,
  Realm: realmStates,
};

/** Runs a tool with `input` on stdin; its stdout, or an error with its stderr. */
async function runTool(file: string, args: string[], input: string): Promise<string> {
  const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<number | null>((resolve, reject) => child.on('error', reject).on('close', resolve));
  child.stdin.end(input);
  const code = await exited;
  if (code !== 0) throw new Error(`${path.basename(file)} exited ${code}: ${stderr}`);
  return stdout;
}

/** Runs kstatus on the objects in one process; results in input order. */
async function kstatusOf(objects: unknown[]): Promise<Verdict['kstatus'][]> {
  const out = await runTool(path.join(tools, 'kstatus-check'), [], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }));
  const lines = out.trim().split('\n');
  expect(lines).toHaveLength(objects.length);
  return lines.map((line) => JSON.parse(line) as Verdict['kstatus']);
}

/** A Lua 5.1 literal for a JSON value; JSON null becomes nil (dropped), as Argo CD's conversion does. */
function luaLiteral(value: unknown): string {
  if (value === null || value === undefined) return 'nil';
  if (typeof value === 'boolean' || typeof value === 'number') return String(value);
  if (typeof value === 'string') {
    let out = '"';
    for (const byte of Buffer.from(value, 'utf8')) out += byte >= 0x20 && byte < 0x7f && byte !== 0x22 && byte !== 0x5c ? String.fromCharCode(byte) : `\\${byte}`;
    return `${out}"`;
  }
  if (Array.isArray(value)) return `{${value.map(luaLiteral).join(', ')}}`;
  const fields = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== null && v !== undefined);
  return `{${fields.map(([k, v]) => `[${luaLiteral(k)}] = ${luaLiteral(v)}`).join(', ')}}`;
}

/** Runs deploy/argocd/health.lua on one object, as Argo CD does: `obj` global, the returned table. */
async function argoHealthOf(object: unknown): Promise<Verdict['argo']> {
  const chunk = [
    `obj = ${luaLiteral(object)}`,
    `local check = assert(loadfile(${luaLiteral(HEALTH_LUA)}))`,
    'local hs = check()',
    'io.write(tostring(hs.status), "\\n", tostring(hs.message), "\\n")',
  ].join('\n');
  const [status, message] = (await runTool(path.join(tools, 'lua5.1'), ['-'], chunk)).split('\n');
  return { status: status as ArgoHealth, message: message ?? '' };
}

beforeAll(async () => {
  const { stdout } = await run('bash', [path.join(ROOT, 'hack/gitops-tools.sh'), 'kstatus-check', 'lua5.1'], { maxBuffer: 16 << 20 });
  tools = stdout.trim().split('\n').at(-1)!;
  db = await createTestDatabase();
  realms = await makeRealmsRoot();
  // A live replica that acknowledges only when the test records its ack.
  await db.pool.query(
    `INSERT INTO realm_operator.replicas (replica_id, lease_expires_at, lease_duration_ms, cache_started_epoch)
     VALUES ($1, now() + interval '10 minutes', 600000, 0)`,
    [REPLICA],
  );
  await installCRD();
  await must(['apply', '--server-side', '-f', path.join(ROOT, 'crds', `${GROUP}_${REALM_PLURAL}.yaml`)]);
  await must(['wait', '--for=condition=Established', `crd/${REALM_PLURAL}.${GROUP}`, '--timeout=30s']);
  await kubeRequest(kube, { method: 'POST', path: '/api/v1/namespaces', body: { metadata: { name: namespace } } });
  const kinds = [...new Set(EXPECTED.map((e) => e.kind))];
  for (const kind of kinds) observed.set(kind, await PRODUCERS[kind]());

  const rows = EXPECTED.map((e) => ({ id: `${e.kind}/${e.state}`, object: observed.get(e.kind)?.get(e.state) }));
  const missing = rows.filter((r) => r.object === undefined).map((r) => r.id);
  if (missing.length) throw new Error(`no object was produced for ${missing.join(', ')}`);
  const kstatus = await kstatusOf(rows.map((r) => r.object));
  for (const [i, row] of rows.entries()) verdicts.set(row.id, { kstatus: kstatus[i]!, argo: await argoHealthOf(row.object) });
});

afterAll(async () => {
  // Without a controller-manager the namespace never finishes terminating: do not wait for it.
  await kubeRequest(kube, { method: 'DELETE', path: `/api/v1/namespaces/${namespace}` }).catch(() => undefined);
  await db?.drop();
  await realms?.cleanup();
});

describe.each(EXPECTED)('$kind $state', ({ kind, state, kstatus, argo }) => {
  test(`kstatus (Flux) says ${kstatus} -> ${fluxVerdict(kstatus)}; Argo CD says ${argo}`, () => {
    const verdict = verdicts.get(`${kind}/${state}`)!;
    expect({ kstatus: verdict.kstatus.status, argo: verdict.argo.status }).toEqual({ kstatus, argo });
    expect(verdict.argo.message).not.toBe('');
    expect(argoAsFlux(verdict.argo.status)).toBe(fluxVerdict(verdict.kstatus.status));
  });
});

test.each(['PublishedRealm', 'Realm'] as const)('a Stalled %s carries the operator’s reason to the user in both tools', (kind) => {
  const stalled = observed.get(kind)?.get('Stalled') as PublishedRealm;
  const message = stalled.status?.conditions?.find((c) => c.type === 'Stalled')?.message;
  expect(message).toBeTruthy();
  expect(verdicts.get(`${kind}/Stalled`)?.kstatus.message).toBe(message);
  expect(verdicts.get(`${kind}/Stalled`)?.argo.message).toBe(message);
});

test('argocd-cm holds deploy/argocd/health.lua verbatim for every kind', async () => {
  const lua = await fs.readFile(HEALTH_LUA, 'utf8');
  const cm = YAML.parse(await fs.readFile(ARGOCD_CM, 'utf8')) as { kind: string; metadata: { name: string }; data: Record<string, string> };
  expect(cm).toMatchObject({ kind: 'ConfigMap', metadata: { name: 'argocd-cm' } });
  const kinds = [KIND, REALM_KIND];
  expect(Object.keys(cm.data).sort()).toEqual(kinds.map((k) => `resource.customizations.health.${GROUP}_${k}`).sort());
  for (const key of Object.keys(cm.data)) expect(cm.data[key]).toBe(lua);
});
