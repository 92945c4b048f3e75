/**
 * Realm URL rules shared by the operator, the CRD and the listener. Realm URLs are compared as
 * exact strings everywhere (lock keys, NOTIFY payloads, registry rows), so we accept only the
 * canonical form and say how to fix anything else.
 */
import { domainToUnicode } from 'node:url';

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

const ABSOLUTE_URL_FIX = 'give an absolute http(s) URL ending in "/", e.g. "https://realms.example.com/user/realm/"';

/** RFC 3986 unreserved characters: percent-encoding one of them makes an alias of the same URL. */
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

/**
 * How a URL differs from its canonical form, one step at a time, so a refusal can say which alias
 * it is. `whatwg` is what `new URL()` normalizes (scheme and host case, IDN to punycode, default
 * port, dot segments, characters it percent-encodes); the rest are aliases the WHATWG parser keeps
 * but that name the same resource, which Boxel never writes (it builds realm URLs with `new URL()`
 * from plain host names and lower-case path segments; runtime-common/published-realm-url.ts).
 */
type AliasKind = 'whatwg' | 'trailing-dot-host' | 'encoded-unreserved' | 'lower-case-percent-encoding';

interface Canonicalization {
  canonical: string;
  /** The first normalization that changed the input, if any. */
  alias?: AliasKind;
  /** For `encoded-unreserved` / `lower-case-percent-encoding`: the first offending escape. */
  escape?: string;
}

function canonicalize(url: URL): Canonicalization {
  let alias: AliasKind | undefined;
  let escape: string | undefined;
  // A fully qualified name ("localhost." with its root label) is the same host to DNS.
  if (url.hostname.endsWith('.')) {
    alias = 'trailing-dot-host';
    url.hostname = url.hostname.replace(/\.+$/, '');
  }
  const path = url.pathname.replace(/%([0-9A-Fa-f]{2})/g, (match, hex: string) => {
    const char = String.fromCharCode(parseInt(hex, 16));
    if (UNRESERVED.test(char)) {
      if (!alias) [alias, escape] = ['encoded-unreserved', match];
      return char;
    }
    if (match !== match.toUpperCase() && !alias) [alias, escape] = ['lower-case-percent-encoding', match];
    return match.toUpperCase();
  });
  if (path !== url.pathname) url.pathname = path;
  return { canonical: url.href, alias, escape };
}

/**
 * The canonical form of an http(s) URL: what `new URL()` serializes, with a trailing dot removed
 * from the host, percent-encoded unreserved characters decoded (`/%61lice/` → `/alice/`) and the
 * remaining percent-encodings in upper case (`%c3%a9` → `%C3%A9`). Two realm URLs name the same
 * realm exactly when their canonical forms are equal, so compare only canonical forms. Throws a
 * {@link RealmURLError} naming `field` if `input` is not an absolute URL.
 */
export function canonicalRealmURL(input: string, field = 'realmURL'): string {
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw new RealmURLError(field, `"${input}" is not an absolute URL`, ABSOLUTE_URL_FIX);
  }
  // Decoding can only shorten the path and never creates a dot segment (WHATWG already removed
  // `%2e` segments), so one pass reaches the fixed point; parsing again proves it.
  return canonicalize(new URL(canonicalize(url).canonical)).canonical;
}

/** Scripts whose letters may share one host label (UTS #39 "highly restrictive"), besides one script alone. */
const SCRIPT_NAMES = ['Latin', 'Greek', 'Cyrillic', 'Armenian', 'Hebrew', 'Arabic', 'Georgian', 'Han', 'Hiragana', 'Katakana', 'Hangul', 'Bopomofo'];
const SCRIPT_PATTERNS = SCRIPT_NAMES.map((name) => [name, new RegExp(`^\\p{Script=${name}}$`, 'u')] as const);
const ALLOWED_SCRIPT_MIXES = [
  ['Latin', 'Han', 'Hiragana', 'Katakana'],
  ['Latin', 'Han', 'Bopomofo'],
  ['Latin', 'Han', 'Hangul'],
];

/** The scripts of a host label's letters, when they mix in a way homographs use (e.g. Latin "a" + Cyrillic "рр"). */
export function mixedScripts(label: string): string[] | undefined {
  const scripts = new Set<string>();
  for (const char of label) {
    if (!/\p{L}/u.test(char)) continue;
    scripts.add(SCRIPT_PATTERNS.find(([, pattern]) => pattern.test(char))?.[0] ?? `U+${char.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`);
  }
  if (scripts.size <= 1) return undefined;
  if (ALLOWED_SCRIPT_MIXES.some((allowed) => [...scripts].every((script) => allowed.includes(script)))) return undefined;
  return [...scripts].sort();
}

/**
 * The realm a realm_file_changes payload for `url` would reach Boxel as: Boxel's parser splits
 * `<realm URL>:<path>` at the first `/:` (packages/realm-server/lib/realm-file-changes-listener.ts,
 * `PAYLOAD_SEPARATOR = /\/:/`), so a realm URL containing `/:` is cut short there.
 */
function misreadRealm(url: string): string | undefined {
  const split = url.indexOf('/:');
  return split < 0 ? undefined : url.slice(0, split + 1);
}

/** The reasons a string is not a canonical realm URL, or `undefined` when it is one. */
export function realmURLProblem(value: string, field = 'realmURL'): RealmURLError | undefined {
  const fail = (problem: string, fix: string) => new RealmURLError(field, problem, fix);
  if (typeof value !== 'string' || value.length === 0) {
    return fail('is empty', ABSOLUTE_URL_FIX);
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
    return fail(`"${value}" is not an absolute URL`, ABSOLUTE_URL_FIX);
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
  if (url.hostname === '' || /^\.+$/.test(url.hostname)) {
    return fail('has no host name', ABSOLUTE_URL_FIX);
  }
  const canonical = canonicalRealmURL(value, field);
  const misread = misreadRealm(canonical);
  if (misread !== undefined) {
    return fail(
      `contains "/:", where Boxel's realm_file_changes parser splits "<realm URL>:<path>" payloads, so Boxel would read every change to this realm as a path of "${misread}"`,
      'choose a URL in which no path segment starts with ":"',
    );
  }
  if (canonical !== value) {
    // Name the first normalization that changed the input: WHATWG's, then ours.
    const { alias, escape = '' } = url.href === value ? canonicalize(new URL(value)) : { alias: 'whatwg' as const };
    const why: Record<AliasKind, string> = {
      whatwg: 'lower-case scheme and host, no default port, no dot segments',
      'trailing-dot-host': 'no trailing "." after the host name: it names the same host',
      'encoded-unreserved': `"${escape}" is "${String.fromCharCode(parseInt(escape.slice(1) || '0', 16))}", which is written as itself`,
      'lower-case-percent-encoding': `percent-encoding in upper case: "${escape.toUpperCase()}", not "${escape}"`,
    };
    return fail('is not in canonical form', `use "${canonical}" (${why[alias ?? 'whatwg']})`);
  }
  for (const label of url.hostname.split('.')) {
    if (!label.startsWith('xn--')) continue;
    const scripts = mixedScripts(domainToUnicode(label));
    if (scripts) {
      return fail(
        `host label "${label}" ("${domainToUnicode(label)}") mixes ${scripts.join(' and ')} letters, the mark of a look-alike (homograph) host name`,
        'use a host whose labels are each written in one script',
      );
    }
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
 * contain it), having it as a proper prefix (a realm it would contain), or an alias of it
 * (`https://h./a/` for `https://h/a/`). Each is compared in its canonical form, since Boxel writes
 * registry rows as its callers spell them. Canonical realm URLs end in "/", so a string prefix is
 * a path-segment prefix: `https://h/a/` contains `https://h/a/b/` but not `https://h/ab/`. Realm
 * servers resolve a request to the longest realm URL they know, so overlapping realms make what a
 * path serves depend on each replica's cache.
 */
export function findOverlappingRealmURLs(url: string, registeredURLs: Iterable<string>): string[] {
  const overlapping = new Set<string>();
  for (const other of registeredURLs) {
    if (other === url) continue;
    const canonicalOther = canonicalOrUndefined(other) ?? other;
    if (url.startsWith(canonicalOther) || canonicalOther.startsWith(url)) overlapping.add(other);
  }
  return [...overlapping].sort();
}

/**
 * A string above every string that starts with `prefix` in code point order, which is the order of
 * PostgreSQL's "C" collation on UTF-8 text (byte order): `prefix` with its last code point
 * incremented (skipping the surrogates), carrying past U+10FFFF. So every `s` starting with
 * `prefix` has `prefix <= s < prefixRangeEnd(prefix)`, a range a btree in that order scans; when
 * the last code point is below U+10FFFF (a realm URL ends in "/") the range holds nothing else.
 * Undefined when there is no such string: `prefix` is empty or only U+10FFFF.
 */
export function prefixRangeEnd(prefix: string): string | undefined {
  const codePoints = [...prefix];
  while (codePoints.length > 0) {
    const last = codePoints.pop()!.codePointAt(0)!;
    if (last === 0x10ffff) continue;
    return codePoints.join('') + String.fromCodePoint(last === 0xd7ff ? 0xe000 : last + 1);
  }
  return undefined;
}

function canonicalOrUndefined(value: string): string | undefined {
  try {
    return canonicalRealmURL(value);
  } catch {
    return undefined;
  }
}
