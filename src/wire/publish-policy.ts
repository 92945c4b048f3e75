/**
 * Boxel's authorization rules for a publish, as pure functions (the database reads are in
 * src/dataplane/authorization.ts). Checked against cardstack/boxel
 * packages/realm-server/handlers/handle-publish-realm.ts and handle-unpublish-realm.ts:
 * - the publishing user holds `realm-owner` on the source realm (publish) — and on the published
 *   realm's source (unpublish);
 * - the source realm is publishable (`realm_metadata.publishable` is true);
 * - the published host is under one of the configured published-realm domains. Boxel matches a plain
 *   suffix, so `evilboxel.site` passes for `boxel.site`; here the match is on a dot boundary;
 * - on the publisher's own space host `<localpart>.<space domain>` the path is the source realm's
 *   name or its server-issued unlisted slug, never a path of the publisher's choosing.
 */

/** The rule a refusal names. */
export type PublishRule = 'realm-owner' | 'publishable' | 'published-realm-domain' | 'own-space-path';

export interface PolicyRefusal {
  rule: PublishRule;
  /** What failed and how to fix it. */
  message: string;
}

/** A Matrix user id's localpart: `@alice:boxel.ai` → `alice` (Boxel's `getMatrixUsername`). */
export function matrixLocalpart(userId: string): string {
  return userId.replace(/^@/, '').replace(/:.*$/, '');
}

/** The source realm's name: the last non-empty path segment, lowercased (Boxel's `deriveRealmName`). */
export function realmNameOf(realmURL: string): string {
  const segments = new URL(realmURL).pathname.split('/').filter(Boolean);
  return (segments[segments.length - 1] ?? '').toLowerCase();
}

function normalizeDomain(domain: string): string {
  return domain.trim().toLowerCase().replace(/^\.+/, '').replace(/\.+$/, '');
}

/**
 * Whether the URL's host is the domain or a subdomain of it. A domain with a port (`localhost:4205`)
 * is compared with host:port, one without with the host name alone (as Boxel does).
 */
export function hostUnderDomain(url: URL, domain: string): boolean {
  const wanted = normalizeDomain(domain);
  if (!wanted) return false;
  const host = (wanted.includes(':') ? url.host : url.hostname).toLowerCase().replace(/\.(?=:|$)/, '');
  return host === wanted || host.endsWith(`.${wanted}`);
}

/** The domain rule; `undefined` when it passes or no domains are configured (the rule is then off). */
export function checkPublishedRealmDomain(publishedRealmURL: string, domains: readonly string[]): PolicyRefusal | undefined {
  const configured = domains.map(normalizeDomain).filter(Boolean);
  if (configured.length === 0) return undefined;
  const url = new URL(publishedRealmURL);
  if (configured.some((domain) => hostUnderDomain(url, domain))) return undefined;
  return {
    rule: 'published-realm-domain',
    message:
      `publishedRealmURL ${publishedRealmURL} is not under a published-realm domain (${configured.join(', ')}); ` +
      'use a host that is one of them or ends with "." and one of them, or add its domain to --published-realm-domains',
  };
}

/**
 * The own-space path rule: on `<publisher localpart>.<space domain>` the path must be the source
 * realm's name or its unlisted slug. `undefined` when it passes, the host is not the publisher's
 * own space, or no space domain is configured.
 */
export function checkOwnSpacePath(args: {
  sourceRealmURL: string;
  publishedRealmURL: string;
  publisher: string;
  spaceDomain: string | undefined;
  unlistedSlug: string | null;
}): PolicyRefusal | undefined {
  if (!args.spaceDomain) return undefined;
  const ownHost = `${matrixLocalpart(args.publisher)}.${normalizeDomain(args.spaceDomain)}`.toLowerCase();
  const url = new URL(args.publishedRealmURL);
  const host = (ownHost.includes(':') ? url.host : url.hostname).toLowerCase().replace(/\.(?=:|$)/, '');
  if (host !== ownHost) return undefined;
  const publishedPath = url.pathname.split('/').filter(Boolean).join('/');
  const realmName = realmNameOf(args.sourceRealmURL);
  if (publishedPath === realmName || (args.unlistedSlug !== null && publishedPath === args.unlistedSlug)) return undefined;
  const allowed = [`${url.origin}/${realmName}/`, ...(args.unlistedSlug ? [`${url.origin}/${args.unlistedSlug}/`] : [])];
  return {
    rule: 'own-space-path',
    message:
      `publishedRealmURL ${args.publishedRealmURL} is on ${args.publisher}'s own space ${ownHost}, where the path must be the source realm's name ` +
      `or its server-issued unlisted link; use ${allowed.join(' or ')}`,
  };
}

/** The realm-owner rule's refusal. */
export function notRealmOwner(publisher: string, sourceRealmURL: string, action: 'publish' | 'unpublish'): PolicyRefusal {
  return {
    rule: 'realm-owner',
    message:
      `${publisher} does not hold realm-owner on the source realm ${sourceRealmURL}, so may not ${action} it; ` +
      'set spec.publisher to a Matrix user id that owns the source realm, or grant that user realm-owner on it in Boxel',
  };
}

/**
 * Adopting a URL already published from another source replaces that realm, which is an unpublish
 * of it: the publisher must also hold realm-owner on the source it was published from (Boxel's own
 * publish handler does not check this; its unpublish handler does).
 */
export function notOwnerOfExisting(publisher: string, publishedRealmURL: string, existingSource: string): PolicyRefusal {
  return {
    rule: 'realm-owner',
    message:
      `${publishedRealmURL} is already published from ${existingSource}, on which ${publisher} does not hold realm-owner, so may not replace it; ` +
      `choose another publishedRealmURL, or have an owner of ${existingSource} unpublish it first`,
  };
}

/** The publishable rule's refusal. */
export function notPublishable(sourceRealmURL: string): PolicyRefusal {
  return {
    rule: 'publishable',
    message: `source realm ${sourceRealmURL} is not publishable (realm_metadata.publishable is not true); mark it publishable in Boxel (fix what its publishability check reports) and the publish is retried`,
  };
}
