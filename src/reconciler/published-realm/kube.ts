/**
 * The PublishedRealm reconciler's Kubernetes I/O: read an object, write its status with
 * optimistic concurrency (skipping unchanged status, retrying conflicts), add and remove the
 * finalizer, and record Events. Kept apart from the reconcile logic so the sequence reads plainly.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from 'pino';
import { EventRecorder, type EventType } from '../../runtime/event-recorder.js';
import { KeepAliveConnection } from '../../runtime/keep-alive.js';
import type { notOwnWrite, OwnWrites } from '../../runtime/predicates.js';
import { KubeApiError, kubeRequest, statusCodeOf, type KubeConnection } from '../../runtime/kube-client.js';
import {
  API_VERSION,
  GROUP,
  KIND,
  PLURAL,
  VERSION,
  type PublishedRealm,
  type PublishedRealmStatus,
} from '../../api/v1alpha1/published-realm-types.js';

export interface ObjectKey {
  namespace: string;
  name: string;
}

/** What {@link CustomResourceKube} needs of an object: its metadata and a status. */
export interface KubeObjectWithStatus<S> {
  metadata: PublishedRealm['metadata'];
  status?: S;
}

/** A namespaced resource of the operator's API group. */
export interface ResourceNames {
  kind: string;
  plural: string;
}

export type { EventType };

/** `reportingController` of every Event the operator records. */
export const REPORTING_CONTROLLER = 'realm-operator.dev/operator';

/**
 * Reads and writes one of the operator's resources (PublishedRealm, Realm).
 * Over the runtime's one-request client with kept-alive connections (a client-node `KubeConfig`
 * is a {@link KubeConnection}): client-node's typed API opens a new TLS connection per call, which
 * cost more CPU than the reconciles themselves at 1,000 objects (see runtime/keep-alive.ts).
 */
export class CustomResourceKube<T extends KubeObjectWithStatus<S>, S extends object> {
  private readonly connection: KubeConnection;
  readonly events: EventRecorder;

  constructor(
    connection: KubeConnection,
    logger: Logger,
    /** Written into every Event as reportingInstance (the operator pod). */
    identity: string,
    /** Where the versions this client writes are recorded, for the controller's {@link notOwnWrite} predicate. */
    private readonly ownWrites?: OwnWrites,
    /** Which of the operator's resources this client reads and writes (default: PublishedRealm). */
    private readonly resource: ResourceNames = { kind: KIND, plural: PLURAL },
  ) {
    this.connection = connection instanceof KeepAliveConnection ? connection : new KeepAliveConnection(connection);
    this.events = new EventRecorder({ kubeConfig: this.connection, reportingController: REPORTING_CONTROLLER, reportingInstance: identity, logger });
  }

  /** The live object, or `undefined` when it does not exist. */
  async get(key: ObjectKey): Promise<T | undefined> {
    try {
      return await kubeRequest<T>(this.connection, { path: this.objectPath(key) });
    } catch (error) {
      if (isStatus(error, 404)) return undefined;
      throw wrap(error, `reading ${this.resource.kind} ${key.namespace}/${key.name}`);
    }
  }

  /**
   * Applies `mutate` to a copy of the latest status and writes it with the object's
   * resourceVersion; re-reads and retries on 409. `known` is the object as this reconcile last
   * read or wrote it: the first attempt starts from it instead of a GET (a stale one costs a 409
   * and a re-read, never a lost write). Returns the object as written, or as read when nothing
   * changed (no write at all), or `undefined` when the object is gone.
   */
  async updateStatus(
    key: ObjectKey,
    mutate: (status: S, object: T) => S,
    known?: T,
  ): Promise<{ before: T; after: T } | undefined> {
    for (let attempt = 0; ; attempt++) {
      const current = attempt === 0 && known ? known : await this.get(key);
      if (!current) return undefined;
      const status = mutate(structuredClone(current.status ?? ({} as S)), current);
      if (isDeepStrictEqual(status, current.status ?? {})) return { before: current, after: current };
      try {
        const written = await kubeRequest<T>(this.connection, { method: 'PUT', path: `${this.objectPath(key)}/status`, body: { ...current, status } });
        this.ownWrites?.record(written);
        return { before: current, after: written };
      } catch (error) {
        if (isStatus(error, 409) && attempt < 5) continue;
        if (isStatus(error, 404)) return undefined;
        throw wrap(error, `writing the status of ${this.resource.kind} ${key.namespace}/${key.name}`);
      }
    }
  }

  /**
   * Adds or removes a finalizer with a JSON patch guarded by the object's resourceVersion.
   * `realm` may be a cached copy: when its version is stale the patch is refused, and is tried
   * once more on the live object — only if that is the same object (same uid).
   * Returns the patched object; `undefined` when there was nothing to do or the object is gone.
   */
  async setFinalizer(realm: T, finalizer: string, present: boolean): Promise<T | undefined> {
    let target = realm;
    for (let attempt = 0; ; attempt++) {
      const current = target.metadata.finalizers ?? [];
      if (current.includes(finalizer) === present) return undefined;
      const finalizers = present ? [...current, finalizer] : current.filter((f) => f !== finalizer);
      this.ownWrites?.intendFinalizers(target, finalizers);
      try {
        const patched = await kubeRequest<T>(this.connection, {
          method: 'PATCH',
          path: this.objectPath({ namespace: target.metadata.namespace, name: target.metadata.name }),
          contentType: 'application/json-patch+json',
          body: [
            { op: 'test', path: '/metadata/resourceVersion', value: target.metadata.resourceVersion },
            { op: current.length === 0 && present ? 'add' : 'replace', path: '/metadata/finalizers', value: finalizers },
          ],
        });
        this.ownWrites?.record(patched);
        return patched;
      } catch (error) {
        if (isStatus(error, 404) && !present) return undefined;
        // A failed `test` (stale version) is 422 Invalid; 409 for a conflict at storage.
        if ((isStatus(error, 422) || isStatus(error, 409)) && attempt === 0) {
          const live = await this.get({ namespace: target.metadata.namespace, name: target.metadata.name });
          if (live && live.metadata.uid === realm.metadata.uid) {
            target = live;
            continue;
          }
        }
        throw wrap(error, `${present ? 'adding' : 'removing'} finalizer ${finalizer} on ${realm.metadata.namespace}/${realm.metadata.name}`);
      } finally {
        this.ownWrites?.settle(target);
      }
    }
  }

  /**
   * Records an events.k8s.io Event about the object (`kubectl describe` shows it), aggregated into
   * a series when it repeats and rate-limited per object. Never throws.
   */
  async recordEvent(realm: T, type: EventType, reason: string, action: string, note: string): Promise<void> {
    await this.events.record({
      regarding: {
        apiVersion: API_VERSION,
        kind: this.resource.kind,
        name: realm.metadata.name,
        namespace: realm.metadata.namespace,
        uid: realm.metadata.uid,
        resourceVersion: realm.metadata.resourceVersion,
      },
      type,
      reason,
      action,
      note,
    });
  }

  private objectPath(key: ObjectKey): string {
    return `/apis/${GROUP}/${VERSION}/namespaces/${encodeURIComponent(key.namespace)}/${this.resource.plural}/${encodeURIComponent(key.name)}`;
  }
}

/** The PublishedRealm client. */
export class PublishedRealmKube extends CustomResourceKube<PublishedRealm, PublishedRealmStatus> {}

export function isStatus(error: unknown, code: number): boolean {
  return statusCodeOf(error) === code;
}

/** Adds what we were doing to an API error, keeping the cause. */
function wrap(error: unknown, doing: string): Error {
  if (error instanceof KubeApiError) return new Error(`while ${doing}: HTTP ${error.statusCode}: ${error.status?.message ?? error.message}`, { cause: error });
  return new Error(`while ${doing}: ${(error as Error).message}`, { cause: error });
}
