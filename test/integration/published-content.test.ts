/**
 * File-system steps of publishing on a real directory tree: what clean-up keeps and removes, and
 * removal of trees the operator cannot write to as they are.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { emptyTrash, moveToTrash, removeManifestsExcept } from '../../src/dataplane/published-content.js';
import { makeRealmsRoot } from '../support/realms.js';

let realms: Awaited<ReturnType<typeof makeRealmsRoot>>;
beforeEach(async () => {
  realms = await makeRealmsRoot();
});
afterEach(async () => {
  await realms.cleanup();
});

test('removeManifestsExcept keeps a kept version’s manifest and the scratch file it is being written through', async () => {
  const dir = realms.layout.manifestsDir('disk-1');
  await fs.mkdir(dir, { recursive: true });
  const kept = 'v1700000000000-0a1b2c3d';
  const gone = 'v1700000000001-4e5f6a7b';
  for (const name of [`${kept}.json`, `${kept}.json.a1b2c3d4.tmp`, `${gone}.json`, `${gone}.json.e5f6a7b8.tmp`]) await fs.writeFile(path.join(dir, name), '{}');
  const removed = await removeManifestsExcept(realms.layout, 'disk-1', new Set([kept]));
  expect(removed.sort()).toEqual([`${gone}.json`, `${gone}.json.e5f6a7b8.tmp`]);
  expect((await fs.readdir(dir)).sort()).toEqual([`${kept}.json`, `${kept}.json.a1b2c3d4.tmp`]);
});

test('emptyTrash removes whole versions, read-only directories included, and leaves the trash empty', async () => {
  const version = realms.layout.versionDir('disk-1', 'v1700000000000-0a1b2c3d');
  await fs.mkdir(path.join(version, 'cards', 'locked'), { recursive: true });
  for (let i = 0; i < 50; i++) await fs.writeFile(path.join(version, 'cards', `card-${i}.json`), `{"i":${i}}`);
  await fs.writeFile(path.join(version, 'cards', 'locked', 'inside.json'), '{}');
  await fs.chmod(path.join(version, 'cards', 'locked'), 0o555);
  await fs.chmod(path.join(version, 'cards'), 0o555);
  await moveToTrash(realms.layout, version);
  await emptyTrash(realms.layout);
  expect(await fs.readdir(realms.layout.trashDir)).toEqual([]);
});
