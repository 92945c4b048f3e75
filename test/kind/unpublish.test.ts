/**
 * Deleting a PublishedRealm in the cluster unpublishes it: the operator (through its finalizer)
 * removes the registry row and permissions and the published directory on the realms volume, and
 * every realm-server pod answers 404 for the realm's files from then on.
 */
import { checkBody, REALM_FILES, realmContent } from '../consistency/content.js';
import { closeApi, getFromEveryRealmServer, realmServerPods, REALMS_ROOT } from '../support/kind.js';
import { KindRealm } from '../support/kind-realm.js';
import { Toolbox } from '../support/kind-toolbox.js';

let toolbox: Toolbox;
let realm: KindRealm;

beforeAll(async () => {
  toolbox = await Toolbox.start('unpublish');
  realm = new KindRealm(toolbox, { name: 'unpublish', host: 'unpublish.localhost', content: realmContent });
  await realm.prepare();
}, 240_000);

afterAll(async () => {
  await realm?.close();
  await toolbox?.delete();
  closeApi();
}, 180_000);

test('deleting the PublishedRealm unpublishes it: registry row, permissions and files gone, 404 on every pod', async () => {
  await realm.create();
  const [row] = await toolbox.sql<{ disk_id: string; kind: string }>('SELECT disk_id, kind FROM realm_registry WHERE url = $1', [realm.publishedURL]);
  expect(row?.kind).toBe('published');
  const publishedDir = `${REALMS_ROOT}/_published/${row!.disk_id}`;
  expect(await toolbox.exists(publishedDir)).toBe(true);
  const file = REALM_FILES[2]!;
  const pods = (await realmServerPods()).map((p) => p.name);
  const served = await getFromEveryRealmServer(realm.options.host, `${realm.realmPath}${file}`);
  expect([...served.keys()].sort()).toEqual(pods);
  for (const [pod, answer] of served) expect({ pod, status: answer.status, body: checkBody(file, answer.body) }).toEqual({ pod, status: 200, body: { kind: 'ok', revision: 0 } });

  await realm.delete();

  expect(await toolbox.sql('SELECT url FROM realm_registry WHERE url = $1', [realm.publishedURL])).toEqual([]);
  expect(await toolbox.sql('SELECT username FROM realm_user_permissions WHERE realm_url = $1', [realm.publishedURL])).toEqual([]);
  expect(await toolbox.exists(publishedDir)).toBe(false);
  // The source realm is untouched.
  expect(await toolbox.sql('SELECT kind FROM realm_registry WHERE url = $1', [realm.sourceURL])).toEqual([{ kind: 'source' }]);
  const after = await getFromEveryRealmServer(realm.options.host, `${realm.realmPath}${file}`);
  expect([...after.keys()].sort()).toEqual(pods);
  for (const [pod, answer] of after) expect({ pod, status: answer.status }).toEqual({ pod, status: 404 });
}, 300_000);
