/**
 * `PublishedRealm.spec.sourceRealmRef`: a Realm in the same namespace names the source realm
 * instead of a URL. Resolved on every reconcile to the Realm's `status.url`; a Realm that is gone
 * or being deleted stalls the PublishedRealm with the reason (Boxel's delete-realm removes every
 * realm published from it, so nothing is republished behind the user's back), one not created yet
 * waits for it.
 */
import type { PublishedRealmSpec, PublishedRealmSpecInput } from '../../api/v1alpha1/published-realm-types.js';
import type { Realm } from '../../api/v1alpha1/realm-types.js';
import type { ObjectKey } from '../published-realm/kube.js';

export type ReadRealm = (key: ObjectKey) => Promise<Realm | undefined>;

/**
 * Stalled reasons of a PublishedRealm whose sourceRealmRef cannot be used:
 * - `SourceRealmNotFound`: no such Realm (deleted, never created, or the Realm controller is off).
 * - `SourceRealmDeleting`: the Realm is being deleted, with the realms published from it.
 * - `SourceRealmNotReady` (re-checked soon): the Realm has not been created or adopted yet.
 */
export const SourceRefReasons = {
  SourceRealmNotFound: 'SourceRealmNotFound',
  SourceRealmDeleting: 'SourceRealmDeleting',
  SourceRealmNotReady: 'SourceRealmNotReady',
} as const;

export type SourceResolution = { ok: true; spec: PublishedRealmSpec } | { ok: false; reason: string; message: string; transient: boolean };

/** The spec with its source realm's URL, from sourceRealmURL or the named Realm. */
export async function resolveSourceRealmURL(spec: PublishedRealmSpecInput, namespace: string, readRealm: ReadRealm | undefined): Promise<SourceResolution> {
  if (spec.sourceRealmURL !== undefined) return { ok: true, spec: { ...spec, sourceRealmURL: spec.sourceRealmURL } };
  const name = spec.sourceRealmRef!.name;
  const refused = (reason: string, message: string, transient = false): SourceResolution => ({ ok: false, reason, message: `spec.sourceRealmRef: ${message}`, transient });
  if (!readRealm) {
    return refused(SourceRefReasons.SourceRealmNotFound, `the operator does not run the Realm controller (the realms.realm-operator.dev CRD was not installed when it started), so the Realm ${name} cannot be read; install crds/ and restart the operator, or set spec.sourceRealmURL instead`);
  }
  const source = await readRealm({ namespace, name });
  if (!source) {
    return refused(
      SourceRefReasons.SourceRealmNotFound,
      `the Realm ${namespace}/${name} does not exist. If it was deleted, its published realms were deleted with it (as Boxel's delete-realm does) and nothing is republished; create the Realm again to publish it anew, or delete this PublishedRealm`,
    );
  }
  if (source.metadata.deletionTimestamp) {
    return refused(SourceRefReasons.SourceRealmDeleting, `the Realm ${namespace}/${name} is being deleted, and with it every realm published from it; nothing is published or republished. Delete this PublishedRealm too`);
  }
  const ready = source.status?.conditions?.find((c) => c.type === 'Ready');
  if (!source.status?.url || ready?.status !== 'True') {
    return refused(SourceRefReasons.SourceRealmNotReady, `the Realm ${namespace}/${name} is not Ready yet (${ready ? `${ready.reason}: ${ready.message}` : 'not reconciled yet'}); publishing once it is`, true);
  }
  return { ok: true, spec: { ...spec, sourceRealmURL: source.status.url } };
}
