/**
 * Event filters for controllers: controller-runtime's `predicate` package. A controller enqueues
 * a key for an informer event only when every predicate it was given accepts the event.
 *
 * Why: a controller that writes status gets an update event for its own write. Without a filter,
 * every status write re-enqueues the key, so a reconcile that writes status (a Stalled object,
 * say) runs again at once, and its requeue delay never applies — a hot loop. The usual answer is
 * {@link generationChanged}: only spec changes (which bump `metadata.generation`) count.
 *
 * Pure functions over old/new objects; resyncs and re-lists pass through `update` like any event.
 */
import { isDeepStrictEqual } from 'node:util';
import type { KubeObject } from './object-key.js';

/** A filter on informer events; an absent method accepts. */
export interface Predicate<T extends KubeObject = KubeObject> {
  create?(object: T): boolean;
  update?(oldObject: T, newObject: T): boolean;
  delete?(object: T): boolean;
}

type Meta = NonNullable<KubeObject['metadata']> & {
  generation?: number;
  deletionTimestamp?: string;
  finalizers?: string[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
};

function meta(object: KubeObject): Meta {
  return (object.metadata ?? {}) as Meta;
}

/**
 * Accepts updates that changed `metadata.generation` (controller-runtime's
 * GenerationChangedPredicate). Status and metadata-only updates do not bump it.
 */
export const generationChanged: Predicate = {
  update: (oldObject, newObject) => meta(oldObject).generation !== meta(newObject).generation,
};

/** Accepts updates that set or cleared the deletion timestamp, or changed the finalizers. */
export const lifecycleChanged: Predicate = {
  update: (oldObject, newObject) =>
    meta(oldObject).deletionTimestamp !== meta(newObject).deletionTimestamp ||
    !isDeepStrictEqual(meta(oldObject).finalizers ?? [], meta(newObject).finalizers ?? []),
};

/** Accepts updates that changed any of the named labels or annotations. */
export function metadataKeysChanged(keys: { labels?: string[]; annotations?: string[] }): Predicate {
  const changed = (field: 'labels' | 'annotations', names: string[] | undefined) => (oldObject: KubeObject, newObject: KubeObject) =>
    (names ?? []).some((name) => meta(oldObject)[field]?.[name] !== meta(newObject)[field]?.[name]);
  const labels = changed('labels', keys.labels);
  const annotations = changed('annotations', keys.annotations);
  return { update: (oldObject, newObject) => labels(oldObject, newObject) || annotations(oldObject, newObject) };
}

/** Accepts an event when any of `predicates` accepts it (controller-runtime's `predicate.Or`). */
export function anyOf<T extends KubeObject>(...predicates: Array<Predicate<T>>): Predicate<T> {
  const some = (method: keyof Predicate<T>) => (...args: [T, T] | [T]) =>
    predicates.some((p) => {
      const check = p[method] as ((...a: typeof args) => boolean) | undefined;
      return check ? check(...args) : true;
    });
  return { create: some('create'), update: some('update'), delete: some('delete') };
}

/**
 * What a controller that writes its own status usually wants: spec changes (generation), the
 * deletion timestamp and finalizers, and the listed labels/annotations. Creates and deletes pass.
 */
export function specOrLifecycleChanged(keys: { labels?: string[]; annotations?: string[] } = {}): Predicate {
  return anyOf(generationChanged, lifecycleChanged, metadataKeysChanged(keys));
}

/** Whether every predicate accepts the event (controller-runtime ANDs a controller's predicates). */
export function accepts<T extends KubeObject>(
  predicates: ReadonlyArray<Predicate<T>>,
  event: { type: 'create'; object: T } | { type: 'update'; oldObject: T; object: T } | { type: 'delete'; object: T },
): boolean {
  return predicates.every((p) => {
    if (event.type === 'update') return p.update ? p.update(event.oldObject, event.object) : true;
    const check = p[event.type];
    return check ? check(event.object) : true;
  });
}

/**
 * The resourceVersions this process wrote itself, so the update events they come back as can be
 * told apart from anyone else's. Why: a reconcile that adds its finalizer gets an update event
 * (finalizers changed) for its own patch, and without this the key is reconciled a second time for
 * nothing — at 1,000 new objects, 0.8 extra reconciles each (bench/scale.ts). The event carries
 * exactly the state the reconcile wrote and went on from, so dropping it loses nothing.
 * Entries are consumed by the event, and forgotten after `ttlMs` when the event never comes (a
 * re-list replaces it with another version).
 */
export class OwnWrites {
  private readonly versions = new Map<string, number>();
  /**
   * Finalizer lists this process is writing right now, by object uid: the PATCH is sent and its
   * answer not read yet. Why: the watch event of a write can arrive before the write's own answer
   * (so before {@link record}); without this, 1 in 4 new objects was reconciled a second time for
   * its own finalizer patch at 1,000 objects (bench/scale.ts, a loaded machine).
   */
  private readonly finalizersInFlight = new Map<string, string[]>();

  constructor(
    private readonly ttlMs = 5 * 60_000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Records a version the caller itself just wrote (from the API server's answer). */
  record(object: KubeObject | undefined): void {
    const version = object?.metadata?.resourceVersion;
    if (!version) return;
    const now = this.now();
    this.versions.set(version, now);
    if (this.versions.size > 1_000) this.prune(now);
  }

  /** Whether `object` is one of our own writes; consumes the entry. */
  take(object: KubeObject): boolean {
    const version = object.metadata?.resourceVersion;
    if (!version) return false;
    const at = this.versions.get(version);
    if (at === undefined) return false;
    this.versions.delete(version);
    return this.now() - at <= this.ttlMs;
  }

  /** Declares a finalizer write about to be sent for `object`; {@link settle} once it answered or failed. */
  intendFinalizers(object: KubeObject, finalizers: string[]): void {
    const uid = object.metadata?.uid;
    if (uid) this.finalizersInFlight.set(uid, finalizers);
  }

  /** The declared write of `object` answered (its version is {@link record}ed) or failed. */
  settle(object: KubeObject): void {
    const uid = object.metadata?.uid;
    if (uid) this.finalizersInFlight.delete(uid);
  }

  /**
   * Whether the update `oldObject` → `newObject` is exactly what this process's finalizer write in
   * flight makes: the declared finalizers and no change of generation (spec), deletion timestamp,
   * labels or annotations. Consumes the declaration. Anyone else's write with that same effect
   * would leave the object as the reconcile that wrote it goes on from, so dropping it loses nothing.
   */
  takeIntended(oldObject: KubeObject, newObject: KubeObject): boolean {
    const uid = newObject.metadata?.uid;
    const intended = uid ? this.finalizersInFlight.get(uid) : undefined;
    if (!intended || meta(oldObject).uid !== uid) return false;
    const [before, after] = [meta(oldObject), meta(newObject)];
    const same =
      isDeepStrictEqual(after.finalizers ?? [], intended) &&
      before.generation === after.generation &&
      before.deletionTimestamp === after.deletionTimestamp &&
      isDeepStrictEqual(before.labels ?? {}, after.labels ?? {}) &&
      isDeepStrictEqual(before.annotations ?? {}, after.annotations ?? {});
    if (same) this.finalizersInFlight.delete(uid!);
    return same;
  }

  get size(): number {
    return this.versions.size;
  }

  private prune(now: number): void {
    for (const [version, at] of this.versions) if (now - at > this.ttlMs) this.versions.delete(version);
  }
}

/**
 * Drops update events that are this process's own writes (see {@link OwnWrites}): a version it
 * recorded, or the effect of a finalizer write whose answer has not been read yet. Accepts everything else.
 */
export function notOwnWrite(writes: OwnWrites): Predicate {
  return { update: (oldObject, newObject) => !(writes.take(newObject) || writes.takeIntended(oldObject, newObject)) };
}
