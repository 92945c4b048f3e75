/**
 * The PublishedRealm reconciler's Kubernetes I/O: read an object, write its status with
 * optimistic concurrency (skipping unchanged status, retrying conflicts), add and remove the
 * finalizer, and record Events. Kept apart from the reconcile logic so the sequence reads plainly.
 */
import { isDeepStrictEqual } from 'node:util';
import {
  ApiException,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { EventRecorder, type EventType } from '../../runtime/event-recorder.js';
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

export type { EventType };

/** `reportingController` of every Event the operator records. */
export const REPORTING_CONTROLLER = 'realm-operator.dev/operator';

export class PublishedRealmKube {
  private readonly objects: CustomObjectsApi;
  readonly events: EventRecorder;

  constructor(
    kubeConfig: KubeConfig,
    logger: Logger,
    /** Written into every Event as reportingInstance (the operator pod). */
    identity: string,
  ) {
    this.objects = kubeConfig.makeApiClient(CustomObjectsApi);
    this.events = new EventRecorder({ kubeConfig, reportingController: REPORTING_CONTROLLER, reportingInstance: identity, logger });
  }

  /** The live object, or `undefined` when it does not exist. */
  async get(key: ObjectKey): Promise<PublishedRealm | undefined> {
    try {
      return (await this.objects.getNamespacedCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, ...key })) as PublishedRealm;
    } catch (error) {
      if (isStatus(error, 404)) return undefined;
      throw wrap(error, `reading PublishedRealm ${key.namespace}/${key.name}`);
    }
  }

  /**
   * Applies `mutate` to a copy of the latest status and writes it with the object's
   * resourceVersion; re-reads and retries on 409. Returns the object as written, or as read when
   * nothing changed (no write at all), or `undefined` when the object is gone.
   */
  async updateStatus(
    key: ObjectKey,
    mutate: (status: PublishedRealmStatus, realm: PublishedRealm) => PublishedRealmStatus,
  ): Promise<{ before: PublishedRealm; after: PublishedRealm } | undefined> {
    for (let attempt = 0; ; attempt++) {
      const current = await this.get(key);
      if (!current) return undefined;
      const status = mutate(structuredClone(current.status ?? {}), current);
      if (isDeepStrictEqual(status, current.status ?? {})) return { before: current, after: current };
      try {
        const written = (await this.objects.replaceNamespacedCustomObjectStatus({
          group: GROUP,
          version: VERSION,
          plural: PLURAL,
          ...key,
          body: { ...current, status },
        })) as PublishedRealm;
        return { before: current, after: written };
      } catch (error) {
        if (isStatus(error, 409) && attempt < 5) continue;
        if (isStatus(error, 404)) return undefined;
        throw wrap(error, `writing the status of PublishedRealm ${key.namespace}/${key.name}`);
      }
    }
  }

  /** Adds or removes a finalizer with a JSON patch guarded by the object's resourceVersion. */
  async setFinalizer(realm: PublishedRealm, finalizer: string, present: boolean): Promise<void> {
    const current = realm.metadata.finalizers ?? [];
    if (current.includes(finalizer) === present) return;
    const finalizers = present ? [...current, finalizer] : current.filter((f) => f !== finalizer);
    try {
      await this.objects.patchNamespacedCustomObject(
        {
          group: GROUP,
          version: VERSION,
          plural: PLURAL,
          namespace: realm.metadata.namespace,
          name: realm.metadata.name,
          body: [
            { op: 'test', path: '/metadata/resourceVersion', value: realm.metadata.resourceVersion },
            { op: current.length === 0 && present ? 'add' : 'replace', path: '/metadata/finalizers', value: finalizers },
          ],
        },
        setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
      );
    } catch (error) {
      if (isStatus(error, 404) && !present) return;
      throw wrap(error, `${present ? 'adding' : 'removing'} finalizer ${finalizer} on ${realm.metadata.namespace}/${realm.metadata.name}`);
    }
  }

  /**
   * Records an events.k8s.io Event about the object (`kubectl describe` shows it), aggregated into
   * a series when it repeats and rate-limited per object. Never throws.
   */
  async recordEvent(realm: PublishedRealm, type: EventType, reason: string, action: string, note: string): Promise<void> {
    await this.events.record({
      regarding: {
        apiVersion: API_VERSION,
        kind: KIND,
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
}

export function isStatus(error: unknown, code: number): boolean {
  return error instanceof ApiException && error.code === code;
}

/** Adds what we were doing to an API error, keeping the cause. */
function wrap(error: unknown, doing: string): Error {
  if (error instanceof ApiException) {
    const body = typeof error.body === 'string' ? error.body : JSON.stringify(error.body);
    const reason = (() => {
      try {
        return (JSON.parse(body) as { message?: string }).message ?? body;
      } catch {
        return body;
      }
    })();
    return new Error(`while ${doing}: HTTP ${error.code}: ${reason}`, { cause: error });
  }
  return new Error(`while ${doing}: ${(error as Error).message}`, { cause: error });
}
