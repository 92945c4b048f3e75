/**
 * The PublishedRealm reconciler: `reconcile(key)` reads the live object and the database and
 * drives them together. Level-based and idempotent: it may run any number of times, after any
 * crash, and does each side effect at most once per generation.
 *
 * Expected flow for an object that exists:
 *   fetch → (being deleted? unpublish, drop finalizer) → validate spec (invalid: Stalled)
 *   → suspended? stop → ensure finalizer → publish if this generation was not published yet
 *   → wait for every live replica to acknowledge the realm's epoch → enqueue the reindex once
 *   per epoch → one status write (Ready).
 *
 * Guarantees:
 * - A generation is published once: the database records `<uid>/<generation>` in the same
 *   transaction as the publish, so a restart — with 1,000 objects or one — republishes nothing.
 * - `Ready=True` is written only after every live replica acknowledged the current epoch, or
 *   with reason `PublishedNotifyOnly` when no replica is registered at all.
 * - The reindex is enqueued only after acknowledgement.
 * - A URL published by another PublishedRealm is neither republished nor unpublished.
 *
 * Errors: problems a person must fix (invalid spec, missing source realm, URL owned by another
 * object) become `Stalled` with a message and a Warning event, re-checked after a delay.
 * Anything else is thrown, and the controller retries it with backoff.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import { parsePublishedRealmSpec, UNPUBLISH_FINALIZER, type PublishedRealm, type PublishedRealmSpec, type PublishedRealmStatus } from '../../api/v1alpha1/published-realm-types.js';
import { readLiveReplicaPods, waitForReplicaAcks, type WaitForAcksResult } from '../../dataplane/acknowledgements.js';
import type { RealmsLayout } from '../../dataplane/layout.js';
import { publishRealm, unpublishRealm, type DataPlane } from '../../dataplane/publish.js';
import { ClaimConflictError, PublishError, readRealmEpochRow, type ClaimOptions, type RealmEpochRow } from '../../dataplane/realm-state.js';
import { enqueueReindex } from '../../dataplane/reindex.js';
import { findCondition, markReady, markReconciling, markStalled, READY, Reasons, STALLED } from './conditions.js';
import { isStatus, type ObjectKey, type PublishedRealmKube } from './kube.js';

export interface ReconcileResult {
  requeueAfterMs?: number;
}

export interface PublishedRealmReconcilerOptions {
  kube: PublishedRealmKube;
  pool: pg.Pool;
  layout: RealmsLayout;
  logger: Logger;
  /** How long one reconcile waits for acknowledgements before requeueing. Default 10 s. */
  ackWaitMs?: number;
  /** Requeue delay while replicas have not all acknowledged. Default 2 s. */
  ackRequeueMs?: number;
  /** Re-check delay for Stalled objects whose cause may be fixed outside the spec. Default 30 s. */
  stalledRetryMs?: number;
  /** fsync staged files (default true). */
  durable?: boolean;
  /** Called at each publish/unpublish step (fault-injection tests). */
  onStep?: DataPlane['onStep'];
  /**
   * The realm-server pods that should be serving (e.g. ready endpoints of their Service), when
   * known. Pods among them that never registered get the publish by NOTIFY only, and status says so.
   */
  expectedReplicaPods?: () => Promise<string[] | undefined>;
}

export class PublishedRealmReconciler {
  private readonly plane: DataPlane;
  private readonly ackWaitMs: number;
  private readonly ackRequeueMs: number;
  private readonly stalledRetryMs: number;

  constructor(private readonly options: PublishedRealmReconcilerOptions) {
    this.plane = { pool: options.pool, layout: options.layout, logger: options.logger, durable: options.durable, onStep: options.onStep };
    this.ackWaitMs = options.ackWaitMs ?? 10_000;
    this.ackRequeueMs = options.ackRequeueMs ?? 2_000;
    this.stalledRetryMs = options.stalledRetryMs ?? 30_000;
  }

  async reconcile(key: ObjectKey, signal?: AbortSignal): Promise<ReconcileResult> {
    const realm = await this.options.kube.get(key);
    if (!realm) return {};
    if (realm.metadata.deletionTimestamp) return this.finalize(realm);

    const parsed = parsePublishedRealmSpec(realm.spec);
    if (!parsed.ok) {
      await this.stall(realm, Reasons.InvalidSpec, `The spec is invalid: ${parsed.problems.join('; ')}. Fix the PublishedRealm; nothing was published.`);
      return {};
    }
    const spec = parsed.spec;
    if (spec.suspend) {
      this.log(realm).debug('suspended; not reconciling');
      return {};
    }
    await this.options.kube.setFinalizer(realm, UNPUBLISH_FINALIZER, true);

    const published = await this.ensurePublished(realm, spec);
    if (!published.ok) return published.result;

    this.log(realm).debug({ epoch: published.state.epoch }, 'waiting for replica acknowledgements');
    const acks = await waitForReplicaAcks(this.options.pool, {
      realmURL: spec.publishedRealmURL,
      epoch: Number(published.state.epoch),
      timeoutMs: this.ackWaitMs,
      signal,
    });
    if (!acks.complete) {
      const message =
        `Published epoch ${published.state.epoch}; waiting for ${acks.missing.length} of ` +
        `${acks.missing.length + acks.acknowledged.length} live replicas to drop their caches: ${acks.missing.slice(0, 5).join(', ')}` +
        `${acks.missing.length > 5 ? ', …' : ''}. A replica that stops renewing its lease stops counting once the lease expires.`;
      await this.writeStatus(realm, (s) => ({ ...markReconciling(s, generation(realm), Reasons.AwaitingAcknowledgement, message), ...contentStatus(published.state, acks) }));
      return { requeueAfterMs: this.ackRequeueMs };
    }

    this.log(realm).debug({ acknowledged: acks.acknowledged.length, waitedMs: Math.round(acks.waitedMs) }, 'replicas acknowledged');
    const reindexJobId = await this.ensureReindexed(realm, spec, published.state);
    if (reindexJobId === 'failed') return { requeueAfterMs: this.stalledRetryMs };

    const unregistered = await this.unregisteredReplicaPods();
    const notifyOnly = acks.mode === 'notify-only' || unregistered.length > 0;
    const reason = notifyOnly ? Reasons.PublishedNotifyOnly : Reasons.Published;
    const what = `Published epoch ${published.state.epoch} of ${spec.sourceRealmURL} (${published.state.file_count} files)`;
    const message =
      unregistered.length > 0
        ? `${what}; ${acks.acknowledged.length} registered replicas acknowledged, but ${unregistered.length} ready realm-server pods do not run the acknowledging listener (${unregistered.slice(0, 5).join(', ')}${unregistered.length > 5 ? ', …' : ''}), e.g. unmodified Boxel servers: they were told by NOTIFY only, so their caches cannot be confirmed clean.`
        : notifyOnly
          ? `${what}. No realm-server replica is registered, so the invalidation was only announced (NOTIFY); replicas that do not run the realm-operator listener cannot be confirmed clean.`
          : `${what}; all ${acks.acknowledged.length} live replicas dropped their caches.`;
    await this.writeStatus(realm, (s) => ({
      ...markReady(s, generation(realm), reason, message),
      ...contentStatus(published.state, acks, unregistered),
      publishedGeneration: generation(realm),
      ...(spec.revision !== undefined ? { publishedRevision: String(spec.revision) } : {}),
      ...(reindexJobId !== undefined ? { reindexJobId } : {}),
    }));
    return {};
  }

  /** Publishes unless the database already holds this generation's publish. */
  private async ensurePublished(
    realm: PublishedRealm,
    spec: PublishedRealmSpec,
  ): Promise<{ ok: true; state: RealmEpochRow } | { ok: false; result: ReconcileResult }> {
    const url = spec.publishedRealmURL;
    const publishedFor = `${realm.metadata.uid}/${generation(realm)}`;
    const existing = await readRealmEpochRow(this.options.pool, url);
    if (existing?.content_version && existing.published_for === publishedFor) return { ok: true, state: existing };

    this.log(realm).debug({ generation: generation(realm) }, 'publishing');
    await this.writeStatus(realm, (s) => markReconciling(s, generation(realm), Reasons.Publishing, `Publishing ${spec.sourceRealmURL} at ${url}.`));
    let claim: ClaimOptions = { claimant: claimantOf(realm) };
    for (;;) {
      try {
        const result = await publishRealm(this.plane, {
          sourceRealmURL: spec.sourceRealmURL,
          publishedRealmURL: url,
          ownerUsername: spec.owner,
          claim,
          publishedFor,
        });
        const verb = existing?.content_version ? 'Republished' : 'Published';
        const skipped = result.skipped.length > 0 ? ` Skipped ${result.skipped.length} entries: ${result.skipped.slice(0, 3).map((s) => `${s.path} (${s.reason})`).join('; ')}.` : '';
        await this.options.kube.recordEvent(realm, 'Normal', verb, `${verb} ${result.fileCount} files (${result.totalBytes} bytes) at epoch ${result.epoch}, digest ${result.digest}.${skipped}`);
        break;
      } catch (error) {
        if (error instanceof ClaimConflictError) {
          if (!claim.takeOverFrom && (await this.claimantIsGone(error.claimedBy))) {
            claim = { ...claim, takeOverFrom: error.claimedBy };
            continue;
          }
          await this.stall(realm, Reasons.URLAlreadyPublished, `${error.message}. Delete one of the two PublishedRealms, or give this one another publishedRealmURL.`);
          return { ok: false, result: { requeueAfterMs: this.stalledRetryMs } };
        }
        if (error instanceof PublishError) {
          await this.stall(realm, Reasons.SourceRealmUnavailable, `${error.message}.`);
          return { ok: false, result: { requeueAfterMs: this.stalledRetryMs } };
        }
        await this.writeStatus(realm, (s) => markReconciling(s, generation(realm), Reasons.PublishFailed, `Publishing failed and will be retried: ${(error as Error).message}`));
        throw error;
      }
    }
    const state = await readRealmEpochRow(this.options.pool, url);
    if (!state?.content_version) throw new Error(`realm_operator.realm_epochs has no committed content for ${url} right after publishing`);
    return { ok: true, state };
  }

  /** Enqueues the reindex once per epoch; returns the job id, undefined when disabled, or 'failed'. */
  private async ensureReindexed(realm: PublishedRealm, spec: PublishedRealmSpec, state: RealmEpochRow): Promise<number | undefined | 'failed'> {
    const reindex = spec.reindex ?? { enabled: true, priority: 10, timeoutSeconds: 3600 };
    if (!reindex.enabled) return undefined;
    if (state.reindex_epoch !== null && state.reindex_epoch === state.epoch && state.reindex_job_id !== null) return Number(state.reindex_job_id);
    const registryOwner = await this.options.pool.query<{ owner_username: string | null }>('SELECT owner_username FROM realm_registry WHERE url = $1', [
      spec.publishedRealmURL,
    ]);
    const realmUsername = spec.owner ?? registryOwner.rows[0]?.owner_username ?? '';
    try {
      const job = await enqueueReindex(this.options.pool, {
        realmURL: spec.publishedRealmURL,
        epoch: Number(state.epoch),
        realmUsername,
        priority: reindex.priority,
        timeout: reindex.timeoutSeconds,
      });
      if (job.created) await this.options.kube.recordEvent(realm, 'Normal', 'ReindexEnqueued', `Enqueued reindex job ${job.jobId} for epoch ${state.epoch} after every live replica acknowledged.`);
      return job.jobId;
    } catch (error) {
      if (!(error instanceof PublishError)) throw error;
      // The epoch moved under us (a concurrent recovery): the next reconcile waits for the new one.
      this.log(realm).info({ err: error }, 'epoch changed before the reindex; requeueing');
      return 'failed';
    }
  }

  /** Deletion: unpublish (unless another object owns the URL), then release the finalizer. */
  private async finalize(realm: PublishedRealm): Promise<ReconcileResult> {
    if (!realm.metadata.finalizers?.includes(UNPUBLISH_FINALIZER)) return {};
    const url = (realm.spec as { publishedRealmURL?: unknown } | undefined)?.publishedRealmURL;
    const parsed = parsePublishedRealmSpec(realm.spec);
    if (parsed.ok || typeof url === 'string') {
      const target = parsed.ok ? parsed.spec.publishedRealmURL : (url as string);
      try {
        const result = await unpublishRealm(this.plane, target, { claimant: claimantOf(realm) });
        if (result.unpublished) await this.options.kube.recordEvent(realm, 'Normal', 'Unpublished', `Unpublished ${target} (epoch ${result.epoch}).`);
      } catch (error) {
        if (error instanceof ClaimConflictError) {
          await this.options.kube.recordEvent(realm, 'Warning', 'NotUnpublished', `${error.message}; left it published.`);
        } else if (error instanceof PublishError || (error as Error).name === 'RealmURLError') {
          await this.options.kube.recordEvent(realm, 'Warning', 'NotUnpublished', `${(error as Error).message}; nothing to unpublish.`);
        } else {
          throw error;
        }
      }
    }
    await this.options.kube.setFinalizer(realm, UNPUBLISH_FINALIZER, false);
    return {};
  }

  private async stall(realm: PublishedRealm, reason: string, message: string): Promise<void> {
    await this.writeStatus(realm, (s) => markStalled(s, generation(realm), reason, message));
  }

  /** One status write; an Event when Ready or Stalled changed (what `kubectl describe` shows). */
  private async writeStatus(realm: PublishedRealm, mutate: (status: PublishedRealmStatus) => PublishedRealmStatus): Promise<void> {
    const written = await this.options.kube.updateStatus({ namespace: realm.metadata.namespace, name: realm.metadata.name }, (s) => mutate(s));
    if (!written || written.before === written.after) return;
    const before = transitionKey(written.before.status);
    const after = transitionKey(written.after.status);
    if (before === after) return;
    const ready = findCondition(written.after.status, READY);
    const stalled = findCondition(written.after.status, STALLED);
    if (!ready) return;
    await this.options.kube.recordEvent(written.after, stalled ? 'Warning' : 'Normal', ready.reason, ready.message);
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

  private log(realm: PublishedRealm): Logger {
    return this.options.logger.child({ publishedRealm: `${realm.metadata.namespace}/${realm.metadata.name}` });
  }
}

function generation(realm: PublishedRealm): number {
  return realm.metadata.generation ?? 0;
}

function claimantOf(realm: PublishedRealm): string {
  return `${realm.metadata.namespace}/${realm.metadata.name}/${realm.metadata.uid}`;
}

function transitionKey(status: PublishedRealmStatus | undefined): string {
  const ready = findCondition(status, READY);
  return `${ready?.status}/${ready?.reason}/${findCondition(status, STALLED)?.status ?? ''}`;
}

/** Status fields that describe the published content and its acknowledgement. */
function contentStatus(state: RealmEpochRow, acks: WaitForAcksResult, unregistered: string[] = []): Partial<PublishedRealmStatus> {
  return {
    ...(state.published_at ? { publishedAt: new Date(state.published_at).toISOString() } : {}),
    ...(state.disk_id ? { diskId: state.disk_id } : {}),
    ...(state.file_count !== null ? { fileCount: state.file_count } : {}),
    ...(state.total_bytes !== null ? { totalBytes: Number(state.total_bytes) } : {}),
    ...(state.content_digest ? { contentDigest: state.content_digest } : {}),
    epoch: Number(state.epoch),
    replicas: {
      acknowledged: acks.acknowledged.length,
      expected: acks.acknowledged.length + acks.missing.length + unregistered.length,
      ...(acks.missing.length > 0 ? { missing: acks.missing.slice(0, 20) } : {}),
      ...(unregistered.length > 0 ? { unregistered: unregistered.slice(0, 20) } : {}),
      mode: acks.mode === 'notify-only' || unregistered.length > 0 ? 'NotifyOnly' : 'Acknowledged',
    },
  };
}
