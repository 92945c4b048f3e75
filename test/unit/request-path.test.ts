import { parseRealmFileChangePayload } from '../../src/wire/payloads.js';
import { boxelLocalPath, checkRequestPath, contentTypeFor } from '../../src/realm-server/request-path.js';

describe('checkRequestPath', () => {
  test.each([
    ['/a/b/c.json', '/a/b/c.json'],
    ['/a/b/c.json?x=1', '/a/b/c.json'],
    ['/a/', '/a/'],
    ['/a/card%20one.json', '/a/card%20one.json'],
    ['/a/..b/c', '/a/..b/c'],
  ])('accepts %j', (target, pathname) => {
    expect(checkRequestPath(target)).toEqual({ ok: true, pathname });
  });

  test.each([
    ['NUL, encoded', '/a/x%00.json', 'control-character'],
    ['newline, encoded', '/a/x%0a.json', 'control-character'],
    ['backslash', '/a/..\\etc/passwd', 'backslash'],
    ['encoded backslash', '/a/x%5Cy', 'encoded-separator'],
    ['encoded slash', '/a/x%2Fy', 'encoded-separator'],
    ['encoded slash, lower case', '/a/x%2fy', 'encoded-separator'],
    ['dot-dot', '/a/../b', 'dot-segment'],
    ['encoded dot-dot', '/a/%2e%2e/b', 'dot-segment'],
    ['dot', '/a/./b', 'dot-segment'],
    ['empty segment', '/a//b', 'empty-segment'],
    ['bad encoding', '/a/%zz', 'bad-encoding'],
    ['truncated encoding', '/a/%E2%82', 'bad-encoding'],
    ['absolute form', 'http://h/a/b', 'not-a-path'],
    ['asterisk form', '*', 'not-a-path'],
  ])('refuses %s', (_name, target, refusal) => {
    expect(checkRequestPath(target)).toEqual({ ok: false, refusal });
  });
});

/**
 * Boxel's LocalPath for a request path, as Boxel's RealmPaths.local() derives it
 * (packages/runtime-common/paths.ts: decodeURI, re-parse as a URL, decodeURI again), worked out
 * by running those steps on Node for each vector.
 */
describe('boxelLocalPath: request path → cache key (Boxel\'s LocalPath)', () => {
  test.each([
    ['a%20b.json', 'a b.json'],
    ['%C3%A9.json', 'é.json'],
    ['%c3%a9.json', 'é.json'],
    ['x%23y.json', 'x%23y.json'],
    ['x%3Fy.json', 'x%3Fy.json'],
    ['x%3fy.json', 'x%3fy.json'],
    ['a%2Bb.json', 'a%2Bb.json'],
    ['a+b.json', 'a+b.json'],
    ['a%3Ab.json', 'a%3Ab.json'],
    ['a:b.json', 'a:b.json'],
    ['a%5Bb%5D.json', 'a[b].json'],
    ['it%27s.json', "it's.json"],
    ['cards/a%20b.json', 'cards/a b.json'],
    ['caf%C3%A9/%C3%A9.json', 'café/é.json'],
    ['%2541.json', 'A.json'],
    ['x%2523y.json', 'x%23y.json'],
    ['a%20/b.json', 'a /b.json'],
    ['a%20', 'a'],
    ['index.json', 'index.json'],
  ])('%s → %j', (encoded, key) => {
    expect(boxelLocalPath(encoded)).toEqual({ ok: true, localPath: key });
  });

  test.each([
    ['a literal % (Boxel\'s second decodeURI throws)', '100%25.json'],
    ['an escaped dot-dot, decoded once', '%252e%252e/x.json'],
    ['an escaped dot, decoded once', 'q/%252E/x.json'],
    ['a backslash after the second decode', 'a%255Cb.json'],
    ['a control character after the second decode', 'a%2509b.json'],
    ['a raw dot-dot', 'q/../x.json'],
    ['an empty segment', 'q//x.json'],
  ])('refuses %s', (_name, encoded) => {
    expect(boxelLocalPath(encoded)).toEqual({ ok: false, refusal: 'not-mappable' });
  });

  test('the realm root and directories are not files', () => {
    expect(boxelLocalPath('')).toEqual({ ok: false, refusal: 'directory' });
    expect(boxelLocalPath('cards/')).toEqual({ ok: false, refusal: 'directory' });
  });
});

/**
 * Boxel's realm writes NOTIFY `realm_file_changes` with `<realm URL>:<LocalPath>`
 * (Realm.#notifyFileChange in packages/runtime-common/realm.ts; the path is the
 * `this.paths.local(new URL(request.url))` the write was made with). Each row: a file as a
 * client names it, the request path on the wire, and the payload Boxel sends after writing it.
 */
describe('a Boxel per-path payload names the key the request filled', () => {
  const realm = 'http://pub.localhost/rs/';
  test.each([
    ['a b.json', 'a%20b.json', `${realm}:a b.json`],
    ['é.json', '%C3%A9.json', `${realm}:é.json`],
    ['x#y.json', 'x%23y.json', `${realm}:x%23y.json`],
    ['cards/é b.json', 'cards/%C3%A9%20b.json', `${realm}:cards/é b.json`],
  ])('%s', (_name, requestPath, payload) => {
    const filled = boxelLocalPath(requestPath);
    const dropped = parseRealmFileChangePayload(payload);
    expect(filled.ok && dropped).toBeTruthy();
    expect(dropped).toEqual({ realmURL: realm, path: (filled as { localPath: string }).localPath });
  });

  test('100%.json: Boxel can serve it under no request path, so no request fills the key its payload names', () => {
    expect(parseRealmFileChangePayload(`${realm}:100%.json`)).toEqual({ realmURL: realm, path: '100%.json' });
    expect(boxelLocalPath(encodeURIComponent('100%.json'))).toEqual({ ok: false, refusal: 'not-mappable' });
    expect(boxelLocalPath('100%.json')).toEqual({ ok: false, refusal: 'not-mappable' });
  });
});

test.each([
  ['index.json', 'application/json'],
  ['card.gts', 'text/typescript+glimmer'],
  ['x.ts', 'text/typescript'],
  ['README.MD', 'text/markdown'],
  ['logo.png', 'image/png'],
  ['icon.svg', 'image/svg+xml'],
  ['page.html', 'text/html'],
  ['style.css', 'text/css'],
  ['noextension', 'application/octet-stream'],
  ['.hidden', 'application/octet-stream'],
  ['archive.tar.zst', 'application/octet-stream'],
])('content type of %s is %s', (name, type) => {
  expect(contentTypeFor(name)).toBe(type);
});
