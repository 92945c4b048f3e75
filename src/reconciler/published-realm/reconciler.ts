/**
 * The PublishedRealm reconciler: `reconcile(key)` reads the live object and the database and
 * drives them together. Level-based and idempotent: it may run any number of times, after any
 * crash, and does each side effect at most once per generation.
 *
 * Expected flow for an object that exists:
 *   fetch → (being deleted? unpublish what this object published, drop finalizer) → validate spec
 *   (invalid: Stalled) → suspended? Ready=False/Suspended, stop → already published for this spec?
 *   re-check Boxel's authorization rules (failing now: Stalled NotAuthorized, content left as is)
 *   : every check that can stall (source, claim, overlap, size, authorization) BEFORE any copy
 *   → claim the URL → only then the finalizer → register the realm's own Matrix user before its
 *   permission row is written (first publish, Matrix configured) → Publishing → publish →
 *   wait for every live replica to acknowledge the realm's epoch (AwaitingAcknowledgement unless
 *   they all did within `awaitingWriteAfterMs` of the commit) → enqueue the reindex once per epoch → Ready.
 *
 * Guarantees:
 * - A spec is published once: the database records `<uid>/spec-<digest of sourceRealmURL,
 *   publishedRealmURL, revision>` (published-for.ts) in the same transaction as the publish, so a
 *   restart — with 1,000 objects or one — republishes nothing, and neither does a change that does
 *   not touch those fields (suspend and resume, reindex settings, publisher, the ignored owner).
 *   Keys earlier versions wrote for the same spec count too, and are rewritten to the current one.
 * - An object keeps the finalizer only once it holds its URL's claim: one refused before that
 *   (invalid, stalled, suspended, rolling back to nothing) loses it and deletes at once; deploy/base's
 *   admission policy puts it on every object at creation, saving the publish a PATCH (without the
 *   policy this reconciler adds it after the claim), so one never reconciled yet, or waiting for its
 *   source Realm to become ready, waits for the operator to delete. Deleting any object unpublishes
 *   only what it claimed.
 * - Quiet when nothing changed: status is written only when it differs (messages and transition
 *   times are stable), an Event only on a transition or an action, and a Stalled object is
 *   re-checked after 30 s, then doubling to 10 minutes (see {@link StallBackoff}); it never copies.
 *   The controller is expected to filter out update events that change no spec (predicates), so
 *   the status writes here do not re-enqueue the object.
 * - `Ready=True` is written only after every live replica acknowledged the current epoch, or
 *   with reason `PublishedNotifyOnly` when no replica is registered at all.
 * - The reindex is enqueued only after acknowledgement.
 * - A URL published by another PublishedRealm is neither republished nor unpublished.
 *
 * Errors: problems a person must fix (invalid spec, missing source realm, URL owned by another
 * object or overlapping another realm, realm over the size limit) become `Stalled` with a message
 * and a Warning event, re-checked with backoff. Anything else is thrown, and the controller retries
 * it with backoff. Reasons are listed in conditions.ts.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import { parsePublishedRealmSpec, UNPUBLISH_FINALIZER, type PublishedRealm, type PublishedRealmSpec, type PublishedRealmStatus } from '../../api/v1alpha1/published-realm-types.js';
import { readLiveReplicaPods, waitForReplicaAcks, type WaitForAcksResult } from '../../dataplane/acknowledgements.js';
import { reauthorizePublished } from '../../dataplane/authorization.js';
import type { RealmsLayout } from '../../dataplane/layout.js';
import { checkPublishable, publishRealm, unpublishRealm, type DataPlane, type PublishableSource, type PublishRequest } from '../../dataplane/publish.js';
import {
  ClaimConflictError,
  PublishError,
  PublishNotAuthorizedError,
  readPublishTargetRows,
  readRealmEpochRow,
  readRegistryRow,
  RealmTooLargeError,
  reservePublishedDiskIdLocked,
  type DiskIdReservation,
  RealmURLOverlapError,
  SupersededPublishError,
  UnsafeDatabaseValueError,
  URLTakenByRealmError,
  type ClaimOptions,
  type PublishTargetRows,
  type RealmEpochRow,
} from '../../dataplane/realm-state.js';
import { matrixServerNameOf, matrixUserId, publishedRealmUsername } from '../../dataplane/realm-identity.js';
import { enqueueReindex } from '../../dataplane/reindex.js';
import { recoverPublishedRealm, rollbackRealm } from '../../dataplane/publish.js';
import { publishedFilesDisagree } from '../../dataplane/published-check.js';
import { DEFAULT_HISTORY_LIMIT, readKeptVersions, VersionNotKeptError, type HistoryPolicy, type KeptVersion } from '../../dataplane/published-versions.js';
import type { RegisteredRealmUser } from '../../matrix/realm-user.js';
import {
  Actions,
  invalidSpecMessage,
  markReady,
  markRealmUser,
  markReconciling,
  markStalled,
  markSuspended,
  plural,
  realmUserRecorded,
  Reasons,
  transitionEvent,
} from './conditions.js';
import { isStatus, type ObjectKey, type PublishedRealmKube } from './kube.js';
import { matchPublishedFor, publishedForKey, upgradePublishedFor } from './published-for.js';
import { StallBackoff } from './stall-backoff.js';
import { resolveSourceRealmURL, type ReadRealm } from '../realm/source-ref.js';

export interface ReconcileResult {
  requeueAfterMs?: number;
}

export interface PublishedRealmReconcilerOptions {
  kube: PublishedRealmKube;
  /**
   * The informer's copy of an object, read instead of a GET at the start of each reconcile (as
   * controller-runtime's client reads its cache). A stale copy costs a conflict and a re-read on
   * the first write, never a lost one; a missing one falls back to a GET.
   */
  cached?: (key: ObjectKey) => PublishedRealm | undefined;
  pool: pg.Pool;
  layout: RealmsLayout;
  logger: Logger;
  /** How long one reconcile waits for acknowledgements before requeueing. Default 10 s. */
  ackWaitMs?: number;
  /** Requeue delay while replicas have not all acknowledged. Default 2 s. */
  ackRequeueMs?: number;
  /**
   * Enqueues a key again (the controller's queue). With it, a reconcile waits for acknowledgements
   * in its worker only `ackParkAfterMs`; then it frees the worker, says AwaitingAcknowledgement,
   * and the wait goes on in the background ("parked", up to `ackWaitMs`), enqueueing the key the
   * moment it completes. Without it the worker waits the whole `ackWaitMs`.
   */
  wake?: (key: ObjectKey) => void;
  /** How long a reconcile waits for acknowledgements in its worker before parking the wait (needs `wake`). Default 1 s. */
  ackParkAfterMs?: number;
  /**
   * After a publish commits, how long the acknowledgements may take before status says
   * AwaitingAcknowledgement; when they are all in by then (or no replica is registered), Ready is
   * the next write. Default 100 ms.
   */
  awaitingWriteAfterMs?: number;
  /**
   * How long a publish (or rollback) may run before status says Publishing (RollingBack); one done
   * by then is followed by the next status directly, one status write fewer per publish. Default
   * 1 s: at 100 ms, 86% of 1,000 publishes applied at once still wrote it (8 workers on 2 cores,
   * bench/scale.ts). 0 writes it before every publish.
   */
  publishingWriteAfterMs?: number;
  /** First re-check delay for Stalled objects whose cause may be fixed outside the spec; doubles per re-check. Default 30 s. */
  stalledRetryMs?: number;
  /** Cap of the Stalled re-check delay. Default 10 minutes. */
  stalledRetryMaxMs?: number;
  /** Per-realm size limits (--max-realm-files, --max-realm-bytes); over them a publish is Stalled with RealmTooLarge. */
  realmLimits?: { maxFiles?: number; maxBytes?: number };
  /** Copy files with more than one hard link (default false: skipped, with the reason). */
  copyHardLinkedFiles?: boolean;
  /** Limits the publishes that copy files at once (`--max-concurrent-stagings`); unset: every reconcile may. */
  stagingSlots?: DataPlane['stagingSlots'];
  /** fsync staged files (default true). */
  durable?: boolean;
  /** Called at each publish/unpublish step (fault-injection tests). */
  onStep?: DataPlane['onStep'];
  /**
   * The realm-server pods that should be serving (e.g. ready endpoints of their Service), when
   * known. Pods among them that never registered get the publish by NOTIFY only, and status says so.
   */
  expectedReplicaPods?: () => Promise<string[] | undefined>;
  /**
   * Registers a published realm's own Matrix user (bare username `realm/_published_<disk id>`),
   * idempotently; set when Matrix is configured (see src/matrix/realm-user.ts). Unset: realms are
   * published without it, and Ready's message says so.
   */
  registerRealmUser?: (username: string) => Promise<RegisteredRealmUser>;
  /** The Matrix server name for the realm user's permission row (`@realm/_published_<id>:<name>`); default: the publisher's. */
  matrixServerName?: string;
  /** Boxel's authorization rules (see DataPlane.authorization); unset: not checked. */
  authorization?: DataPlane['authorization'];
  /** Reads a Realm, for spec.sourceRealmRef; unset (no Realm controller): a sourceRealmRef is Stalled. */
  readRealm?: ReadRealm;
}

type StallOutcome = { ok: false; result: ReconcileResult };

export class PublishedRealmReconciler {
  private readonly plane: DataPlane;
  private readonly ackWaitMs: number;
  private readonly ackRequeueMs: number;
  private readonly awaitingWriteAfterMs: number;
  private readonly publishingWriteAfterMs: number;
  private readonly stalls: StallBackoff;
  /**
   * The object as the reconcile running for each key last read or wrote it (the controller runs
   * one reconcile per key at a time): status writes and finalizer patches start from it instead
   * of a GET each, and a stale one costs a conflict and a re-read, never a lost write.
   */
  private readonly latest = new Map<string, PublishedRealm>();
  /** Parked acknowledgement waits: key → the epoch waited for. */
  private readonly parked = new Map<string, number>();
  private readonly stopParked = new AbortController();

  constructor(private readonly options: PublishedRealmReconcilerOptions) {
    this.plane = {
      pool: options.pool,
      layout: options.layout,
      logger: options.logger,
      durable: options.durable,
      onStep: options.onStep,
      ...(options.realmLimits ? { limits: options.realmLimits } : {}),
      ...(options.matrixServerName ? { matrixServerName: options.matrixServerName } : {}),
      ...(options.authorization ? { authorization: options.authorization } : {}),
      ...(options.copyHardLinkedFiles !== undefined ? { copyHardLinkedFiles: options.copyHardLinkedFiles } : {}),
      ...(options.stagingSlots ? { stagingSlots: options.stagingSlots } : {}),
    };
    this.ackWaitMs = options.ackWaitMs ?? 10_000;
    this.ackRequeueMs = options.ackRequeueMs ?? 2_000;
    this.awaitingWriteAfterMs = options.awaitingWriteAfterMs ?? 100;
    this.publishingWriteAfterMs = options.publishingWriteAfterMs ?? 1_000;
    const initialMs = options.stalledRetryMs ?? 30_000;
    this.stalls = new StallBackoff({ initialMs, maxMs: Math.max(initialMs, options.stalledRetryMaxMs ?? 10 * 60_000) });
  }

  async reconcile(key: ObjectKey, signal?: AbortSignal): Promise<ReconcileResult> {
    const stallKey = `${key.namespace}/${key.name}`;
    const realm = this.options.cached?.(key) ?? (await this.options.kube.get(key));
    if (realm) this.latest.set(stallKey, realm);
    try {
      return await this.reconcileObject(key, realm, signal);
    } finally {
      this.latest.delete(stallKey);
    }
  }

  private async reconcileObject(key: ObjectKey, realm: PublishedRealm | undefined, signal?: AbortSignal): Promise<ReconcileResult> {
    const stallKey = `${key.namespace}/${key.name}`;
    if (!realm) {
      this.stalls.reset(stallKey);
      return {};
    }
    if (realm.metadata.deletionTimestamp) {
      this.stalls.reset(stallKey);
      return this.finalize(realm, signal);
    }

    const parsed = parsePublishedRealmSpec(realm.spec);
    if (!parsed.ok) {
      // Only a spec change can fix it, and that enqueues the object: no re-check needed.
      await this.releaseUnclaimedFinalizer(realm);
      await this.stall(realm, Reasons.InvalidSpec, invalidSpecMessage(parsed.problems));
      return {};
    }
    if (parsed.spec.suspend) {
      this.stalls.reset(stallKey);
      // Created suspended (with the admission policy's finalizer) and never published: deletes at once.
      await this.releaseUnclaimedFinalizer(realm);
      await this.writeStatus(realm, (s) => markSuspended(s, generation(realm), suspendedMessage(s)));
      this.debug(realm, 'suspended; not reconciling');
      return {};
    }
    // spec.sourceRealmRef: the named Realm's URL; a Realm gone or being deleted stalls, never republishes.
    const source = await resolveSourceRealmURL(parsed.spec, realm.metadata.namespace, this.options.readRealm);
    if (!source.ok) {
      if (!source.transient) return (await this.stallWithBackoff(realm, source.reason, source.message)).result;
      await this.writeStatus(realm, (s) => markReconciling(s, generation(realm), source.reason, source.message));
      return { requeueAfterMs: this.ackRequeueMs };
    }
    const spec = source.spec;
    // spec.rollbackTo: serve a kept version instead of publishing spec.revision (see ensureRolledBack).
    const published = spec.rollbackTo !== undefined ? await this.ensureRolledBack(realm, spec, spec.rollbackTo, signal) : await this.ensurePublished(realm, spec, signal);
    if (!published.ok) return published.result;
    this.stalls.reset(stallKey);
    if (!published.cleanUp) return this.reportPublished(key, realm, spec, published, signal);
    // The publish's post-commit clean-up (removing the superseded version, writing the staging
    // manifest) changes nothing readers see, so it runs after Ready is written, not before: awaited
    // here whatever the reporting did. A clean-up that failed or repaired (a new epoch) is
    // reconciled again soon, which waits for that epoch or retries the clean-up (published-check.ts).
    let reported: ReconcileResult;
    let cleanedUp: boolean;
    try {
      reported = await this.reportPublished(key, realm, spec, published, signal);
    } finally {
      cleanedUp = await published.cleanUp();
    }
    return cleanedUp ? reported : { requeueAfterMs: Math.min(reported.requeueAfterMs ?? this.ackRequeueMs, this.ackRequeueMs) };
  }

  /** After a publish (or none needed): waits for the acknowledgements, enqueues the reindex and writes Ready. */
  private async reportPublished(
    key: ObjectKey,
    realm: PublishedRealm,
    spec: PublishedRealmSpec,
    published: Extract<Awaited<ReturnType<PublishedRealmReconciler['ensurePublished']>>, { ok: true }>,
    signal: AbortSignal | undefined,
  ): Promise<ReconcileResult> {
    const realmUser = published.realmUserRegistered ? ({ registered: true } as const) : await this.ensureRealmUser(realm, published.state);

    this.debug(realm, { epoch: published.state.epoch }, 'waiting for replica acknowledgements');
    const epoch = Number(published.state.epoch);
    const parkAfterMs = this.options.wake ? Math.min(this.ackWaitMs, this.options.ackParkAfterMs ?? 1_000) : this.ackWaitMs;
    const waiting = waitForReplicaAcks(this.options.pool, { realmURL: spec.publishedRealmURL, epoch, timeoutMs: parkAfterMs, signal });
    // Just published: AwaitingAcknowledgement unless the acks are all in within a moment. Ready
    // then follows Publishing directly (one status write fewer per publish); Reconciling was True
    // all along, which is what kstatus readers (Flux, Argo CD) need.
    if (published.awaiting && !(await completesWithin(waiting, this.awaitingWriteAfterMs))) await this.writeStatus(realm, published.awaiting);
    const acks = await waiting;
    if (!acks.complete) {
      if (this.options.wake) this.park(key, spec.publishedRealmURL, epoch);
      const total = acks.missing.length + acks.acknowledged.length;
      const message =
        `Published epoch ${published.state.epoch}; waiting for ${acks.missing.length} of ${plural(total, 'live replica')} to drop their caches: ` +
        `${acks.missing.slice(0, 5).join(', ')}${acks.missing.length > 5 ? ', …' : ''}. A replica that stops renewing its lease stops counting once the lease expires.`;
      await this.writeStatus(realm, (s) => ({ ...markReconciling(s, generation(realm), Reasons.AwaitingAcknowledgement, message), ...contentStatus(published.state, acks) }));
      return { requeueAfterMs: this.ackRequeueMs };
    }

    this.debug(realm, { acknowledged: acks.acknowledged.length, waitedMs: Math.round(acks.waitedMs) }, 'replicas acknowledged');
    const reindexJobId = await this.ensureReindexed(realm, spec, published.state);
    if (reindexJobId === 'failed') return { requeueAfterMs: this.ackRequeueMs };

    const unregistered = await this.unregisteredReplicaPods();
    const notifyOnly = acks.mode === 'notify-only' || unregistered.length > 0;
    const rolledBack = spec.rollbackTo !== undefined;
    const reason = rolledBack ? Reasons.RolledBack : notifyOnly ? Reasons.PublishedNotifyOnly : Reasons.Published;
    const what = rolledBack
      ? `Rolled back to kept version ${spec.rollbackTo} at epoch ${published.state.epoch} (${plural(published.state.file_count ?? 0, 'file')}); remove spec.rollbackTo to publish spec.revision again`
      : `Published epoch ${published.state.epoch} (${plural(published.state.file_count ?? 0, 'file')})`;
    // Short (Kubernetes conventions): the facts are in status (replicas, epoch, counts) and the
    // publish's Event; every byte here is paid in the status write, etcd and each watcher's event.
    const message =
      unregistered.length > 0
        ? `${what}; ${plural(acks.acknowledged.length, 'registered replica')} acknowledged, but ${plural(unregistered.length, 'ready realm-server pod')} ${unregistered.length === 1 ? 'does' : 'do'} not run the acknowledging listener (${unregistered.slice(0, 5).join(', ')}${unregistered.length > 5 ? ', …' : ''}), so ${unregistered.length === 1 ? 'its cache was' : 'their caches were'} only told by NOTIFY, not confirmed clean.`
        : notifyOnly
          ? `${what}; no replica is registered to acknowledge it, so caches were only told by NOTIFY, not confirmed clean.`
          : `${what}; ${acks.acknowledged.length === 1 ? 'the 1 live replica' : `all ${acks.acknowledged.length} live replicas`} dropped ${acks.acknowledged.length === 1 ? 'its cache' : 'their caches'}.`;
    const withoutUser = realmUser.registered ? '' : ` ${realmUser.note}`;
    // The kept versions change only with the live one (publish, rollback and their clean-up): read them then, not on every resync.
    const versionsKnown = !published.publishedNow && (realm.status?.versions ?? []).some((v) => v.live && v.version === published.state.content_version);
    const versions = versionsKnown ? {} : await this.versionsStatus(spec.publishedRealmURL, published.state, published.keptVersions);
    const wasReady = realm.status?.conditions?.find((c) => c.type === 'Ready');
    // Info, once per Ready decision (not on every resync): just before the write, so its time is a lower
    // bound of Ready's that in-cluster tests read with `kubectl logs` (the operator runs at info there).
    if (wasReady?.status !== 'True' || wasReady.reason !== reason || wasReady.observedGeneration !== generation(realm) || realm.status?.epoch !== Number(published.state.epoch)) {
      this.log(realm).info({ epoch: Number(published.state.epoch), reason }, 'writing Ready');
    }
    // One Event per successful publish: a Ready reached in the reconcile that published is told by
    // the publish's own Event (ContentPublished, ContentRepublished, ContentRolledBack); Ready gets
    // its transition Event when it comes later (the acknowledgements were parked) or on any other change.
    await this.writeStatus(realm, (s) => ({
      ...markReady(s, generation(realm), reason, message + withoutUser),
      ...contentStatus(published.state, acks, unregistered),
      ...versions,
      // The generation whose spec was published: kept across changes that need no publish (suspend).
      publishedGeneration: published.publishedNow || s.publishedGeneration === undefined ? generation(realm) : s.publishedGeneration,
      // A rollback serves an older revision: publishedRevision keeps saying what was last published.
      ...(spec.revision !== undefined && !rolledBack ? { publishedRevision: String(spec.revision) } : {}),
      ...(reindexJobId !== undefined ? { reindexJobId } : {}),
    }), { transitionEvent: !published.publishedNow });
    return {};
  }

  /**
   * Publishes unless the database already holds a publish of this spec. Every check that can
   * stall runs before anything is copied; after the commit, the caller says that the publish
   * waits for acknowledgements (see `awaiting`).
   */
  private async ensurePublished(
    realm: PublishedRealm,
    spec: PublishedRealmSpec,
    /** Aborts when leadership is lost (or shutdown gave up waiting): the publish stops before its swap. */
    signal?: AbortSignal,
  ): Promise<
    | {
        ok: true;
        state: RealmEpochRow;
        publishedNow: boolean;
        realmUserRegistered?: boolean;
        /** Set when this reconcile published: the AwaitingAcknowledgement status, written unless the acks come at once. */
        awaiting?: (status: PublishedRealmStatus) => PublishedRealmStatus;
        /** The kept versions, when the publish knew them exactly (status.versions without a read). */
        keptVersions?: KeptVersion[];
        /** The publish's post-commit clean-up, to be awaited after Ready (see PublishResult.cleanUp). */
        cleanUp?: () => Promise<boolean>;
      }
    | StallOutcome
  > {
    const url = spec.publishedRealmURL;
    const publishedFor = publishedForKey(realm, spec);
    // One statement for the epoch row (already published?), Boxel's authorization facts (the
    // re-check of a published realm) and the rows the checks before copying read (a new spec).
    const rows = await readPublishTargetRows(this.options.pool, spec.sourceRealmURL, url, spec.publisher, { epochRow: 'read' });
    const existing = rows.epochRow;
    const match = existing?.content_version ? matchPublishedFor(existing.published_for, realm, spec) : undefined;
    if (existing && match) {
      // Recorded by an earlier version for this same spec: the current key from now on, no republish.
      if (match === 'legacy') await upgradePublishedFor(this.options.pool, url, existing.published_for!, publishedFor);
      if (existing.claimed_by === claimantOf(realm)) await this.setFinalizer(realm, true);
      const refused = await this.reauthorize(realm, spec, existing, rows);
      if (refused) return refused;
      return { ok: true, state: await this.recoveredIfInterrupted(realm, url, existing), publishedNow: false };
    }

    // The owner is Boxel's: the realm's own user (the data plane derives it); the publisher gets
    // realm-owner (the data plane falls back to the source realm's owner when none is declared).
    const request: PublishRequest = {
      sourceRealmURL: spec.sourceRealmURL,
      publishedRealmURL: url,
      publishedFor,
      history: historyPolicyOf(spec),
      ...(spec.revision !== undefined ? { revision: String(spec.revision) } : {}),
      ...(spec.publisher !== undefined ? { publisher: spec.publisher } : {}),
    };
    const checked = await this.checkBeforeCopy(realm, request, rows);
    if (!checked.ok) return checked;
    request.claim = checked.claim;
    // The URL's claim first, and only then the finalizer (a no-op when the admission policy put it
    // on at creation): an object refused before it holds the claim keeps none, so deleting it is
    // instant and unpublishes nothing.
    // The reservation's row goes to publishRealm (`reserved`), which then skips its own read of it.
    let reservation: DiskIdReservation;
    try {
      // BEGIN, the realm lock and the reservation in one round trip (realm-state.ts).
      reservation = await reservePublishedDiskIdLocked(this.options.pool, url, checked.claim);
    } catch (error) {
      const stalled = await this.stallFor(realm, error);
      if (stalled) return stalled;
      throw error;
    }
    await this.setFinalizer(realm, true);
    const realmUser = await this.registerBeforeFirstPublish(realm, url, reservation.diskId, checked.publisher);
    if (!realmUser.ok) return realmUser;

    this.debug(realm, { generation: generation(realm) }, 'publishing');
    let result;
    try {
      // Fenced by generation: a newer generation of this object committed meanwhile (by a new
      // leader while this one was paused) is never overwritten by this one.
      // `checked`: the checks just run are not repeated before copying (they are under the lock).
      result = await this.withProgressStatus(
        realm,
        () => publishRealm(this.plane, { ...request, fence: { of: claimantOf(realm), generation: generation(realm) } }, { signal, checked: checked.checked, reserved: reservation, deferCleanUp: true }),
        (s) => markReconciling(s, generation(realm), Reasons.Publishing, `Publishing ${spec.sourceRealmURL} at ${url}.`),
        signal,
      );
    } catch (error) {
      // Another leader owns this object now, or shutdown gave up on us: write nothing, that status is theirs.
      if (signal?.aborted) throw error;
      if (error instanceof SupersededPublishError) {
        // The newer generation won; this copy of the object is stale. Its reconcile (already
        // queued by the watch) writes status; the requeue only makes sure it happens.
        this.log(realm).info({ generation: error.generation, publishedGeneration: error.recordedGeneration }, 'a newer generation is already published; not committing this one');
        return { ok: false, result: { requeueAfterMs: this.ackRequeueMs } };
      }
      // The checks passed a moment ago; the registry or the source changed while we copied.
      const stalled = await this.stallFor(realm, error);
      if (stalled) return stalled;
      await this.writeStatus(realm, (s) => markReconciling(s, generation(realm), Reasons.PublishFailed, `Publishing failed and will be retried: ${(error as Error).message}`));
      throw error;
    }
    // The row as the publish committed it, unless its clean-up had to change it since.
    const state = result.state ?? (await readRealmEpochRow(this.options.pool, url));
    if (!state?.content_version) {
      await result.cleanUp?.(); // never left undone
      throw new Error(`realm_operator.realm_epochs has no committed content for ${url} right after publishing`);
    }
    const what = `${plural(result.fileCount, 'file')} (${plural(result.totalBytes, 'byte')})`;
    // The Event first: it never throws, and a failed status write below is retried without republishing.
    const reason = existing?.content_version ? Reasons.ContentRepublished : Reasons.ContentPublished;
    const skipped =
      result.skipped.length > 0
        ? ` Skipped ${plural(result.skipped.length, 'entry', 'entries')}: ${result.skipped.slice(0, 3).map((s) => `${s.path} (${s.reason})`).join('; ')}${result.skipped.length > 3 ? '; …' : ''}.`
        : '';
    await this.options.kube.recordEvent(realm, 'Normal', reason, Actions.Publish, `${existing?.content_version ? 'Republished' : 'Published'} ${what} at epoch ${result.epoch}, digest ${result.digest}.${skipped}`);
    const awaiting = (s: PublishedRealmStatus): PublishedRealmStatus => {
      const { replicas: _previousEpochs, ...rest } = s;
      return {
        ...markReconciling(rest, generation(realm), Reasons.AwaitingAcknowledgement, `Published epoch ${result.epoch} (${what}); waiting for every live replica to acknowledge it.`),
        ...contentFields(state),
      };
    };
    return {
      ok: true,
      state,
      publishedNow: true,
      realmUserRegistered: realmUser.registered,
      awaiting,
      ...(result.keptVersions ? { keptVersions: result.keptVersions } : {}),
      ...(result.cleanUp ? { cleanUp: result.cleanUp } : {}),
    };
  }

  /**
   * Serves the kept version `version` (spec.rollbackTo) unless it is already live: one locked swap
   * with no copy ({@link rollbackRealm}), fenced by generation like a publish; the caller then waits
   * for acknowledgements and reindexes exactly as after a publish. Nothing published by this object
   * yet, or a version that is not kept: Stalled VersionNotKept (only a spec change fixes it).
   */
  private async ensureRolledBack(realm: PublishedRealm, spec: PublishedRealmSpec, version: string, signal?: AbortSignal): ReturnType<PublishedRealmReconciler['ensurePublished']> {
    const url = spec.publishedRealmURL;
    const rows = await readPublishTargetRows(this.options.pool, spec.sourceRealmURL, url, spec.publisher, { epochRow: 'read' });
    const existing = rows.epochRow;
    if (!existing?.content_version || existing.claimed_by !== claimantOf(realm)) {
      await this.releaseUnclaimedFinalizer(realm);
      await this.stall(realm, Reasons.VersionNotKept, `spec.rollbackTo is ${version}, but this PublishedRealm has published nothing at ${url} yet, so no version is kept; remove spec.rollbackTo to publish.`);
      return { ok: false, result: {} };
    }
    // Boxel's rules as for any publish: a publisher that lost realm-owner (or a source no longer
    // publishable) may not choose which content is served either; the live version stays.
    const refused = await this.reauthorize(realm, spec, existing, rows);
    if (refused) return refused;
    if (existing.content_version === version) return { ok: true, state: await this.recoveredIfInterrupted(realm, url, existing), publishedNow: false };
    let result;
    try {
      result = await this.withProgressStatus(
        realm,
        () =>
          rollbackRealm(
            this.plane,
            { publishedRealmURL: url, version, claim: { claimant: claimantOf(realm) }, publishedFor: `${realm.metadata.uid}/rollback-${version}`, fence: { of: claimantOf(realm), generation: generation(realm) }, history: historyPolicyOf(spec) },
            { signal },
          ),
        (s) => markReconciling(s, generation(realm), Reasons.RollingBack, `Rolling back ${url} to kept version ${version}.`),
        signal,
      );
    } catch (error) {
      if (signal?.aborted) throw error;
      if (error instanceof SupersededPublishError) return { ok: false, result: { requeueAfterMs: this.ackRequeueMs } };
      if (error instanceof VersionNotKeptError) {
        await this.stall(realm, Reasons.VersionNotKept, `${error.message}.`);
        return { ok: false, result: {} };
      }
      const stalled = await this.stallFor(realm, error);
      if (stalled) return stalled;
      await this.writeStatus(realm, (s) => markReconciling(s, generation(realm), Reasons.PublishFailed, `Rolling back failed and will be retried: ${(error as Error).message}`));
      throw error;
    }
    const state = result.state ?? (await readRealmEpochRow(this.options.pool, url));
    if (!state?.content_version) throw new Error(`realm_operator.realm_epochs has no committed content for ${url} right after rolling back`);
    await this.options.kube.recordEvent(realm, 'Normal', Reasons.ContentRolledBack, Actions.Rollback, `Rolled back from ${result.previousVersion} to kept version ${version} at epoch ${result.epoch} (no copy), digest ${result.digest}.`);
    const awaiting = (s: PublishedRealmStatus): PublishedRealmStatus => {
      const { replicas: _previousEpochs, ...rest } = s;
      return {
        ...markReconciling(rest, generation(realm), Reasons.AwaitingAcknowledgement, `Rolled back to kept version ${version} at epoch ${result.epoch}; waiting for every live replica to acknowledge it.`),
        ...contentFields(state),
      };
    };
    return { ok: true, state, publishedNow: true, awaiting };
  }

  /**
   * The spec is already published, but a publish that died after its swap (or a repair whose
   * COMMIT was lost) may have left readers on content that never committed: recovery puts the
   * files back with a new epoch and the wildcard NOTIFY, and the caller then waits for the
   * acknowledgements of that epoch, so Ready is never reported over uncommitted content.
   */
  private async recoveredIfInterrupted(realm: PublishedRealm, url: string, state: RealmEpochRow): Promise<RealmEpochRow> {
    if (!(await publishedFilesDisagree(this.plane, state))) return state;
    const recovery = await recoverPublishedRealm(this.plane, url);
    this.log(realm).warn({ actions: recovery.actions }, 'published files disagreed with the database; recovered before reporting Ready');
    const after = await readRealmEpochRow(this.options.pool, url);
    if (!after?.content_version) throw new Error(`realm_operator.realm_epochs has no committed content for ${url} after recovery`);
    return after;
  }

  /** status.liveVersion and status.versions: the kept versions, newest first, the live one marked. */
  private async versionsStatus(url: string, state: RealmEpochRow, known?: KeptVersion[]): Promise<Partial<PublishedRealmStatus>> {
    if (!state.content_version) return {};
    const kept = known ?? (await readKeptVersions(this.options.pool, url, state.disk_id ?? undefined));
    return {
      liveVersion: state.content_version,
      versions: kept.slice(0, 20).map((v) => ({
        version: v.version,
        epoch: v.epoch,
        digest: v.digest,
        fileCount: v.fileCount,
        totalBytes: v.totalBytes,
        publishedAt: v.publishedAt.toISOString(),
        ...(v.revision !== null ? { revision: v.revision } : {}),
        live: v.version === state.content_version,
      })),
    };
  }

  /**
   * Boxel's rules again for a realm already published from this spec, on every reconcile and
   * resync (Boxel checks them only when publishing). When they fail now — the publisher lost
   * realm-owner, the source stopped being publishable, a domain was removed — the object is
   * Stalled NotAuthorized and nothing is republished; the published content is left as it is:
   * unpublishing on the operator's own initiative would take a live site down and lose it.
   */
  private async reauthorize(realm: PublishedRealm, spec: PublishedRealmSpec, state: RealmEpochRow, rows: PublishTargetRows): Promise<StallOutcome | undefined> {
    const policy = this.options.authorization;
    if (!policy) return undefined;
    try {
      await reauthorizePublished(this.options.pool, policy, {
        sourceRealmURL: spec.sourceRealmURL,
        publishedRealmURL: spec.publishedRealmURL,
        ...(spec.publisher !== undefined ? { publisher: spec.publisher } : {}),
      }, rows);
      return undefined;
    } catch (error) {
      if (!(error instanceof PublishNotAuthorizedError)) throw error;
      return this.stallWithBackoff(realm, Reasons.NotAuthorized, `${error.message}. ${stillServedNote(state)}.`);
    }
  }

  /**
   * Registers a new published realm's own Matrix user before its permission row is written, as
   * Boxel's publish handler does (registerUser, then insertPermissions with the user id Synapse
   * returned). The publish transaction writes the id derived from the server name, so the id
   * Synapse returns must be that one; otherwise nothing is published (Stalled
   * RealmUserRegistrationFailed naming both), rather than a permission for a user that does not exist.
   * Only for a first publish (no registry row): a republish keeps the permissions it has.
   */
  private async registerBeforeFirstPublish(realm: PublishedRealm, url: string, diskId: string, publisher: string): Promise<{ ok: true; registered: boolean } | StallOutcome> {
    const register = this.options.registerRealmUser;
    if (!register || (await readRegistryRow(this.options.pool, url))) return { ok: true, registered: false };
    const username = publishedRealmUsername(diskId);
    const user = await this.registerOrReport(realm, register, username, (cause) =>
      `Registering its realm user ${username} on Matrix failed, so nothing is published yet (Boxel registers the realm user before writing its permissions); retried: ${cause}`,
    );
    const serverName = this.options.matrixServerName ?? matrixServerNameOf(publisher);
    const derived = serverName ? matrixUserId(username, serverName) : username;
    if (user.userId !== derived) {
      const from = this.options.matrixServerName ? `--matrix-server-name ${serverName}` : serverName ? `the publisher ${publisher}'s server name` : 'no server name';
      const homeserver = matrixServerNameOf(user.userId);
      const message =
        `The homeserver registered the realm user as ${user.userId}, but its permission row would name ${derived} (from ${from}), so nothing is published. ` +
        `Set --matrix-server-name / MATRIX_SERVER_NAME to the homeserver's server name${homeserver ? ` (${homeserver})` : ''}.`;
      return this.stallWithBackoff(realm, Reasons.RealmUserRegistrationFailed, message, { status: 'False', reason: Reasons.RealmUserRegistrationFailed, message });
    }
    await this.recordRealmUser(realm, user);
    return { ok: true, registered: true };
  }

  /** Runs every check that can refuse the publish; takes over the URL from a claimant that is gone. */
  private async checkBeforeCopy(
    realm: PublishedRealm,
    request: PublishRequest,
    /** The rows this reconcile read for the request: a take-over re-checks them with its claim (the locked check reads them again). */
    rows: PublishTargetRows,
  ): Promise<{ ok: true; claim: ClaimOptions; publisher: string; checked: PublishableSource } | StallOutcome> {
    let claim: ClaimOptions = { claimant: claimantOf(realm) };
    for (;;) {
      try {
        const checked = await checkPublishable(this.plane, { ...request, claim }, rows);
        return { ok: true, claim, publisher: checked.publisher, checked };
      } catch (error) {
        if (error instanceof ClaimConflictError && !claim.takeOverFrom && (await this.claimantIsGone(error.claimedBy))) {
          claim = { ...claim, takeOverFrom: error.claimedBy };
          continue;
        }
        const stalled = await this.stallFor(realm, error);
        if (stalled) return stalled;
        throw error;
      }
    }
  }

  /** Stalls for a refusal a person must fix; `undefined` for anything else (to be retried). */
  private async stallFor(realm: PublishedRealm, error: unknown): Promise<StallOutcome | undefined> {
    const refusal = refusalOf(error);
    if (!refusal) return undefined;
    return this.stallWithBackoff(realm, refusal.reason, refusal.message);
  }

  /** Stalled, re-checked with backoff; `realmUser` also sets the RealmUserRegistered condition. */
  private async stallWithBackoff(
    realm: PublishedRealm,
    reason: string,
    message: string,
    realmUser?: { status: 'True' | 'False'; reason: string; message: string },
  ): Promise<StallOutcome> {
    await this.releaseUnclaimedFinalizer(realm);
    await this.writeStatus(realm, (s) => {
      const stalled = markStalled(s, generation(realm), reason, message);
      return realmUser ? markRealmUser(stalled, generation(realm), realmUser) : stalled;
    });
    const delay = this.stalls.next(`${realm.metadata.namespace}/${realm.metadata.name}`, `${realm.metadata.uid}/${generation(realm)}`);
    this.debug(realm, { reason, retryInMs: delay }, 'stalled; re-checking later');
    return { ok: false, result: { requeueAfterMs: delay } };
  }

  /**
   * Drops the finalizer of an object that does not hold its URL's claim (one refused before
   * claiming, with the finalizer deploy/base's admission policy or an earlier version added up
   * front), so deleting it is instant.
   * Must run before this reconcile writes status: the patch is conditional on the object's version.
   */
  private async releaseUnclaimedFinalizer(realm: PublishedRealm): Promise<void> {
    if (!realm.metadata.finalizers?.includes(UNPUBLISH_FINALIZER)) return;
    const url = (realm.spec as { publishedRealmURL?: unknown } | undefined)?.publishedRealmURL;
    const state = typeof url === 'string' ? await readRealmEpochRow(this.options.pool, url) : undefined;
    if (state?.claimed_by === claimantOf(realm)) return;
    await this.setFinalizer(realm, false);
  }

  /** Enqueues the reindex once per epoch; returns the job id, undefined when disabled, or 'failed'. */
  private async ensureReindexed(realm: PublishedRealm, spec: PublishedRealmSpec, state: RealmEpochRow): Promise<number | undefined | 'failed'> {
    const reindex = spec.reindex ?? { enabled: true, priority: 10, timeoutSeconds: 3600 };
    if (!reindex.enabled) return undefined;
    if (state.reindex_epoch !== null && state.reindex_epoch === state.epoch && state.reindex_job_id !== null) return Number(state.reindex_job_id);
    try {
      // realmUsername: the registry row's owner (the realm user), as Boxel's reindex job carries it.
      const job = await enqueueReindex(this.options.pool, {
        realmURL: spec.publishedRealmURL,
        epoch: Number(state.epoch),
        priority: reindex.priority,
        timeout: reindex.timeoutSeconds,
      });
      if (job.created) await this.options.kube.recordEvent(realm, 'Normal', Reasons.ReindexEnqueued, Actions.Reindex, `Enqueued reindex job ${job.jobId} for epoch ${state.epoch} after every live replica acknowledged.`);
      return job.jobId;
    } catch (error) {
      if (!(error instanceof PublishError)) throw error;
      // The epoch moved under us (a concurrent recovery): the next reconcile waits for the new one.
      this.log(realm).info({ err: error }, 'epoch changed before the reindex; requeueing');
      return 'failed';
    }
  }

  /**
   * The published realm's own Matrix user, registered once (Boxel registers it on a first
   * publish): skipped when status already records it, so a restart registers nothing again.
   * Without Matrix settings nothing is registered, and Ready's message says so.
   * A failure is written (Reconciling, RealmUserRegistrationFailed) and thrown, so the controller
   * retries with backoff; Ready waits for it.
   */
  private async ensureRealmUser(realm: PublishedRealm, state: RealmEpochRow): Promise<{ registered: true } | { registered: false; note: string }> {
    if (!state.disk_id) return { registered: false, note: 'The realm has no disk id, so it has no realm user.' };
    const username = publishedRealmUsername(state.disk_id);
    const register = this.options.registerRealmUser;
    if (!register) {
      // Said in Ready's message only: no extra condition or status write for deployments without Matrix.
      return {
        registered: false,
        // Its name is realm/_published_<status.diskId>; the start-up log says Matrix is not configured.
        note: `Its realm user was not registered: the operator has no Matrix settings (--matrix-url and its secrets).`,
      };
    }
    // The status this reconcile started from: a registration recorded by any earlier reconcile.
    if (realmUserRecorded(realm.status, username)) return { registered: true };

    const user = await this.registerOrReport(realm, register, username, (cause) => `Published, but registering its realm user ${username} on Matrix failed and will be retried: ${cause}`);
    await this.recordRealmUser(realm, user);
    return { registered: true };
  }

  /** Registers the realm user; a failure is written (Reconciling, RealmUserRegistrationFailed) and thrown, so the controller retries. */
  private async registerOrReport(
    realm: PublishedRealm,
    register: (username: string) => Promise<RegisteredRealmUser>,
    username: string,
    failure: (cause: string) => string,
  ): Promise<RegisteredRealmUser> {
    try {
      return await register(username);
    } catch (error) {
      const message = failure((error as Error).message);
      await this.writeStatus(realm, (s) =>
        markRealmUser(markReconciling(s, generation(realm), Reasons.RealmUserRegistrationFailed, message), generation(realm), {
          status: 'False',
          reason: Reasons.RealmUserRegistrationFailed,
          message,
        }),
      );
      throw error;
    }
  }

  /** RealmUserRegistered=True, and an Event when the user was created. */
  private async recordRealmUser(realm: PublishedRealm, user: RegisteredRealmUser): Promise<void> {
    const message = user.created
      ? `Registered ${user.userId} on Matrix (the realm's own user, as Boxel registers it on a first publish).`
      : `${user.userId} already existed on Matrix, and the password derived from the realm secret seed logs in as it.`;
    await this.writeStatus(realm, (s) => markRealmUser(s, generation(realm), { status: 'True', reason: Reasons.RealmUserRegistered, message }));
    if (user.created) await this.options.kube.recordEvent(realm, 'Normal', Reasons.RealmUserRegistered, Actions.RegisterRealmUser, message);
    this.log(realm).info({ userId: user.userId, created: user.created }, 'realm user on Matrix');
  }

  /** Deletion: unpublish (unless another object owns the URL), then release the finalizer. */
  private async finalize(realm: PublishedRealm, signal?: AbortSignal): Promise<ReconcileResult> {
    if (!realm.metadata.finalizers?.includes(UNPUBLISH_FINALIZER)) return {};
    const url = (realm.spec as { publishedRealmURL?: unknown } | undefined)?.publishedRealmURL;
    const parsed = parsePublishedRealmSpec(realm.spec);
    if (parsed.ok || typeof url === 'string') {
      const target = parsed.ok ? parsed.spec.publishedRealmURL : (url as string);
      // Only what this object published is unpublished: an object whose publish never went through
      // (refused, Stalled, invalid) must not take down a realm someone else published at its URL.
      const state = await readRealmEpochRow(this.options.pool, target);
      if (state?.claimed_by !== claimantOf(realm)) {
        if (await readRegistryRow(this.options.pool, target)) {
          await this.options.kube.recordEvent(realm, 'Warning', Reasons.NotUnpublished, Actions.Unpublish, `${target} was not published by this PublishedRealm; left it published.`);
        }
        await this.setFinalizer(realm, false);
        return {};
      }
      try {
        const publisher = parsed.ok ? parsed.spec.publisher : undefined;
        const result = await unpublishRealm(this.plane, target, { claimant: claimantOf(realm) }, publisher, { signal });
        if (result.unpublished) await this.options.kube.recordEvent(realm, 'Normal', Reasons.Unpublished, Actions.Unpublish, `Unpublished ${target} (epoch ${result.epoch}).`);
      } catch (error) {
        if (error instanceof ClaimConflictError || error instanceof PublishNotAuthorizedError) {
          await this.options.kube.recordEvent(realm, 'Warning', Reasons.NotUnpublished, Actions.Unpublish, `${error.message}; left it published.`);
        } else if (error instanceof PublishError || (error as Error).name === 'RealmURLError') {
          await this.options.kube.recordEvent(realm, 'Warning', Reasons.NotUnpublished, Actions.Unpublish, `${(error as Error).message}; nothing to unpublish.`);
        } else {
          throw error;
        }
      }
    }
    await this.setFinalizer(realm, false);
    return {};
  }

  private async stall(realm: PublishedRealm, reason: string, message: string): Promise<void> {
    await this.writeStatus(realm, (s) => markStalled(s, generation(realm), reason, message));
  }

  /**
   * One status write when it changes anything; an Event when that was a transition (see
   * {@link transitionEvent}), unless `transitionEvent` is false (an Event of this reconcile already said it).
   */
  private async writeStatus(
    realm: PublishedRealm,
    mutate: (status: PublishedRealmStatus, live: PublishedRealm) => PublishedRealmStatus,
    options: { transitionEvent?: boolean } = {},
  ): Promise<void> {
    const key = `${realm.metadata.namespace}/${realm.metadata.name}`;
    const written = await this.options.kube.updateStatus({ namespace: realm.metadata.namespace, name: realm.metadata.name }, mutate, this.latest.get(key));
    if (written && this.latest.has(key)) this.latest.set(key, written.after);
    if (!written || written.before === written.after || options.transitionEvent === false) return;
    const event = transitionEvent(written.before.status, written.after.status);
    if (event) await this.options.kube.recordEvent(written.after, event.type, event.reason, Actions.Reconcile, event.message);
  }

  /**
   * Runs a publish (or rollback) and says so in status (Publishing, RollingBack) only when it is
   * still running after `publishingWriteAfterMs`: one done by then goes straight to its next
   * status, one PUT (and its watch fan-out) fewer per object. Reconciling stays True throughout —
   * before the first write the object's observedGeneration lags its generation — so kstatus readers
   * (Flux, Argo CD) see it in progress either way. 0: written before the work starts.
   * A failed in-progress write does not stop a publish already under way (the next write says
   * where it got to); nothing is written once `signal` aborted (another leader's status).
   */
  private async withProgressStatus<R>(realm: PublishedRealm, start: () => Promise<R>, mutate: (status: PublishedRealmStatus) => PublishedRealmStatus, signal?: AbortSignal): Promise<R> {
    if (this.publishingWriteAfterMs <= 0) {
      await this.writeStatus(realm, mutate);
      return start();
    }
    const work = start();
    if ((await settlesWithin(work, this.publishingWriteAfterMs)) || signal?.aborted) return work;
    try {
      // Written while the publish runs, so it may meet a newer generation (written by a new leader
      // while this one was paused): that object's status is left alone.
      await this.writeStatus(realm, (s, live) => (live.metadata.uid === realm.metadata.uid && generation(live) === generation(realm) ? mutate(s) : s));
    } catch (error) {
      this.log(realm).warn({ err: error }, 'could not write the in-progress status; the publish goes on');
    }
    return work;
  }

  /**
   * Goes on waiting for `epoch`'s acknowledgements without a worker, and enqueues `key` once they
   * are complete (the requeue after `ackRequeueMs` stays as the fallback). One parked wait per
   * key and epoch; a failure or timeout just ends it.
   */
  private park(key: ObjectKey, realmURL: string, epoch: number): void {
    const id = `${key.namespace}/${key.name}`;
    if (this.parked.get(id) === epoch) return;
    this.parked.set(id, epoch);
    waitForReplicaAcks(this.options.pool, { realmURL, epoch, timeoutMs: this.ackWaitMs, signal: this.stopParked.signal })
      .then((acks) => {
        if (acks.complete && !this.stopParked.signal.aborted) this.options.wake!(key);
      })
      .catch((error: unknown) => this.options.logger.debug({ err: error, key: id }, 'parked acknowledgement wait failed; the requeue re-checks'))
      .finally(() => {
        if (this.parked.get(id) === epoch) this.parked.delete(id);
      });
  }

  /** Ends parked acknowledgement waits (at shutdown, before the pool closes). */
  close(): void {
    this.stopParked.abort();
  }

  /** Adds or removes the finalizer on the object as this reconcile last saw it (its resourceVersion guards the patch). */
  private async setFinalizer(realm: PublishedRealm, present: boolean): Promise<void> {
    const key = `${realm.metadata.namespace}/${realm.metadata.name}`;
    const patched = await this.options.kube.setFinalizer(this.latest.get(key) ?? realm, UNPUBLISH_FINALIZER, present);
    if (patched && this.latest.has(key)) this.latest.set(key, patched);
  }

  /** Expected realm-server pods with no live registration; empty when the expectation is unknown. */
  private async unregisteredReplicaPods(): Promise<string[]> {
    const expected = await this.options.expectedReplicaPods?.();
    if (!expected || expected.length === 0) return [];
    const registered = await readLiveReplicaPods(this.options.pool);
    return expected.filter((pod) => !registered.has(pod)).sort();
  }

  /** Whether the object named in a claim (`<namespace>/<name>/<uid>`) no longer exists. */
  private async claimantIsGone(claimedBy: string): Promise<boolean> {
    const [namespace, name, uid] = claimedBy.split('/');
    if (!namespace || !name) return false;
    try {
      const other = await this.options.kube.get({ namespace, name });
      return !other || other.metadata.uid !== uid;
    } catch (error) {
      return isStatus(error, 404);
    }
  }

  /** A debug line: several per reconcile, so no child logger is made (its bindings are serialized when made) unless debug is on. */
  private debug(realm: PublishedRealm, ...line: [string] | [object, string]): void {
    if (this.options.logger.isLevelEnabled('debug')) (this.log(realm).debug as (...args: unknown[]) => void)(...line);
  }

  private log(realm: PublishedRealm): Logger {
    return this.options.logger.child({ publishedRealm: `${realm.metadata.namespace}/${realm.metadata.name}` });
  }
}

/** Whether `waiting` resolves complete within `ms` (a rejection is left to whoever awaits it). */
async function completesWithin(waiting: Promise<WaitForAcksResult>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([waiting.then((acks) => acks.complete, () => false), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Whether `work` settles (either way; its rejection is left to whoever awaits it) within `ms`. */
async function settlesWithin(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([work.then(() => true, () => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The spec's history policy with its default (the CRD defaults limit; an object admitted without that default gets it here). */
function historyPolicyOf(spec: PublishedRealmSpec): HistoryPolicy {
  return { limit: spec.history?.limit ?? DEFAULT_HISTORY_LIMIT, ...(spec.history?.maxBytes !== undefined ? { maxBytes: spec.history.maxBytes } : {}) };
}

function generation(realm: PublishedRealm): number {
  return realm.metadata.generation ?? 0;
}

function claimantOf(realm: PublishedRealm): string {
  return `${realm.metadata.namespace}/${realm.metadata.name}/${realm.metadata.uid}`;
}

/** A publish refusal a person must fix, as a Stalled reason and message; `undefined` for anything else. */
export function refusalOf(error: unknown): { reason: string; message: string } | undefined {
  if (error instanceof ClaimConflictError) {
    return { reason: Reasons.URLAlreadyPublished, message: `${error.message}. Delete one of the two PublishedRealms, or delete this one and create it again with another publishedRealmURL.` };
  }
  if (error instanceof RealmURLOverlapError) return { reason: Reasons.URLOverlapsRealm, message: `${error.message}.` };
  if (error instanceof URLTakenByRealmError) return { reason: Reasons.URLTakenByRealm, message: `${error.message}.` };
  if (error instanceof RealmTooLargeError) return { reason: Reasons.RealmTooLarge, message: `${error.message}.` };
  if (error instanceof UnsafeDatabaseValueError) return { reason: Reasons.UnsafeDatabaseValue, message: `${error.message}.` };
  if (error instanceof PublishNotAuthorizedError) return { reason: Reasons.NotAuthorized, message: `${error.message}.` };
  if (error instanceof PublishError) return { reason: Reasons.SourceRealmUnavailable, message: `${error.message}.` };
  return undefined;
}

/** Why a realm whose rules fail now stays published: said in the NotAuthorized message. */
function stillServedNote(state: RealmEpochRow): string {
  return (
    `Re-checked after publishing: epoch ${state.epoch} stays served as it is, and nothing is republished until the rule passes again. ` +
    'The operator does not unpublish on its own initiative (that would take the site down and lose what it serves); ' +
    'fix the rule, or delete this PublishedRealm to unpublish it (which needs realm-owner on the source realm)'
  );
}

function suspendedMessage(status: PublishedRealmStatus): string {
  const served = status.epoch !== undefined && status.contentDigest ? ` The content published at epoch ${status.epoch} stays served.` : ' Nothing has been published yet.';
  return `Suspended: spec.suspend is true, so nothing is published or republished.${served} Set spec.suspend to false to resume.`;
}

/** Status fields that describe the published content. */
function contentFields(state: RealmEpochRow): Partial<PublishedRealmStatus> {
  return {
    ...(state.published_at ? { publishedAt: new Date(state.published_at).toISOString() } : {}),
    ...(state.disk_id ? { diskId: state.disk_id } : {}),
    ...(state.file_count !== null ? { fileCount: state.file_count } : {}),
    ...(state.total_bytes !== null ? { totalBytes: Number(state.total_bytes) } : {}),
    ...(state.content_digest ? { contentDigest: state.content_digest } : {}),
    ...(state.content_version ? { liveVersion: state.content_version } : {}),
    epoch: Number(state.epoch),
  };
}

/** Status fields that describe the published content and its acknowledgement. */
function contentStatus(state: RealmEpochRow, acks: WaitForAcksResult, unregistered: string[] = []): Partial<PublishedRealmStatus> {
  return {
    ...contentFields(state),
    replicas: {
      acknowledged: acks.acknowledged.length,
      expected: acks.acknowledged.length + acks.missing.length + unregistered.length,
      ...(acks.missing.length > 0 ? { missing: acks.missing.slice(0, 20) } : {}),
      ...(unregistered.length > 0 ? { unregistered: unregistered.slice(0, 20) } : {}),
      mode: acks.mode === 'notify-only' || unregistered.length > 0 ? 'NotifyOnly' : 'Acknowledged',
    },
  };
}
