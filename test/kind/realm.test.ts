/**
 * A `Realm` in the cluster, end to end: created by the in-cluster operator on its REALM_SERVER_URL
 * (deploy/kind: http://localhost:4201/, no spec.serverURL), a PublishedRealm naming it by
 * `sourceRealmRef` publishes it and every realm-server pod serves both (deploy/kind's realm servers
 * also serve source realms). Deleting the Realm does what Boxel's delete handler does: the
 * published realm and the source lose their rows, permissions and files, and once the finalizer is
 * released no realm-server pod answers 200 for either (a reader on every pod, from before the
 * delete until well after the release: 0 stale 200s, every read after the release a 404); the
 * PublishedRealm goes Stalled and publishes nothing again.
 */
import { API_VERSION, GROUP, PLURAL, VERSION, type PublishedRealm } from '../../src/api/v1alpha1/published-realm-types.js';
import { REALM_KIND, REALM_PLURAL } from '../../src/api/v1alpha1/realm-types.js';
import { checkBody, REALM_FILES, realmContent } from '../consistency/content.js';
import {
  api,
  closeApi,
  getFromEveryRealmServer,
  getOrUndefined,
  httpGet,
  kubectl,
  operatorLogs,
  portForward,
  randomSuffix,
  realmServerPods,
  REALMS_ROOT,
  sleep,
  SYSTEM_NAMESPACE,
  waitFor,
  type PortForward,
} from '../support/kind.js';
import { Toolbox } from '../support/kind-toolbox.js';

const suffix = randomSuffix();
const NAMESPACE = `kind-realm-${suffix}`;
const OWNER = `kindrealm${suffix}`;
const ENDPOINT = 'site';
/** deploy/kind's REALM_SERVER_URL. */
const SOURCE_URL = `http://localhost:4201/${OWNER}/${ENDPOINT}/`;
const SOURCE_DIR = `${REALMS_ROOT}/${OWNER}/${ENDPOINT}`;
const PUBLISHED_HOST = 'realm.localhost';
const PUBLISHED_PATH = `/site-${suffix}/`;
const PUBLISHED_URL = `http://${PUBLISHED_HOST}${PUBLISHED_PATH}`;
const FILE = REALM_FILES[2]!;

const realmPath = `/apis/${GROUP}/${VERSION}/namespaces/${NAMESPACE}/${REALM_PLURAL}/${ENDPOINT}`;
const publishedPath = `/apis/${GROUP}/${VERSION}/namespaces/${NAMESPACE}/${PLURAL}/${ENDPOINT}`;

const condition = (object: { status?: { conditions?: Array<{ type: string; status: string; reason?: string }> } } | undefined, type: string) =>
  object?.status?.conditions?.find((c) => c.type === type);

interface Read {
  pod: string;
  realm: 'source' | 'published';
  start: number;
  status: number | undefined;
  revision?: number;
  error?: string;
}

/** One reader per realm-server pod, alternating between the source's and the published realm's file. */
class Readers {
  readonly reads: Read[] = [];
  private running = true;
  private loops: Array<Promise<void>> = [];
  private forwards: PortForward[] = [];

  async start(): Promise<string[]> {
    const pods = (await realmServerPods()).map((p) => p.name);
    for (const pod of pods) {
      const forward = await portForward(SYSTEM_NAMESPACE, pod, 4201);
      this.forwards.push(forward);
      this.loops.push(this.loop(pod, forward.port));
    }
    return pods;
  }

  private async loop(pod: string, port: number): Promise<void> {
    const targets = [
      { realm: 'source' as const, host: 'localhost:4201', path: `/${OWNER}/${ENDPOINT}/${FILE}` },
      { realm: 'published' as const, host: PUBLISHED_HOST, path: `${PUBLISHED_PATH}${FILE}` },
    ];
    for (let i = 0; this.running; i++) {
      const target = targets[i % 2]!;
      const start = Date.now();
      try {
        const answer = await httpGet(port, target.host, target.path);
        const body = answer.status === 200 ? checkBody(FILE, answer.body) : undefined;
        this.reads.push({ pod, realm: target.realm, start, status: answer.status, ...(body?.kind === 'ok' ? { revision: body.revision } : {}) });
      } catch (error) {
        this.reads.push({ pod, realm: target.realm, start, status: undefined, error: (error as Error).message });
      }
      await sleep(20);
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    await Promise.all(this.forwards.map((f) => f.stop()));
  }
}

let toolbox: Toolbox;
let readers: Readers | undefined;

beforeAll(async () => {
  toolbox = await Toolbox.start('realm');
  await api({ method: 'POST', path: '/api/v1/namespaces', body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NAMESPACE } } });
}, 180_000);

afterAll(async () => {
  await readers?.stop();
  // Whatever the test left: the PublishedRealm (its finalizer), the Realm, the namespace, rows and files.
  await api({ method: 'DELETE', path: publishedPath }).catch(() => undefined);
  await api({ method: 'DELETE', path: realmPath }).catch(() => undefined);
  await waitFor(async () => !(await getOrUndefined(publishedPath)) && !(await getOrUndefined(realmPath)), 60_000, () => 'the test objects to go').catch((error: Error) => console.warn(`cleanup: ${error.message}`));
  await kubectl(['delete', 'namespace', NAMESPACE, '--wait=false', '--ignore-not-found']);
  await toolbox?.removeSourceRealm(SOURCE_URL, `${REALMS_ROOT}/${OWNER}`).catch((error: Error) => console.warn(`cleanup: ${error.message}`));
  await toolbox?.delete();
  closeApi();
}, 180_000);

test('a Realm is created on REALM_SERVER_URL, published by sourceRealmRef and served; deleting it removes both realms from every pod (0 stale 200s) and stalls the PublishedRealm', async () => {
  // --- create the Realm (no spec.serverURL: the operator's REALM_SERVER_URL) ---------------------
  await api({
    method: 'POST',
    path: `/apis/${GROUP}/${VERSION}/namespaces/${NAMESPACE}/${REALM_PLURAL}`,
    body: { apiVersion: API_VERSION, kind: REALM_KIND, metadata: { name: ENDPOINT, namespace: NAMESPACE }, spec: { owner: `@${OWNER}:localhost`, endpoint: ENDPOINT } },
  });
  let realm: any;
  await waitFor(
    async () => condition((realm = await getOrUndefined(realmPath)), 'Ready')?.status === 'True',
    60_000,
    async () => `Realm ${ENDPOINT} Ready; status ${JSON.stringify(realm?.status)}\n${await operatorLogs(30)}`,
    200,
  );
  expect({ url: realm.status.url, reason: condition(realm, 'Ready')!.reason }).toEqual({ url: SOURCE_URL, reason: 'Created' });
  expect(await toolbox.sql('SELECT kind, disk_id, owner_username FROM realm_registry WHERE url = $1', [SOURCE_URL])).toEqual([{ kind: 'source', disk_id: `${OWNER}/${ENDPOINT}`, owner_username: OWNER }]);
  expect(await toolbox.sql('SELECT username, read, write, realm_owner FROM realm_user_permissions WHERE realm_url = $1', [SOURCE_URL])).toEqual([
    { username: `@${OWNER}:localhost`, read: true, write: true, realm_owner: true },
  ]);
  expect(await toolbox.exists(`${SOURCE_DIR}/realm.json`)).toBe(true);
  // The realm's content, as its users would write it.
  await toolbox.writeFiles(SOURCE_DIR, realmContent(0));

  // --- publish it by reference ---------------------------------------------------------------------
  await api({
    method: 'POST',
    path: `/apis/${GROUP}/${VERSION}/namespaces/${NAMESPACE}/${PLURAL}`,
    body: { apiVersion: API_VERSION, kind: 'PublishedRealm', metadata: { name: ENDPOINT, namespace: NAMESPACE }, spec: { sourceRealmRef: { name: ENDPOINT }, publishedRealmURL: PUBLISHED_URL } },
  });
  let published: PublishedRealm | undefined;
  await waitFor(
    async () => {
      published = await getOrUndefined<PublishedRealm>(publishedPath);
      return condition(published, 'Ready')?.status === 'True' && published?.status?.observedGeneration === published?.metadata.generation;
    },
    90_000,
    async () => `PublishedRealm ${ENDPOINT} Ready; status ${JSON.stringify(published?.status)}\n${await operatorLogs(30)}`,
    200,
  );
  const [row] = await toolbox.sql<{ disk_id: string; kind: string; source_url: string }>('SELECT disk_id, kind, source_url FROM realm_registry WHERE url = $1', [PUBLISHED_URL]);
  expect({ kind: row?.kind, source: row?.source_url }).toEqual({ kind: 'published', source: SOURCE_URL });
  const publishedDir = `${REALMS_ROOT}/_published/${row!.disk_id}`;
  expect(await toolbox.exists(publishedDir)).toBe(true);

  const pods = (await realmServerPods()).map((p) => p.name);
  for (const [host, path] of [
    [PUBLISHED_HOST, `${PUBLISHED_PATH}${FILE}`],
    ['localhost:4201', `/${OWNER}/${ENDPOINT}/${FILE}`],
  ] as const) {
    const answers = await getFromEveryRealmServer(host, path);
    expect([...answers.keys()].sort()).toEqual(pods);
    for (const [pod, answer] of answers) expect({ pod, host, status: answer.status, body: checkBody(FILE, answer.body) }).toEqual({ pod, host, status: 200, body: { kind: 'ok', revision: 0 } });
  }

  // --- delete the Realm under readers ------------------------------------------------------------
  readers = new Readers();
  const readPods = await readers.start();
  expect(readPods.sort()).toEqual(pods);
  await waitFor(async () => readers!.reads.filter((r) => r.status === 200).length >= 20, 60_000, () => `20 reads answered 200 before the delete; ${JSON.stringify(readers!.reads.slice(-5))}`);
  await api({ method: 'DELETE', path: realmPath });
  let deleting: any;
  await waitFor(
    async () => (deleting = await getOrUndefined(realmPath)) === undefined,
    90_000,
    async () => `the Realm to be gone (finalizer released); status ${JSON.stringify(deleting?.status)}\n${await operatorLogs(30)}`,
    100,
  );
  const releasedAt = Date.now();
  // Read on after the release: every pod, both realms, at least 10 reads each.
  const afterRelease = () => readers!.reads.filter((r) => r.start > releasedAt);
  await waitFor(
    async () => pods.every((pod) => (['source', 'published'] as const).every((realm) => afterRelease().filter((r) => r.pod === pod && r.realm === realm).length >= 10)),
    60_000,
    () => `10 reads per pod and realm after the release; have ${afterRelease().length}`,
  );
  await readers.stop();
  const reads = readers.reads;
  readers = undefined;

  const count = (list: Read[], status: number | undefined) => list.filter((r) => r.status === status).length;
  const after = reads.filter((r) => r.start > releasedAt);
  console.log(
    `kind realm delete: ${reads.length} reads on ${pods.length} pods; before the release 200: ${count(reads, 200) - count(after, 200)}, 404: ${count(reads, 404) - count(after, 404)}; ` +
      `after the release ${after.length}: 200 (stale) ${count(after, 200)}, 404 ${count(after, 404)}, other ${after.length - count(after, 200) - count(after, 404)}`,
  );
  expect(reads.filter((r) => r.start <= releasedAt && r.status === 200 && r.revision === 0).length).toBeGreaterThanOrEqual(20);
  // No stale 200 after the release; every read then is Boxel's "no such realm": 404.
  expect(after.filter((r) => r.status === 200)).toEqual([]);
  expect(after.filter((r) => r.status !== 404)).toEqual([]);
  expect(new Set(after.map((r) => `${r.pod} ${r.realm}`)).size).toBe(pods.length * 2);

  // Boxel's end state: no rows, no permissions, no files for either realm.
  expect(await toolbox.sql('SELECT url FROM realm_registry WHERE url = ANY($1)', [[SOURCE_URL, PUBLISHED_URL]])).toEqual([]);
  expect(await toolbox.sql('SELECT realm_url FROM realm_user_permissions WHERE realm_url = ANY($1)', [[SOURCE_URL, PUBLISHED_URL]])).toEqual([]);
  expect(await toolbox.exists(SOURCE_DIR)).toBe(false);
  expect(await toolbox.exists(publishedDir)).toBe(false);

  // --- the PublishedRealm of the deleted Realm: Stalled, publishes nothing ------------------------
  await waitFor(
    async () => {
      published = await getOrUndefined<PublishedRealm>(publishedPath);
      // SourceRealmDeleting while the Realm was going, SourceRealmNotFound once it is gone.
      const stalled = condition(published, 'Stalled');
      return stalled?.status === 'True' && ['SourceRealmDeleting', 'SourceRealmNotFound'].includes(stalled.reason ?? '');
    },
    60_000,
    async () => `PublishedRealm ${ENDPOINT} Stalled for its deleted Realm; status ${JSON.stringify(published?.status)}\n${await operatorLogs(30)}`,
    200,
  );
  expect(condition(published, 'Ready')?.status).toBe('False');
  expect(await toolbox.sql('SELECT url FROM realm_registry WHERE url = $1', [PUBLISHED_URL])).toEqual([]);
  const again = await getFromEveryRealmServer(PUBLISHED_HOST, `${PUBLISHED_PATH}${FILE}`);
  for (const [pod, answer] of again) expect({ pod, status: answer.status }).toEqual({ pod, status: 404 });
}, 300_000);
