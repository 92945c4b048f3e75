import { originOf, RealmRegistrySnapshot, resolveRealm, type RegisteredRealm } from '../../src/realm-server/realm-registry.js';

const realm = (url: string, kind: RegisteredRealm['kind'] = 'published'): RegisteredRealm => ({ url, kind, diskId: url.length.toString(), epoch: 1 });

describe('resolveRealm', () => {
  const realms = [realm('http://h/a/'), realm('http://h/a/b/'), realm('http://h/ab/'), realm('http://h/')];
  test.each([
    ['http://h/a/b/index.json', 'http://h/a/b/'],
    ['http://h/a/b/', 'http://h/a/b/'],
    ['http://h/a/bc/index.json', 'http://h/a/'],
    ['http://h/a/index.json', 'http://h/a/'],
    ['http://h/ab/x', 'http://h/ab/'],
    ['http://h/abc', 'http://h/'],
  ])('%s → %s (longest prefix at a segment boundary)', (url, expected) => {
    expect(resolveRealm(realms, url)?.url).toBe(expected);
  });
  test('nothing for another origin, and a URL without a trailing slash never matches as a realm', () => {
    expect(resolveRealm(realms, 'http://other/a/x')).toBeUndefined();
    expect(resolveRealm([{ url: 'http://h/a' }], 'http://h/a/x')).toBeUndefined();
  });
  test('originOf', () => {
    expect(originOf('http://h:4201/a/b')).toBe('http://h:4201/');
    expect(originOf('https://h/')).toBe('https://h/');
    expect(originOf('h/a')).toBeUndefined();
    expect(originOf('http:///a')).toBeUndefined();
  });
});

/** A loader whose reads the test completes by hand, and which sees the "database" as it is when the read starts. */
function manualLoader(initial: RegisteredRealm[]) {
  let table = initial;
  const reads: Array<{ origin: string; resolve: () => void }> = [];
  const load = (origin: string) =>
    new Promise<RegisteredRealm[]>((resolve) => {
      const seen = table.filter((r) => r.url.startsWith(origin));
      reads.push({ origin, resolve: () => resolve(seen) });
    });
  return {
    load,
    reads,
    set(rows: RegisteredRealm[]) {
      table = rows;
    },
    async finishAll() {
      for (const read of reads.splice(0)) read.resolve();
      await new Promise((r) => setImmediate(r));
    },
  };
}

describe('RealmRegistrySnapshot', () => {
  test('a realm registered at a nested URL wins as soon as the registry is invalidated (the issue 8 bug)', async () => {
    const db = manualLoader([realm('http://h/a/')]);
    const snapshot = new RealmRegistrySnapshot(db.load);
    const first = snapshot.resolve('http://h/a/b/index.json', true);
    await db.finishAll();
    expect((await first)?.url).toBe('http://h/a/');
    // Served from the snapshot now: no read.
    expect((await snapshot.resolve('http://h/a/b/index.json', true))?.url).toBe('http://h/a/');
    expect(db.reads).toHaveLength(0);

    db.set([realm('http://h/a/'), realm('http://h/a/b/')]);
    snapshot.invalidate(); // what the listener does on the realm_registry notification
    const after = snapshot.resolve('http://h/a/b/index.json', true);
    expect(db.reads).toHaveLength(1);
    await db.finishAll();
    expect((await after)?.url).toBe('http://h/a/b/');
  });

  test('a read that began before an invalidation answers its own waiters but is never installed', async () => {
    const db = manualLoader([realm('http://h/a/')]);
    const snapshot = new RealmRegistrySnapshot(db.load);
    const early = snapshot.resolve('http://h/a/b/x', true); // read starts: sees only the parent
    db.set([realm('http://h/a/'), realm('http://h/a/b/')]);
    snapshot.invalidate();
    const late = snapshot.resolve('http://h/a/b/x', true); // must not join the early read
    expect(db.reads).toHaveLength(2);
    await db.finishAll();
    expect((await early)?.url).toBe('http://h/a/');
    expect((await late)?.url).toBe('http://h/a/b/');
    expect(snapshot.has('http://h/')).toBe(true);
    expect((await snapshot.resolve('http://h/a/b/x', true))?.url).toBe('http://h/a/b/');
    expect(db.reads).toHaveLength(0);
  });

  test('a stale read finishing after a newer one does not overwrite it', async () => {
    const db = manualLoader([realm('http://h/a/')]);
    const snapshot = new RealmRegistrySnapshot(db.load);
    void snapshot.resolve('http://h/a/b/x', true);
    db.set([realm('http://h/a/'), realm('http://h/a/b/')]);
    snapshot.invalidate();
    const fresh = snapshot.resolve('http://h/a/b/x', true);
    const [stale, current] = db.reads.splice(0);
    current!.resolve();
    await fresh;
    stale!.resolve();
    await new Promise((r) => setImmediate(r));
    expect((await snapshot.resolve('http://h/a/b/x', true))?.url).toBe('http://h/a/b/');
  });

  test('concurrent requests of one origin share one read; origins are independent', async () => {
    const db = manualLoader([realm('http://h/a/'), realm('http://g/c/')]);
    const snapshot = new RealmRegistrySnapshot(db.load);
    const results = [snapshot.resolve('http://h/a/1', true), snapshot.resolve('http://h/a/2', true), snapshot.resolve('http://g/c/3', true)];
    expect(db.reads.map((r) => r.origin)).toEqual(['http://h/', 'http://g/']);
    await db.finishAll();
    expect((await Promise.all(results)).map((r) => r?.url)).toEqual(['http://h/a/', 'http://h/a/', 'http://g/c/']);
  });

  test('without the listener vouching for it, every request reads afresh and nothing is kept', async () => {
    const db = manualLoader([realm('http://h/a/')]);
    const snapshot = new RealmRegistrySnapshot(db.load);
    const untrusted = snapshot.resolve('http://h/a/x', false);
    await db.finishAll();
    expect((await untrusted)?.url).toBe('http://h/a/');
    expect(snapshot.has('http://h/')).toBe(false);
  });

  test('a failed read is not kept: the next request reads again', async () => {
    let calls = 0;
    const snapshot = new RealmRegistrySnapshot(async () => {
      calls += 1;
      if (calls === 1) throw new Error('connection lost');
      return [realm('http://h/a/')];
    });
    await expect(snapshot.resolve('http://h/a/x', true)).rejects.toThrow('connection lost');
    expect((await snapshot.resolve('http://h/a/x', true))?.url).toBe('http://h/a/');
    expect(calls).toBe(2);
  });
});
