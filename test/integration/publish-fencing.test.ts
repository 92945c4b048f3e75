/**
 * Issue 13 item 2 in the data plane, real PostgreSQL and files: a publisher paused mid-publish
 * (here: held at a step) must not commit an older generation over a newer one another publisher
 * committed meanwhile, and a publish stops at its next step once its signal aborts.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { publishRealm, unpublishRealm, type DataPlane, type PublishStep } from '../../src/dataplane/publish.js';
import { readPublishedLink } from '../../src/dataplane/published-content.js';
import { readRealmEpochRow, SupersededPublishError } from '../../src/dataplane/realm-state.js';
import { createSourceRealm, openDataPlaneFixture, writeFiles, type DataPlaneFixture } from '../support/realms.js';

let fixture: DataPlaneFixture;
beforeAll(async () => {
  fixture = await openDataPlaneFixture();
});
afterAll(() => fixture.close());

const OBJECT = 'ns/blog/uid-1';

/** A plane whose publish stops at `step` until the returned `release` is called ("paused"). */
function pausedAt(step: PublishStep): { plane: DataPlane; reached: Promise<void>; release: () => void } {
  let reached!: () => void;
  let release!: () => void;
  const reachedPromise = new Promise<void>((resolve) => (reached = resolve));
  const gate = new Promise<void>((resolve) => (release = resolve));
  const plane: DataPlane = {
    ...fixture.plane,
    onStep: async (name) => {
      if (name !== step) return;
      reached();
      await gate;
    },
  };
  return { plane, reached: reachedPromise, release };
}

async function servedIndex(publishedURL: string): Promise<string> {
  const row = await readRealmEpochRow(fixture.db.pool, publishedURL);
  return fs.readFile(path.join(fixture.layout.publishedDir(row!.disk_id!), 'index.json'), 'utf8');
}

async function setup(name: string) {
  const sourceURL = `http://localhost:4201/fence/${name}-src/`;
  const publishedURL = `http://pub.localhost/fence/${name}/`;
  const sourceDir = await createSourceRealm(fixture.db.pool, fixture.layout, sourceURL, { 'index.json': '{"revision":1}' });
  return { sourceURL, publishedURL, sourceDir, request: { sourceRealmURL: sourceURL, publishedRealmURL: publishedURL, claim: { claimant: OBJECT } } };
}

/**
 * Generation 1's publisher is paused after staging revision 1; generation 2's publisher stages
 * revision 2 and commits; then generation 1's publisher resumes. Returns its outcome.
 */
async function pausedOlderGeneration(name: string, fenced: boolean) {
  const { publishedURL, sourceDir, request } = await setup(name);
  const paused = pausedAt('reserved');
  const older = publishRealm(paused.plane, { ...request, ...(fenced ? { fence: { of: OBJECT, generation: 1 } } : {}) });
  older.catch(() => undefined);
  await paused.reached;
  await writeFiles(sourceDir, { 'index.json': '{"revision":2}' });
  const newer = await publishRealm(fixture.plane, { ...request, ...(fenced ? { fence: { of: OBJECT, generation: 2 } } : {}) });
  expect(await servedIndex(publishedURL)).toBe('{"revision":2}');
  paused.release();
  const outcome = await older.then(
    (result) => ({ committed: true as const, result }),
    (error: unknown) => ({ committed: false as const, error }),
  );
  return { publishedURL, newer, outcome };
}

test('a publisher paused mid-publish cannot commit its older generation over the newer one: refused under the lock, the newer content stays', async () => {
  const { publishedURL, newer, outcome } = await pausedOlderGeneration('paused', true);
  expect(outcome.committed).toBe(false);
  expect((outcome as { error: unknown }).error).toBeInstanceOf(SupersededPublishError);
  expect((outcome as { error: Error }).error.message).toMatch(/generation 2 is already published, so this publish of generation 1 is not committed/);
  const row = await readRealmEpochRow(fixture.db.pool, publishedURL);
  expect(row).toMatchObject({ epoch: String(newer.epoch), content_version: newer.version, published_generation: '2', published_generation_of: OBJECT });
  expect(await servedIndex(publishedURL)).toBe('{"revision":2}');
  expect(await readPublishedLink(fixture.layout, newer.diskId)).toEqual({ kind: 'version', version: newer.version });
});

test('proof the scenario is real: without the fence (as before) the paused publisher commits revision 1 over revision 2', async () => {
  const { publishedURL, newer, outcome } = await pausedOlderGeneration('unfenced', false);
  expect(outcome.committed).toBe(true);
  expect(Number((await readRealmEpochRow(fixture.db.pool, publishedURL))!.epoch)).toBeGreaterThan(newer.epoch);
  expect(await servedIndex(publishedURL)).toBe('{"revision":1}');
});

test('the same generation again is refused too; another object\'s generations are not compared; a generation that is newer commits', async () => {
  const { publishedURL, request } = await setup('same');
  await publishRealm(fixture.plane, { ...request, fence: { of: OBJECT, generation: 5 } });
  await expect(publishRealm(fixture.plane, { ...request, fence: { of: OBJECT, generation: 5 } })).rejects.toBeInstanceOf(SupersededPublishError);
  const other = await publishRealm(fixture.plane, { ...request, claim: { claimant: 'ns/blog/uid-2', takeOverFrom: OBJECT }, fence: { of: 'ns/blog/uid-2', generation: 1 } });
  expect(await readRealmEpochRow(fixture.db.pool, publishedURL)).toMatchObject({ epoch: String(other.epoch), published_generation: '1', published_generation_of: 'ns/blog/uid-2' });
  // Unpublishing forgets the generation: the URL is free for anyone.
  await unpublishRealm(fixture.plane, publishedURL, { claimant: 'ns/blog/uid-2' });
  expect(await readRealmEpochRow(fixture.db.pool, publishedURL)).toMatchObject({ published_generation: null, published_generation_of: null, content_version: null });
});

test('an aborted signal stops the publish at its next step before the swap: nothing committed, the served content unchanged', async () => {
  const { publishedURL, sourceDir, request } = await setup('aborted');
  const first = await publishRealm(fixture.plane, request);
  await writeFiles(sourceDir, { 'index.json': '{"revision":2}' });
  for (const step of ['staged', 'reserved', 'locked', 'installed'] as const) {
    const leadership = new AbortController();
    const plane: DataPlane = { ...fixture.plane, onStep: (name) => void (name === step && leadership.abort(new Error(`leadership lost at ${step}`))) };
    await expect(publishRealm(plane, request, { signal: leadership.signal })).rejects.toThrow(`leadership lost at ${step}`);
    expect(await readRealmEpochRow(fixture.db.pool, publishedURL)).toMatchObject({ epoch: String(first.epoch), content_version: first.version });
    expect(await readPublishedLink(fixture.layout, first.diskId)).toEqual({ kind: 'version', version: first.version });
    expect(await servedIndex(publishedURL)).toBe('{"revision":1}');
  }
  const gone = new AbortController();
  gone.abort(new Error('not the leader'));
  await expect(publishRealm(fixture.plane, request, { signal: gone.signal })).rejects.toThrow('not the leader');
  await expect(unpublishRealm(fixture.plane, publishedURL, {}, undefined, { signal: gone.signal })).rejects.toThrow('not the leader');
  expect(await servedIndex(publishedURL)).toBe('{"revision":1}');
});
