import {
  chunkModuleInvalidations,
  formatAllFileChangesPayload,
  formatRealmDefinitionsInvalidation,
  formatRealmRegistryPayload,
  localPathMismatch,
  parseModuleCacheInvalidation,
  parseRealmFileChangePayload,
  parseRealmRegistryPayload,
} from '../../src/wire/payloads.js';
import { MAX_NOTIFY_PAYLOAD_BYTES, MODULE_INVALIDATION_CHUNK_BYTES } from '../../src/wire/channels.js';
import { MAX_REALM_URL_BYTES } from '../../src/wire/realm-url.js';

describe('parseRealmFileChangePayload (Boxel vectors)', () => {
  test.each([
    ['http://localhost:4201/user/realm/:card.gts', 'http://localhost:4201/user/realm/', 'card.gts'],
    ['https://realms.example.com/a/:dir/x.json', 'https://realms.example.com/a/', 'dir/x.json'],
    ['http://localhost:4201/a/:*', 'http://localhost:4201/a/', '*'],
    ['https://example.com/a/:*', 'https://example.com/a/', '*'],
    ['@cardstack/base/:card-api.gts', '@cardstack/base/', 'card-api.gts'],
    ['http://host/:x.gts', 'http://host/', 'x.gts'],
    // The first `/:` wins; later ones belong to the path.
    ['http://host/a/:b/:c', 'http://host/a/', 'b/:c'],
  ])('%s', (payload, realmURL, path) => {
    expect(parseRealmFileChangePayload(payload)).toEqual({ realmURL, path });
  });

  test.each([
    ['no separator', 'http://localhost:4201/user/realm'],
    ['empty path', 'http://localhost:4201/user/realm/:'],
    ['port colon only', 'http://localhost:4201'],
    ['empty string', ''],
    ['colon without slash', 'realm:file.gts'],
  ])('malformed: %s', (_name, payload) => {
    expect(parseRealmFileChangePayload(payload)).toBeUndefined();
  });

  test('round-trips the wildcard payload we emit', () => {
    const payload = formatAllFileChangesPayload('http://localhost:4201/a/');
    expect(payload).toBe('http://localhost:4201/a/:*');
    expect(parseRealmFileChangePayload(payload)).toEqual({ realmURL: 'http://localhost:4201/a/', path: '*' });
  });
});

describe('parseModuleCacheInvalidation', () => {
  test('realm, module and global forms', () => {
    expect(parseModuleCacheInvalidation('{"k":"realm","r":"http://h/a/"}')).toEqual({ kind: 'realm', realmURL: 'http://h/a/' });
    expect(parseModuleCacheInvalidation('{"k":"module","r":"http://h/a/","m":["http://h/a/x.gts"]}')).toEqual({
      kind: 'module',
      realmURL: 'http://h/a/',
      moduleURLs: ['http://h/a/x.gts'],
    });
    expect(parseModuleCacheInvalidation('{"k":"global"}')).toEqual({ kind: 'global' });
  });

  test.each([
    ['not JSON', 'realm:http://h/a/'],
    ['unknown kind', '{"k":"other","r":"http://h/a/"}'],
    ['realm without r', '{"k":"realm"}'],
    ['r not a string', '{"k":"realm","r":5}'],
    ['module without m', '{"k":"module","r":"http://h/a/"}'],
    ['module with empty m', '{"k":"module","r":"http://h/a/","m":[]}'],
    ['array', '[1,2]'],
    ['null', 'null'],
  ])('malformed: %s', (_name, payload) => {
    expect(parseModuleCacheInvalidation(payload)).toBeUndefined();
  });

  test('formats what it parses', () => {
    expect(parseModuleCacheInvalidation(formatRealmDefinitionsInvalidation('http://h:1/a/'))).toEqual({ kind: 'realm', realmURL: 'http://h:1/a/' });
  });
});

describe('chunkModuleInvalidations', () => {
  test('keeps every chunk under the budget and loses no module', () => {
    const modules = Array.from({ length: 500 }, (_, i) => `https://realms.example.com/user/realm/module-${i}-${'x'.repeat(i % 40)}.gts`);
    const chunks = chunkModuleInvalidations('https://realms.example.com/user/realm/', modules);
    expect(chunks.length).toBeGreaterThan(1);
    for (const chunk of chunks) expect(Buffer.byteLength(chunk)).toBeLessThanOrEqual(MODULE_INVALIDATION_CHUNK_BYTES);
    const parsed = chunks.map((c) => parseModuleCacheInvalidation(c));
    expect(parsed.flatMap((p) => (p?.kind === 'module' ? p.moduleURLs : []))).toEqual(modules);
  });

  test('refuses a single module too large for any payload', () => {
    expect(() => chunkModuleInvalidations('http://h/a/', [`http://h/a/${'x'.repeat(8000)}`])).toThrow(/alone exceeds/);
  });
});

describe('parseRealmRegistryPayload', () => {
  test('upsert and delete', () => {
    expect(parseRealmRegistryPayload('upsert:http://h:4201/a/')).toEqual({ op: 'upsert', realmURL: 'http://h:4201/a/' });
    expect(parseRealmRegistryPayload('delete:https://h/a/')).toEqual({ op: 'delete', realmURL: 'https://h/a/' });
    expect(parseRealmRegistryPayload(formatRealmRegistryPayload('upsert', 'http://h/x/'))).toEqual({ op: 'upsert', realmURL: 'http://h/x/' });
  });
  test.each(['upsert:', 'create:http://h/a/', 'http://h/a/', ''])('malformed: %j', (payload) => {
    expect(parseRealmRegistryPayload(payload)).toBeUndefined();
  });
});

describe('payload size', () => {
  test('the longest realm URL we accept keeps every payload we emit under the NOTIFY limit', () => {
    const url = `https://h.example/${'a'.repeat(MAX_REALM_URL_BYTES - 'https://h.example/'.length - 1)}/`;
    expect(Buffer.byteLength(url)).toBe(MAX_REALM_URL_BYTES);
    for (const payload of [
      formatAllFileChangesPayload(url),
      formatRealmDefinitionsInvalidation(url),
      formatRealmRegistryPayload('upsert', url),
      formatRealmRegistryPayload('delete', url),
    ]) {
      expect(Buffer.byteLength(payload)).toBeLessThan(MAX_NOTIFY_PAYLOAD_BYTES);
    }
  });
  test('formatting refuses a payload PostgreSQL would reject', () => {
    expect(() => formatAllFileChangesPayload(`http://h/${'a'.repeat(8000)}/`)).toThrow(/at most 7999/);
  });
});

describe('localPathMismatch (per-path payloads the listener cannot match as written)', () => {
  test.each(['index.json', 'cards/a.gts', 'INDEX.JSON', 'a b/c.json', 'dir/.hidden', '..x/y'])('canonical: %j', (path) => {
    expect(localPathMismatch(path)).toBeUndefined();
  });
  test.each([
    ['/index.json', 'leading-slash'],
    ['index.json\n', 'surrounding-whitespace'],
    [' index.json', 'surrounding-whitespace'],
    ['index\u0000.json', 'control-character'],
    ['cards/', 'trailing-slash'],
    ['cards\\a.gts', 'backslash'],
    ['cards//a.gts', 'empty-segment'],
    ['cards/../a.gts', 'dot-segment'],
    ['./a.gts', 'dot-segment'],
  ])('%j → %s', (path, reason) => {
    expect(localPathMismatch(path)).toBe(reason);
  });
  test('the parser keeps such paths as they came, so the listener can count them', () => {
    expect(parseRealmFileChangePayload('http://h/a/:/index.json')).toEqual({ realmURL: 'http://h/a/', path: '/index.json' });
    expect(parseRealmFileChangePayload('http://h/a/:index.json\n')).toEqual({ realmURL: 'http://h/a/', path: 'index.json\n' });
  });
});

/**
 * Boxel's per-path payloads carry its LocalPath (Realm.#notifyFileChange in
 * packages/runtime-common/realm.ts; RealmPaths.local in packages/runtime-common/paths.ts):
 * spaces and non-ASCII decoded, the escapes decodeURI keeps (`%23`, `%3F`, …) as written. They
 * parse to that path unchanged, and the listener drops it exactly (not the whole realm).
 */
describe('per-path payloads in the form Boxel writes them', () => {
  const realm = 'https://pub.example/site/';
  test.each(['a b.json', 'é.json', 'x%23y.json', 'x%3Fy.json', '100%.json', 'x#y.json', 'cards/é b.json', 'a:b.json'])('%s', (path) => {
    expect(parseRealmFileChangePayload(`${realm}:${path}`)).toEqual({ realmURL: realm, path });
    expect(localPathMismatch(path)).toBeUndefined();
  });
});
