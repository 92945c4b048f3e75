import { checkRequestPath, contentTypeFor, localSegments } from '../../src/realm-server/request-path.js';

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

test('localSegments decodes files and refuses the realm root and directories', () => {
  expect(localSegments('cards/card%20one.json')).toEqual(['cards', 'card one.json']);
  expect(localSegments('')).toBeUndefined();
  expect(localSegments('cards/')).toBeUndefined();
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
