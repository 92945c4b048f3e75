/**
 * The Realm reconciler: a Boxel source realm as a resource, on the same runtime as PublishedRealm
 * (informer → controller → `reconcile(key)`), with the same kstatus conditions, Events and
 * status/finalizer client (../published-realm/kube.ts, ../published-realm/conditions.ts).
 *
 * Flow for an object that exists:
 *   fetch → (being deleted? see below) → validate spec (invalid: Stalled InvalidSpec) → the URL
 *   `<serverURL>/<owner>/<endpoint>/` (no serverURL and no operator default: Stalled) → finalizer
 *   → create as Boxel does, or adopt (refusals: Stalled with the reason and the field to change)
 *   → Ready (Created / Adopted).
 *
 * Deletion, with `deletionPolicy: Delete` (the default for a realm the object created): Boxel's
 * delete in the database, which records what is left in realm_operator.pending_realm_removals in
 * the same transaction, so an operator restarted after any step finishes it from there; then the
 * files, the wildcard NOTIFYs with an epoch per removed realm, the wait until every live replica
 * acknowledged each epoch, the rows deleted; only then is the finalizer released. status.deletion
 * mirrors the rows for people. With `Retain` (the default
 * for an adopted realm) the realm is left as it is. A realm this object does not hold the claim of
 * (refused, or another object's) is never deleted.
 *
 * The data-plane side is src/dataplane/realm-lifecycle.ts.
 */
import type { Logger } from 'pino';
import type { PublishedRealmStatus } from '../../api/v1alpha1/published-realm-types.js';
import { effectiveDeletionPolicy, parseRealmSpec, REALM_FINALIZER, type Realm, type RealmSpec, type RealmStatus } from '../../api/v1alpha1/realm-types.js';
import { waitForReplicaAcks } from '../../dataplane/acknowledgements.js';
import type { DataPlane } from '../../dataplane/publish.js';
import {
  adoptSourceRealm,
  announcePendingRealmRemovals,
  createSourceRealm,
  deleteSourceRealmRows,
  finishPendingRealmRemovals,
  insertPendingRealmRemovals,
  listPendingRealmRemovalSources,
  readPendingRealmRemovals,
  readRealmClaim,
  RealmRefusedError,
  releaseSourceRealm,
  removePendingRealmFiles,
  sourceRealmLocation,
  withAnnouncedEpochs,
  type PendingRealmRemoval,
  type RealmDeletionStepHook,
  type RemovedRealm,
  type SourceRealmLocation,
} from '../../dataplane/realm-lifecycle.js';
import { UnsafeDatabaseValueError } from '../../dataplane/realm-state.js';
import { invalidSpecMessage, markReady, markReconciling, markStalled, plural, transitionEvent } from '../published-realm/conditions.js';
import type { CustomResourceKube, ObjectKey } from '../published-realm/kube.js';
import { StallBackoff } from '../published-realm/stall-backoff.js';

export type RealmKube = CustomResourceKube<Realm, RealmStatus>;

/**
 * Reasons, CamelCase and stable.
 * - Ready=True: `Created` (this object created the realm), `Adopted` (it manages an existing one).
 * - Reconciling: `Deleting` (the deletion is under way), `AwaitingAcknowledgement` (the realms are
 *   gone; waiting for live replicas to drop their caches before releasing the finalizer).
 * - Stalled (a person must act; re-checked with growing delays): `InvalidSpec`, `ServerURLUnknown`
 *   (no spec.serverURL and no operator REALM_SERVER_URL), `URLChanged` (the default server URL
 *   changed under a created realm), `URLTaken` (a realm is already at the URL: adopt it or choose
 *   another endpoint), `URLOverlapsRealm`, `URLAlreadyManaged` (another Realm object has it),
 *   `RealmNotFound` (nothing to adopt), `RealmMissing` (created, then deleted outside the operator;
 *   not recreated on its own), `OwnerMismatch`, `UnsafeLocation`, `UnsafeDatabaseValue`.
 * Event-only: `RealmCreated`, `RealmAdopted`, `RealmDeleted`, `RealmRetained`, `NotDeleted`.
 */
export const RealmReasons = {
  Created: 'Created',
  Adopted: 'Adopted',
  Deleting: 'Deleting',
  AwaitingAcknowledgement: 'AwaitingAcknowledgement',
  InvalidSpec: 'InvalidSpec',
  ServerURLUnknown: 'ServerURLUnknown',
  URLChanged: 'URLChanged',
  UnsafeDatabaseValue: 'UnsafeDatabaseValue',
  RealmCreated: 'RealmCreated',
  RealmAdopted: 'RealmAdopted',
  RealmDeleted: 'RealmDeleted',
  RealmRetained: 'RealmRetained',
  NotDeleted: 'NotDeleted',
} as const;

const Actions = { Reconcile: 'Reconcile', Create: 'Create', Adopt: 'Adopt', Delete: 'Delete' } as const;

export interface RealmReconcilerOptions {
  kube: RealmKube;
  /** The informer's copy, read instead of a GET (see PublishedRealmReconcilerOptions.cached). */
  cached?: (key: ObjectKey) => Realm | undefined;
  plane: DataPlane;
  logger: Logger;
  /** The realm server URL for Realms without spec.serverURL (the operator's REALM_SERVER_URL). */
  defaultServerURL?: string;
  /** How long one reconcile waits for acknowledgements of a deletion before requeueing. Default 10 s. */
  ackWaitMs?: number;
  /** Requeue delay while replicas have not all acknowledged. Default 2 s. */
  ackRequeueMs?: number;
  /** First re-check delay of a Stalled Realm; doubles per re-check up to 10 minutes. Default 30 s. */
  stalledRetryMs?: number;
  /**
   * Told when a Realm becomes Ready or starts or finishes being deleted, so the PublishedRealms
   * naming it in sourceRealmRef are reconciled at once (publish, or go Stalled) rather than at
   * their next resync.
   */
  onSourceChanged?: (key: ObjectKey) => void;
  /** Called after each step of a deletion; crash tests stop the process there. */
  onDeletionStep?: RealmDeletionStepHook;
  /**
   * How often deletions whose Realm object is gone (its finalizer removed by hand) are finished:
   * by the leader's OrphanedRemovalSweep at start-up and then this often (so with no Realm left to
   * reconcile too), by a reconcile at once when its Realm is gone, and by any reconcile at most this
   * often. Default 5 minutes; 0 turns the sweep off.
   */
  orphanSweepMs?: number;
}

export class RealmReconciler {
  private readonly stalls: StallBackoff;
  private readonly latest = new Map<string, Realm>();

  constructor(private readonly options: RealmReconcilerOptions) {
    const initialMs = options.stalledRetryMs ?? 30_000;
    this.stalls = new StallBackoff({ initialMs, maxMs: Math.max(initialMs, 10 * 60_000) });
  }

  async reconcile(key: ObjectKey, signal?: AbortSignal): Promise<{ requeueAfterMs?: number }> {
    const id = `${key.namespace}/${key.name}`;
    const realm = this.options.cached?.(key) ?? (await this.options.kube.get(key));
    void this.sweepOrphanedRemovals(!realm);
    if (!realm) {
      this.stalls.reset(id);
      return {};
    }
    this.latest.set(id, realm);
    try {
      if (realm.metadata.deletionTimestamp) {
        this.stalls.reset(id);
        return await this.finalize(realm, signal);
      }
      return await this.ensureRealm(realm);
    } finally {
      this.latest.delete(id);
    }
  }

  private async ensureRealm(realm: Realm): Promise<{ requeueAfterMs?: number }> {
    const parsed = parseRealmSpec(realm.spec);
    if (!parsed.ok) {
      await this.stall(realm, RealmReasons.InvalidSpec, invalidSpecMessage(parsed.problems).replace('edit the PublishedRealm', 'edit the Realm').replace(' Nothing was published.', ' Nothing was created.'));
      return {};
    }
    const spec = parsed.spec;
    const located = this.locate(realm, spec);
    if ('refusal' in located) return this.stallWithBackoff(realm, located.refusal);
    const { location } = located;
    await this.setFinalizer(realm, true);
    try {
      if (spec.adopt) {
        const { diskId } = await adoptSourceRealm(this.options.plane, { url: location.url, ownerUsername: location.ownerUsername, claimant: claimantOf(realm) });
        const before = realm.status?.adopted === true && realm.status.url === location.url;
        await this.writeStatus(realm, (s) => ({
          ...ready(s, realm, RealmReasons.Adopted, `Adopted the Boxel realm ${location.url} (directory ${diskId}); its files were not touched. Deleting this Realm ${policyNote(spec)}.`),
          url: location.url,
          diskId,
          adopted: true,
        }));
        if (!before) await this.options.kube.recordEvent(realm, 'Normal', RealmReasons.RealmAdopted, Actions.Adopt, `Adopted ${location.url}.`);
      } else {
        const name = spec.name ?? spec.endpoint;
        const result = await createSourceRealm(this.options.plane, {
          ...location,
          ownerUserId: spec.owner,
          name,
          ...(spec.backgroundURL ? { backgroundURL: spec.backgroundURL } : {}),
          ...(spec.iconURL ? { iconURL: spec.iconURL } : {}),
          publishable: spec.publishable,
          claimant: claimantOf(realm),
          serverRootURL: `${new URL(location.url).origin}/`,
        });
        await this.writeStatus(realm, (s) => ({
          ...ready(s, realm, RealmReasons.Created, `Created ${location.url} for ${spec.owner} in ${location.diskId}, as Boxel's create-realm does; its initial index is job ${result.indexJobId}. Deleting this Realm ${policyNote(spec)}.`),
          url: location.url,
          diskId: location.diskId,
          adopted: false,
          ...(result.indexJobId !== null ? { indexJobId: result.indexJobId } : {}),
        }));
        if (result.created) {
          await this.options.kube.recordEvent(realm, 'Normal', RealmReasons.RealmCreated, Actions.Create, `Created ${location.url} (realm.json "${name}", index job ${result.indexJobId}).`);
          this.log(realm).info({ url: location.url, indexJobId: result.indexJobId }, 'created realm');
        }
      }
    } catch (error) {
      const refusal = refusalOf(error);
      if (!refusal) throw error;
      return this.stallWithBackoff(realm, refusal);
    }
    this.stalls.reset(`${realm.metadata.namespace}/${realm.metadata.name}`);
    if (!isReady(realm)) this.options.onSourceChanged?.(keyOf(realm));
    return {};
  }

  /** The realm's location, or why it cannot be known (or would move a realm already made). */
  private locate(realm: Realm, spec: RealmSpec): { location: SourceRealmLocation } | { refusal: { reason: string; message: string } } {
    const serverURL = spec.serverURL ?? this.options.defaultServerURL;
    if (!serverURL) {
      return {
        refusal: {
          reason: RealmReasons.ServerURLUnknown,
          message: 'spec.serverURL: no realm server URL; set spec.serverURL (e.g. "https://app.boxel.ai/"), or start the operator with REALM_SERVER_URL. Nothing was created.',
        },
      };
    }
    let location: SourceRealmLocation;
    try {
      location = sourceRealmLocation(serverURL, spec.owner, spec.endpoint);
    } catch (error) {
      const refusal = refusalOf(error);
      if (!refusal) throw error;
      return { refusal };
    }
    if (realm.status?.url && realm.status.url !== location.url) {
      return {
        refusal: {
          reason: RealmReasons.URLChanged,
          message: `This Realm manages ${realm.status.url}, but its spec now gives ${location.url} (the operator's REALM_SERVER_URL changed?): a realm cannot move. Set spec.serverURL to the server of ${realm.status.url}, or restore REALM_SERVER_URL.`,
        },
      };
    }
    return { location };
  }

  /**
   * Deletion: with Delete, Boxel's delete and the acknowledged invalidation, then the finalizer;
   * with Retain, only the operator's claim goes. A realm this object does not hold is left alone.
   *
   * What a committed deletion still has to do is `realm_operator.pending_realm_removals`, written in
   * the delete transaction: rows there are finished whatever status says (a crash after the COMMIT
   * and before the status write loses nothing). status.deletion mirrors them for kubectl users.
   * No rows but status.deletion: the rows were finished (deleted only after every acknowledgement),
   * or an older operator recorded the deletion only in status, which is taken over into the table.
   */
  private async finalize(realm: Realm, signal?: AbortSignal): Promise<{ requeueAfterMs?: number }> {
    if (!realm.metadata.finalizers?.includes(REALM_FINALIZER)) return {};
    const parsed = parseRealmSpec(realm.spec);
    const url = realm.status?.url;
    const claimant = claimantOf(realm);
    const pool = this.options.plane.pool;
    let pending = url ? await readPendingRealmRemovals(pool, url) : [];
    // Rows of an earlier deletion at the same URL (another object's, still awaiting acknowledgements) are
    // finished along with this one's, but do not stand for it: this object's delete transaction is still due.
    let started = pending.some((r) => r.claimedBy === claimant);
    const recorded = realm.status?.deletion?.removed;
    if (url && !started && recorded?.length) {
      // Announced in full: the rows were finished after every acknowledgement; only the finalizer is left.
      if (recorded.every((r) => r.epoch !== undefined)) return this.awaitAcksAndRelease(realm, url, recorded, signal);
      // Announcing drops the claim. Still claimed: nothing was announced (an older operator's
      // deletion, kept only in status), so nobody can have reused the directories: take it over.
      // Not claimed: it was announced and status (or the cache) missed the epochs: only the wait is left.
      if ((await readRealmClaim(pool, url)) !== claimant) return this.awaitAcksAndRelease(realm, url, await withAnnouncedEpochs(pool, recorded), signal);
      await insertPendingRealmRemovals(pool, url, recorded, claimant);
      pending = await readPendingRealmRemovals(pool, url);
      started = true;
    }
    if (!url || (!started && (await readRealmClaim(pool, url)) !== claimant)) {
      if (url) await this.options.kube.recordEvent(realm, 'Warning', RealmReasons.NotDeleted, Actions.Delete, `${url} is not managed by this Realm (refused or another Realm's); left it as it is.`);
      await this.setFinalizer(realm, false);
      return {};
    }
    const policy = parsed.ok ? effectiveDeletionPolicy(parsed.spec) : realm.status?.adopted ? 'Retain' : 'Delete';
    if (policy === 'Retain' && !started) {
      await releaseSourceRealm(pool, url, claimant);
      await this.options.kube.recordEvent(realm, 'Normal', RealmReasons.RealmRetained, Actions.Delete, `deletionPolicy Retain: left ${url} (rows and files) as it is.`);
      await this.setFinalizer(realm, false);
      return {};
    }
    if (!started) {
      this.options.onSourceChanged?.(keyOf(realm));
      const fallbackDiskId = realm.status?.diskId ?? (parsed.ok ? diskIdOf(parsed.spec) : undefined);
      pending = await deleteSourceRealmRows(this.options.plane, url, { claimant, ...(fallbackDiskId ? { fallbackDiskId } : {}) });
      await this.options.onDeletionStep?.('committed', url);
      if (pending.length === 0) {
        await this.setFinalizer(realm, false);
        return {};
      }
    }
    return this.finishRemovals(realm, url, pending, signal);
  }

  /** The post-commit part of a deletion, from the pending rows: files, announcement, acknowledgements, rows, finalizer. */
  private async finishRemovals(realm: Realm, url: string, pending: PendingRealmRemoval[], signal?: AbortSignal): Promise<{ requeueAfterMs?: number }> {
    const hook = this.options.onDeletionStep;
    if (!sameRemovals(realm.status?.deletion?.removed, pending)) {
      const committed = pending.map(removedOf);
      await this.writeStatus(realm, (s) => ({
        ...reconciling(s, realm, RealmReasons.Deleting, `Deleted ${url} and ${plural(committed.length - 1, 'published realm')} from the database; removing files and telling replicas.`),
        deletion: { ...s.deletion, removed: committed, committedAt: s.deletion?.committedAt ?? new Date().toISOString() },
      }));
    }
    if (pending.some((r) => !r.filesRemoved)) await removePendingRealmFiles(this.options.plane, url, hook);
    if (pending.some((r) => r.epoch === undefined)) {
      const announcedRows = await announcePendingRealmRemovals(this.options.plane.pool, url);
      // Empty: another process (the orphan sweep) finished these rows meanwhile; their epochs are in realm_epochs.
      pending = announcedRows.length > 0 ? announcedRows : (await withAnnouncedEpochs(this.options.plane.pool, pending)).map((r, i) => ({ ...pending[i]!, epoch: r.epoch! }));
      await hook?.('announced', url);
      const announced = pending.map(removedOf);
      await this.writeStatus(realm, (s) => ({ ...s, deletion: { ...s.deletion, removed: announced } }));
    }
    const acks = await this.awaitAcks(realm, pending, signal);
    if (acks.requeue) return acks.requeue;
    await hook?.('acknowledged', url);
    await finishPendingRealmRemovals(this.options.plane.pool, url);
    await hook?.('drained', url);
    return this.release(realm, url, pending, acks.notifyOnly);
  }

  /** Every removed realm's epoch acknowledged by every live replica; otherwise AwaitingAcknowledgement and a requeue. */
  private async awaitAcks(realm: Realm, removed: readonly RemovedRealm[], signal?: AbortSignal): Promise<{ requeue?: { requeueAfterMs: number }; notifyOnly: boolean }> {
    const waits = await Promise.all(
      removed.map((r) => waitForReplicaAcks(this.options.plane.pool, { realmURL: r.url, epoch: r.epoch!, timeoutMs: this.options.ackWaitMs ?? 10_000, signal })),
    );
    const missing = [...new Set(waits.flatMap((w) => w.missing))];
    const notifyOnly = waits.every((w) => w.mode === 'notify-only');
    if (missing.length === 0) return { notifyOnly };
    await this.writeStatus(realm, (s) =>
      reconciling(
        s,
        realm,
        RealmReasons.AwaitingAcknowledgement,
        `Deleted ${plural(removed.length, 'realm')}; waiting for ${plural(missing.length, 'live replica')} to drop their caches: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}. A replica that stops renewing its lease stops counting once the lease expires.`,
      ),
    );
    return { requeue: { requeueAfterMs: this.options.ackRequeueMs ?? 2_000 }, notifyOnly };
  }

  /** A deletion whose rows were finished (or an older operator's, announced in full): acknowledgements, then the finalizer. */
  private async awaitAcksAndRelease(realm: Realm, url: string, removed: readonly RemovedRealm[], signal?: AbortSignal): Promise<{ requeueAfterMs?: number }> {
    const acks = await this.awaitAcks(realm, removed, signal);
    return acks.requeue ?? this.release(realm, url, removed, acks.notifyOnly);
  }

  private async release(realm: Realm, url: string, removed: readonly RemovedRealm[], notifyOnly: boolean): Promise<{ requeueAfterMs?: number }> {
    await this.options.kube.recordEvent(
      realm,
      'Normal',
      RealmReasons.RealmDeleted,
      Actions.Delete,
      `Deleted ${url} and ${plural(removed.length - 1, 'published realm')} made from it, as Boxel's delete-realm does; ${notifyOnly ? 'no replica is registered, so replicas were only told by NOTIFY' : 'every live replica acknowledged'}.`,
    );
    this.log(realm).info({ url, removed: removed.map((r) => r.url) }, 'deleted realm');
    await this.setFinalizer(realm, false);
    this.options.onSourceChanged?.(keyOf(realm));
    return {};
  }

  /**
   * Finishes every deletion whose pending rows belong to no existing Realm object (the object is
   * gone, or is a different one by uid): files, announcement, acknowledgements, then the rows.
   * Rows still waiting for acknowledgements stay for the next sweep. Returns the sources finished.
   */
  async finishOrphanedRemovals(signal?: AbortSignal): Promise<string[]> {
    const finished: string[] = [];
    for (const { sourceURL, claimedBy } of await listPendingRealmRemovalSources(this.options.plane.pool)) {
      const [namespace, name, uid] = (claimedBy ?? '').split('/');
      if (namespace && name && uid) {
        const owner = await this.options.kube.get({ namespace, name }).catch((error: Error) => error);
        if (owner instanceof Error) {
          // Not readable (e.g. a namespace this operator does not watch): not known to be gone.
          this.options.logger.warn({ url: sourceURL, claimedBy, err: owner }, 'cannot tell whether the Realm of a pending deletion exists; left it');
          continue;
        }
        if (owner?.metadata.uid === uid) continue; // its own reconcile finishes it
      }
      await removePendingRealmFiles(this.options.plane, sourceURL, this.options.onDeletionStep);
      const announced = await announcePendingRealmRemovals(this.options.plane.pool, sourceURL);
      const waits = await Promise.all(
        announced.map((r) => waitForReplicaAcks(this.options.plane.pool, { realmURL: r.url, epoch: r.epoch!, timeoutMs: this.options.ackWaitMs ?? 10_000, signal })),
      );
      if (waits.some((w) => w.missing.length > 0)) continue;
      await finishPendingRealmRemovals(this.options.plane.pool, sourceURL);
      this.options.logger.warn({ url: sourceURL, claimedBy, removed: announced.map((r) => r.url) }, 'finished a Realm deletion whose object is gone');
      finished.push(sourceURL);
    }
    return finished;
  }

  private lastOrphanSweep: number | undefined;
  private orphanSweep: Promise<unknown> | undefined;

  /**
   * Runs {@link finishOrphanedRemovals} in the background (one sweep at a time): now when `due`, else
   * at most every orphanSweepMs. Resolves when the sweep it started (or found running) ends; never rejects.
   */
  sweepOrphanedRemovals(due: boolean): Promise<unknown> {
    const now = Date.now();
    const every = this.options.orphanSweepMs ?? 5 * 60_000;
    if (this.orphanSweep || every <= 0) return this.orphanSweep ?? Promise.resolve();
    if (!due && this.lastOrphanSweep !== undefined && now - this.lastOrphanSweep < every) return Promise.resolve();
    this.lastOrphanSweep = now;
    this.orphanSweep = this.finishOrphanedRemovals()
      .catch((error: Error) => this.options.logger.error({ err: error }, 'finishing deletions of Realms that are gone failed; retried at the next sweep'))
      .finally(() => (this.orphanSweep = undefined));
    return this.orphanSweep;
  }

  /** How often the background sweep runs (orphanSweepMs); 0 when off. */
  get orphanSweepEveryMs(): number {
    return Math.max(0, this.options.orphanSweepMs ?? 5 * 60_000);
  }

  /** Stalled, re-checked after a growing delay (the cause may be fixed outside the spec). */
  private async stallWithBackoff(realm: Realm, refusal: { reason: string; message: string }): Promise<{ requeueAfterMs: number }> {
    await this.stall(realm, refusal.reason, refusal.message);
    return { requeueAfterMs: this.stalls.next(`${realm.metadata.namespace}/${realm.metadata.name}`, `${realm.metadata.uid}/${realm.metadata.generation}`) };
  }

  private async stall(realm: Realm, reason: string, message: string): Promise<void> {
    await this.writeStatus(realm, (s) => markStalled(s as PublishedRealmStatus, generation(realm), reason, message) as RealmStatus);
  }

  private async writeStatus(realm: Realm, mutate: (status: RealmStatus) => RealmStatus): Promise<void> {
    const id = `${realm.metadata.namespace}/${realm.metadata.name}`;
    const written = await this.options.kube.updateStatus({ namespace: realm.metadata.namespace, name: realm.metadata.name }, mutate, this.latest.get(id));
    if (written && this.latest.has(id)) this.latest.set(id, written.after);
    if (!written || written.before === written.after) return;
    const event = transitionEvent(written.before.status as PublishedRealmStatus, written.after.status as PublishedRealmStatus);
    if (event && event.reason !== RealmReasons.Created && event.reason !== RealmReasons.Adopted && event.reason !== RealmReasons.Deleting) {
      await this.options.kube.recordEvent(written.after, event.type, event.reason, Actions.Reconcile, event.message);
    }
  }

  private async setFinalizer(realm: Realm, present: boolean): Promise<void> {
    const id = `${realm.metadata.namespace}/${realm.metadata.name}`;
    const patched = await this.options.kube.setFinalizer(this.latest.get(id) ?? realm, REALM_FINALIZER, present);
    if (patched && this.latest.has(id)) this.latest.set(id, patched);
  }

  private log(realm: Realm): Logger {
    return this.options.logger.child({ realm: `${realm.metadata.namespace}/${realm.metadata.name}` });
  }
}

function keyOf(realm: Realm): ObjectKey {
  return { namespace: realm.metadata.namespace, name: realm.metadata.name };
}

/** Whether the object as read at the start of this reconcile was already Ready (no change to tell). */
function isReady(realm: Realm): boolean {
  return realm.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True' && c.observedGeneration === realm.metadata.generation) ?? false;
}

function generation(realm: Realm): number {
  return realm.metadata.generation ?? 0;
}

export function claimantOf(realm: Realm): string {
  return `${realm.metadata.namespace}/${realm.metadata.name}/${realm.metadata.uid}`;
}

function ready(status: RealmStatus, realm: Realm, reason: string, message: string): RealmStatus {
  return markReady(status as PublishedRealmStatus, generation(realm), reason, message) as RealmStatus;
}

function reconciling(status: RealmStatus, realm: Realm, reason: string, message: string): RealmStatus {
  return markReconciling(status as PublishedRealmStatus, generation(realm), reason, message) as RealmStatus;
}

function policyNote(spec: RealmSpec): string {
  return effectiveDeletionPolicy(spec) === 'Delete'
    ? 'deletes the realm as Boxel\'s delete-realm does, with every realm published from it (deletionPolicy Delete)'
    : 'leaves the realm as it is (deletionPolicy Retain)';
}

/** A pending removal as status.deletion lists it. */
function removedOf(realm: PendingRealmRemoval): RemovedRealm {
  return { url: realm.url, diskId: realm.diskId, ...(realm.epoch === undefined ? {} : { epoch: realm.epoch }) };
}

/** Whether status.deletion already lists exactly these removals (URLs, directories, epochs). */
function sameRemovals(recorded: readonly RemovedRealm[] | undefined, pending: readonly PendingRealmRemoval[]): boolean {
  return JSON.stringify(recorded ?? []) === JSON.stringify(pending.map(removedOf));
}

/** `<owner localpart>/<endpoint>`: the directory create-realm uses, for a deletion whose status lost it. */
function diskIdOf(spec: RealmSpec): string {
  return `${spec.owner.replace(/^@/, '').replace(/:.*$/, '')}/${spec.endpoint}`;
}

/** A refusal a person must fix, as a Stalled reason and message naming the field; undefined for anything else. */
function refusalOf(error: unknown): { reason: string; message: string } | undefined {
  if (error instanceof RealmRefusedError) return { reason: error.reason, message: `${error.field}: ${error.message}.` };
  if (error instanceof UnsafeDatabaseValueError) return { reason: RealmReasons.UnsafeDatabaseValue, message: `${error.message}.` };
  return undefined;
}
