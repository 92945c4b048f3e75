/**
 * `realm_operator.realm_epochs.published_for`: which object and spec a publish was for, so that a
 * restart or a change that needs no copy republishes nothing.
 *
 * The key is `<uid>/spec-<digest>` over the spec fields a publish depends on: sourceRealmURL,
 * publishedRealmURL and revision. The deprecated, ignored `spec.owner` used to be digested too (so
 * editing it alone republished); its slot is kept and always null, so the key of every object
 * without an owner is the same as before. Keys written earlier are still recognised for the spec
 * they were written for — `<uid>/spec-<digest with the owner>` and `<uid>/<generation>` — and
 * rewritten to the current key, so an upgrade republishes nothing and a later owner edit neither.
 */
import { createHash } from 'node:crypto';
import type { PublishedRealm, PublishedRealmSpec } from '../../api/v1alpha1/published-realm-types.js';
import type { Queryable } from '../../dataplane/db.js';

type KeyedRealm = Pick<PublishedRealm, 'metadata'>;
type KeyedSpec = Pick<PublishedRealmSpec, 'sourceRealmURL' | 'publishedRealmURL' | 'revision' | 'owner'> & Partial<PublishedRealmSpec>;

function specDigestKey(realm: KeyedRealm, spec: KeyedSpec, ownerSlot: string | null): string {
  const relevant = [spec.sourceRealmURL, spec.publishedRealmURL, spec.revision === undefined ? null : [typeof spec.revision, String(spec.revision)], ownerSlot];
  return `${realm.metadata.uid}/spec-${createHash('sha256').update(JSON.stringify(relevant)).digest('hex').slice(0, 32)}`;
}

/** The key a publish of this spec records now. Other spec fields (owner, publisher, suspend, reindex) need no new publish. */
export function publishedForKey(realm: KeyedRealm, spec: KeyedSpec): string {
  return specDigestKey(realm, spec, null);
}

/** Keys earlier versions recorded for this same spec: the digest that included spec.owner, and `<uid>/<generation>`. */
export function legacyPublishedForKeys(realm: KeyedRealm, spec: KeyedSpec): string[] {
  const keys = [`${realm.metadata.uid}/${realm.metadata.generation ?? 0}`];
  if (spec.owner !== undefined) keys.unshift(specDigestKey(realm, spec, spec.owner));
  return keys;
}

/** Whether `recorded` is a publish of this spec: `current` when in the current key form, `legacy` in an earlier one. */
export function matchPublishedFor(recorded: string | null, realm: KeyedRealm, spec: KeyedSpec): 'current' | 'legacy' | undefined {
  if (recorded === null) return undefined;
  if (recorded === publishedForKey(realm, spec)) return 'current';
  return legacyPublishedForKeys(realm, spec).includes(recorded) ? 'legacy' : undefined;
}

/** Rewrites a legacy key to the current one, only if the row still holds it (a concurrent publish wins). */
export async function upgradePublishedFor(db: Queryable, realmURL: string, recorded: string, current: string): Promise<void> {
  await db.query('UPDATE realm_operator.realm_epochs SET published_for = $3, updated_at = now() WHERE realm_url = $1 AND published_for = $2', [realmURL, recorded, current]);
}
