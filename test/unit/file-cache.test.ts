import { RealmFileCache } from '../../src/realm-server/file-cache.js';

describe('RealmFileCache generations', () => {
  test('a read that started before dropAll cannot fill the cache afterwards', () => {
    const cache = new RealmFileCache(1);
    const ticket = cache.beginRead('a.gts');
    cache.dropAll(2);
    expect(cache.fill(ticket, Buffer.from('old'))).toBe(false);
    expect(cache.get('a.gts')).toBeUndefined();
    const fresh = cache.beginRead('a.gts');
    expect(cache.fill(fresh, Buffer.from('new'))).toBe(true);
    expect(cache.get('a.gts')).toEqual({ bytes: Buffer.from('new'), epoch: 2 });
  });

  test('dropPath invalidates in-flight reads of that path only', () => {
    const cache = new RealmFileCache();
    const a = cache.beginRead('a');
    const b = cache.beginRead('b');
    cache.dropPath('a');
    expect(cache.fill(a, Buffer.from('a'))).toBe(false);
    expect(cache.fill(b, Buffer.from('b'))).toBe(true);
    expect(cache.size).toBe(1);
  });

  test('the epoch only moves forward', () => {
    const cache = new RealmFileCache(5);
    cache.dropAll(3);
    expect(cache.epoch).toBe(5);
    cache.dropAll();
    expect(cache.epoch).toBe(5);
    cache.dropAll(9);
    expect(cache.epoch).toBe(9);
  });
});

describe('RealmFileCache.dropPath and letter case', () => {
  test('drops the exact path and cached paths that differ only in case, and says how many variants', () => {
    const cache = new RealmFileCache();
    for (const p of ['index.json', 'Index.json', 'other.json']) cache.fill(cache.beginRead(p), Buffer.from(p));
    expect(cache.dropPath('INDEX.JSON')).toEqual({ caseVariantsDropped: 2 });
    expect(cache.get('index.json')).toBeUndefined();
    expect(cache.get('Index.json')).toBeUndefined();
    expect(cache.get('other.json')).toBeDefined();
    expect(cache.dropPath('other.json')).toEqual({ caseVariantsDropped: 0 });
    expect(cache.size).toBe(0);
  });

  test('an in-flight read of a case variant that was cached cannot refill after the drop', () => {
    const cache = new RealmFileCache();
    cache.fill(cache.beginRead('a.json'), Buffer.from('1'));
    const ticket = cache.beginRead('a.json');
    cache.dropPath('A.JSON');
    expect(cache.fill(ticket, Buffer.from('old'))).toBe(false);
  });
});
