/**
 * Realm URL rules shared by the operator, the CRD and the listener. Realm URLs are compared as
 * exact strings everywhere (lock keys, NOTIFY payloads, registry rows), so we accept only the
 * canonical form and say how to fix anything else.
 */

/**
 * Longest realm URL we accept, in bytes. The largest payload we emit for a URL is
 * `{"k":"realm","r":"<url>"}` (about 20 bytes of framing); 2048 keeps every payload far under
 * PostgreSQL's 8000-byte NOTIFY limit and matches the CRD's `maxLength`.
 */
export const MAX_REALM_URL_BYTES = 2048;

export class RealmURLError extends Error {
  constructor(
    /** The field the bad value came from, e.g. `spec.publishedRealmURL`. */
    readonly field: string,
    /** What is wrong, in a phrase. */
    readonly problem: string,
    /** What to do about it. */
    readonly fix: string,
  ) {
    super(`${field}: ${problem}; ${fix}`);
    this.name = 'RealmURLError';
  }
}

/** The reasons a string is not a canonical realm URL, or `undefined` when it is one. */
export function realmURLProblem(value: string, field = 'realmURL'): RealmURLError | undefined {
  const fail = (problem: string, fix: string) => new RealmURLError(field, problem, fix);
  if (typeof value !== 'string' || value.length === 0) {
    return fail('is empty', 'give an absolute http(s) URL ending in "/", e.g. "https://realms.example.com/user/realm/"');
  }
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes > MAX_REALM_URL_BYTES) {
    return fail(
      `is ${bytes} bytes long, over the ${MAX_REALM_URL_BYTES}-byte limit that keeps NOTIFY payloads under 8000 bytes`,
      'use a shorter realm URL',
    );
  }
  if (/\s/.test(value)) {
    return fail('contains whitespace', 'remove it or percent-encode it');
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return fail(`"${value}" is not an absolute URL`, 'give an absolute http(s) URL ending in "/", e.g. "https://realms.example.com/user/realm/"');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return fail(`scheme "${url.protocol.slice(0, -1)}" is not allowed`, 'use http:// or https://');
  }
  if (url.username || url.password) {
    return fail('contains credentials', 'remove the user:password@ part');
  }
  if (value.includes('#')) {
    return fail('has a fragment', `remove "#${url.hash.slice(1)}"`);
  }
  if (value.includes('?')) {
    return fail('has a query string', `remove "${url.search || '?'}"`);
  }
  if (!value.endsWith('/')) {
    return fail('does not end with "/"', `use "${value}/"`);
  }
  if (url.href !== value) {
    return fail(`is not in canonical form`, `use "${url.href}" (lower-case scheme and host, no default port, no dot segments)`);
  }
  return undefined;
}

/** Throws a {@link RealmURLError} naming `field` unless `value` is a canonical realm URL. */
export function assertRealmURL(value: string, field = 'realmURL'): string {
  const problem = realmURLProblem(value, field);
  if (problem) throw problem;
  return value;
}

/**
 * The URLs in `registeredURLs` that overlap `url`: a proper prefix of it (a realm that would
 * contain it) or having it as a proper prefix (a realm it would contain). Canonical realm URLs end
 * in "/", so a string prefix is a path-segment prefix: `https://h/a/` contains `https://h/a/b/`
 * but not `https://h/ab/`. Realm servers resolve a request to the longest realm URL they know, so
 * overlapping realms make what a path serves depend on each replica's cache.
 */
export function findOverlappingRealmURLs(url: string, registeredURLs: Iterable<string>): string[] {
  const overlapping = new Set<string>();
  for (const other of registeredURLs) {
    if (other !== url && (url.startsWith(other) || other.startsWith(url))) overlapping.add(other);
  }
  return [...overlapping].sort();
}
