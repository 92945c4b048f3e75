/**
 * What a publish costs PostgreSQL, counted on a real database: the statements and transactions of a
 * first publish and a republish (bench-scale's per-object figures come mostly from these), and the
 * rows the folded statements must still leave exactly as the statements one by one did.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { withRealmLock } from '../../src/dataplane/db.js';
import { publishRealm, sweepAbandonedStaging, unpublishRealm, type DataPlane } from '../../src/dataplane/publish.js';
import { readKeptVersions } from '../../src/dataplane/published-versions.js';
import { ClaimConflictError, readRealmEpochRow, reservePublishedDiskId, reservePublishedDiskIdWithRow, UnsafeDatabaseValueError, URLTakenByRealmError } from '../../src/dataplane/realm-state.js';
import { setStagingLeaseLinger, STAGING_LOCK_CLASS } from '../../src/dataplane/staging-guard.js';
import { StagingSlots } from '../../src/dataplane/staging-slots.js';
import { STAGING_DIR_PREFIX } from '../../src/dataplane/staging.js';
import { countingPool, type CountingPool } from '../support/counting-pool.js';
import { createSourceRealm, dataPlane, eventually, openDataPlaneFixture, readTree, type DataPlaneFixture } from '../support/realms.js';

describe('statements per publish (real PostgreSQL, real files)', () => {
  let fixture: DataPlaneFixture;
  let counting: CountingPool;
  let plane: DataPlane;

  beforeAll(async () => {
    fixture = await openDataPlaneFixture();
    counting = countingPool(fixture.db.url);
    plane = dataPlane(counting.pool, fixture.layout);
  });
  afterAll(async () => {
    await counting.pool.end();
    await fixture.close();
  });

  /** A plane whose publish of `publishedURL` stops after staging (its copy there, its guard held) until released. */
  function stopAfterStaging(publishedURL: string): { holding: DataPlane; staged: Promise<void>; release: () => void } {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let reached!: () => void;
    const staged = new Promise<void>((resolve) => (reached = resolve));
    const holding: DataPlane = {
      ...plane,
      onStep: async (step, url) => {
        if (step === 'staged' && url === publishedURL) {
          reached();
          await held;
        }
      },
    };
    return { holding, staged, release };
  }

  test('a first publish: one locked transaction for the reservation and one for the publish, no clean-up transaction', async () => {
    const source = 'http://localhost:4201/count/first-src/';
    const published = 'http://pub.localhost/count/first/';
    await createSourceRealm(fixture.db.pool, fixture.layout, source, { 'index.json': '{}', 'a.gts': 'export {}' });
    counting.reset();
    await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
    // The checks 1, the epoch row as a hint 1, the reservation 1 (lock and the locked rows read and
    // written in one statement, one round trip) + COMMIT, the staging guard 2, the publish
    // transaction 5 + COMMIT (lock with the checks' rows and the locked epoch row; Boxel's three
    // tables; the swap; definitions (after the swap, Boxel's order); epoch with kept version, history policy and registry NOTIFY; wildcard
    // NOTIFY; no staging sweep with only our own copy there). Was 31 in 3 transactions, then 14.
    expect(counting.counts()).toEqual({ statements: 12, transactions: 2 });
    // Nothing left for a clean-up to find.
    for (const dir of [fixture.layout.stagingRoot, fixture.layout.linkScratchDir, fixture.layout.trashDir]) expect(await fs.readdir(dir).catch(() => [])).toEqual([]);
  });

  test('a republish: the publish transaction and the clean-up of the version it superseded', async () => {
    const source = 'http://localhost:4201/count/again-src/';
    const published = 'http://pub.localhost/count/again/';
    await createSourceRealm(fixture.db.pool, fixture.layout, source, { 'index.json': '{}' });
    await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
    await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
    counting.reset();
    const third = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
    // The checks 1, the epoch row 1, the staging guard 2 (the reservation exists), the publish
    // transaction 6 + COMMIT (as a first publish's, with the kept versions its recovery trims by),
    // the clean-up transaction 3 + COMMIT (lock with the locked rows in one round trip, kept
    // versions, the rows the history policy drops). Was 25 in 2 transactions, then 17.
    expect(counting.counts()).toEqual({ statements: 15, transactions: 2 });
    expect(await fs.readdir(fixture.layout.versionsDir(third.diskId))).toHaveLength(2);
  });

  test('a reservation passed to the publish saves its read of the epoch row; one for another URL is not used', async () => {
    const source = 'http://localhost:4201/count/reserved-src/';
    const published = 'http://pub.localhost/count/reserved/';
    await createSourceRealm(fixture.db.pool, fixture.layout, source, { 'index.json': '{}' });
    const claim = { claimant: 'ns/reserved/uid-1' };
    const other = await withRealmLock(counting.pool, 'http://pub.localhost/count/other/', (tx) => reservePublishedDiskIdWithRow(tx, 'http://pub.localhost/count/other/', claim));
    const reserved = await withRealmLock(counting.pool, published, (tx) => reservePublishedDiskIdWithRow(tx, published, claim));
    expect(reserved.row).toMatchObject({ realm_url: published, disk_id: reserved.diskId, claimed_by: claim.claimant, content_version: null, registry_disk_id: null });
    counting.reset();
    const first = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published, claim }, { reserved });
    // The checks 1, the staging guard 2, the publish transaction 5 + COMMIT.
    expect(counting.counts()).toEqual({ statements: 9, transactions: 1 });
    expect(first.diskId).toBe(reserved.diskId);
    // Another URL's reservation is ignored: the publish reads its own hint and reserves as without one.
    counting.reset();
    const again = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published, claim }, { reserved: other });
    expect(again.diskId).toBe(reserved.diskId);
    expect(counting.counts().statements).toBeGreaterThan(9);
  });

  test('a publish returns the epoch row it committed and (first publish) its kept version, as a read after it finds them', async () => {
    const source = 'http://localhost:4201/count/returned-src/';
    const published = 'http://pub.localhost/count/returned/';
    await createSourceRealm(fixture.db.pool, fixture.layout, source, { 'index.json': '{}' });
    const first = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published, publishedFor: 'uid/spec-1', revision: '7', history: { limit: 3 } });
    expect(first.state).toEqual(await readRealmEpochRow(fixture.db.pool, published));
    expect(first.keptVersions).toEqual(await readKeptVersions(fixture.db.pool, published, first.diskId));
    expect(first.keptVersions).toHaveLength(1);
    // A republish knows its row, but not which kept rows its clean-up trimmed: the caller reads those.
    const again = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published, history: { limit: 3 } });
    expect(again.state).toEqual(await readRealmEpochRow(fixture.db.pool, published));
    expect(again.keptVersions).toBeUndefined();
  });

  test("a live publish's staging copy is neither swept nor tried by another publish of the same process, which joins its staging lease", async () => {
    const sourceA = 'http://localhost:4201/count/live-a-src/';
    const sourceB = 'http://localhost:4201/count/live-b-src/';
    const publishedA = 'http://pub.localhost/count/live-a/';
    const publishedB = 'http://pub.localhost/count/live-b/';
    await createSourceRealm(fixture.db.pool, fixture.layout, sourceA, { 'index.json': '{"a":1}' });
    await createSourceRealm(fixture.db.pool, fixture.layout, sourceB, { 'index.json': '{"b":1}' });
    // A stops after staging, its copy in the staging root and its guard held.
    const { holding, staged: stagedA, release } = stopAfterStaging(publishedA);
    const publishingA = publishRealm(holding, { sourceRealmURL: sourceA, publishedRealmURL: publishedA });
    try {
      await stagedA;
      const copyOfA = await fs.readdir(fixture.layout.stagingRoot);
      expect(copyOfA).toHaveLength(1);
      counting.reset();
      await publishRealm(plane, { sourceRealmURL: sourceB, publishedRealmURL: publishedB });
      // No sweep statement for A's copy, which is left alone, and no staging lock or unlock: B's
      // copy is named by the token A's lease holds (12 statements, the guard's 2 among them, alone).
      expect(counting.counts()).toEqual({ statements: 10, transactions: 2 });
      expect(await fs.readdir(fixture.layout.stagingRoot)).toEqual(copyOfA);
    } finally {
      release();
    }
    const a = await publishingA;
    expect(await readTree(fixture.layout.publishedDir(a.diskId))).toMatchObject({ 'index.json': '{"a":1}' });
    expect(await fs.readdir(fixture.layout.stagingRoot)).toEqual([]);
  });

  test('the reservation reads and writes in one statement, and a refusal it throws leaves the rows as they were', async () => {
    const epochRow = async (url: string) => (await fixture.db.pool.query('SELECT disk_id, claimed_by FROM realm_operator.realm_epochs WHERE realm_url = $1', [url])).rows[0];
    const reserve = (url: string, claim: { claimant?: string; takeOverFrom?: string }) => withRealmLock(counting.pool, url, (tx) => reservePublishedDiskIdWithRow(tx, url, claim));
    const url = 'http://pub.localhost/count/reserve-rules/';
    counting.reset();
    const first = await reserve(url, { claimant: 'ns/a/uid-a' });
    expect(counting.counts()).toEqual({ statements: 3, transactions: 1 });
    expect(await epochRow(url)).toEqual({ disk_id: first.diskId, claimed_by: 'ns/a/uid-a' });
    // Again by the same claimant: the same disk id, nothing else changes.
    expect((await reserve(url, { claimant: 'ns/a/uid-a' })).diskId).toBe(first.diskId);
    // Another claimant: refused, the claim kept.
    await expect(reserve(url, { claimant: 'ns/b/uid-b' })).rejects.toBeInstanceOf(ClaimConflictError);
    expect(await epochRow(url)).toEqual({ disk_id: first.diskId, claimed_by: 'ns/a/uid-a' });
    // Taking over from the known-gone claimant: the same disk id, the new claim.
    expect((await reserve(url, { claimant: 'ns/b/uid-b', takeOverFrom: 'ns/a/uid-a' })).diskId).toBe(first.diskId);
    expect(await epochRow(url)).toEqual({ disk_id: first.diskId, claimed_by: 'ns/b/uid-b' });

    // A URL registered as a source realm: refused, no epoch row written.
    const sourceURL = 'http://localhost:4201/count/reserve-source/';
    await createSourceRealm(fixture.db.pool, fixture.layout, sourceURL, { 'index.json': '{}' });
    await expect(reserve(sourceURL, { claimant: 'ns/a/uid-a' })).rejects.toBeInstanceOf(URLTakenByRealmError);
    expect(await epochRow(sourceURL)).toBeUndefined();

    // A published registry row (Boxel's) with an unsafe disk id: refused, no epoch row written.
    const boxels = 'http://pub.localhost/count/reserve-unsafe/';
    await fixture.db.pool.query(`INSERT INTO realm_registry (url, kind, disk_id, owner_username, source_url) VALUES ($1, 'published', '../escape', 'o', $2)`, [boxels, sourceURL]);
    await expect(reserve(boxels, { claimant: 'ns/a/uid-a' })).rejects.toBeInstanceOf(UnsafeDatabaseValueError);
    expect(await epochRow(boxels)).toBeUndefined();
    // With a safe one: Boxel's disk id is the one reserved.
    await fixture.db.pool.query(`UPDATE realm_registry SET disk_id = 'boxels-disk-id' WHERE url = $1`, [boxels]);
    const adopted = await reserve(boxels, { claimant: 'ns/a/uid-a' });
    expect(adopted).toMatchObject({ diskId: 'boxels-disk-id', row: { disk_id: 'boxels-disk-id', registry_disk_id: 'boxels-disk-id', claimed_by: 'ns/a/uid-a', content_version: null } });
  });

  test('with staging slots, a publish waits for a free one before copying; the copy done, the slot goes to the next', async () => {
    const sources = ['a', 'b'].map((n) => `http://localhost:4201/count/slots-${n}-src/`);
    const targets = ['a', 'b'].map((n) => `http://pub.localhost/count/slots-${n}/`);
    for (const source of sources) await createSourceRealm(fixture.db.pool, fixture.layout, source, { 'index.json': '{}' });
    const slots = new StagingSlots(1);
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const copying: string[] = [];
    const limited: DataPlane = {
      ...plane,
      stagingSlots: slots,
      // A holds its slot in the middle of its copy.
      onStagingEntry: async (entry) => {
        const which = entry.sourcePath.includes('slots-a-src') ? 'a' : 'b';
        if (!copying.includes(which)) copying.push(which);
        if (which === 'a') await held;
      },
    };
    const a = publishRealm(limited, { sourceRealmURL: sources[0]!, publishedRealmURL: targets[0]! });
    await eventually(() => copying.length === 1, 10_000, () => 'A copying');
    const b = publishRealm(limited, { sourceRealmURL: sources[1]!, publishedRealmURL: targets[1]! });
    await eventually(() => slots.usage.waiting === 1, 10_000, () => 'B waiting for the slot');
    // B has not started copying (nor staged anything) while A holds the only slot.
    expect(copying).toEqual(['a']);
    expect(await fs.readdir(fixture.layout.stagingRoot)).toHaveLength(1);
    release();
    await Promise.all([a, b]);
    expect(copying).toEqual(['a', 'b']);
    expect(slots.usage).toEqual({ busy: 0, waiting: 0 });
  });

  test('the sweep takes a listed copy gone by the time its lock was free (its publish finished) for not abandoned, and does not fail', async () => {
    // Listed, but renamed into place (or removed) by its publisher before the sweep's try of its lock: no directory left.
    const vanished = `${STAGING_DIR_PREFIX}987654321`;
    await expect(withRealmLock(counting.pool, 'http://pub.localhost/count/sweep-race/', (tx) => sweepAbandonedStaging(tx, fixture.layout, [vanished]))).resolves.toEqual([]);
    // One that is there and abandoned is still removed.
    const abandoned = `${STAGING_DIR_PREFIX}987654322`;
    await fs.mkdir(path.join(fixture.layout.stagingRoot, abandoned), { recursive: true });
    await expect(withRealmLock(counting.pool, 'http://pub.localhost/count/sweep-race/', (tx) => sweepAbandonedStaging(tx, fixture.layout, [abandoned]))).resolves.toEqual([abandoned]);
    expect(await fs.readdir(fixture.layout.stagingRoot)).toEqual([]);
  });

  test("a copy left under a live staging lease is not taken for abandoned until the lease's last publish ends", async () => {
    const sources = ['held', 'next', 'after'].map((n) => `http://localhost:4201/count/lease-${n}-src/`);
    const targets = ['held', 'next', 'after'].map((n) => `http://pub.localhost/count/lease-${n}/`);
    for (const source of sources) await createSourceRealm(fixture.db.pool, fixture.layout, source, { 'index.json': '{}' });
    const { holding, staged: stagedHeld, release } = stopAfterStaging(targets[0]!);
    const publishingHeld = publishRealm(holding, { sourceRealmURL: sources[0]!, publishedRealmURL: targets[0]! });
    let leftover: string;
    try {
      await stagedHeld;
      const [copy] = await fs.readdir(fixture.layout.stagingRoot);
      // What a publish under the same lease whose removal failed leaves: a copy named by the lease's token.
      leftover = copy!.replace(/-\d+$/, '-999999');
      await fs.mkdir(path.join(fixture.layout.stagingRoot, leftover));
      await publishRealm(plane, { sourceRealmURL: sources[1]!, publishedRealmURL: targets[1]! });
      // The lease is held (by this process, on another connection): the sweep cannot take its lock.
      expect((await fs.readdir(fixture.layout.stagingRoot)).sort()).toEqual([copy, leftover].sort());
    } finally {
      release();
    }
    await publishingHeld;
    // The lease ended with its last publish and was unlocked: the next publish's sweep takes the copy.
    expect(await fs.readdir(fixture.layout.stagingRoot)).toEqual([leftover]);
    await publishRealm(plane, { sourceRealmURL: sources[2]!, publishedRealmURL: targets[2]! });
    expect(await fs.readdir(fixture.layout.stagingRoot)).toEqual([]);
  });

  test('with a linger, a publish right after another joins its staging lease; the lease is unlocked once the linger is over', async () => {
    const lingering = countingPool(fixture.db.url);
    setStagingLeaseLinger(lingering.pool, 5_000);
    const lingeringPlane = dataPlane(lingering.pool, fixture.layout);
    const stagingLocks = async () =>
      Number((await fixture.db.pool.query(`SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::int::oid AND objsubid = 2`, [STAGING_LOCK_CLASS])).rows[0].n);
    try {
      const sources = ['one', 'two'].map((n) => `http://localhost:4201/count/linger-${n}-src/`);
      const targets = ['one', 'two'].map((n) => `http://pub.localhost/count/linger-${n}/`);
      for (const source of sources) await createSourceRealm(fixture.db.pool, fixture.layout, source, { 'index.json': '{}' });
      lingering.reset();
      await publishRealm(lingeringPlane, { sourceRealmURL: sources[0]!, publishedRealmURL: targets[0]! });
      // The staging lock, and no unlock yet: the lease lingers, still held.
      expect(lingering.counts()).toEqual({ statements: 11, transactions: 2 });
      expect(await stagingLocks()).toBe(1);
      lingering.reset();
      await publishRealm(lingeringPlane, { sourceRealmURL: sources[1]!, publishedRealmURL: targets[1]! });
      // Joined the lingering lease: neither lock nor unlock.
      expect(lingering.counts()).toEqual({ statements: 10, transactions: 2 });
      // The linger over with no publish under the lease: unlocked.
      await eventually(async () => (await stagingLocks()) === 0, 30_000, () => 'the lingering staging lease to be unlocked');
      expect(lingering.texts().filter((text) => text.startsWith('SELECT pg_advisory_unlock'))).toHaveLength(1);
    } finally {
      await lingering.pool.end();
    }
  });

  test('a publish still removes staging abandoned by a publisher that died', async () => {
    const source = 'http://localhost:4201/count/abandoned-src/';
    const published = 'http://pub.localhost/count/abandoned/';
    await createSourceRealm(fixture.db.pool, fixture.layout, source, { 'index.json': '{}' });
    // A copy whose token no live publisher holds: its owner is gone.
    const abandoned = path.join(fixture.layout.stagingRoot, `${STAGING_DIR_PREFIX}123456789`);
    await fs.mkdir(path.join(abandoned, 'cards'), { recursive: true });
    await fs.writeFile(path.join(abandoned, 'cards', 'a.json'), '{}');
    await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
    expect(await fs.readdir(fixture.layout.stagingRoot)).toEqual([]);
    expect(await fs.readdir(fixture.layout.trashDir).catch(() => [])).toEqual([]);
  });

  test('a first publish at a URL whose earlier publication left kept rows drops them, keeping only its own version', async () => {
    const source = 'http://localhost:4201/count/stale-src/';
    const published = 'http://pub.localhost/count/stale/';
    await createSourceRealm(fixture.db.pool, fixture.layout, source, { 'index.json': '{}' });
    // An earlier publication's kept row whose clean-up never ran, under the disk id the next publish reuses.
    const diskId = await withRealmLock(fixture.db.pool, published, (tx) => reservePublishedDiskId(tx, published));
    await fixture.db.pool.query(
      `INSERT INTO realm_operator.published_versions (realm_url, version, disk_id, epoch, content_digest, file_count, total_bytes)
       VALUES ($1, 'v-19700101T000000000Z-aaaaaaaa', $2, 1, 'sha256:0', 1, 1)`,
      [published, diskId],
    );
    const first = await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published });
    const { rows } = await fixture.db.pool.query('SELECT version FROM realm_operator.published_versions WHERE realm_url = $1', [published]);
    expect(rows).toEqual([{ version: first.version }]);
    // The history policy recorded with the epoch, in the same statement.
    await publishRealm(plane, { sourceRealmURL: source, publishedRealmURL: published, history: { limit: 4, maxBytes: 1000 } });
    const policy = await fixture.db.pool.query('SELECT history_limit, history_max_bytes FROM realm_operator.realm_epochs WHERE realm_url = $1', [published]);
    expect(policy.rows).toEqual([{ history_limit: 4, history_max_bytes: '1000' }]);
    await unpublishRealm(plane, published);
    const after = await fixture.db.pool.query('SELECT count(*)::int AS n FROM realm_operator.published_versions WHERE realm_url = $1', [published]);
    expect(after.rows[0].n).toBe(0);
  });
});
