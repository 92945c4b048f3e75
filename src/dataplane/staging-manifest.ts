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
  source: SourceFingerprint;
  staged: StagedFingerprint;
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

export function sameSource(a: SourceFingerprint, b: SourceFingerprint): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs && a.mode === b.mode;
}

export function sameStaged(a: StagedFingerprint, b: StagedFingerprint): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.mtimeNs === b.mtimeNs;
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
  return entry && sameSource(entry.source, now) ? entry : undefined;
}

type SerializedEntry = [string, string, string, string, string, number, string, string, string, string];

export function serializeManifest(manifest: StagingManifest): string {
  const entries: Record<string, SerializedEntry> = {};
  for (const [rel, { source: s, staged: t, contentHash }] of manifest) {
    entries[rel] = [String(s.dev), String(s.ino), String(s.size), String(s.mtimeNs), String(s.ctimeNs), s.mode, contentHash, String(t.dev), String(t.ino), String(t.mtimeNs)];
  }
  return JSON.stringify({ format: MANIFEST_FORMAT, entries });
}

const HEX_SHA256 = /^[0-9a-f]{64}$/;
const DECIMAL_DIGITS = /^\d+$/;
const U64_LIMIT = 2n ** 64n;

/** A recorded unsigned 64-bit decimal, or `undefined` (BigInt() alone would also take hex, signs and spaces). */
function u64(value: unknown): bigint | undefined {
  if (typeof value !== 'string' || value.length === 0 || value.length > 20) return undefined;
  // BigInt() first: cheaper than a regex per value at 10,000 entries; the regex only for what it accepted oddly.
  let parsed: bigint;
  try {
    parsed = BigInt(value);
  } catch {
    return undefined;
  }
  if (parsed < 0n || parsed >= U64_LIMIT) return undefined;
  const code = value.charCodeAt(0);
  if (code < 48 || code > 57 || (value.length > 1 && code === 48 && !DECIMAL_DIGITS.test(value))) return undefined; // a sign, space or 0x prefix
  return parsed;
}

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
  for (const [rel, value] of Object.entries(entries)) {
    if (!Array.isArray(value) || value.length !== 10) return undefined;
    const mode = value[5] as unknown;
    const contentHash = value[6] as unknown;
    if (typeof mode !== 'number' || !Number.isInteger(mode) || mode < 0 || mode > 0o777) return undefined;
    if (typeof contentHash !== 'string' || contentHash.length !== 64 || !HEX_SHA256.test(contentHash)) return undefined;
    const d = u64(value[0]);
    const i = u64(value[1]);
    const sz = u64(value[2]);
    const m = u64(value[3]);
    const c = u64(value[4]);
    const td = u64(value[7]);
    const ti = u64(value[8]);
    const tm = u64(value[9]);
    if (d === undefined || i === undefined || sz === undefined || m === undefined || c === undefined || td === undefined || ti === undefined || tm === undefined) return undefined;
    manifest.set(rel, { source: { dev: d, ino: i, size: sz, mtimeNs: m, ctimeNs: c, mode }, staged: { dev: td, ino: ti, mtimeNs: tm }, contentHash });
  }
  return manifest;
}

/** Reads a manifest file; missing or malformed gives `undefined`. */
export async function readManifestFile(file: string): Promise<StagingManifest | undefined> {
  const text = await fs.readFile(file, 'utf8').catch(() => undefined);
  return text === undefined ? undefined : parseManifest(text);
}

/**
 * Writes a manifest through a scratch file and a rename, so a reader sees all of it or none. Not
 * fsynced: a manifest lost in a crash only makes the next publish copy every file.
 */
export async function writeManifestFile(file: string, manifest: StagingManifest): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const scratch = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  await fs.writeFile(scratch, serializeManifest(manifest), { flag: 'wx', mode: 0o600 });
  await fs.rename(scratch, file);
}
