/**
 * A publisher SIGKILLed at every step of publish and unpublish: the published realm is always
 * old or new content, whole; recovery (or the next publish) makes files agree with the database
 * and leaves nothing behind.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { publishRealm, recoverPublishedRealm, unpublishRealm, type DataPlane, type PublishStep, type UnpublishStep } from '../../src/dataplane/publish.js';
import { readPublishedLink } from '../../src/dataplane/published-content.js';
import { capturingLogger, createSourceRealm, eventually, insertIndexEntries, readTree, writeFiles, openDataPlaneFixture, type DataPlaneFixture } from '../support/realms.js';

const PUBLISH_STEPS: PublishStep[] = ['staged', 'reserved', 'locked', 'installed', 'swapped', 'recorded', 'committed', 'cleaned'];
const UNPUBLISH_STEPS: UnpublishStep[] = ['locked', 'unlinked', 'committed', 'cleaned'];
const OLD = { 'index.json': '{"v":"old"}', 'cards/a.gts': 'old a', 'cards/b.gts': 'old b' };
const NEW = { 'index.json': '{"v":"new"}', 'cards/a.gts': 'new a', 'cards/c.gts': 'new c' };

let fixture: DataPlaneFixture;
let db: DataPlaneFixture['db'];
let realms: DataPlaneFixture['realms'];
let layout: DataPlaneFixture['layout'];
let plane: DataPlaneFixture['plane'];

beforeAll(async () => {
  fixture = await openDataPlaneFixture();
  ({ db, realms, layout, plane } = fixture);
});
afterAll(() => fixture.close());

async function crashDuring(operation: 'publish' | 'unpublish', crashAt: string, sourceURL: string, publishedURL: string): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, '../support/crash-child.ts')], {
    env: { ...process.env, DATABASE_URL: db.url, REALMS_ROOT: realms.root, OPERATION: operation, SOURCE_URL: sourceURL, PUBLISHED_URL: publishedURL, CRASH_AT: crashAt },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, s) => resolve(s)));
  if (signal !== 'SIGKILL') throw new Error(`child did not crash at ${crashAt}: ${output}`);
  // PostgreSQL notices the dead client (and drops its locks) a moment later; recovery decides
  // ownership of staging copies by those locks, so wait until its backends are gone.
  await eventually(async () => {
    const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'crash-child' AND datname = current_database()`);
    return rows[0].n === 0;
  }, 10_000, () => 'the crashed publisher\'s backends to exit');
}

/** The published realm's content as readers see it now, or `undefined` when it is absent. */
async function visibleContent(diskId: string): Promise<Record<string, string> | undefined> {
  try {
    return await readTree(layout.publishedDir(diskId));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** The published realm's permissions rows, as Boxel's first publish writes them for its realm user and publisher. */
async function permissionUsernames(publishedURL: string): Promise<string[]> {
  const { rows } = await db.pool.query('SELECT username FROM realm_user_permissions WHERE realm_url = $1 ORDER BY username', [publishedURL]);
  return rows.map((row: { username: string }) => row.username);
}

const boxelPermissionUsernames = (diskId: string) => ['*', '@owner:localhost', `@realm/_published_${diskId}:localhost`];

async function expectNoLeftovers(diskId: string | null): Promise<void> {
  for (const dir of [layout.stagingRoot, layout.linkScratchDir, layout.trashDir]) {
    expect(await fs.readdir(dir).catch(() => [])).toEqual([]);
  }
  if (!diskId) return;
  const versions = await fs.readdir(layout.versionsDir(diskId)).catch(() => [] as string[]);
  const { rows } = await db.pool.query('SELECT content_version, previous_version FROM realm_operator.realm_epochs WHERE disk_id = $1', [diskId]);
  const expected = rows[0] ? [rows[0].content_version, rows[0].previous_version].filter(Boolean) : [];
  expect(versions.sort()).toEqual(expected.sort());
}

describe.each(PUBLISH_STEPS)('publisher killed after step "%s"', (step) => {
  test('republish: old or new content throughout, then consistent and clean', async () => {
    const sourceURL = `http://localhost:4201/crash/${step}-src/`;
    const publishedURL = `http://pub.localhost/crash/${step}/`;
    const sourceDir = await createSourceRealm(db.pool, layout, sourceURL, OLD);
    const first = await publishRealm(plane, { sourceRealmURL: sourceURL, publishedRealmURL: publishedURL });
    await fs.rm(path.join(sourceDir, 'cards/b.gts'));
    await writeFiles(sourceDir, NEW);

    await crashDuring('publish', step, sourceURL, publishedURL);
    const seen = await visibleContent(first.diskId);
    expect([OLD, NEW]).toContainEqual(seen);

    await recoverPublishedRealm(plane, publishedURL);
    const { rows } = await db.pool.query('SELECT content_version, content_digest FROM realm_operator.realm_epochs WHERE realm_url = $1', [publishedURL]);
    const committedNew = rows[0].content_version !== first.version;
    // Whether the crash came before or after COMMIT decides which content survives.
    expect(committedNew).toBe(PUBLISH_STEPS.indexOf(step) >= PUBLISH_STEPS.indexOf('committed'));
    expect(await visibleContent(first.diskId)).toEqual(committedNew ? NEW : OLD);
    const link = await readPublishedLink(layout, first.diskId);
    expect(link).toEqual({ kind: 'version', version: rows[0].content_version });
    await expectNoLeftovers(first.diskId);

    const next = await publishRealm(plane, { sourceRealmURL: sourceURL, publishedRealmURL: publishedURL });
    expect(await visibleContent(next.diskId)).toEqual(NEW);
    await expectNoLeftovers(next.diskId);
  });

  test('first publish: absent or whole, then consistent and clean', async () => {
    const sourceURL = `http://localhost:4201/crash/${step}-first-src/`;
    const publishedURL = `http://pub.localhost/crash/${step}-first/`;
    await createSourceRealm(db.pool, layout, sourceURL, NEW);
    await crashDuring('publish', step, sourceURL, publishedURL);

    const reserved = await db.pool.query('SELECT disk_id FROM realm_operator.realm_epochs WHERE realm_url = $1', [publishedURL]);
    const diskId: string | null = reserved.rows[0]?.disk_id ?? null;
    if (diskId) expect([undefined, NEW]).toContainEqual(await visibleContent(diskId));
    // Registry row, owner and permissions commit together with the publish, or not at all.
    const committed = PUBLISH_STEPS.indexOf(step) >= PUBLISH_STEPS.indexOf('committed');
    expect(await permissionUsernames(publishedURL)).toEqual(committed && diskId ? boxelPermissionUsernames(diskId) : []);

    // The next publish recovers first, then completes.
    const result = await publishRealm(plane, { sourceRealmURL: sourceURL, publishedRealmURL: publishedURL });
    expect(await visibleContent(result.diskId)).toEqual(NEW);
    if (diskId && diskId !== result.diskId) expect(await visibleContent(diskId)).toBeUndefined();
    const registry = await db.pool.query('SELECT disk_id FROM realm_registry WHERE url = $1', [publishedURL]);
    expect(registry.rows).toEqual([{ disk_id: result.diskId }]);
    // Owned by the realm user of the disk id that survived, with exactly its permissions rows.
    expect((await db.pool.query('SELECT owner_username FROM realm_registry WHERE url = $1', [publishedURL])).rows).toEqual([
      { owner_username: `realm/_published_${result.diskId}` },
    ]);
    expect(await permissionUsernames(publishedURL)).toEqual(boxelPermissionUsernames(result.diskId));
    await expectNoLeftovers(result.diskId);
  });
});

describe.each(UNPUBLISH_STEPS)('unpublisher killed after step "%s"', (step) => {
  test('the realm is whole or gone, and recovery finishes the job', async () => {
    const sourceURL = `http://localhost:4201/uncrash/${step}-src/`;
    const publishedURL = `http://pub.localhost/uncrash/${step}/`;
    await createSourceRealm(db.pool, layout, sourceURL, OLD);
    const first = await publishRealm(plane, { sourceRealmURL: sourceURL, publishedRealmURL: publishedURL });
    await insertIndexEntries(db.pool, [{ url: `${publishedURL}index.json`, realmURL: publishedURL }]);

    await crashDuring('unpublish', step, sourceURL, publishedURL);
    expect([undefined, OLD]).toContainEqual(await visibleContent(first.diskId));

    await recoverPublishedRealm(plane, publishedURL);
    const registry = await db.pool.query('SELECT 1 FROM realm_registry WHERE url = $1', [publishedURL]);
    const committed = UNPUBLISH_STEPS.indexOf(step) >= UNPUBLISH_STEPS.indexOf('committed');
    expect(registry.rows.length).toBe(committed ? 0 : 1);
    // Permissions and index tombstones commit with the unpublish, or not at all.
    expect(await permissionUsernames(publishedURL)).toEqual(committed ? [] : boxelPermissionUsernames(first.diskId));
    expect((await db.pool.query('SELECT is_deleted FROM boxel_index WHERE realm_url = $1', [publishedURL])).rows).toEqual([{ is_deleted: committed ? true : null }]);
    expect(await visibleContent(first.diskId)).toEqual(committed ? undefined : OLD);
    await expectNoLeftovers(committed ? null : first.diskId);
    if (committed) expect(await fs.readdir(layout.versionsDir(first.diskId)).catch(() => [])).toEqual([]);

    const again = await unpublishRealm(plane, publishedURL);
    expect(again.unpublished).toBe(!committed);
    expect(await visibleContent(first.diskId)).toBeUndefined();
    await expectNoLeftovers(null);
  });
});

describe('what recovery logs', () => {
  test('a publisher killed between swap and COMMIT: recovery re-points the link and warns that it recovered', async () => {
    const { logger, lines } = capturingLogger();
    const sourceURL = 'http://localhost:4201/crash/logged-src/';
    const publishedURL = 'http://pub.localhost/crash/logged/';
    const sourceDir = await createSourceRealm(db.pool, layout, sourceURL, OLD);
    const first = await publishRealm(plane, { sourceRealmURL: sourceURL, publishedRealmURL: publishedURL });
    await writeFiles(sourceDir, NEW);
    await crashDuring('publish', 'swapped', sourceURL, publishedURL);

    const result = await recoverPublishedRealm({ ...plane, logger }, publishedURL);
    // The crash came after the staged copy was installed, so no staging is left; the uncommitted version is routine clean-up.
    expect(result.recovered).toEqual([expect.stringMatching(new RegExp(`^re-pointed the published link from version v\\d+-[0-9a-f]{8} to committed version ${first.version}$`))]);
    expect(result.cleanedUp).toEqual([expect.stringMatching(/^removed superseded or uncommitted versions v\d+-[0-9a-f]{8}$/)]);
    const warnings = lines.filter((l) => l.level === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ msg: 'recovered an interrupted publish', actions: result.recovered });
    expect(await visibleContent(first.diskId)).toEqual(OLD);
  });
});
