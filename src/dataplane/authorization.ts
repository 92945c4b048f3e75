/**
 * The database side of Boxel's publish authorization (rules in src/wire/publish-policy.ts): who
 * holds realm-owner on a realm, whether a source realm is publishable, and its unlisted slug. As in
 * cardstack/boxel handle-publish-realm.ts / handle-unpublish-realm.ts, realm-owner counts only on
 * the user's own `realm_user_permissions` row (not `*` or `users`), and `publishable` must be true
 * (Boxel's `_info` reports `realm_metadata.publishable`; a missing row or NULL is not publishable).
 */
import type { Queryable } from './db.js';
import { PublishNotAuthorizedError, readPublishTargetRows, type PublishAuthorizationFacts, type PublishTargetRows } from './realm-state.js';
import {
  checkOwnSpacePath,
  checkPublishedRealmDomain,
  matchingDomainOverride,
  notOwnerOfExisting,
  notPublishable,
  notRealmOwner,
  overrideAllowsPublisher,
  overrideNeedsWrite,
  type DomainOverrides,
  type PolicyRefusal,
} from '../wire/publish-policy.js';

/** The operator's authorization settings; a DataPlane without them checks none of the rules. */
export interface PublishAuthorization {
  /** Published-realm domains (`--published-realm-domains`); empty: the domain rule is off. */
  publishedRealmDomains: readonly string[];
  /** The domain of users' own spaces (`<localpart>.<domain>`, Boxel's `boxelSpace`); unset: the own-space path rule is off. */
  spaceDomain?: string;
  /** Boxel's PUBLISHED_REALM_DOMAIN_OVERRIDES (`--published-realm-domain-overrides`): source realm URL → its custom domain. */
  domainOverrides?: DomainOverrides;
}

export async function holdsRealmOwner(db: Queryable, realmURL: string, userId: string): Promise<boolean> {
  const { rows } = await db.query<{ realm_owner: boolean }>('SELECT realm_owner FROM realm_user_permissions WHERE realm_url = $1 AND username = $2', [realmURL, userId]);
  return rows[0]?.realm_owner === true;
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

/**
 * The rows the publish rules read that every check needs, in one statement: whether the publisher
 * holds realm-owner on the source, whether the source is publishable, and the published URL's
 * existing source (a `published` registry row; its `source_url`, else the URL itself) with the
 * publisher's realm-owner on that.
 */
async function readPublishFacts(
  db: Queryable,
  request: { sourceRealmURL: string; publishedRealmURL: string; publisher: string },
): Promise<PublishAuthorizationFacts> {
  const { rows } = await db.query<{ owns_source: boolean | null; publishable: boolean | null; existing_source: string | null; owns_existing_source: boolean | null }>(
    `SELECT
       (SELECT realm_owner FROM realm_user_permissions WHERE realm_url = $1 AND username = $3) AS owns_source,
       (SELECT publishable FROM realm_metadata WHERE url = $1) AS publishable,
       existing.source AS existing_source,
       (SELECT realm_owner FROM realm_user_permissions WHERE realm_url = existing.source AND username = $3) AS owns_existing_source
     FROM (SELECT 1) AS one
     LEFT JOIN (SELECT COALESCE(source_url, url) AS source FROM realm_registry WHERE url = $2 AND kind = 'published') AS existing ON true`,
    [request.sourceRealmURL, request.publishedRealmURL, request.publisher],
  );
  const row = rows[0]!;
  return { ownsSource: row.owns_source === true, publishable: row.publishable === true, existingSource: row.existing_source ?? undefined, ownsExistingSource: row.owns_existing_source === true };
}

/**
 * Every publish rule, in Boxel's order; throws {@link PublishNotAuthorizedError} naming the first
 * that fails. `read`: the facts already read for this request's publisher in the same transaction
 * (`readPublishTargetRows`), saving their statement.
 */
export async function authorizePublish(
  db: Queryable,
  policy: PublishAuthorization,
  request: { sourceRealmURL: string; publishedRealmURL: string; publisher: string },
  read?: PublishAuthorizationFacts & { publisher: string | null },
): Promise<void> {
  const facts = read && read.publisher === request.publisher ? read : await readPublishFacts(db, request);
  // Boxel's override: on the source's own custom host, a publisher with write skips the domain,
  // realm-owner and own-space rules; otherwise the ordinary rules apply, as in Boxel.
  const overrideHost = policy.domainOverrides ? matchingDomainOverride(policy.domainOverrides, request.sourceRealmURL, request.publishedRealmURL) : undefined;
  const overridden = overrideHost !== undefined && overrideAllowsPublisher(await readWritePermissions(db, request.sourceRealmURL), request.publisher);
  if (!overridden) await authorizeOrdinaryPublish(db, policy, request, overrideHost, facts.ownsSource);
  if (!facts.publishable) refuse(notPublishable(request.sourceRealmURL));
  // A URL already published from another source (by Boxel, or another publisher) is adopted only by an owner of that source.
  if (facts.existingSource !== undefined && facts.existingSource !== request.sourceRealmURL && !facts.ownsExistingSource) {
    refuse(notOwnerOfExisting(request.publisher, request.publishedRealmURL, facts.existingSource));
  }
}

/** The rules Boxel skips on an override host: published-realm domain, realm-owner, own-space path. */
async function authorizeOrdinaryPublish(
  db: Queryable,
  policy: PublishAuthorization,
  request: { sourceRealmURL: string; publishedRealmURL: string; publisher: string },
  overrideHost: string | undefined,
  ownsSource: boolean,
): Promise<void> {
  const domain = checkPublishedRealmDomain(request.publishedRealmURL, policy.publishedRealmDomains);
  if (domain) refuse(overrideHost ? overrideNeedsWrite(request.publisher, request.sourceRealmURL, request.publishedRealmURL, overrideHost) : domain);
  if (!ownsSource) refuse(notRealmOwner(request.publisher, request.sourceRealmURL, 'publish'));
  const ownSpace = checkOwnSpacePath({
    ...request,
    spaceDomain: policy.spaceDomain,
    unlistedSlug: policy.spaceDomain ? await readUnlistedSlug(db, request.sourceRealmURL) : null,
  });
  if (ownSpace) refuse(ownSpace);
}

/** Who may write the source realm: its rows with `write`, as Boxel's fetchRealmPermissions reads them. */
async function readWritePermissions(db: Queryable, realmURL: string): Promise<Array<{ username: string; write: boolean }>> {
  const { rows } = await db.query<{ username: string; write: boolean }>('SELECT username, write FROM realm_user_permissions WHERE realm_url = $1', [realmURL]);
  return rows;
}

/** Unpublish: the publisher must hold realm-owner on the published realm's source realm. */
export async function authorizeUnpublish(db: Queryable, sourceRealmURL: string, publisher: string): Promise<void> {
  if (!(await holdsRealmOwner(db, sourceRealmURL, publisher))) refuse(notRealmOwner(publisher, sourceRealmURL, 'unpublish'));
}

/**
 * The publish rules again, for a realm already published from this spec (every reconcile and
 * resync re-checks them: Boxel checks at publish time only, so a publisher who lost realm-owner
 * would otherwise keep a realm the operator goes on reconciling). The publisher is the one the
 * publish used: spec.publisher, else the source realm's owner. Throws {@link PublishNotAuthorizedError}.
 */
export async function reauthorizePublished(
  db: Queryable,
  policy: PublishAuthorization,
  request: { sourceRealmURL: string; publishedRealmURL: string; publisher?: string },
  /** `readPublishTargetRows` for this same request, when the caller just read them (the reconciler's first read). */
  rows?: PublishTargetRows,
): Promise<void> {
  // One statement: the source owner (for an unset publisher) and the rules' facts together.
  const read = rows ?? (await readPublishTargetRows(db, request.sourceRealmURL, request.publishedRealmURL, request.publisher));
  const owner = read.source?.owner_username;
  const publisher = request.publisher ?? (owner ? (read.sourceOwnerUserId ?? owner) : undefined);
  if (publisher === undefined) {
    throw new PublishNotAuthorizedError(
      'realm-owner',
      `spec.publisher is unset and the source realm ${request.sourceRealmURL} has no owner in realm_registry, so no publisher holds realm-owner on it; ` +
        'set spec.publisher to a Matrix user id that owns the source realm',
    );
  }
  await authorizePublish(db, policy, { sourceRealmURL: request.sourceRealmURL, publishedRealmURL: request.publishedRealmURL, publisher }, read.authorization);
}
