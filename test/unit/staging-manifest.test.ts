import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  CACHED_MANIFEST_MIN_ENTRIES,
  isTrustedFingerprint,
  parseManifest,
  readManifestFile,
  writeManifestFile,
  serializeManifest,
  sourceKey,
  sourceKeyMode,
  stagedKey,
  unchangedEntry,
  type ManifestEntry,
  type SourceFingerprint,
  type StagingManifest,
} from '../../src/dataplane/staging-manifest.js';

const NS_PER_MS = 1_000_000n;
const base: SourceFingerprint = { dev: 2049n, ino: 1234n, size: 10n, mtimeNs: 1_700_000_000_000_000_000n, ctimeNs: 1_700_000_000_000_000_000n, mode: 0o644 };
const entry: ManifestEntry = { source: sourceKey(base), staged: stagedKey({ dev: 2049n, ino: 99n, mtimeNs: 1_700_000_100_000_000_000n }), contentHash: 'a'.repeat(64) };

describe('isTrustedFingerprint', () => {
  const copyStarted = base.ctimeNs + 5_000n * NS_PER_MS;
  test('trusts a fingerprint unchanged across the read whose ctime is older than the margin', () => {
    expect(isTrustedFingerprint(base, { ...base }, copyStarted, 2000)).toBe(true);
  });
  test('does not trust a ctime inside the margin before the copy started (a write then could keep it)', () => {
    expect(isTrustedFingerprint(base, { ...base }, copyStarted, 5000)).toBe(false);
    expect(isTrustedFingerprint(base, { ...base }, base.ctimeNs, 0)).toBe(false);
  });
  test.each(['dev', 'ino', 'size', 'mtimeNs', 'ctimeNs'] as const)('does not trust a file whose %s changed while it was read', (field) => {
    expect(isTrustedFingerprint(base, { ...base, [field]: base[field] + 1n }, copyStarted, 2000)).toBe(false);
  });
});

describe('unchangedEntry', () => {
  const manifest: StagingManifest = new Map([['cards/a.gts', entry]]);
  test('finds the entry when the source shows the recorded fingerprint', () => {
    expect(unchangedEntry(manifest, 'cards/a.gts', { ...base })).toBe(entry);
  });
  test.each([
    ['a ctime change (a same-size edit with the mtime set back)', { ctimeNs: base.ctimeNs + 1n }],
    ['a new inode (replaced by a rename)', { ino: base.ino + 1n }],
    ['a mode change', { mode: 0o600 }],
    ['a size change', { size: base.size + 1n }],
    ['an mtime change', { mtimeNs: base.mtimeNs + 1n }],
  ])('refuses %s', (_what, change) => {
    expect(unchangedEntry(manifest, 'cards/a.gts', { ...base, ...change })).toBeUndefined();
  });
  test('refuses a path it has no entry for, and works without a manifest', () => {
    expect(unchangedEntry(manifest, 'cards/b.gts', base)).toBeUndefined();
    expect(unchangedEntry(undefined, 'cards/a.gts', base)).toBeUndefined();
  });
});

describe('fingerprint keys', () => {
  test('print every field in decimal, in a fixed order, u64 extremes and nanoseconds beyond double precision included', () => {
    expect(sourceKey({ ...base, ino: 2n ** 64n - 1n, ctimeNs: 1_700_000_000_123_456_789n })).toBe('2049:18446744073709551615:10:1700000000000000000:1700000000123456789:420');
    expect(stagedKey({ dev: 1n, ino: 2n, mtimeNs: 3n })).toBe('1:2:3');
    expect(sourceKeyMode(sourceKey({ ...base, mode: 0o751 }))).toBe(0o751);
  });
});

describe('manifest files', () => {
  test('round-trips every field exactly (nanoseconds beyond double precision included)', () => {
    const manifest: StagingManifest = new Map([['x/y "z".json', { ...entry, source: sourceKey({ ...base, ctimeNs: 1_700_000_000_123_456_789n }) }]]);
    expect(parseManifest(serializeManifest(manifest))).toEqual(manifest);
  });
  test('leaves out a file with a time before 1970 (negative nanoseconds), keeping the others readable', () => {
    const manifest: StagingManifest = new Map([
      ['old.gts', { ...entry, source: sourceKey({ ...base, mtimeNs: -1_000_000_000n }) }],
      ['new.gts', entry],
    ]);
    expect(parseManifest(serializeManifest(manifest))).toEqual(new Map([['new.gts', entry]]));
  });
  test('reads a manifest as the previous release wrote it (format 1, values as decimal strings)', () => {
    const written = JSON.stringify({ format: 1, entries: { 'cards/a.gts': ['2049', '1234', '10', '1700000000000000000', '1700000000123456789', 420, 'b'.repeat(64), '2049', '99', '1700000100000000000'] } });
    expect(parseManifest(written)).toEqual(
      new Map([['cards/a.gts', { source: '2049:1234:10:1700000000000000000:1700000000123456789:420', staged: '2049:99:1700000100000000000', contentHash: 'b'.repeat(64) }]]),
    );
    expect(serializeManifest(parseManifest(written)!)).toBe(written);
  });
  test.each([
    ['not JSON', '{'],
    ['another format', JSON.stringify({ format: 2, entries: {} })],
    ['a short entry', JSON.stringify({ format: 1, entries: { a: ['1'] } })],
    ['a non-decimal number', JSON.stringify({ format: 1, entries: { a: ['1', '2', '3', '4', '-5', 420, 'a'.repeat(64), '1', '2', '3'] } })],
    ['a hexadecimal number', JSON.stringify({ format: 1, entries: { a: ['1', '2', '0x3', '4', '5', 420, 'a'.repeat(64), '1', '2', '3'] } })],
    ['a separator inside a value', JSON.stringify({ format: 1, entries: { a: ['1', '2', '3', '4', '5', 420, 'a'.repeat(64), '1:2', '2', '3'] } })],
    ['a number where a string belongs', JSON.stringify({ format: 1, entries: { a: [1, '2', '3', '4', '5', 420, 'a'.repeat(64), '1', '2', '3'] } })],
    ['a bad hash', JSON.stringify({ format: 1, entries: { a: ['1', '2', '3', '4', '5', 420, 'xyz', '1', '2', '3'] } })],
    ['a mode out of range', JSON.stringify({ format: 1, entries: { a: ['1', '2', '3', '4', '5', 4096, 'a'.repeat(64), '1', '2', '3'] } })],
  ])('rejects %s as a whole (the next publish copies everything)', (_what, text) => {
    expect(parseManifest(text)).toBeUndefined();
  });
});

describe('manifest files written by this process', () => {
  const large = (hash: string): StagingManifest => new Map(Array.from({ length: CACHED_MANIFEST_MIN_ENTRIES }, (_, i) => [`f-${i}.json`, { ...entry, contentHash: hash }]));
  test('are read back unparsed while the file is the one written, and from disk once it was replaced or removed', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'manifests-'));
    try {
      const file = path.join(dir, 'disk-1', 'v1.json');
      const written = large('a'.repeat(64));
      await writeManifestFile(file, written);
      // The very Map: nothing was read or parsed.
      expect(await readManifestFile(file)).toBe(written);
      // Replaced on disk (a new inode and ctime): what the file now says, not what was written.
      const replacement = large('b'.repeat(64));
      await fs.writeFile(`${file}.new`, serializeManifest(replacement));
      await fs.rename(`${file}.new`, file);
      const reread = await readManifestFile(file);
      expect(reread).not.toBe(written);
      expect(reread).toEqual(replacement);
      // Rewritten in place (same inode, another size): read again too.
      await writeManifestFile(file, written);
      await fs.writeFile(file, '{');
      expect(await readManifestFile(file)).toBeUndefined();
      await writeManifestFile(file, written);
      await fs.rm(file);
      expect(await readManifestFile(file)).toBeUndefined();
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
