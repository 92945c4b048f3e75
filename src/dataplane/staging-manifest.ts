/**
 * What a published version was staged from, file by file, so the next publish of the realm can
 * hard-link every file that did not change instead of copying it (published versions are immutable
 * and the operator's own, so sharing inodes between them is safe).
 *
 * **When is a source file "unchanged"?** When `lstat` of the source shows the very same
 * (device, inode, size, mtime ns, ctime ns, mode) the manifest recorded, and the recorded values
 * were *trusted*. The rule rests on ctime, which no unprivileged process can set: every write,
 * truncate, chmod, chown, rename-over or re-creation sets it to the current time, whereas mtime can
 * be set back with `utimensat` (`touch -d`, `cp -p`, `rsync -t`), so size + mtime alone would let an
 * edit that keeps the size slip through. A recorded ctime is trusted only when it is older than the
 * moment the copy began by more than {@link DEFAULT_RACY_MARGIN_MS} and the file's fstat did not
 * change while it was read — git's "racily clean" rule: a write after the copy began is stamped at
 * least `start - clock granularity` (the kernel's coarse clock, milliseconds; on NFS, the server's
 * clock, so the margin also absorbs clock skew), hence with a ctime newer than the recorded one, and
 * the next publish copies it. Files changed just before a publish are simply copied again next time.
 * Blind spots, shared with git and rsync: writes through a shared writable mmap to pages that are
 * already dirty do not update ctime, and a privileged process can set the clock back. Neither can
 * bring in content from outside the realm: the worst case is the realm's own earlier bytes.
 *
 * The staged side is checked too: the link source must still be the inode (device, inode, size,
 * mtime) this manifest recorded in the previous version, or the file is copied instead.
 *
 * In memory a fingerprint is recorded as its text, `dev:ino:size:mtimeNs:ctimeNs:mode` (decimal),
 * and compared as text with the one built from `lstat`: reading a manifest of 10,000 files then
 * costs a JSON.parse and a string per entry, not 80,000 BigInts (which took longer than linking
 * the files). A malformed value can only fail to match a real file, which is then copied.
 */
import { randomBytes } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';

/** A recorded ctime must be older than the staging start by this much to be trusted (ms). */
export const DEFAULT_RACY_MARGIN_MS = 2000;

const MANIFEST_FORMAT = 1;

/** The identity of a source file as `lstat`/`fstat` report it. */
export interface SourceFingerprint {
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  /** Permission bits (`& 0o777`): a mode change must not reach a shared inode. */
  mode: number;
}

/** The staged inode holding the file's content in a published version. */
export interface StagedFingerprint {
  dev: bigint;
  ino: bigint;
  mtimeNs: bigint;
}

export interface ManifestEntry {
  /** {@link sourceKey} of the source file when it was staged. */
  source: string;
  /** {@link stagedKey} of the staged inode. */
  staged: string;
  /** sha256 (hex) of the content, for the realm digest. */
  contentHash: string;
}

/** Realm-local path → entry, for every regular file whose source fingerprint was trusted. */
export type StagingManifest = Map<string, ManifestEntry>;

export function sourceFingerprint(stat: BigIntStats): SourceFingerprint {
  return { dev: stat.dev, ino: stat.ino, size: stat.size, mtimeNs: stat.mtimeNs, ctimeNs: stat.ctimeNs, mode: Number(stat.mode & 0o777n) };
}

export function stagedFingerprint(stat: BigIntStats): StagedFingerprint {
  return { dev: stat.dev, ino: stat.ino, mtimeNs: stat.mtimeNs };
}

/**
 * A source fingerprint as text, `dev:ino:size:mtimeNs:ctimeNs:mode`, all decimal. The link worker
 * (staging/link-unchanged.ts) builds the same text from its own `lstat`; keep the two alike.
 */
export function sourceKey(f: SourceFingerprint): string {
  return `${f.dev}:${f.ino}:${f.size}:${f.mtimeNs}:${f.ctimeNs}:${f.mode}`;
}

/** The permission bits a source key records (its last field). */
export function sourceKeyMode(key: string): number {
  return Number(key.slice(key.lastIndexOf(':') + 1));
}

/** A staged inode as text, `dev:ino:mtimeNs`, decimal (built alike in the link worker). */
export function stagedKey(f: StagedFingerprint): string {
  return `${f.dev}:${f.ino}:${f.mtimeNs}`;
}

export function sameSource(a: SourceFingerprint, b: SourceFingerprint): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs && a.mode === b.mode;
}

/**
 * Whether a fingerprint taken around a copy may be recorded: unchanged from before the read to
 * after it, and its ctime older than `copyStartedNs - marginMs` (see the module comment).
 */
export function isTrustedFingerprint(before: SourceFingerprint, after: SourceFingerprint, copyStartedNs: bigint, marginMs = DEFAULT_RACY_MARGIN_MS): boolean {
  return sameSource(before, after) && before.ctimeNs < copyStartedNs - BigInt(Math.round(marginMs * 1e6));
}

/** Wall-clock now in nanoseconds (the clock file timestamps are taken from). */
export function wallClockNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

/** The entry to link from, when the source shows the fingerprint the previous version recorded. */
export function unchangedEntry(manifest: StagingManifest | undefined, rel: string, now: SourceFingerprint): ManifestEntry | undefined {
  const entry = manifest?.get(rel);
  return entry && entry.source === sourceKey(now) ? entry : undefined;
}

type SerializedEntry = [string, string, string, string, string, number, string, string, string, string];

/** Format 1, as the previous releases wrote and read it: per path, the ten values as decimal strings (mode a number). */
export function serializeManifest(manifest: StagingManifest): string {
  const entries: Record<string, SerializedEntry> = {};
  for (const [rel, { source, staged, contentHash }] of manifest) {
    // A time before 1970 prints negative, which format 1 cannot hold (and a reader would refuse the
    // whole manifest for): such a file is left out, so it is copied each time.
    if (source.includes('-') || staged.includes('-')) continue;
    const [dev = '', ino = '', size = '', mtimeNs = '', ctimeNs = '', mode = ''] = source.split(':');
    const [stagedDev = '', stagedIno = '', stagedMtimeNs = ''] = staged.split(':');
    entries[rel] = [dev, ino, size, mtimeNs, ctimeNs, Number(mode), contentHash, stagedDev, stagedIno, stagedMtimeNs];
  }
  return JSON.stringify({ format: MANIFEST_FORMAT, entries });
}

const HEX_SHA256 = /^[0-9a-f]{64}$/;
/** Eight unsigned decimals, `:`-separated (a source key before its mode, then a staged key); at most 20 digits each, as a u64 prints. */
const EIGHT_DECIMALS = /^(?:(?:0|[1-9]\d{0,19}):){7}(?:0|[1-9]\d{0,19})$/;

/**
 * Parses a manifest; anything malformed gives `undefined` (the next publish then copies every file,
 * which is always correct). Entries are looked up by the walk's own paths, never used as paths.
 */
export function parseManifest(text: string): StagingManifest | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof doc !== 'object' || doc === null || (doc as { format?: unknown }).format !== MANIFEST_FORMAT) return undefined;
  const entries = (doc as { entries?: unknown }).entries;
  if (typeof entries !== 'object' || entries === null) return undefined;
  const manifest: StagingManifest = new Map();
  for (const rel in entries) {
    const value = (entries as Record<string, unknown>)[rel];
    if (!Array.isArray(value) || value.length !== 10) return undefined;
    const [dev, ino, size, mtimeNs, ctimeNs, mode, contentHash, stagedDev, stagedIno, stagedMtimeNs] = value as unknown[];
    if (typeof mode !== 'number' || !Number.isInteger(mode) || mode < 0 || mode > 0o777) return undefined;
    if (typeof contentHash !== 'string' || !HEX_SHA256.test(contentHash)) return undefined;
    // Typed first: a number or array would print as digits and pass the pattern.
    if (typeof dev !== 'string' || typeof ino !== 'string' || typeof size !== 'string' || typeof mtimeNs !== 'string' || typeof ctimeNs !== 'string') return undefined;
    if (typeof stagedDev !== 'string' || typeof stagedIno !== 'string' || typeof stagedMtimeNs !== 'string') return undefined;
    const staged = `${stagedDev}:${stagedIno}:${stagedMtimeNs}`;
    if (!EIGHT_DECIMALS.test(`${dev}:${ino}:${size}:${mtimeNs}:${ctimeNs}:${staged}`)) return undefined;
    manifest.set(rel, { source: `${dev}:${ino}:${size}:${mtimeNs}:${ctimeNs}:${mode}`, staged, contentHash });
  }
  return manifest;
}

/**
 * Manifests this process wrote, per manifests directory (one realm: only its newest is kept), with
 * the written file's identity: the next republish by this process takes the manifest from here
 * instead of reading and parsing the file (10,000 entries cost ~120 ms of CPU under the operator's
 * Node flags; the link batch still checks every file against it). Only manifests of at least
 * {@link CACHED_MANIFEST_MIN_ENTRIES} entries (below it parsing is cheap), and at most
 * {@link CACHED_MANIFEST_MAX_ENTRIES} entries in all, least recently used out: ~0.3 kB per entry.
 */
const writtenManifests = new Map<string, { file: string; identity: string; manifest: StagingManifest }>();
let cachedEntries = 0;
export const CACHED_MANIFEST_MIN_ENTRIES = 1000;
export const CACHED_MANIFEST_MAX_ENTRIES = 20_000;

/**
 * A file's identity as `stat` reports it. ctime decides, as for source files (see the module
 * comment): no unprivileged process can rewrite the file and leave its ctime as it was.
 */
async function fileIdentity(file: string): Promise<string | undefined> {
  const stat = await fs.stat(file, { bigint: true }).catch(() => undefined);
  return stat && `${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeNs}:${stat.ctimeNs}`;
}

function forgetWrittenManifest(dir: string): void {
  const cached = writtenManifests.get(dir);
  if (!cached) return;
  writtenManifests.delete(dir);
  cachedEntries -= cached.manifest.size;
}

/** Reads a manifest file; missing or malformed gives `undefined`. */
export async function readManifestFile(file: string): Promise<StagingManifest | undefined> {
  const cached = writtenManifests.get(path.dirname(file));
  if (cached?.file === file) {
    // The very file this process wrote (same inode, size, mtime and ctime): its manifest, unparsed.
    if (cached.identity === (await fileIdentity(file))) {
      writtenManifests.delete(path.dirname(file));
      writtenManifests.set(path.dirname(file), cached);
      return cached.manifest;
    }
    forgetWrittenManifest(path.dirname(file));
  }
  const text = await fs.readFile(file, 'utf8').catch(() => undefined);
  return text === undefined ? undefined : parseManifest(text);
}

/**
 * Writes a manifest through a scratch file and a rename, so a reader sees all of it or none. Not
 * fsynced: a manifest lost in a crash only makes the next publish copy every file. The caller must
 * not change `manifest` afterwards: it may be kept for the next read (see `writtenManifests`).
 */
export async function writeManifestFile(file: string, manifest: StagingManifest): Promise<void> {
  const dir = path.dirname(file);
  forgetWrittenManifest(dir);
  await fs.mkdir(dir, { recursive: true });
  const scratch = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  await fs.writeFile(scratch, serializeManifest(manifest), { flag: 'wx', mode: 0o600 });
  await fs.rename(scratch, file);
  if (manifest.size < CACHED_MANIFEST_MIN_ENTRIES || manifest.size > CACHED_MANIFEST_MAX_ENTRIES) return;
  const identity = await fileIdentity(file);
  if (identity === undefined) return;
  forgetWrittenManifest(dir);
  writtenManifests.set(dir, { file, identity, manifest });
  cachedEntries += manifest.size;
  for (const [oldest] of writtenManifests) {
    if (cachedEntries <= CACHED_MANIFEST_MAX_ENTRIES) break;
    forgetWrittenManifest(oldest);
  }
}
