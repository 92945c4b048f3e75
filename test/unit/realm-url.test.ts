import { assertRealmURL, findOverlappingRealmURLs, MAX_REALM_URL_BYTES, realmURLProblem, RealmURLError } from '../../src/wire/realm-url.js';

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
  ])('rejects %j with a message naming the field and the fix', (url, message) => {
    const error = realmURLProblem(url, 'spec.publishedRealmURL');
    expect(error).toBeInstanceOf(RealmURLError);
    expect(error?.message).toBe(message);
    expect(error?.field).toBe('spec.publishedRealmURL');
    expect(() => assertRealmURL(url, 'spec.publishedRealmURL')).toThrow(message);
  });

  test('bounds the length in bytes', () => {
    const ok = `https://h/${'a'.repeat(MAX_REALM_URL_BYTES - 'https://h/'.length - 1)}/`;
    expect(realmURLProblem(ok)).toBeUndefined();
    const long = `https://h/${'a'.repeat(MAX_REALM_URL_BYTES)}/`;
    expect(realmURLProblem(long, 'sourceRealmURL')?.message).toMatch(/^sourceRealmURL: is \d+ bytes long, over the 2048-byte limit/);
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

  test('other hosts and schemes never overlap; an empty registry or no neighbour gives none', () => {
    expect(findOverlappingRealmURLs('https://other/b/', registered)).toEqual([]);
    expect(findOverlappingRealmURLs('https://h/x/', [])).toEqual([]);
    expect(findOverlappingRealmURLs('http://h/a/', ['http://h/a/b/', 'http://h/a/b/'])).toEqual(['http://h/a/b/']);
  });
});
