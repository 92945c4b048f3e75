/**
 * Publishing and unpublishing a realm: the sequence the controller runs for a PublishedRealm.
 *
 * Guarantees:
 * - Files are staged outside the realm lock; the lock is held only for a rename, a symlink swap
 *   and the database writes, so its hold time does not grow with realm size.
 * - Under the lock, in ONE transaction: registry upsert and `realm_metadata`, the swap, then (Boxel's
 *   order) `clearRealmDefinitions`, the epoch bump and the NOTIFYs. Peers are told at COMMIT, after the new files are in place.
 * - Readers of `_published/<disk_id>/` see the old or the new content, never a gap (symlink swap).
 * - A crash at any step leaves old or new content whole. The next publish, unpublish or
 *   {@link recoverPublishedRealm} makes the files agree with what the database committed and
 *   removes leftovers.
 *
 * Not included: the reindex enqueue ({@link enqueueReindex}), which the controller runs once
 * replicas have acknowledged the new epoch.
 *
 * What is written matches Boxel's publish and unpublish handlers (cardstack/boxel
 * packages/realm-server/handlers/handle-publish-realm.ts and handle-unpublish-realm.ts): a first
 * publish records the realm's own user `realm/_published_<disk_id>` as owner and writes the three
 * permissions rows; a republish (also over a realm Boxel published) keeps owner and permissions;
 * the published copy's `realm.json` gets the default-index opt-in; unpublish deletes the registry
 * row and permissions and marks the realm's index entries deleted.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import type { Logger } from 'pino';
import { assertRealmURL, findOverlappingRealmURLs } from '../wire/realm-url.js';
import { authorizePublish, authorizeUnpublish, type PublishAuthorization } from './authorization.js';
import { withRealmLock, withRealmLockAndFirst, withRealmLockTimed, type RealmLockOptions } from './db.js';
import { clearRealmDefinitions, notifyAllFileChanges, notifyRealmRegistry } from './invalidation.js';
import { matrixServerNameOf, matrixUserId, publishedRealmUsername } from './realm-identity.js';
import { adoptsDefaultRealmIndex, applyRealmIndexOptIn, digestWithOptIn } from './realm-json.js';
import type { RealmsLayout } from './layout.js';
import {
  installStagedVersion,
  listOperatorDir,
  type PublishedLinkState,
  readVersionsDir,
  moveToTrash,
  newVersionName,
  readPublishedLink,
  emptyTrash,
  removeManifestsExcept,
  removePublishedLink,
  swapPublishedLink,
  trashVersionsExcept,
  versionExists,
} from './published-content.js';
import type { Queryable } from './db.js';
import {
  assertClaim,
  assertNotSuperseded,
  bumpEpoch,
  type ClaimOptions,
  type PublishFence,
  type PublishTargetRows,
  PublishError,
  PublishNotAuthorizedError,
  parsePublishTargetRows,
  publishTargetRowsStatement,
  readPublishTargetRows,
  lockedEpochRowAndRegistryStatement,
  parseLockedEpochRowAndRegistryRow,
  readLockedEpochRowAndRegistryRow,
  readRealmEpochRowAndRegistryDiskId,
  readRealmEpochRow,
  type DiskIdReservation,
  readRegistryRow,
  readSourceOwnerUserId,
  RealmURLOverlapError,
  URLTakenByRealmError,
  recordPublishedEpoch,
  recordUnpublishedEpoch,
  type RealmEpochRow,
  type RegistryRow,
  reservePublishedDiskIdLocked,
  safePublishedDiskId,
  safeSourceDiskId,
  safeVersionName,
  tombstoneRealmIndex,
  upsertPublishedRegistryRow,
} from './realm-state.js';
import { publishedDiskIdProblem } from './safe-paths.js';
import { holdStagingGuard, removeAbandonedStaging, type StagingGuard } from './staging-guard.js';
import type { StagingSlots } from './staging-slots.js';
import {
  forgetKeptVersions,
  type HistoryPolicy,
  type KeptVersion,
  readKeptVersions,
  recordedHistoryPolicy,
  selectKeptVersions,
  VersionNotKeptError,
} from './published-versions.js';
import { readManifestFile, writeManifestFile } from './staging-manifest.js';
import {
  measureSourceRealm,
  type RealmSizeLimits,
  removeTree,
  stageRealmFiles,
  STAGING_DIR_PREFIX,
  type PreviousVersion,
  type SkippedEntry,
  type StageOptions,
} from './staging.js';

/**
 * The staging directories (names under the staging root) whose publish runs in this process and
 * holds its staging guard: added once the guard is held, removed before it is released. The sweep
 * of abandoned staging skips them without a round trip (with many publishes at once, every publish
 * would otherwise try every other one's lock).
 */
const liveStagingNames = new Set<string>();

/** Named points in the sequence, for logs and for crash-injection tests. */
export type PublishStep = 'staged' | 'reserved' | 'locked' | 'installed' | 'swapped' | 'recorded' | 'committed' | 'cleaned';
export type UnpublishStep = 'locked' | 'unlinked' | 'committed' | 'cleaned';

export interface DataPlane {
  pool: pg.Pool;
  layout: RealmsLayout;
  logger: Logger;
  /** Make staged copies durable before they are swapped in (default true): one syncfs of the staging volume, not an fsync per file. */
  durable?: boolean;
  lock?: RealmLockOptions;
  /** Per-realm size limits (the operator's `--max-realm-files`, `--max-realm-bytes`); unset means unlimited. */
  limits?: RealmSizeLimits;
  /** Copy regular files with more than one hard link (default false: they are skipped, as a hard link can bring in a file from outside the realm). */
  copyHardLinkedFiles?: boolean;
  /** Called as each step completes; tests use it to inject crashes. */
  onStep?: (step: PublishStep | UnpublishStep, realmURL: string) => void | Promise<void>;
  /**
   * Limits how many publishes stage (copy files) at once, shared by every publish on this plane
   * (the operator's `--max-concurrent-stagings`); unset: no limit beyond the callers'.
   */
  stagingSlots?: StagingSlots;
  /** Called before staging examines each source entry; tests use it to change the tree mid-copy. */
  onStagingEntry?: StageOptions['onEntry'];
  /**
   * Hard-link files unchanged since the version published now instead of copying them (default
   * true); see staging-manifest.ts for what counts as unchanged.
   */
  incremental?: boolean;
  /** See `DEFAULT_RACY_MARGIN_MS` in staging-manifest.ts; tests lower it to avoid waiting. */
  racyMarginMs?: number;
  /**
   * The Matrix homeserver's server name, for the realm user's id `@realm/_published_<id>:<server>`
   * in the permissions rows. Unset: the publishing user's server name is used (Boxel's realm user
   * is registered on the same homeserver as its users).
   */
  matrixServerName?: string;
  /**
   * Boxel's authorization rules (publisher holds realm-owner on the source, source publishable,
   * published-realm domain, own-space path), checked before copying and again under the lock, and
   * realm-owner again on unpublish. Unset: none are checked (the operator sets it unless started
   * with `--authorize-publishers=false`).
   */
  authorization?: PublishAuthorization;
}

export interface PublishRequest {
  sourceRealmURL: string;
  publishedRealmURL: string;
  /**
   * The Matrix user id (`@localpart:server`) of the publishing user, granted read + realm-owner on a
   * first publish. Unset: the source realm's owner (its realm-owner permission row `@<owner>:…`,
   * else the bare `realm_registry.owner_username`).
   */
  publisher?: string;
  /** Who is publishing; see {@link ClaimOptions}. */
  claim?: ClaimOptions;
  /** Recorded with the publish in `realm_epochs.published_for` (the controller uses `<uid>/spec-<digest>`). */
  publishedFor?: string;
  /**
   * The object and generation this publish is for (the controller: its claimant and
   * `metadata.generation`): refused with {@link SupersededPublishError} when the realm already
   * holds a publish of the same object at this generation or a newer one. Unset: not fenced.
   */
  fence?: PublishFence;
  /** How many published versions to keep for rollback (published-versions.ts); unset: only the live one. */
  history?: HistoryPolicy;
  /** Recorded with the kept version (the controller: spec.revision), for listings. */
  revision?: string;
}

export interface PublishOptions {
  /**
   * Aborts the publish (the controller's reconcile signal: leadership lost, or shutdown gave up
   * waiting). Checked at each step boundary up to the swap, and last under the lock just before
   * the swap: from the swap to COMMIT the publish goes on, as the fence check under the same lock
   * already made committing safe, and stopping there would leave readers on uncommitted content
   * until the next repair. Throws the signal's reason.
   */
  signal?: AbortSignal;
  /**
   * What {@link checkPublishable} returned for this same request, when the caller ran it just
   * before (the reconciler does, before it claims the URL): the checks are then not repeated
   * before copying. The database checks (authorization included) run again under the lock either
   * way, and staging enforces the size limits itself.
   */
  checked?: PublishableSource;
  /**
   * What {@link reservePublishedDiskIdWithRow} returned for this URL, when the caller reserved the
   * disk id just before (the reconciler does, when it claims the URL): its row is then the hint
   * read before copying, instead of a read of its own. Everything in it is checked again under the lock.
   */
  reserved?: DiskIdReservation;
  /**
   * Return right after COMMIT, leaving the post-commit work (the staging manifest, the superseded
   * version's removal) to {@link PublishResult.cleanUp}, which the caller must await once (the
   * reconciler does, after writing Ready): nothing it does changes what readers see. Default
   * false: done before returning.
   */
  deferCleanUp?: boolean;
}

export interface PublishResult {
  publishedRealmURL: string;
  diskId: string;
  version: string;
  epoch: number;
  /** Milliseconds since the epoch (`realm_registry.last_published_at`). */
  publishedAt: number;
  fileCount: number;
  totalBytes: number;
  digest: string;
  skipped: SkippedEntry[];
  /** Regular files hard-linked from the previous version, and copied. */
  linkedFiles: number;
  copiedFiles: number;
  timing: { stageMs: number; stageSyncMs: number; lockWaitMs: number; lockHeldMs: number; totalMs: number };
  /**
   * The epoch row as the publish committed it, when nothing after the COMMIT changed it (the
   * post-commit clean-up repaired nothing): the caller need not read it again. Undefined: read it.
   */
  state?: RealmEpochRow;
  /** The realm's kept versions, when the publish knows them exactly (a first publish: only its own). Undefined: read them. */
  keptVersions?: KeptVersion[];
  /**
   * With {@link PublishOptions.deferCleanUp}: the post-commit work, to be awaited once (later calls
   * return the same promise). Its failures are logged, not thrown (only `onStep('cleaned')` can
   * reject it); resolves false when the clean-up failed or had to repair (a new epoch): the epoch
   * row in {@link state} may then be stale, so reconcile again.
   */
  cleanUp?: () => Promise<boolean>;
}

/** What {@link checkPublishable} found: the request's URLs, checked, and the source realm's real directory. */
export interface PublishableSource {
  sourceRealmURL: string;
  publishedRealmURL: string;
  /** The source realm's directory, `realpath`-resolved and inside the realms root. */
  directory: string;
  /** The publishing user for a first publish's permissions rows: the request's, else the source realm's owner. */
  publisher: string;
}

/**
 * Every check that can refuse a publish, run before anything is copied so a refused publish costs
 * no copy: canonical URLs; the source realm registered as `source`, its directory inside the
 * realms root after resolving symlinks; the published URL not registered as another kind of realm,
 * not claimed by someone else, and (when not yet registered) not overlapping another realm's URL;
 * the size limit (unless `rows` show the caller's claimant already published there: staging
 * enforces it then); and, with `plane.authorization`, Boxel's authorization rules. Throws
 * {@link PublishError} (or a subclass: {@link ClaimConflictError}, {@link RealmURLOverlapError},
 * {@link RealmTooLargeError}, {@link UnsafeDatabaseValueError}, {@link PublishNotAuthorizedError}).
 * {@link publishRealm} runs it first and repeats the database checks (authorization included) under the realm lock.
 */
export async function checkPublishable(
  plane: DataPlane,
  request: PublishRequest,
  /**
   * `readPublishTargetRows(pool, sourceRealmURL, publishedRealmURL, publisher)` for this request,
   * when the caller has just read them (the reconciler's first read of a reconcile): checked
   * instead of a read of their own. The locked re-check reads its own either way.
   */
  rows?: PublishTargetRows,
): Promise<PublishableSource> {
  const publishedURL = assertRealmURL(request.publishedRealmURL, 'publishedRealmURL');
  const sourceURL = assertRealmURL(request.sourceRealmURL, 'sourceRealmURL');
  if (publishedURL === sourceURL) throw new PublishError('publishedRealmURL must differ from sourceRealmURL');
  // Rows read for other spellings of the URLs than the canonical ones are not used.
  const target = rows && sourceURL === request.sourceRealmURL && publishedURL === request.publishedRealmURL
    ? assertPublishTarget(rows, sourceURL, publishedURL, request.claim ?? {})
    : await checkPublishTarget(plane.pool, sourceURL, publishedURL, request.claim ?? {}, request.publisher);
  const { source } = target;
  const directory = await resolveSourceDirectory(plane, sourceURL, source);
  await plane.layout.assertNoSymlinkedOperatorDirs();
  const { maxFiles, maxBytes } = plane.limits ?? {};
  // The size pre-walk decides only *when* an oversized realm is refused: before the URL is claimed
  // (an object refused never holds a claim, and loses the finalizer, so deleting it is instant), rather than
  // by staging, which enforces the same limits on the same counts as it copies. A republish by the
  // object that already holds the claim and published there has nothing of that to protect, so it
  // skips the walk (a full lstat walk of the source: ~100 ms at 10,000 files) and lets staging refuse.
  const republishByClaimant = !!target.epochRow?.content_version && request.claim?.claimant !== undefined && target.claimedBy === request.claim.claimant;
  if ((maxFiles !== undefined || maxBytes !== undefined) && !republishByClaimant) {
    await measureSourceRealm(directory, { limits: plane.limits, copyHardLinkedFiles: plane.copyHardLinkedFiles, realmName: sourceURL });
  }
  const publisher = resolvePublisher(sourceURL, source, target.sourceOwnerUserId, request.publisher);
  if (plane.authorization) await authorizePublish(plane.pool, plane.authorization, { sourceRealmURL: sourceURL, publishedRealmURL: publishedURL, publisher }, target.authorization);
  return { sourceRealmURL: sourceURL, publishedRealmURL: publishedURL, directory, publisher };
}

/** The publishing user: the request's, else the source realm owner's Matrix id (`ownerUserId`), else its bare username. */
function resolvePublisher(sourceURL: string, source: RegistryRow, ownerUserId: string | undefined, requested: string | undefined): string {
  if (requested !== undefined) {
    if (!matrixServerNameOf(requested)) {
      throw new PublishError(`publisher ${JSON.stringify(requested)} is not a Matrix user id; write it as @localpart:server (e.g. @alice:boxel.ai)`);
    }
    return requested;
  }
  const owner = source.owner_username;
  if (!owner) {
    throw new PublishError(`source realm ${sourceURL} has no owner_username in realm_registry; set the publisher (@localpart:server) or fix the registry row`);
  }
  return ownerUserId ?? owner;
}

/** Stages, swaps and commits a publish of `sourceRealmURL` at `publishedRealmURL`. */
export async function publishRealm(plane: DataPlane, request: PublishRequest, { signal, checked, reserved, deferCleanUp = false }: PublishOptions = {}): Promise<PublishResult> {
  const started = performance.now();
  signal?.throwIfAborted();
  const source = checked && isCheckedFor(checked, request) ? checked : await checkPublishable(plane, request);
  const { sourceRealmURL: sourceURL, publishedRealmURL: publishedURL, directory, publisher } = source;
  // Read once before copying, as hints (all checked again under the lock): the fence, the previous
  // version to link from, and whether the disk id is already reserved.
  const before = reserved?.url === publishedURL ? reserved.row : await readRealmEpochRowAndRegistryDiskId(plane.pool, publishedURL);
  // A newer generation already published makes the copy pointless.
  assertNotSuperseded(publishedURL, before, request.fence);
  const step = async (name: PublishStep) => {
    if (name === 'staged' || name === 'reserved' || name === 'locked' || name === 'installed') signal?.throwIfAborted();
    await plane.onStep?.(name, publishedURL);
  };

  // A staging slot first (when the plane limits copies), and only then the guard's connection.
  const releaseSlot = plane.stagingSlots ? await plane.stagingSlots.acquire(signal) : () => undefined;
  let guard: StagingGuard;
  try {
    guard = await holdStagingGuard(plane.pool);
  } catch (error) {
    releaseSlot();
    throw error;
  }
  const stagingName = guard.name;
  liveStagingNames.add(stagingName);
  // Set once the staged copy was renamed into the versions directory: nothing is left to remove.
  let stagedDirMoved = false;
  try {
    const staged = await stageRealmFiles(directory, plane.layout.stagingRoot, stagingName.slice(STAGING_DIR_PREFIX.length), {
      logger: plane.logger,
      durable: plane.durable,
      limits: plane.limits,
      copyHardLinkedFiles: plane.copyHardLinkedFiles,
      realmName: sourceURL,
      onEntry: plane.onStagingEntry,
      previous: plane.incremental === false ? undefined : await readPreviousVersion(plane, publishedURL, before),
      racyMarginMs: plane.racyMarginMs,
    });
    // Into the staged copy only, before it is swapped in: the source's realm.json is never touched.
    const optIn = mayNeedIndexOptIn(staged.indexJson) ? await applyRealmIndexOptIn(staged.dir, { durable: plane.durable }) : undefined;
    // The rewritten realm.json is not the source's bytes: never link it into the next version.
    if (optIn) staged.manifest.delete('realm.json');
    const digest = digestWithOptIn(staged.digest, optIn);
    const totalBytes = staged.totalBytes + (optIn?.byteDelta ?? 0);
    // The copy is done: the rest (the locked section, acknowledgements) does not count against the copies at once.
    releaseSlot();
    const stageMs = performance.now() - started;
    await step('staged');

    // The disk id must be recorded (committed) before any file is moved; a reservation already
    // committed for this claimant (the reconciler claims the URL just before) is used as it is,
    // and checked under the lock below.
    const reserved = reservedDiskId(before, request.claim);
    const diskId = reserved ?? (await reservePublishedDiskIdLocked(plane.pool, publishedURL, request.claim, plane.lock)).diskId;
    await step('reserved');

    const version = newVersionName();
    const publishedAt = Date.now();
    // Installed but never linked when the transaction ends without a swap: removed at once, as no
    // reader can have seen it (left behind, recovery would take it for one that was linked).
    let installedUnlinked = false;
    // Repairs made before the locked transaction (afterLinkRepairs) trash what they remove too.
    const repairs: Repairs = { recovered: [], cleanedUp: [] };
    const { result, timing } = await afterLinkRepairs(plane, publishedURL, () => withRealmLockAndFirst(
      plane.pool,
      publishedURL,
      // The checks' rows and the locked epoch row recovery starts from, in one statement sent with the lock.
      publishTargetRowsStatement(sourceURL, publishedURL, publisher, { epochRow: 'lock' }),
      async (tx, first) => {
        await step('locked');
        const targetRows = parsePublishTargetRows(first.rows[0]!, { epochRow: 'lock' });
        const committed = await reconcileFilesWithDatabase(plane, tx, publishedURL, 'refuse-fixes', undefined, undefined, {
          publishing: true,
          locked: { epochRow: targetRows.epochRow, registry: targetRows.published },
          ownStaging: stagingName,
        });
        // A reservation taken from before the copy must still be the committed one (read under the lock).
        if (reserved !== undefined && committed.diskId !== reserved) {
          throw new Error(`the disk id reserved for ${publishedURL} changed while staging (now ${committed.diskId ?? 'none'}, not ${reserved}); the publish is retried`);
        }
        // The checks again: the registry and claims may have changed while we staged. On the rows
        // read before recovery, which (publishing) writes none of the rows they come from.
        const target = assertPublishTarget(targetRows, sourceURL, publishedURL, request.claim ?? {});
        if (plane.authorization) await authorizePublish(tx, plane.authorization, { sourceRealmURL: sourceURL, publishedRealmURL: publishedURL, publisher }, target.authorization);
        // A registry row already there (ours, or Boxel's own publish) keeps its owner and permissions.
        const isFirstPublish = !target.published;
        const realmUsername = publishedRealmUsername(diskId);
        let permissions: { realmUserId: string; publisherId: string } | undefined;
        if (isFirstPublish) {
          const serverName = plane.matrixServerName ?? matrixServerNameOf(publisher);
          // Without a server name the realm user's id cannot be formed; its bare username is the
          // closest stand-in (logged, so the row can be corrected once Matrix is configured).
          const realmUserId = serverName ? matrixUserId(realmUsername, serverName) : realmUsername;
          if (!serverName) plane.logger.warn({ realm: publishedURL, realmUsername, publisher }, 'no Matrix server name known: realm user permission row written with the bare username');
          permissions = { realmUserId, publisherId: publisher };
        }
        // The registry row, realm_metadata and (first publish) the permissions rows: one statement,
        // before the swap, so nothing that can refuse runs between the swap and COMMIT.
        await upsertPublishedRegistryRow(tx, { url: publishedURL, diskId, sourceURL, ownerUsername: realmUsername, publishedAtMs: publishedAt }, permissions);
        // The fence, under the lock and on the locked row: nobody can commit between this and our COMMIT.
        assertNotSuperseded(publishedURL, committed.epochRow, request.fence);
        signal?.throwIfAborted();
        guard.assertHeld();
        // Committed content lives in versions/<diskId>/, which recovery just listed.
        await installStagedVersion(plane.layout, staged.dir, diskId, version, { versionsDirExists: committed.committedVersion !== null });
        stagedDirMoved = true;
        installedUnlinked = true;
        await step('installed');
        // The last abort check: past the swap the publish commits (see PublishOptions.signal).
        signal?.throwIfAborted();
        installedUnlinked = false;
        const { adopted } = await swapPublishedLink(plane.layout, diskId, version, plane.logger, committed.link);
        await step('swapped');
        // Boxel's order: the definitions are cleared after the swap. In READ COMMITTED the DELETE
        // removes the rows committed before it starts, so a row a replica computed from the old
        // files and committed before the swap is gone; sent any earlier, one committed between the
        // DELETE and the swap would survive the publish.
        await clearRealmDefinitions(tx, publishedURL);
        // The epoch, the kept version, the history policy and the registry NOTIFY: one statement.
        const recorded = await recordPublishedEpoch(
          tx,
          publishedURL,
          {
            diskId,
            version,
            previousVersion: committed.committedVersion,
            digest,
            fileCount: staged.fileCount,
            totalBytes,
            publishedFor: request.publishedFor ?? null,
            ...(request.fence ? { fence: request.fence } : {}),
          },
          { keep: { revision: request.revision ?? null, forgetOthers: committed.clearedUncommitted }, history: { policy: request.history }, notifyRegistryUpsert: true },
        );
        await notifyAllFileChanges(tx, publishedURL);
        await step('recorded');
        const superseded = [committed.previousVersion, adopted].filter((v): v is string => !!v);
        // Nothing for the post-commit clean-up to do (see below) when recovery under this lock found
        // nothing of ours committed and removed every version, manifest and (with this statement's
        // forgetOthers) kept row, and the swap replaced no directory: the realm now holds exactly
        // this version, its kept row and (written next) its manifest, and the history policy always
        // keeps the live version.
        // Recovery's renames into the trash are all reported (abandoned staging, versions).
        const trashedAny = committed.recovered.length > 0 || committed.cleanedUp.length > 0;
        return { epoch: Number(recorded.row.epoch), recorded, previousVersion: committed.committedVersion, superseded, nothingToClean: committed.clearedUncommitted && superseded.length === 0, trashedAny };
      },
      plane.lock,
    ), repairs).catch(async (error: unknown) => {
      if (installedUnlinked) await moveToTrash(plane.layout, plane.layout.versionDir(diskId, version)).catch(() => undefined);
      throw error;
    });
    await step('committed');
    // After COMMIT nothing below changes what readers see: the manifest only speeds up the next
    // publish, and the clean-up removes versions committed once that are neither live nor
    // previous (readers that resolved the link before the swap are on `previous`, which is kept).
    // So with `deferCleanUp` it runs after the caller has reported the publish (Ready).
    const cleanUp = async (): Promise<boolean> => {
      // A failure is logged, never the publish's. Written while the clean-up runs (its
      // serialisation overlaps the clean-up's waits): the clean-up keeps the live version's
      // manifest and the scratch file it is written through.
      const manifestWritten = writeManifestFile(plane.layout.manifestPath(diskId, version), staged.manifest).catch((error: Error) =>
        plane.logger.warn({ err: error, realm: publishedURL, version }, 'could not record the staging manifest; the next publish copies every file'),
      );
      // The version that was `previous` before this publish (and a directory Boxel published, adopted by the swap) was committed once: removing it needs no invalidation.
      // A first publish has nothing to clean up but the trash its recovery filled (a locked transaction
      // saved), usually nothing (a listing of the trash saved: entries another publish failed to
      // remove wait for the next clean-up or recovery, which empty the whole trash).
      // The recorded epoch row stays the realm's unless the clean-up had to repair (a new epoch).
      const cleanedUp = result.nothingToClean
        ? (result.trashedAny || repairs.recovered.length > 0 || repairs.cleanedUp.length > 0 ? emptyTrash(plane.layout, plane.logger) : Promise.resolve()).then(
            () => true,
            (error: Error) => {
              plane.logger.warn({ err: error, realm: publishedURL }, 'post-publish clean-up failed');
              return true;
            },
          )
        : collectGarbage(plane, publishedURL, result.superseded);
      const [unchanged] = await Promise.all([cleanedUp, manifestWritten]);
      await step('cleaned');
      return unchanged;
    };
    const deferred = deferCleanUp ? onceOnly(cleanUp) : undefined;
    const unchanged = deferred ? true : await cleanUp();
    const totalMs = performance.now() - started;
    plane.logger.info(
      {
        realm: publishedURL,
        epoch: result.epoch,
        version,
        files: staged.fileCount,
        linkedFiles: staged.linkedFiles,
        copiedFiles: staged.copiedFiles,
        stageMs: Math.round(stageMs * 10) / 10,
        stageSyncMs: Math.round(staged.timing.syncMs * 10) / 10,
        lockWaitMs: Math.round(timing.waitMs * 10) / 10,
        lockHeldMs: timing.heldMs,
        totalMs: Math.round(totalMs * 10) / 10,
      },
      'published realm',
    );
    return {
      publishedRealmURL: publishedURL,
      diskId,
      version,
      epoch: result.epoch,
      publishedAt,
      fileCount: staged.fileCount,
      totalBytes,
      digest,
      skipped: staged.skipped,
      linkedFiles: staged.linkedFiles,
      copiedFiles: staged.copiedFiles,
      timing: { stageMs, stageSyncMs: staged.timing.syncMs, lockWaitMs: timing.waitMs, lockHeldMs: timing.heldMs, totalMs },
      ...(unchanged ? { state: result.recorded.row } : {}),
      ...(deferred ? { cleanUp: deferred } : {}),
      // A first publish with nothing to clean keeps exactly its own version (see nothingToClean above).
      ...(result.nothingToClean && result.recorded.keptPublishedAt
        ? {
            keptVersions: [
              {
                version,
                diskId,
                epoch: result.epoch,
                digest,
                fileCount: staged.fileCount,
                totalBytes,
                publishedAt: result.recorded.keptPublishedAt,
                publishedFor: request.publishedFor ?? null,
                revision: request.revision ?? null,
              },
            ],
          }
        : {}),
    };
  } finally {
    releaseSlot();
    try {
      // Removes what a failed publish staged; once the copy was renamed into place there is
      // nothing at that path (a round trip to the staging worker saved per publish).
      if (!stagedDirMoved) await removeTree(path.join(plane.layout.stagingRoot, stagingName));
    } finally {
      // A copy left behind by a failed removal is then abandoned, and the next recovery removes it.
      liveStagingNames.delete(stagingName);
      await guard.release();
    }
  }
}

export interface RollbackRequest {
  publishedRealmURL: string;
  /** A kept version (published-versions.ts) to make live again. */
  version: string;
  claim?: ClaimOptions;
  /** Recorded in `realm_epochs.published_for` (the controller: `<uid>/rollback-<version>`). */
  publishedFor?: string;
  /** Fenced by generation exactly as a publish ({@link PublishRequest.fence}). */
  fence?: PublishFence;
  /** The history policy to record (the spec's): it keeps trimming by it. */
  history?: HistoryPolicy;
}

export interface RollbackResult {
  publishedRealmURL: string;
  diskId: string;
  version: string;
  /** The version that was live before. */
  previousVersion: string;
  epoch: number;
  fileCount: number;
  totalBytes: number;
  digest: string;
  timing: { lockWaitMs: number; lockHeldMs: number; totalMs: number };
  /** As {@link PublishResult.state}. */
  state?: RealmEpochRow;
}

/**
 * Makes a kept version live again: the same locked transaction as a publish, without staging or
 * copying anything. Under the realm lock: recovery first, the claim and the generation fence, the
 * version must be kept (a row in `published_versions` for this disk id, and its directory), then
 * `clearRealmDefinitions`, the symlink swap to the kept directory, a new epoch recording it as
 * committed (its digest and counts), and the registry and wildcard NOTIFYs, all told at COMMIT.
 * The caller waits for acknowledgements and enqueues the reindex as after a publish. Throws
 * {@link VersionNotKeptError} for a version that is not kept.
 */
export async function rollbackRealm(plane: DataPlane, request: RollbackRequest, { signal }: PublishOptions = {}): Promise<RollbackResult> {
  const started = performance.now();
  const url = assertRealmURL(request.publishedRealmURL, 'publishedRealmURL');
  signal?.throwIfAborted();
  const step = async (name: PublishStep) => {
    if (name === 'locked') signal?.throwIfAborted();
    await plane.onStep?.(name, url);
  };
  const { result, timing } = await afterLinkRepairs(plane, url, () => withRealmLockTimed(
    plane.pool,
    url,
    async (tx) => {
      await step('locked');
      const committed = await reconcileFilesWithDatabase(plane, tx, url, 'refuse-fixes');
      // Recovery's row, read FOR UPDATE: with committed content it changed none of its columns.
      const row = committed.epochRow;
      const diskId = committed.diskId;
      if (!row?.content_version || !committed.committedVersion || !diskId) {
        throw new PublishError(`${url} is not published by the operator, so there is nothing to roll back; remove spec.rollbackTo to publish it`);
      }
      assertClaim(url, row, request.claim ?? {});
      assertNotSuperseded(url, row, request.fence);
      const kept = await readKeptVersions(tx, url, diskId);
      const target = kept.find((v) => v.version === request.version);
      if (!target || !(await versionExists(plane.layout, diskId, target.version))) throw new VersionNotKeptError(url, request.version, kept.map((v) => v.version));
      // The last abort check: past the swap the rollback commits (see PublishOptions.signal).
      signal?.throwIfAborted();
      await swapPublishedLink(plane.layout, diskId, target.version, plane.logger);
      await step('swapped');
      // After the swap, as in a publish: no definitions row computed from the replaced files survives.
      await clearRealmDefinitions(tx, url);
      const live = committed.committedVersion;
      const recorded = await recordPublishedEpoch(
        tx,
        url,
        {
          diskId,
          version: target.version,
          // Readers that resolved the link just before the swap keep the version that was live.
          previousVersion: live === target.version ? committed.previousVersion : live,
          digest: target.digest,
          fileCount: target.fileCount,
          totalBytes: target.totalBytes,
          publishedFor: request.publishedFor ?? null,
          ...(request.fence ? { fence: request.fence } : {}),
        },
        // last_published_at as Boxel's publish writes it whenever content goes live: the realm
        // server's ETag for the published HTML is derived from it, so an unchanged one would let
        // browsers keep the rolled-back-from page (304 Not Modified).
        { history: { policy: request.history }, notifyRegistryUpsert: true, lastPublishedAtMs: Date.now() },
      );
      await notifyAllFileChanges(tx, url);
      await step('recorded');
      return { epoch: Number(recorded.row.epoch), recorded, diskId, target, live, superseded: [committed.previousVersion].filter((v): v is string => !!v) };
    },
    plane.lock,
  ));
  await step('committed');
  const unchanged = await collectGarbage(plane, url, result.superseded);
  await step('cleaned');
  const totalMs = performance.now() - started;
  plane.logger.info({ realm: url, epoch: result.epoch, version: result.target.version, from: result.live, lockHeldMs: timing.heldMs, totalMs: Math.round(totalMs * 10) / 10 }, 'rolled back realm');
  return {
    publishedRealmURL: url,
    diskId: result.diskId,
    version: result.target.version,
    previousVersion: result.live,
    epoch: result.epoch,
    fileCount: result.target.fileCount,
    totalBytes: result.target.totalBytes,
    digest: result.target.digest,
    timing: { lockWaitMs: timing.waitMs, lockHeldMs: timing.heldMs, totalMs },
    ...(unchanged ? { state: result.recorded.row } : {}),
  };
}

/**
 * The version published now at `url` and its staging manifest, to link unchanged files from; read
 * without the lock, as a hint: a version removed meanwhile only makes links fail, and files are
 * then copied. Nothing when never published by us, or its manifest is missing or malformed.
 */
async function readPreviousVersion(plane: DataPlane, url: string, row: RealmEpochRow | undefined): Promise<PreviousVersion | undefined> {
  if (!row?.disk_id || !row.content_version) return undefined;
  const diskId = safePublishedDiskId('realm_operator.realm_epochs.disk_id', url, row.disk_id);
  const version = safeVersionName('realm_operator.realm_epochs.content_version', url, row.content_version);
  await plane.layout.assertNoSymlinkedOperatorDirs(diskId);
  const manifest = await readManifestFile(plane.layout.manifestPath(diskId, version));
  return manifest ? { dir: plane.layout.versionDir(diskId, version), manifest } : undefined;
}

/**
 * Whether the staged `index.json` may adopt a default index card, so that the realm.json opt-in
 * must look: false only when staging kept the bytes it copied and they do not (parsed exactly as
 * applyRealmIndexOptIn reads the staged file: UTF-8, JSON.parse; unparsable is left alone there
 * too), which saves reading the file again (an lstat and four thread-pool calls per publish).
 */
function mayNeedIndexOptIn(indexJson: Buffer | undefined): boolean {
  if (!indexJson) return true;
  try {
    return adoptsDefaultRealmIndex(JSON.parse(indexJson.toString('utf8')));
  } catch {
    return false;
  }
}

/** `run`, called at most once: later calls return the first call's promise. */
function onceOnly<T>(run: () => Promise<T>): () => Promise<T> {
  let running: Promise<T> | undefined;
  return () => (running ??= run());
}

/** `checked` is {@link checkPublishable}'s answer for this request's URLs and publisher. */
function isCheckedFor(checked: PublishableSource, request: PublishRequest): boolean {
  return (
    checked.sourceRealmURL === request.sourceRealmURL &&
    checked.publishedRealmURL === request.publishedRealmURL &&
    (request.publisher === undefined || checked.publisher === request.publisher)
  );
}

/**
 * The disk id already reserved (committed) for this publish, when the reservation needs no new
 * write: the epoch row names one, it agrees with the registry row, and it is claimed by this
 * claimant (a take-over or a first claim writes the claim). Undefined: reserve it now.
 */
function reservedDiskId(row: (RealmEpochRow & { registry_disk_id: string | null }) | undefined, claim: ClaimOptions = {}): string | undefined {
  if (!row?.disk_id || (row.registry_disk_id !== null && row.registry_disk_id !== row.disk_id)) return undefined;
  if (claim.claimant !== undefined && row.claimed_by !== claim.claimant) return undefined;
  return publishedDiskIdProblem(row.disk_id) === undefined ? row.disk_id : undefined;
}

export interface UnpublishResult {
  publishedRealmURL: string;
  /** False when there was nothing published at the URL. */
  unpublished: boolean;
  epoch: number;
}

/**
 * Removes a published realm: under the lock and in one transaction, deletes its registry row and
 * permissions and its definitions, marks its index entries deleted, unlinks the published directory and records a new epoch, with
 * `realm_registry 'delete:<url>'` and the wildcard NOTIFY; then deletes the content versions.
 */
export async function unpublishRealm(
  plane: DataPlane,
  publishedRealmURL: string,
  claim: ClaimOptions = {},
  /** Who unpublishes (a Matrix user id); unset: the source realm's owner. Checked only with `plane.authorization`. */
  publisher?: string,
  /** Aborted (leadership lost): nothing is removed; checked before the lock and under it before the unlink. The claim fences a late unpublish. */
  { signal }: PublishOptions = {},
): Promise<UnpublishResult> {
  const url = assertRealmURL(publishedRealmURL, 'publishedRealmURL');
  signal?.throwIfAborted();
  const step = async (name: UnpublishStep) => plane.onStep?.(name, url);
  const outcome = await afterLinkRepairs(plane, url, () => withRealmLock(
    plane.pool,
    url,
    async (tx) => {
      await step('locked');
      const before = await reconcileFilesWithDatabase(plane, tx, url, 'refuse-fixes');
      // Kept versions committed once too: removing them after the unpublish needs no invalidation of its own.
      const kept = before.diskId ? (await readKeptVersions(tx, url, before.diskId)).map((v) => v.version) : [];
      const wasCommitted = [before.committedVersion, before.previousVersion, ...kept].filter((v): v is string => v !== null);
      // Recovery never writes realm_registry: the row it read under this lock is current.
      const registry = before.registry;
      if (registry && registry.kind !== 'published') {
        throw new PublishError(`${url} is registered as a ${registry.kind} realm; refusing to unpublish it`);
      }
      const epochRow = await readRealmEpochRow(tx, url, true);
      if (!registry && !epochRow?.content_version) return { unpublished: false, epoch: Number(epochRow?.epoch ?? 0), wasCommitted };
      // Never unpublish a URL another PublishedRealm publishes (a duplicate being deleted).
      assertClaim(url, epochRow, claim);
      if (plane.authorization && registry?.source_url) await authorizeUnpublishOf(tx, registry.source_url, publisher);
      await tx.query('DELETE FROM realm_registry WHERE url = $1', [url]);
      await tx.query('DELETE FROM realm_user_permissions WHERE realm_url = $1', [url]);
      signal?.throwIfAborted();
      await tombstoneRealmIndex(tx, url);
      const diskId = registry
        ? safePublishedDiskId('realm_registry.disk_id', url, registry.disk_id)
        : epochRow?.disk_id
          ? safePublishedDiskId('realm_operator.realm_epochs.disk_id', url, epochRow.disk_id)
          : undefined;
      if (diskId) await removePublishedLink(plane.layout, diskId);
      await step('unlinked');
      // After the link is gone, as in a publish: no definitions row computed from its files survives.
      await clearRealmDefinitions(tx, url);
      const epoch = await recordUnpublishedEpoch(tx, url);
      await notifyRealmRegistry(tx, 'delete', url);
      await notifyAllFileChanges(tx, url);
      return { unpublished: true, epoch, wasCommitted };
    },
    plane.lock,
  ));
  await step('committed');
  // Its versions were committed once; this unpublish's epoch already invalidated them.
  await collectGarbage(plane, url, outcome.wasCommitted);
  await step('cleaned');
  plane.logger.info({ realm: url, epoch: outcome.epoch, unpublished: outcome.unpublished }, 'unpublished realm');
  return { publishedRealmURL: url, unpublished: outcome.unpublished, epoch: outcome.epoch };
}

/**
 * Boxel's unpublish rule: the publisher holds realm-owner on the published realm's source. Without a
 * publisher, the source realm's owner is the publisher (as for publish); a source no longer
 * registered has no owner to act for, so the publisher must be named.
 */
async function authorizeUnpublishOf(db: Queryable, sourceURL: string, publisher: string | undefined): Promise<void> {
  let who = publisher;
  if (who === undefined) {
    const source = await readRegistryRow(db, sourceURL);
    who = source?.owner_username ? ((await readSourceOwnerUserId(db, sourceURL, source.owner_username)) ?? source.owner_username) : undefined;
  }
  if (who === undefined) {
    throw new PublishNotAuthorizedError('realm-owner', `the source realm ${sourceURL} is not registered, so its owner cannot be known; set spec.publisher to a Matrix user id that holds realm-owner on it`);
  }
  await authorizeUnpublish(db, sourceURL, who);
}

export interface RecoveryResult {
  /** Everything recovery changed, for logs; empty when files and database already agreed. */
  actions: string[];
  /** What undid an interrupted publish or unpublish (logged as a warning). */
  recovered: string[];
  /** Routine clean-up, such as superseded versions after a republish (logged at debug). */
  cleanedUp: string[];
}

/**
 * Makes a realm's files agree with what the database committed: rolls the published link back to
 * the committed version after a crash between swap and COMMIT, restores a link removed by an
 * unpublish that did not commit, removes a first publish that did not commit, and deletes
 * versions, staging copies and scratch links nobody owns. Idempotent; publish and unpublish run
 * it first and last. Warns only when something was actually interrupted.
 */
export async function recoverPublishedRealm(plane: DataPlane, realmURL: string): Promise<RecoveryResult> {
  return recover(plane, assertRealmURL(realmURL, 'realmURL'), []);
}

/** {@link recoverPublishedRealm}; `superseded`: versions known to have been committed once (their removal needs no invalidation). */
async function recover(plane: DataPlane, url: string, superseded: readonly string[], { sweep = true }: { sweep?: boolean } = {}): Promise<RecoveryResult> {
  const repaired: Repairs = { recovered: [], cleanedUp: [] };
  const known = new Set(superseded);
  // The locked rows recovery starts from, read in the round trip of the lock.
  const cleaned = await afterLinkRepairs(
    plane,
    url,
    async () =>
      (
        await withRealmLockAndFirst(
          plane.pool,
          url,
          lockedEpochRowAndRegistryStatement(url),
          (tx, first) => reconcileFilesWithDatabase(plane, tx, url, 'refuse-fixes', undefined, known, { sweep, locked: parseLockedEpochRowAndRegistryRow(first.rows[0]!) }),
          plane.lock,
        )
      ).result,
    repaired,
  );
  const recovered = [...repaired.recovered, ...cleaned.recovered];
  const cleanedUp = [...repaired.cleanedUp, ...cleaned.cleanedUp];
  await emptyTrash(plane.layout, plane.logger);
  if (recovered.length > 0) plane.logger.warn({ realm: url, actions: recovered, cleanedUp }, 'recovered an interrupted publish');
  else if (cleanedUp.length > 0) plane.logger.debug({ realm: url, actions: cleanedUp }, 'cleaned up published realm versions');
  return { actions: [...recovered, ...cleanedUp], recovered, cleanedUp };
}

/**
 * Post-commit clean-up: the same reconciliation, which also trashes superseded versions. Returns
 * whether it left the epoch row as the publish committed it (only a repair draws a new epoch);
 * false also when it failed, as a repair may have committed before the failure.
 */
async function collectGarbage(plane: DataPlane, url: string, superseded: readonly string[]): Promise<boolean> {
  try {
    // No sweep of abandoned staging copies and scratch links: the locked transaction this clean-up
    // follows (the publish's, rollback's or unpublish's own recovery) swept them moments ago, and
    // the next publish or recovery sweeps again (two listings of shared directories saved).
    return (await recover(plane, url, superseded, { sweep: false })).recovered.length === 0;
  } catch (error) {
    // The publish itself has committed; leftovers are removed by the next publish or recovery.
    plane.logger.warn({ err: error, realm: url }, 'post-publish clean-up failed');
    return false;
  }
}

/**
 * The published link disagrees with what the database committed (an interrupted publish or
 * unpublish): fixing it changes what readers see, so it is done in a transaction of its own,
 * never inside a publish's or unpublish's, which could still abort and lose the invalidation.
 */
export class LinkRepairNeededError extends Error {
  constructor(
    readonly realmURL: string,
    readonly problem: string,
  ) {
    super(`${realmURL}: ${problem}; repairing it in a transaction of its own first`);
    this.name = 'LinkRepairNeededError';
  }
}

/**
 * How {@link reconcileFilesWithDatabase} treats a link readers would see change:
 * - `refuse-fixes`: throw {@link LinkRepairNeededError} before touching anything (inside a
 *   publish, unpublish or clean-up transaction), then do the routine clean-up;
 * - `fix-only`: make that one fix with its epoch bump and NOTIFY and nothing else, so the
 *   transaction commits them unless the COMMIT itself fails.
 */
type ReconcileMode = 'refuse-fixes' | 'fix-only';

/** A whole-realm invalidation on its own: a new epoch and the wildcard NOTIFY, committed alone. */
async function invalidateRealmAlone(plane: DataPlane, url: string): Promise<void> {
  await withRealmLock(
    plane.pool,
    url,
    async (tx) => {
      await bumpEpoch(tx, url);
      await notifyAllFileChanges(tx, url);
    },
    plane.lock,
  );
}

/**
 * Fixes the published link in its own locked transaction: the fix, the epoch bump and the wildcard
 * NOTIFY commit together and alone. If the transaction fails after the link was changed (the COMMIT
 * lost with the connection), the invalidation is sent again on its own before the error is thrown.
 */
async function repairPublishedLink(plane: DataPlane, url: string): Promise<Repairs> {
  const touched = { link: false };
  try {
    const { recovered, strays, diskId } = await withRealmLock(plane.pool, url, (tx) => reconcileFilesWithDatabase(plane, tx, url, 'fix-only', touched), plane.lock);
    // Only now, after the invalidation committed: while a stray version exists, the next recovery invalidates again.
    for (const version of strays) await moveToTrash(plane.layout, plane.layout.versionDir(diskId!, version));
    return { recovered, cleanedUp: strays.length > 0 ? [`removed superseded or uncommitted versions ${strays.join(', ')}`] : [] };
  } catch (error) {
    if (touched.link) {
      await invalidateRealmAlone(plane, url).catch((again: Error) =>
        plane.logger.error({ err: again, realm: url }, 'the published link was repaired but its invalidation could not be committed; the next publish invalidates the realm'),
      );
    }
    throw error;
  }
}

/**
 * Runs `attempt` (a locked transaction that reconciles with `refuse-fixes` first); when the link
 * needs a fix, commits that fix with its invalidation on its own ({@link repairPublishedLink}) and
 * runs `attempt` again. What was repaired is appended to `repaired`.
 */
async function afterLinkRepairs<T>(plane: DataPlane, url: string, attempt: () => Promise<T>, repaired: Repairs = { recovered: [], cleanedUp: [] }): Promise<T> {
  for (let repairs = 0; ; repairs += 1) {
    try {
      return await attempt();
    } catch (error) {
      // Another publisher interrupted between our repair and our transaction, again and again: give up, the caller retries.
      if (!(error instanceof LinkRepairNeededError) || repairs >= 3) throw error;
      const done = await repairPublishedLink(plane, url);
      repaired.recovered.push(...done.recovered);
      repaired.cleanedUp.push(...done.cleanedUp);
    }
  }
}

/** What repairs did: reader-visible fixes (warned about) and the strays removed after them. */
interface Repairs {
  recovered: string[];
  cleanedUp: string[];
}

/**
 * The recovery core, run inside a locked transaction. Only renames to the trash, so it is cheap.
 *
 * Readers may have seen (and replicas cached) content that never committed when the link points
 * anywhere but the committed version, or when a version directory exists that is neither the
 * committed nor the previous version nor in `known` (versions the caller knows were committed
 * once): a *stray*, installed by a publish that did not commit, which may have been linked and
 * put back by a repair whose COMMIT was lost. Either calls for a fix with an epoch bump and the
 * wildcard NOTIFY (the link re-pointed, or an uncommitted first publish's link removed); it is
 * made only in `fix-only` mode, in a transaction of its own (see {@link ReconcileMode}), and the
 * strays are trashed only after that COMMIT ({@link repairPublishedLink}). A stray that was never
 * linked costs one needless invalidation, never a missed one. Every path component it reads from
 * the database is checked first; a bad one fails this realm's recovery before anything on disk is touched.
 *
 * `publishing`: the caller's transaction goes on to record a publish ({@link recordPublishedEpoch},
 * which writes `disk_id` and, told by `clearedUncommitted`, drops stale kept rows) or rolls back,
 * so the rows recovery would reset when nothing of ours is committed are left to that statement:
 * resetting them here could only be overwritten or rolled back.
 */
async function reconcileFilesWithDatabase(
  plane: DataPlane,
  tx: pg.PoolClient,
  url: string,
  mode: ReconcileMode,
  touched: { link: boolean } = { link: false },
  known: ReadonlySet<string> = new Set(),
  {
    publishing = false,
    locked,
    ownStaging,
    sweep = true,
  }: {
    publishing?: boolean;
    /** Remove staging copies whose publisher died and this realm's scratch links (default true). */
    sweep?: boolean;
    /** The epoch row (read FOR UPDATE in this transaction) and registry row, when the caller read them already. */
    locked?: { epochRow: RealmEpochRow | undefined; registry: RegistryRow | undefined };
    /** The caller's own staging directory (its name under the staging root), held by its staging guard. */
    ownStaging?: string;
  } = {},
): Promise<{
  committedVersion: string | null;
  previousVersion: string | null;
  recovered: string[];
  cleanedUp: string[];
  strays: string[];
  diskId: string | undefined;
  epochRow: RealmEpochRow | undefined;
  /** The realm's registry row, read with the epoch row. */
  registry: RegistryRow | undefined;
  /** Nothing of ours is committed and every version directory and manifest was removed (and, unless `publishing`, every kept row). */
  clearedUncommitted: boolean;
  /** The published link as read under the lock; changed since only when `fix-only` mode fixed it (`touched.link`). Undefined without a disk id. */
  link: PublishedLinkState | undefined;
}> {
  const recovered: string[] = [];
  const cleanedUp: string[] = [];
  const strays: string[] = [];
  const { epochRow: row, registry } = locked ?? (await readLockedEpochRowAndRegistryRow(tx, url));
  const diskId = row?.disk_id ? safePublishedDiskId('realm_operator.realm_epochs.disk_id', url, row.disk_id) : undefined;
  const committed = row?.content_version ? safeVersionName('realm_operator.realm_epochs.content_version', url, row.content_version) : null;
  const previous = row?.previous_version ? safeVersionName('realm_operator.realm_epochs.previous_version', url, row.previous_version) : null;
  await plane.layout.assertNoSymlinkedOperatorDirs(diskId);

  // The sweep tries one lock per staging directory. The caller's own copy is held by its guard, so
  // it is never abandoned: when it is the only one there, the sweep could remove nothing.
  const stagingNames = mode === 'refuse-fixes' && sweep ? listOperatorDir(plane.layout.stagingRoot) : [];
  // Copies staged by live publishes of this process are never abandoned either (each removes its
  // own); only the rest, left by another or an earlier process, is worth a try of its lock.
  const others = stagingNames.filter((name) => name !== ownStaging && !liveStagingNames.has(name));
  if (others.length > 0) {
    const abandoned = await sweepAbandonedStaging(tx, plane.layout, others);
    if (abandoned.length > 0) recovered.push(`removed staging abandoned by a publisher that died: ${abandoned.join(', ')}`);
  }
  // The row as read FOR UPDATE: its fence and claim columns are the locked ones (recovery changes only `disk_id` and `epoch`).
  let link: PublishedLinkState | undefined;
  const result = (committedVersion: string | null, clearedUncommitted = false) => ({ committedVersion, previousVersion: committedVersion ? previous : null, recovered, cleanedUp, strays, diskId, epochRow: row, registry, clearedUncommitted, link });
  if (!diskId) return result(null);
  if (sweep) await removeScratchLinks(plane.layout, diskId);
  link = await readPublishedLink(plane.layout, diskId);
  // Nothing of ours committed and a registry row: published by Boxel itself, nothing of ours to undo.
  if (!committed && registry) return result(null);
  // Kept versions (for rollback) committed once, like the previous one: neither is a stray.
  const keptRows = committed ? await readKeptVersions(tx, url, diskId) : [];
  const keep = new Set(committed ? [committed, ...(previous ? [previous] : []), ...keptRows.map((v) => v.version)] : []);
  // Read once: in `refuse-fixes` mode nothing below changes the directory before the clean-up
  // uses this listing again (a needed fix throws first; `fix-only` returns after it).
  const listed = { names: await readVersionsDir(plane.layout, diskId) };
  strays.push(...(listed.names ?? []).filter((version) => !keep.has(version) && !known.has(version)));
  const linkWrong = committed ? !(link.kind === 'version' && link.version === committed) : link.kind === 'version';
  if (linkWrong || strays.length > 0) {
    if (committed && linkWrong && !(await versionExists(plane.layout, diskId, committed))) {
      throw new PublishError(`committed content version ${committed} of ${url} is missing from ${plane.layout.versionsDir(diskId)}; publish again to replace it`);
    }
    if (mode === 'refuse-fixes') {
      const problem = linkWrong ? `the published link points at ${describeLink(link)}, not ${committed ? `committed version ${committed}` : 'nothing'}` : `versions ${strays.join(', ')} were installed by a publish that did not commit`;
      throw new LinkRepairNeededError(url, problem);
    }
    if (linkWrong) {
      touched.link = true;
      if (committed) {
        await swapPublishedLink(plane.layout, diskId, committed, plane.logger);
        recovered.push(`re-pointed the published link from ${describeLink(link)} to committed version ${committed}`);
      } else {
        await removePublishedLink(plane.layout, diskId);
        recovered.push(`removed the uncommitted published link to ${(link as { version: string }).version}`);
      }
    } else {
      recovered.push(`invalidated the realm: versions ${strays.join(', ')} were installed by a publish that did not commit, and readers may have seen them`);
    }
    await bumpEpoch(tx, url);
    await notifyAllFileChanges(tx, url);
  }
  if (mode === 'fix-only') return result(committed);
  if (committed) {
    // The history policy: drop the rows of versions it no longer keeps (and of kept versions whose
    // directory is gone), then trash every directory that is neither live, previous nor kept.
    const onDisk = new Set(listed.names);
    const present = keptRows.filter((v) => onDisk.has(v.version));
    const { kept, trimmed } = selectKeptVersions(present, committed, recordedHistoryPolicy(row));
    const gone = keptRows.filter((v) => !onDisk.has(v.version)).map((v) => v.version);
    await forgetKeptVersions(tx, url, [...trimmed, ...gone]);
    for (const version of [...trimmed, ...gone]) keep.delete(version);
    for (const version of [committed, ...(previous ? [previous] : []), ...kept]) keep.add(version);
    if (trimmed.length > 0) cleanedUp.push(`trimmed kept versions ${trimmed.join(', ')} (history limit or byte budget)`);
    const trashed = await trashVersionsExcept(plane.layout, diskId, keep, listed);
    if (trashed.length > 0) cleanedUp.push(`removed superseded or uncommitted versions ${trashed.join(', ')}`);
    await removeManifestsExcept(plane.layout, diskId, keep);
    return result(committed);
  }
  // Nothing of ours is committed: never published, a first publish that did not commit, or unpublished.
  const trashed = await trashVersionsExcept(plane.layout, diskId, new Set(), listed);
  if (trashed.length > 0) cleanedUp.push(`removed versions of an unpublished realm: ${trashed.join(', ')}`);
  await removeManifestsExcept(plane.layout, diskId, new Set());
  if (!publishing) {
    // One statement: the kept rows go, and the next first publish gets a new disk id, as in Boxel.
    await tx.query(
      `WITH forgotten AS (DELETE FROM realm_operator.published_versions WHERE realm_url = $1)
       UPDATE realm_operator.realm_epochs SET disk_id = NULL, updated_at = now() WHERE realm_url = $1`,
      [url],
    );
  }
  return result(null, true);
}

/**
 * {@link removeAbandonedStaging}, for names listed a moment before: a copy listed while its
 * publish (of another process, or of this one finishing just then) was still running can be gone
 * by the time its lock is free — renamed into place or removed, the lock released after — and its
 * rename to the trash then fails with ENOENT. That copy was not abandoned; the sweep ends there
 * (the next one finds any other), and the publish or recovery running it goes on. Before, such a
 * race failed the whole publish transaction, which was retried (5 of 1,000 publishes at
 * `--max-concurrent-reconciles` 16, then the default, in bench-scale). Exported for its test.
 */
export async function sweepAbandonedStaging(tx: Queryable, layout: RealmsLayout, names: string[]): Promise<string[]> {
  try {
    return await removeAbandonedStaging(tx, layout, names);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

async function removeScratchLinks(layout: RealmsLayout, diskId: string): Promise<void> {
  const names = listOperatorDir(layout.linkScratchDir);
  const ours = names.filter((name) => name.startsWith(`${diskId}.`));
  await Promise.all(ours.map((name) => fs.rm(path.join(layout.linkScratchDir, name), { force: true })));
}

function describeLink(link: Awaited<ReturnType<typeof readPublishedLink>>): string {
  switch (link.kind) {
    case 'missing':
      return 'nothing';
    case 'version':
      return `version ${link.version}`;
    case 'directory':
      return 'a plain directory';
    case 'foreign-link':
      return `a foreign link to ${link.target}`;
  }
}

/**
 * The database checks of {@link checkPublishable}, cheap enough to repeat under the realm lock:
 * one statement ({@link readPublishTargetRows}), which also reads Boxel's authorization facts for
 * `publisher` (unset: the source owner). Returns the rows it read (the source realm's registry row is there).
 */
async function checkPublishTarget(db: Queryable, sourceURL: string, publishedURL: string, claim: ClaimOptions, publisher: string | undefined): Promise<PublishTargetRows & { source: RegistryRow }> {
  return assertPublishTarget(await readPublishTargetRows(db, sourceURL, publishedURL, publisher), sourceURL, publishedURL, claim);
}

/** The checks of {@link checkPublishTarget} on rows already read. */
function assertPublishTarget(rows: PublishTargetRows, sourceURL: string, publishedURL: string, claim: ClaimOptions): PublishTargetRows & { source: RegistryRow } {
  const { source, published } = rows;
  if (!source) throw new PublishError(`source realm ${sourceURL} is not in realm_registry; create it in Boxel first or fix sourceRealmURL`);
  if (source.kind !== 'source') throw new PublishError(`${sourceURL} is a ${source.kind} realm, not a source realm; sourceRealmURL must name a source realm`);
  if (published && published.kind !== 'published') {
    throw new URLTakenByRealmError(publishedURL, published.kind);
  }
  assertClaim(publishedURL, { claimed_by: rows.claimedBy }, claim);
  // A URL already registered is left as it is: Boxel (or an earlier publish) made that layout.
  // Boxel (cardstack/boxel, realm-server) never nests on purpose but does not forbid it either:
  // create-realm refuses only a realm mounted at the server's origin, source realms are
  // `<server>/<owner>/<endpoint>/`, the publish handler checks no prefixes, and request routing
  // takes the first cached realm that matches (the registry fallback the longest) — which is
  // exactly why a nested URL serves different realms on different replicas.
  if (!published) {
    const overlapping = findOverlappingRealmURLs(publishedURL, rows.overlapCandidates);
    if (overlapping.length > 0) throw new RealmURLOverlapError(publishedURL, overlapping);
  }
  return { ...rows, source };
}

/** The source realm's real directory; refuses a `disk_id` or symlink that leads outside the realms root. */
async function resolveSourceDirectory(plane: DataPlane, sourceURL: string, source: RegistryRow): Promise<string> {
  const diskId = safeSourceDiskId(sourceURL, source.disk_id);
  const resolved = await plane.layout.resolveSourceDir(diskId);
  if ('dir' in resolved) return resolved.dir;
  throw new PublishError(
    `source realm ${sourceURL}: realm_registry.disk_id ${JSON.stringify(diskId)} ${resolved.problem}; ` +
      'the source realm must be a directory under the realms root (not a symlink out of it): fix realm_registry.disk_id or the directory, or fix sourceRealmURL',
  );
}
