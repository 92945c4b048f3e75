import { parseRealmFileChangePayload } from '../../src/wire/payloads.js';
import { assertRealmURL, canonicalRealmURL, findOverlappingRealmURLs, MAX_REALM_URL_BYTES, mixedScripts, prefixRangeEnd, realmURLProblem, RealmURLError } from '../../src/wire/realm-url.js';

describe('realm URL validation', () => {
  test.each(['http://localhost:4201/user/realm/', 'https://realms.example.com/a/b/', 'http://127.0.0.1:8080/'])('accepts %s', (url) => {
    expect(realmURLProblem(url)).toBeUndefined();
    expect(assertRealmURL(url)).toBe(url);
  });

  test.each([
    ['', 'spec.publishedRealmURL: is empty; give an absolute http(s) URL ending in "/", e.g. "https://realms.example.com/user/realm/"'],
    ['realms/a/', 'spec.publishedRealmURL: "realms/a/" is not an absolute URL; give an absolute http(s) URL ending in "/", e.g. "https://realms.example.com/user/realm/"'],
    ['ftp://h/a/', 'spec.publishedRealmURL: scheme "ftp" is not allowed; use http:// or https://'],
    ['https://h/a', 'spec.publishedRealmURL: does not end with "/"; use "https://h/a/"'],
    ['https://h/a/?x=1', 'spec.publishedRealmURL: has a query string; remove "?x=1"'],
    ['https://h/a/#top', 'spec.publishedRealmURL: has a fragment; remove "#top"'],
    ['https://user:pw@h/a/', 'spec.publishedRealmURL: contains credentials; remove the user:password@ part'],
    ['https://H/a/', 'spec.publishedRealmURL: is not in canonical form; use "https://h/a/" (lower-case scheme and host, no default port, no dot segments)'],
    ['https://h:443/a/', 'spec.publishedRealmURL: is not in canonical form; use "https://h/a/" (lower-case scheme and host, no default port, no dot segments)'],
    ['https://h/a/../b/', 'spec.publishedRealmURL: is not in canonical form; use "https://h/b/" (lower-case scheme and host, no default port, no dot segments)'],
    ['https://h/a b/', 'spec.publishedRealmURL: contains whitespace; remove it or percent-encode it'],
    ['HTTP://h/a/', 'spec.publishedRealmURL: is not in canonical form; use "http://h/a/" (lower-case scheme and host, no default port, no dot segments)'],
    ['http://h:80/a/', 'spec.publishedRealmURL: is not in canonical form; use "http://h/a/" (lower-case scheme and host, no default port, no dot segments)'],
    ['http://h/a/%2e%2E/b/', 'spec.publishedRealmURL: is not in canonical form; use "http://h/b/" (lower-case scheme and host, no default port, no dot segments)'],
    ['http://localhost.:4201/a/', 'spec.publishedRealmURL: is not in canonical form; use "http://localhost:4201/a/" (no trailing "." after the host name: it names the same host)'],
    ['http://h/%61lice/', 'spec.publishedRealmURL: is not in canonical form; use "http://h/alice/" ("%61" is "a", which is written as itself)'],
    ['http://h/caf%c3%a9/', 'spec.publishedRealmURL: is not in canonical form; use "http://h/caf%C3%A9/" (percent-encoding in upper case: "%C3", not "%c3")'],
    ['http://./', 'spec.publishedRealmURL: has no host name; give an absolute http(s) URL ending in "/", e.g. "https://realms.example.com/user/realm/"'],
    [
      'https://h.example/u/:r/',
      'spec.publishedRealmURL: contains "/:", where Boxel\'s realm_file_changes parser splits "<realm URL>:<path>" payloads, so Boxel would read every change to this realm as a path of "https://h.example/u/"; choose a URL in which no path segment starts with ":"',
    ],
    [
      'https://xn--pple-43d.example/a/',
      'spec.publishedRealmURL: host label "xn--pple-43d" ("\u0430pple") mixes Cyrillic and Latin letters, the mark of a look-alike (homograph) host name; use a host whose labels are each written in one script',
    ],
  ])('rejects %j with a message naming the field and the fix', (url, message) => {
    const error = realmURLProblem(url, 'spec.publishedRealmURL');
    expect(error).toBeInstanceOf(RealmURLError);
    expect(error?.message).toBe(message);
    expect(error?.field).toBe('spec.publishedRealmURL');
    expect(() => assertRealmURL(url, 'spec.publishedRealmURL')).toThrow(message);
  });

  test.each([
    ['https://h.example/u/:r/'],
    ['http://localhost:4201/:a/'],
    ['http://h/a/:/'],
    ['http://h/u\\:r/'], // WHATWG reads the backslash as "/"
  ])('refuses %s: a payload for it would reach Boxel as a path of a shorter realm', (url) => {
    expect(realmURLProblem(url)?.message).toContain('contains "/:"');
    // What Boxel's parser (and ours, which splits the same way) makes of this realm's wildcard.
    const canonical = new URL(url).href;
    expect(parseRealmFileChangePayload(`${canonical}:*`)?.realmURL).not.toBe(canonical);
  });

  test('a ":" that does not follow "/" (a port, inside a segment, percent-encoded) is fine', () => {
    for (const url of ['http://localhost:4201/a:b/', 'http://h/a/%3Ar/', 'http://[::1]:4201/a/']) {
      expect(realmURLProblem(url)).toBeUndefined();
      expect(parseRealmFileChangePayload(`${url}:*`)).toEqual({ realmURL: url, path: '*' });
    }
  });

  test('bounds the length in bytes', () => {
    const ok = `https://h/${'a'.repeat(MAX_REALM_URL_BYTES - 'https://h/'.length - 1)}/`;
    expect(realmURLProblem(ok)).toBeUndefined();
    const long = `https://h/${'a'.repeat(MAX_REALM_URL_BYTES)}/`;
    expect(realmURLProblem(long, 'sourceRealmURL')?.message).toMatch(/^sourceRealmURL: is \d+ bytes long, over the 2048-byte limit/);
  });
});

describe('canonical realm URLs: one spelling per realm', () => {
  test.each([
    // [alias, canonical]
    ['http://localhost.:4201/alice/a/', 'http://localhost:4201/alice/a/'],
    ['http://localhost..:4201/alice/a/', 'http://localhost:4201/alice/a/'],
    ['http://h/%61lice/', 'http://h/alice/'],
    ['http://h/%41%5A%30%2D%2E%5F%7E/', 'http://h/AZ0-._~/'],
    ['http://h/caf%c3%a9/', 'http://h/caf%C3%A9/'],
    ['http://h/a%2fb/', 'http://h/a%2Fb/'], // reserved: stays encoded, upper-cased
    ['http://h/%3a/', 'http://h/%3A/'],
    ['HTTP://H.Example:80/a/./b/../c/', 'http://h.example/a/c/'],
    ['https://h:443/a/', 'https://h/a/'],
    ['http://h/a/%2E%2e/b/', 'http://h/b/'],
    ['http://café.example/a/', 'http://xn--caf-dma.example/a/'],
    ['http://h/a\\b/', 'http://h/a/b/'],
    ['http://localhost.:4201/%61lice/caf%c3%a9/', 'http://localhost:4201/alice/caf%C3%A9/'],
  ])('%s → %s, which is accepted, and the alias refused naming it', (alias, canonical) => {
    expect(canonicalRealmURL(alias)).toBe(canonical);
    expect(canonicalRealmURL(canonical)).toBe(canonical);
    expect(realmURLProblem(canonical)).toBeUndefined();
    expect(realmURLProblem(alias, 'spec.publishedRealmURL')?.message).toContain(`is not in canonical form; use "${canonical}"`);
  });

  test('canonicalRealmURL refuses what is not a URL, naming the field', () => {
    expect(() => canonicalRealmURL('not a url', 'spec.sourceRealmURL')).toThrow('spec.sourceRealmURL: "not a url" is not an absolute URL');
  });

  test.each([
    ['apple', undefined],
    ['\u0430pple', ['Cyrillic', 'Latin']], // Cyrillic а
    ['p\u0430yp\u0430l', ['Cyrillic', 'Latin']],
    ['\u03bfk', ['Greek', 'Latin']], // Greek ο
    ['café', undefined],
    ['日本語テストab', undefined], // Japanese with Latin
    ['한국abc漢', undefined],
    ['\u0430\u0440\u0440\u04cf\u0435', undefined], // all Cyrillic: one script (a whole-script confusable is not detected)
    ['a-1', undefined],
  ])('mixedScripts(%j) = %j', (label, scripts) => {
    expect(mixedScripts(label)).toEqual(scripts);
  });
});

describe('overlapping realm URLs', () => {
  const registered = [
    'https://h/',
    'https://h/a/',
    'https://h/a/b/',
    'https://h/a/b/c/',
    'https://h/ab/',
    'https://h/a-b/',
    'https://other/a/',
    'http://h/a/b/',
  ];

  test('finds the realms that contain the URL and those it contains, never itself', () => {
    expect(findOverlappingRealmURLs('https://h/a/b/', registered)).toEqual(['https://h/', 'https://h/a/', 'https://h/a/b/c/']);
  });

  test('a shared string prefix that is not a path-segment prefix is no overlap', () => {
    expect(findOverlappingRealmURLs('https://h/a/', registered.filter((u) => u !== 'https://h/'))).toEqual(['https://h/a/b/', 'https://h/a/b/c/']);
    expect(findOverlappingRealmURLs('https://h/ab/', ['https://h/a/', 'https://h/abc/', 'https://h/ab/x/'])).toEqual(['https://h/ab/x/']);
  });

  test('registry rows are compared in canonical form, so an alias of the URL (or of a neighbour) is found', () => {
    expect(findOverlappingRealmURLs('http://localhost:4201/a/', ['http://localhost.:4201/a/', 'http://localhost:4201/%61/b/', 'http://localhost:4201/b/'])).toEqual([
      'http://localhost.:4201/a/',
      'http://localhost:4201/%61/b/',
    ]);
  });

  test('other hosts and schemes never overlap; an empty registry or no neighbour gives none', () => {
    expect(findOverlappingRealmURLs('https://other/b/', registered)).toEqual([]);
    expect(findOverlappingRealmURLs('https://h/x/', [])).toEqual([]);
    expect(findOverlappingRealmURLs('http://h/a/', ['http://h/a/b/', 'http://h/a/b/'])).toEqual(['http://h/a/b/']);
  });
});

describe('prefixRangeEnd: the byte-order range of the strings starting with a prefix', () => {
  /** Code point order, which is PostgreSQL's "C" collation on UTF-8 (byte order). */
  const codePointCompare = (a: string, b: string) => {
    const [x, y] = [[...a].map((c) => c.codePointAt(0)!), [...b].map((c) => c.codePointAt(0)!)];
    for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
    return x.length - y.length;
  };
  const inRange = (s: string, prefix: string) => codePointCompare(s, prefix) >= 0 && codePointCompare(s, prefixRangeEnd(prefix)!) < 0;

  test('a realm URL: its last "/" becomes "0", so the range holds exactly the strings starting with it', () => {
    const url = 'https://h/a/';
    expect(prefixRangeEnd(url)).toBe('https://h/a0');
    const neighbours = ['https://h/a/', 'https://h/a/b/', 'https://h/a/\u{10FFFF}\u{10FFFF}', 'https://h/a/\u00e9', 'https://h/a0', 'https://h/a.', 'https://h/a', 'https://h/a/'.slice(0, -1) + '\u{10FFFF}', 'https://h/b/', 'https://h/'];
    expect(neighbours.filter((s) => inRange(s, url))).toEqual(neighbours.filter((s) => s.startsWith(url)));
    expect(neighbours.filter((s) => s.startsWith(url))).toEqual(['https://h/a/', 'https://h/a/b/', 'https://h/a/\u{10FFFF}\u{10FFFF}', 'https://h/a/\u00e9']);
  });

  test('increments the last code point, not a UTF-16 unit, and skips the surrogates', () => {
    expect(prefixRangeEnd('a\u{1F600}')).toBe('a\u{1F601}');
    expect(prefixRangeEnd('a\uD7FF')).toBe('a\uE000');
    expect(prefixRangeEnd('a\uFFFF')).toBe('a\u{10000}');
  });

  test('carries past U+10FFFF: a bound above every string with the prefix (the caller filters the rest)', () => {
    expect(prefixRangeEnd('ab\u{10FFFF}')).toBe('ac');
    expect(inRange('ab\u{10FFFF}\u{10FFFF}x', 'ab\u{10FFFF}')).toBe(true);
  });

  test('no bound for the empty string or one made only of U+10FFFF', () => {
    expect(prefixRangeEnd('')).toBeUndefined();
    expect(prefixRangeEnd('\u{10FFFF}\u{10FFFF}')).toBeUndefined();
  });
});
