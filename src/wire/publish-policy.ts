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
 * - Boxel's PUBLISHED_REALM_DOMAIN_OVERRIDES (custom domains, see {@link parseDomainOverrides}): a
 *   source realm listed there may be published on exactly its override host by a publisher with
 *   write on it; the domain, realm-owner and own-space rules are then not applied (publishable is).
 */
import { canonicalRealmURL } from './realm-url.js';

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

/**
 * Boxel's PUBLISHED_REALM_DOMAIN_OVERRIDES, as cardstack/boxel reads it
 * (packages/runtime-common/constants.ts `parsePublishedRealmDomainOverrides`, used by
 * packages/realm-server/handlers/handle-publish-realm.ts `maybeApplyPublishedRealmOverride`): a JSON
 * object from a source realm URL to the one custom domain its published realm may use, e.g.
 * `{"https://app.boxel.ai/mike/site/":"www.mikes.example"}`. The domain is a host, optionally with a
 * port, or a URL whose host is taken.
 */
export type DomainOverrides = Readonly<Record<string, string>>;

/** An override's host: Boxel parses `d` as a URL when it contains `://`, else as `https://d`. */
export interface OverrideHost {
  /** host[:port], lowercased. */
  host: string;
  hostname: string;
  port: string;
}

export function parseOverrideHost(domain: string): OverrideHost | undefined {
  try {
    const url = new URL(domain.includes('://') ? domain : `https://${domain}`);
    if (!url.hostname) return undefined;
    return { host: url.host.toLowerCase(), hostname: url.hostname.toLowerCase().replace(/\.$/, ''), port: url.port };
  } catch {
    return undefined;
  }
}

/**
 * Parses the overrides. Boxel silently ignores what it cannot use (invalid JSON, a non-object,
 * non-string values, and a key without its trailing slash simply never matches); the operator
 * refuses each of these instead, naming the entry and the fix, since a typo would otherwise
 * quietly block a custom domain. Keys are compared canonically (see canonicalRealmURL), so
 * `https://App.boxel.ai/mike/site/` and `https://app.boxel.ai/mike/site/` are the same realm.
 */
export function parseDomainOverrides(raw: string): { ok: true; overrides: DomainOverrides } | { ok: false; problems: string[] } {
  if (raw.trim() === '') return { ok: true, overrides: {} };
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (error) {
    return { ok: false, problems: [`is not JSON (${(error as Error).message}); write an object from source realm URL to domain, e.g. {"https://app.boxel.ai/mike/site/":"www.mikes.example"}`] };
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    return { ok: false, problems: ['must be a JSON object from source realm URL to domain, e.g. {"https://app.boxel.ai/mike/site/":"www.mikes.example"}'] };
  }
  const overrides: Record<string, string> = {};
  const problems: string[] = [];
  for (const [key, value] of Object.entries(parsed)) {
    let source: string;
    try {
      source = canonicalRealmURL(key, 'source realm URL');
    } catch (error) {
      problems.push(`key ${JSON.stringify(key)}: ${(error as Error).message}`);
      continue;
    }
    if (!source.endsWith('/')) {
      problems.push(`key ${JSON.stringify(key)}: a source realm URL ends with "/" (Boxel never matches it otherwise); write ${JSON.stringify(`${source}/`)}`);
      continue;
    }
    if (typeof value !== 'string' || !parseOverrideHost(value)) {
      problems.push(`${JSON.stringify(key)}: ${JSON.stringify(value)} is not a domain; write a host with an optional port, e.g. "www.mikes.example" or "sites.example:4443"`);
      continue;
    }
    overrides[source] = value;
  }
  return problems.length > 0 ? { ok: false, problems } : { ok: true, overrides };
}

/**
 * The override host a publish of `sourceRealmURL` at `publishedRealmURL` uses, when the source has
 * an override and the published URL's host is that host: host and port when the override names a
 * port, else the host name alone (any port), as Boxel compares them. Exact, never a subdomain.
 */
export function matchingDomainOverride(overrides: DomainOverrides, sourceRealmURL: string, publishedRealmURL: string): string | undefined {
  const domain = overrides[canonicalRealmURL(sourceRealmURL, 'sourceRealmURL')];
  if (domain === undefined) return undefined;
  const wanted = parseOverrideHost(domain);
  if (!wanted) return undefined;
  const published = new URL(canonicalRealmURL(publishedRealmURL, 'publishedRealmURL'));
  const matches = wanted.port ? published.host.toLowerCase() === wanted.host : published.hostname.toLowerCase() === wanted.hostname;
  return matches ? wanted.host : undefined;
}

/**
 * Whether Boxel lets a user publish on a source's override host: the user has `write` on the
 * source realm through any of its own, `users` (any logged-in user) or `*` (everyone) rows.
 */
export function overrideAllowsPublisher(permissions: ReadonlyArray<{ username: string; write: boolean }>, publisher: string): boolean {
  return permissions.some((row) => row.write && (row.username === publisher || row.username === 'users' || row.username === '*'));
}

/** The domain rule's refusal when the host is a source's override host but the publisher may not use it. */
export function overrideNeedsWrite(publisher: string, sourceRealmURL: string, publishedRealmURL: string, overrideHost: string): PolicyRefusal {
  return {
    rule: 'published-realm-domain',
    message:
      `publishedRealmURL ${publishedRealmURL} is on ${overrideHost}, the PUBLISHED_REALM_DOMAIN_OVERRIDES host of ${sourceRealmURL}, which only a publisher with write on that source may use, ` +
      `and ${publisher} has none; grant ${publisher} write on ${sourceRealmURL} in Boxel, or use a host under a published-realm domain`,
  };
}
