/**
 * The database side of Boxel's publish authorization (rules in src/wire/publish-policy.ts): who
 * holds realm-owner on a realm, whether a source realm is publishable, and its unlisted slug. As in
 * cardstack/boxel handle-publish-realm.ts / handle-unpublish-realm.ts, realm-owner counts only on
 * the user's own `realm_user_permissions` row (not `*` or `users`), and `publishable` must be true
 * (Boxel's `_info` reports `realm_metadata.publishable`; a missing row or NULL is not publishable).
 */
import type { Queryable } from './db.js';
import { PublishNotAuthorizedError } from './realm-state.js';
import {
  checkOwnSpacePath,
  checkPublishedRealmDomain,
  notOwnerOfExisting,
  notPublishable,
  notRealmOwner,
  type PolicyRefusal,
} from '../wire/publish-policy.js';

/** The operator's authorization settings; a DataPlane without them checks none of the rules. */
export interface PublishAuthorization {
  /** Published-realm domains (`--published-realm-domains`); empty: the domain rule is off. */
  publishedRealmDomains: readonly string[];
  /** The domain of users' own spaces (`<localpart>.<domain>`, Boxel's `boxelSpace`); unset: the own-space path rule is off. */
  spaceDomain?: string;
}

export async function holdsRealmOwner(db: Queryable, realmURL: string, userId: string): Promise<boolean> {
  const { rows } = await db.query<{ realm_owner: boolean }>('SELECT realm_owner FROM realm_user_permissions WHERE realm_url = $1 AND username = $2', [realmURL, userId]);
  return rows[0]?.realm_owner === true;
}

export async function isPublishable(db: Queryable, realmURL: string): Promise<boolean> {
  const { rows } = await db.query<{ publishable: boolean | null }>('SELECT publishable FROM realm_metadata WHERE url = $1', [realmURL]);
  return rows[0]?.publishable === true;
}

/** The source realm's server-issued unlisted slug, when Boxel's `unlisted_realm_paths` table exists and has one. */
export async function readUnlistedSlug(db: Queryable, sourceRealmURL: string): Promise<string | null> {
  const table = await db.query<{ present: boolean }>(`SELECT to_regclass('unlisted_realm_paths') IS NOT NULL AS present`);
  if (!table.rows[0]?.present) return null;
  const { rows } = await db.query<{ slug: string }>('SELECT slug FROM unlisted_realm_paths WHERE source_realm_url = $1', [sourceRealmURL]);
  return rows[0]?.slug ?? null;
}

function refuse(refusal: PolicyRefusal): never {
  throw new PublishNotAuthorizedError(refusal.rule, refusal.message);
}

/** Every publish rule, in Boxel's order; throws {@link PublishNotAuthorizedError} naming the first that fails. */
export async function authorizePublish(
  db: Queryable,
  policy: PublishAuthorization,
  request: { sourceRealmURL: string; publishedRealmURL: string; publisher: string },
): Promise<void> {
  const domain = checkPublishedRealmDomain(request.publishedRealmURL, policy.publishedRealmDomains);
  if (domain) refuse(domain);
  if (!(await holdsRealmOwner(db, request.sourceRealmURL, request.publisher))) refuse(notRealmOwner(request.publisher, request.sourceRealmURL, 'publish'));
  const ownSpace = checkOwnSpacePath({
    ...request,
    spaceDomain: policy.spaceDomain,
    unlistedSlug: policy.spaceDomain ? await readUnlistedSlug(db, request.sourceRealmURL) : null,
  });
  if (ownSpace) refuse(ownSpace);
  if (!(await isPublishable(db, request.sourceRealmURL))) refuse(notPublishable(request.sourceRealmURL));
  // A URL already published from another source (by Boxel, or another publisher) is adopted only by an owner of that source.
  const { rows } = await db.query<{ source_url: string | null }>(`SELECT source_url FROM realm_registry WHERE url = $1 AND kind = 'published'`, [request.publishedRealmURL]);
  const existingSource = rows[0]?.source_url ?? (rows[0] ? request.publishedRealmURL : undefined);
  if (existingSource !== undefined && existingSource !== request.sourceRealmURL && !(await holdsRealmOwner(db, existingSource, request.publisher))) {
    refuse(notOwnerOfExisting(request.publisher, request.publishedRealmURL, existingSource));
  }
}

/** Unpublish: the publisher must hold realm-owner on the published realm's source realm. */
export async function authorizeUnpublish(db: Queryable, sourceRealmURL: string, publisher: string): Promise<void> {
  if (!(await holdsRealmOwner(db, sourceRealmURL, publisher))) refuse(notRealmOwner(publisher, sourceRealmURL, 'unpublish'));
}
