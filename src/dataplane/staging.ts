/**
 * Copies a source realm into a private staging directory on the published volume, outside the
 * realm lock, computing the content digest on the way. Only regular files, directories and
 * symlinks that stay inside the source realm are copied; everything else is skipped with a reason.
 *
 * The walk never follows a symlink it did not mean to follow. Every entry is reached through the
 * directory handle it was listed from (`/proc/self/fd/<fd>/<name>`, Linux's openat), opened with
 * `O_NOFOLLOW` (`O_DIRECTORY` for directories) and checked with `fstat` to be the very inode
 * `lstat` saw — so a directory swapped for a symlink mid-walk is skipped, never followed out of
 * the realm. Without `/proc` (not Linux) entries are reached by path: the last component is still
 * opened with `O_NOFOLLOW` and checked, but a parent swapped mid-walk is not detected.
 *
 * What fails what:
 * - One entry (anything the source side reports for it: EACCES, ENOENT, ELOOP, ENOTDIR, EIO, ...,
 *   or an inode that changed between `lstat` and open) → skipped, with the reason, and logged.
 * - The whole publish, with a {@link PublishError} (the user must act): the source root missing,
 *   unreadable or changed while opening it; the size limit ({@link RealmTooLargeError}).
 * - The whole publish, with a {@link StagingVolumeError} (retried with backoff): any error writing
 *   the staged copy (ENOSPC, EIO, EDQUOT, EROFS, ...), and running out of file descriptors or
 *   memory (EMFILE, ENFILE, ENOMEM), which say nothing about the entry.
 * A republish hard-links the files unchanged since the version published now instead of copying
 * them, one batch per listed directory in a worker thread (staging/link-unchanged.ts; docs/staging.md).
 *
 * No task is ever left running unawaited: a fixed set of workers drains one work list, each
 * catching its own entry's errors, and the workers are awaited with `Promise.allSettled`.
 */
import { execFile } from 'node:child_process';
import { createHash, randomInt } from 'node:crypto';
import { constants as fsConstants, existsSync, type BigIntStats } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { PublishError, RealmTooLargeError } from './realm-state.js';
import { isWithin } from './safe-paths.js';
import { linkUnchangedFiles, measureRegularFiles, removeTreeInWorker, type LinkCandidate } from './staging/link-unchanged.js';
import {
  DEFAULT_RACY_MARGIN_MS,
  isTrustedFingerprint,
  sourceFingerprint,
  stagedFingerprint,
  stagedKey,
  sourceKey,
  sourceKeyMode,
  type StagedFingerprint,
  type StagingManifest,
  unchangedEntry,
  wallClockNs,
} from './staging-manifest.js';

export interface SkippedEntry {
  /** Realm-local path, `/`-separated. */
  path: string;
  reason: string;
}

export interface StagedRealm {
  /** The staging directory, `<stagingRoot>/stage-<token>`. */
  dir: string;
  /** The directory's name after `stage-`; its owner holds an advisory lock on the token it starts with while staging (staging-guard.ts). */
  token: number | string;
  fileCount: number;
  totalBytes: number;
  /** `sha256:<hex>` over every entry's path, type, mode and content, in path order. */
  digest: string;
  skipped: SkippedEntry[];
  /** What the next publish of the realm may hard-link from this copy (see staging-manifest.ts). */
  manifest: StagingManifest;
  /** Regular files hard-linked from the previous version, and copied. */
  linkedFiles: number;
  copiedFiles: number;
  /** The content of the staged `index.json` when staging copied it (not linked) and it is at most 1 MiB. */
  indexJson?: Buffer;
  /** Milliseconds spent walking and copying, and making the copy durable. */
  timing: { copyMs: number; syncMs: number };
}

/** The version published now, whose unchanged files a republish hard-links instead of copying. */
export interface PreviousVersion {
  /** Its directory (`versions/<disk_id>/<version>`). */
  dir: string;
  /** What it was staged from. */
  manifest: StagingManifest;
}

/** Per-realm size limits; unset means unlimited. */
export interface RealmSizeLimits {
  maxFiles?: number;
  maxBytes?: number;
}

export interface WalkOptions {
  logger?: Logger;
  /**
   * Entries processed at once (default 64). Each entry is a chain of small file-system calls, so
   * many chains keep libuv's thread pool busy: 64 stages 10,000 small files about twice as fast as 16.
   */
  concurrency?: number;
  limits?: RealmSizeLimits;
  /** Copy regular files with more than one hard link (default: skip them; a hard link can bring in a file from outside the realm). */
  copyHardLinkedFiles?: boolean;
  /** Names the realm in errors and logs (the source realm URL). */
  realmName?: string;
  /**
   * Called before each entry is examined (`lstat`, phase `examine`) and, for files and
   * directories, again before it is opened (phase `open`), with its realm-local path and its path
   * under the source root. Tests use it to change the tree at a known moment.
   */
  onEntry?: (entry: { path: string; sourcePath: string; phase: 'examine' | 'open' }) => void | Promise<void>;
}

export interface StageOptions extends WalkOptions {
  /**
   * Make the whole copy durable before returning (default true), so a power loss after the swap
   * cannot leave empty files: one `syncfs(2)` of the staging volume after everything is written
   * (`sync -f`), instead of an fsync per file; without the `sync` binary, every file and directory
   * is fsynced in parallel batches at the end.
   */
  durable?: boolean;
  /** Hard-link the files unchanged since this version instead of copying them. */
  previous?: PreviousVersion;
  /** See {@link DEFAULT_RACY_MARGIN_MS}; tests lower it to avoid waiting. */
  racyMarginMs?: number;
}

/** Writing the staged copy failed (the published volume, not the source realm): the publish is retried. */
export class StagingVolumeError extends Error {
  constructor(
    readonly code: string | undefined,
    cause: unknown,
  ) {
    super(
      `could not stage the copy on the published volume (${code ?? (cause as Error).message}); ` +
        'check free space, quota and health of the volume holding _published/.realm-operator/staging; the publish is retried',
      { cause },
    );
    this.name = 'StagingVolumeError';
  }
}

export const STAGING_DIR_PREFIX = 'stage-';

/** The largest read buffer of a file copy. */
const COPY_BUFFER_BYTES = 256 * 1024;

/** The largest `index.json` whose copied bytes staging keeps for the realm.json opt-in (larger ones are read again). */
const MAX_KEPT_INDEX_JSON_BYTES = 1024 * 1024;

export function newStagingToken(): number {
  return randomInt(1, 2 ** 31 - 1);
}

/**
 * Copies the source realm at `sourceDir` (already `realpath`-resolved and checked by the caller)
 * into `<stagingRoot>/stage-<token>` (a publish's token is `<lease token>-<n>`, see staging-guard.ts).
 * The caller owns the result and must either rename it into place or remove it; on failure nothing
 * is left behind.
 */
export async function stageRealmFiles(sourceDir: string, stagingRoot: string, token: number | string, options: StageOptions = {}): Promise<StagedRealm> {
  const durable = options.durable ?? true;
  const started = performance.now();
  const copyStartedNs = wallClockNs();
  const dir = path.join(stagingRoot, `${STAGING_DIR_PREFIX}${token}`);
  // The staging root exists after the first publish: made only when the copy's mkdir says it is missing.
  await writeSide(() =>
    fs.mkdir(dir, { mode: 0o700 }).catch(async (error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
      await fs.mkdir(stagingRoot, { recursive: true });
      await fs.mkdir(dir, { mode: 0o700 });
    }),
  );
  const digestLines: string[] = [];
  const manifest: StagingManifest = new Map();
  /** What the no-`sync` fallback fsyncs: copied files and every directory. */
  const toSync: string[] = [];
  let linkedFiles = 0;
  let copiedFiles = 0;
  /** The bytes copied into the staged `index.json`, for the realm.json opt-in (realm-json.ts) to parse without reading the file again. */
  let indexJson: Buffer | undefined;
  // Directories get their real modes after their children are written (a 0555 directory
  // could not be filled otherwise), deepest first.
  const directoryModes: Array<{ dest: string; mode: number }> = [];
  try {
    const walk = await walkSourceRealm(sourceDir, options, {
      async directory(entry, mode) {
        await writeSide(() => fs.mkdir(path.join(dir, entry), { mode: 0o700 }));
        digestLines.push(`d ${JSON.stringify(entry)} ${modeBits(mode)}`);
        directoryModes.push({ dest: path.join(dir, entry), mode });
      },
      async takeListedFiles(dirRel, dirRef, names, onEntry) {
        const previous = options.previous;
        if (!previous) return new Map();
        const candidates: LinkCandidate[] = [];
        const candidatePaths: string[] = [];
        for (const name of names) {
          const rel = dirRel ? `${dirRel}/${name}` : name;
          const recorded = previous.manifest.get(rel);
          if (!recorded) continue;
          candidates.push({ name, recorded });
          candidatePaths.push(rel);
        }
        if (candidates.length === 0) return new Map();
        const sizes = await writeSide(() =>
          linkUnchangedFiles({
            sourceDirRef: dirRef,
            previousDir: path.join(previous.dir, dirRel),
            stagedDir: path.join(dir, dirRel),
            candidates,
            allowHardLinkedSources: options.copyHardLinkedFiles ?? false,
            ...(onEntry && { onEntry: (index: number, phase: 'examine' | 'open') => onEntry(candidates[index]!.name, phase) }),
          }),
        );
        const taken = new Map<string, number>();
        for (const [index, size] of sizes.entries()) {
          if (size < 0) continue; // left to the walk
          const { name, recorded } = candidates[index]!;
          const entry = candidatePaths[index]!;
          manifest.set(entry, recorded);
          digestLines.push(`f ${JSON.stringify(entry)} ${modeBits(sourceKeyMode(recorded.source))} ${recorded.contentHash}`);
          linkedFiles += 1;
          taken.set(name, size);
        }
        return taken;
      },
      async takeWithoutReading(entry, seen) {
        const source = sourceFingerprint(seen);
        const recorded = options.previous && unchangedEntry(options.previous.manifest, entry, source);
        if (!options.previous || !recorded) return false;
        const dest = path.join(dir, entry);
        try {
          await fs.link(path.join(options.previous.dir, entry), dest);
        } catch {
          return false; // gone, too many links, ...: copy it
        }
        // The link must have brought in the very inode the previous version staged (link(2) does
        // not follow a symlink put in its place, and a replaced file has another inode).
        const linked = await fs.lstat(dest, { bigint: true }).catch(() => undefined);
        if (!linked?.isFile() || linked.size !== source.size || recorded.staged !== stagedKey(stagedFingerprint(linked))) {
          await writeSide(() => fs.rm(dest, { force: true }));
          return false;
        }
        manifest.set(entry, recorded);
        digestLines.push(`f ${JSON.stringify(entry)} ${modeBits(source.mode)} ${recorded.contentHash}`);
        linkedFiles += 1;
        return true;
      },
      async file(entry, input, mode, count, opened) {
        const dest = path.join(dir, entry);
        const kept: Buffer[] | undefined = entry === 'index.json' && Number(opened.size) <= MAX_KEPT_INDEX_JSON_BYTES ? [] : undefined;
        const { contentHash, staged } = await copyOpenFile(input, dest, mode, count, Number(opened.size), kept);
        if (kept) indexJson = Buffer.concat(kept);
        const after = await input.stat({ bigint: true });
        const before = sourceFingerprint(opened);
        if (isTrustedFingerprint(before, sourceFingerprint(after), copyStartedNs, options.racyMarginMs ?? DEFAULT_RACY_MARGIN_MS)) {
          manifest.set(entry, { source: sourceKey(before), staged: stagedKey(staged), contentHash });
        }
        digestLines.push(`f ${JSON.stringify(entry)} ${modeBits(mode)} ${contentHash}`);
        if (durable) toSync.push(dest);
        copiedFiles += 1;
      },
      async symlink(entry, target) {
        const dest = path.join(dir, entry);
        // Re-point at the same entry inside the copy, relatively, so it never leads back to the source.
        const link = path.relative(path.dirname(dest), path.join(dir, target)) || '.';
        await writeSide(() => fs.symlink(link, dest));
        digestLines.push(`l ${JSON.stringify(entry)} ${JSON.stringify(target)}`);
      },
    });
    directoryModes.sort((a, b) => b.dest.length - a.dest.length);
    for (const { dest, mode } of directoryModes) {
      await writeSide(() => fs.chmod(dest, mode));
      if (durable) toSync.push(dest);
    }
    await writeSide(() => fs.chmod(dir, 0o755));
    const copied = performance.now();
    if (durable) await writeSide(() => syncStagedCopy(dir, [...toSync, dir]));
    digestLines.sort();
    const digest = `sha256:${createHash('sha256').update(digestLines.join('\n')).digest('hex')}`;
    return {
      dir,
      token,
      fileCount: walk.fileCount,
      totalBytes: walk.totalBytes,
      digest,
      skipped: walk.skipped,
      manifest,
      linkedFiles,
      copiedFiles,
      ...(indexJson && { indexJson }),
      timing: { copyMs: copied - started, syncMs: performance.now() - copied },
    };
  } catch (error) {
    await removeTree(dir);
    throw error;
  }
}

/**
 * Counts what staging would copy (regular files and their bytes) without copying, stopping with
 * {@link RealmTooLargeError} as soon as a limit is passed. Publishing runs it before staging when
 * limits are set, so an oversized realm costs no copy.
 */
export async function measureSourceRealm(sourceDir: string, options: WalkOptions): Promise<{ fileCount: number; totalBytes: number }> {
  const allowHardLinked = options.copyHardLinkedFiles ?? false;
  const { fileCount, totalBytes } = await walkSourceRealm(sourceDir, options, {
    async directory() {},
    // Counted from lstat, never opened: one call per file (staging enforces the limits again on what it copies).
    async takeWithoutReading() {
      return true;
    },
    // The same lstat per file, made synchronously in the staging worker for a whole listing at once
    // (one promise per file through the thread pool cost 10-20x the lstat itself on the event loop);
    // the rest of the listing (directories, symlinks, hard-linked files, ...) is left to the walk.
    // With hooks (tests), every entry goes through the walk, which calls them.
    ...(!options.onEntry && {
      async takeListedFiles(_dirRel: string, dirRef: string, names: string[]) {
        const sizes = await measureRegularFiles(dirRef, names, allowHardLinked);
        const taken = new Map<string, number>();
        for (const [index, size] of sizes.entries()) if (size >= 0) taken.set(names[index]!, size);
        return taken;
      },
    }),
    async file(_entry, _input, _mode, count, stat) {
      count(Number(stat.size));
    },
    async symlink() {},
  });
  return { fileCount, totalBytes };
}

/** What the walk does with each entry it accepts; errors thrown here fail the whole walk. */
interface EntrySink {
  directory(entry: string, mode: number): Promise<void>;
  /**
   * Called for a regular file before it is opened, with what `lstat` saw; true when the sink took
   * it without reading it (a republish hard-linking an unchanged file; measuring sizes). The file
   * still counts against the limits, with the size lstat saw.
   */
  takeWithoutReading?(entry: string, seen: BigIntStats): Promise<boolean>;
  /**
   * Called with a directory's listing before its entries are queued: takes, in one batch, the
   * regular files it can stage without reading them (a republish hard-linking unchanged files, or
   * measuring sizes; see staging/link-unchanged.ts), examining each exactly as the walk would and
   * calling `onEntry` (when given) at the walk's hook points. Returns the names taken with the size `lstat` saw; the
   * walk counts them against the limits and queues every other entry as usual.
   */
  takeListedFiles?(
    dirRel: string,
    dirRef: string,
    names: string[],
    onEntry: ((name: string, phase: 'examine' | 'open') => void | Promise<void>) | undefined,
  ): Promise<Map<string, number>>;
  /** `count(n)` adds `n` bytes read, and throws once the byte limit is passed. `stat` is the open file's. */
  file(entry: string, input: FileHandle, mode: number, count: (bytes: number) => void, stat: BigIntStats): Promise<void>;
  /** `target` is the realm-local path the link resolves to. */
  symlink(entry: string, target: string): Promise<void>;
}

/** A listed directory, held open until every entry in it has been opened through it. */
interface OpenDirectory {
  handle: FileHandle;
  /** A path that reaches this very directory: `/proc/self/fd/<fd>`, or its path without /proc. */
  ref: string;
  pendingEntries: number;
}

interface WorkItem {
  parent: OpenDirectory;
  name: string;
  /** Realm-local path. */
  rel: string;
}

const PROC_FD = '/proc/self/fd';
const procFdAvailable = existsSync(PROC_FD);

/** Errors that say the process ran out of something, not that the entry is bad: they fail the publish. */
const PROCESS_RESOURCE_ERRORS = new Set(['EMFILE', 'ENFILE', 'ENOMEM']);

async function walkSourceRealm(
  sourceDir: string,
  options: WalkOptions,
  sink: EntrySink,
): Promise<{ fileCount: number; totalBytes: number; skipped: SkippedEntry[] }> {
  const realm = options.realmName ?? sourceDir;
  const limits = options.limits ?? {};
  const skipped: SkippedEntry[] = [];
  let fileCount = 0;
  let totalBytes = 0;
  let failure: { error: unknown } | undefined;
  const stack: WorkItem[] = [];
  const waiting: Array<() => void> = [];
  let active = 0;

  const skip = (rel: string, reason: string) => {
    skipped.push({ path: rel, reason });
    options.logger?.warn({ path: rel, reason, realm }, 'skipped a source realm entry');
  };
  const tooLarge = (kind: 'files' | 'bytes', max: number) => new RealmTooLargeError(realm, fileCount, totalBytes, { kind, max });
  const wakeAll = () => {
    for (const wake of waiting.splice(0)) wake();
  };

  const root = await openSourceRoot(sourceDir, realm);
  const rootDir: OpenDirectory = { handle: root, ref: procFdAvailable ? `${PROC_FD}/${root.fd}` : sourceDir, pendingEntries: 0 };

  /** Queues a listed directory's entries; the directory stays open until they are opened. */
  const enqueueEntries = (dir: OpenDirectory, rel: string, names: string[]): void => {
    dir.pendingEntries += names.length;
    for (const name of names.sort().reverse()) stack.push({ parent: dir, name, rel: rel ? `${rel}/${name}` : name });
    wakeAll();
  };
  /** Lets the sink take what it can of a listing in one batch (counted here), then queues the rest. */
  const takeAndEnqueue = async (dir: OpenDirectory, rel: string, names: string[]): Promise<void> => {
    const onEntry = options.onEntry;
    const hook = onEntry && ((name: string, phase: 'examine' | 'open') => onEntry({ path: rel ? `${rel}/${name}` : name, sourcePath: path.join(sourceDir, rel, name), phase }));
    const taken = (await sink.takeListedFiles?.(rel, dir.ref, names, hook)) ?? new Map<string, number>();
    for (const size of taken.values()) {
      fileCount += 1;
      totalBytes += size;
      if (limits.maxFiles !== undefined && fileCount > limits.maxFiles) throw tooLarge('files', limits.maxFiles);
      if (limits.maxBytes !== undefined && totalBytes > limits.maxBytes) throw tooLarge('bytes', limits.maxBytes);
    }
    enqueueEntries(dir, rel, taken.size === 0 ? names : names.filter((name) => !taken.has(name)));
  };
  const doneWithEntry = async (dir: OpenDirectory): Promise<void> => {
    dir.pendingEntries -= 1;
    if (dir.pendingEntries === 0) await dir.handle.close().catch(() => undefined);
  };

  const processEntry = async (item: WorkItem): Promise<void> => {
    const entryPath = `${item.parent.ref}/${item.name}`;
    const hook = (phase: 'examine' | 'open') => options.onEntry?.({ path: item.rel, sourcePath: path.join(sourceDir, item.rel), phase });
    await hook('examine');
    const seen = await fs.lstat(entryPath, { bigint: true });
    if (seen.isDirectory() || seen.isFile()) await hook('open');
    if (seen.isDirectory()) await visitDirectory(item, entryPath, seen);
    else if (seen.isFile()) await visitFile(item, entryPath, seen);
    else if (seen.isSymbolicLink()) await visitSymlink(item, entryPath);
    else skip(item.rel, `is a ${entryKind(seen)}, not a regular file, directory or symlink`);
  };

  /** Opens the directory lstat saw (never a symlink put in its place), creates it in the copy and queues its entries. */
  const visitDirectory = async (item: WorkItem, entryPath: string, seen: BigIntStats): Promise<void> => {
    const handle = await openNoFollow(entryPath, fsConstants.O_DIRECTORY);
    const dir: OpenDirectory = { handle, ref: procFdAvailable ? `${PROC_FD}/${handle.fd}` : path.join(sourceDir, item.rel), pendingEntries: 1 };
    try {
      const opened = await handle.stat({ bigint: true });
      if (!sameInode(seen, opened) || !opened.isDirectory()) return skip(item.rel, 'was replaced while staging');
      const names = await fs.readdir(dir.ref);
      // Create it in the copy before queueing its entries, which are written into it.
      await sink.directory(item.rel, permissionBits(opened));
      await takeAndEnqueue(dir, item.rel, names);
    } finally {
      await doneWithEntry(dir); // drops the listing's own reference
    }
  };

  /** Copies the regular file lstat saw, counting it against the limits. */
  const visitFile = async (item: WorkItem, entryPath: string, seen: BigIntStats): Promise<void> => {
    if (seen.nlink > 1n && !options.copyHardLinkedFiles) {
      return skip(item.rel, `is a regular file with ${seen.nlink} hard links, which could bring in a file from outside the realm (the operator copies such files only with copyHardLinkedFiles)`);
    }
    // Count the file (and the size lstat saw) before any await, so concurrent workers cannot
    // all pass the limit check at once; undone below if the file is not staged after all.
    fileCount += 1;
    let reserved = Number(seen.size);
    let read = 0;
    totalBytes += reserved;
    const undo = () => {
      fileCount -= 1;
      totalBytes -= reserved;
    };
    if (limits.maxFiles !== undefined && fileCount > limits.maxFiles) throw tooLarge('files', limits.maxFiles);
    if (limits.maxBytes !== undefined && totalBytes > limits.maxBytes) throw tooLarge('bytes', limits.maxBytes);
    const count = (bytes: number) => {
      read += bytes;
      if (read <= reserved) return;
      // The file grew since lstat: count the excess now.
      totalBytes += read - reserved;
      reserved = read;
      if (limits.maxBytes !== undefined && totalBytes > limits.maxBytes) throw tooLarge('bytes', limits.maxBytes);
    };
    let input: FileHandle | undefined;
    try {
      // Unchanged since the previous version: linked, never opened (so nothing is read at all).
      if (await sink.takeWithoutReading?.(item.rel, seen)) {
        read = reserved;
        return;
      }
      // O_NONBLOCK: an entry swapped for a FIFO after lstat must not block the open.
      input = await openNoFollow(entryPath, fsConstants.O_NONBLOCK | fsConstants.O_NOCTTY);
      const opened = await input.stat({ bigint: true });
      if (!sameInode(seen, opened) || !opened.isFile()) {
        undo();
        return skip(item.rel, 'was replaced while staging');
      }
      if (opened.nlink > 1n && !options.copyHardLinkedFiles) {
        undo();
        return skip(item.rel, `gained a hard link while staging (${opened.nlink} links)`);
      }
      await sink.file(item.rel, input, permissionBits(opened), count, opened);
      // The file shrank since lstat: give back what was not read.
      totalBytes -= reserved - read;
      reserved = read;
    } catch (error) {
      if (!(error instanceof RealmTooLargeError)) undo();
      throw error;
    } finally {
      await input?.close().catch(() => undefined);
    }
  };

  /** Keeps a symlink whose target, resolved, is inside the source realm. */
  const visitSymlink = async (item: WorkItem, entryPath: string): Promise<void> => {
    const target = await insideTarget(entryPath, sourceDir);
    if (typeof target !== 'string') return skip(item.rel, target.reason);
    await sink.symlink(item.rel, target);
  };

  const worker = async (): Promise<void> => {
    while (!failure) {
      const item = stack.pop();
      if (!item) {
        if (active === 0) return wakeAll();
        await new Promise<void>((resolve) => waiting.push(resolve));
        continue;
      }
      active += 1;
      try {
        await processEntry(item);
      } catch (error) {
        const reason = entryFailure(error);
        if (reason === undefined) failure ??= { error: asWalkError(error) };
        else skip(item.rel, reason);
      } finally {
        await doneWithEntry(item.parent);
        active -= 1;
        wakeAll();
      }
    }
    wakeAll();
  };

  try {
    rootDir.pendingEntries = 1;
    let rootNames: string[];
    try {
      rootNames = await fs.readdir(rootDir.ref);
    } catch (error) {
      throw new PublishError(`source realm ${realm}: its directory could not be listed (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
    }
    await takeAndEnqueue(rootDir, '', rootNames);
    await doneWithEntry(rootDir);
    const workers = await Promise.allSettled(Array.from({ length: Math.max(1, options.concurrency ?? 64) }, () => worker()));
    const crashed = workers.find((w): w is PromiseRejectedResult => w.status === 'rejected');
    if (crashed) throw crashed.reason;
    if (failure) throw failure.error;
  } finally {
    // After a failure, close what the abandoned work list still holds open.
    const open = new Set([rootDir, ...stack.map((item) => item.parent)]);
    stack.length = 0;
    await Promise.allSettled([...open].map((dir) => dir.handle.close()));
  }
  return { fileCount, totalBytes, skipped };
}

/** Opens the source root itself, which must be the directory the caller resolved (no symlink swapped in since). */
async function openSourceRoot(sourceDir: string, realm: string): Promise<FileHandle> {
  let handle: FileHandle;
  try {
    handle = await openNoFollow(sourceDir, fsConstants.O_DIRECTORY);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== undefined && PROCESS_RESOURCE_ERRORS.has(code)) throw new StagingVolumeError(code, error);
    throw new PublishError(`source realm ${realm}: its directory ${sourceDir} is missing, unreadable or not a directory (${code ?? (error as Error).message})`);
  }
  if (procFdAvailable) {
    const opened = await fs.readlink(`${PROC_FD}/${handle.fd}`).catch(() => undefined);
    if (opened !== sourceDir) {
      await handle.close();
      throw new PublishError(`source realm ${realm}: its directory ${sourceDir} was replaced while opening it (now ${opened ?? 'unknown'}); publish again`);
    }
  }
  return handle;
}

function openNoFollow(target: string, extraFlags: number): Promise<FileHandle> {
  return fs.open(target, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | extraFlags);
}

function sameInode(a: BigIntStats, b: BigIntStats): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

function permissionBits(stat: BigIntStats): number {
  return Number(stat.mode & 0o777n);
}

/**
 * The reason to skip an entry for `error`, or `undefined` when the error must fail the whole
 * walk: our own errors (size limit, staging volume, source root), errors without an errno code
 * (bugs), and the process running out of descriptors or memory.
 */
function entryFailure(error: unknown): string | undefined {
  if (error instanceof PublishError || error instanceof StagingVolumeError) return undefined;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code !== 'string' || PROCESS_RESOURCE_ERRORS.has(code)) return undefined;
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return `is not readable by the operator (${code})`;
    case 'ENOENT':
      return `disappeared while staging (${code})`;
    case 'ELOOP':
      return `was replaced by a symlink while staging (${code})`;
    case 'ENOTDIR':
      // What O_DIRECTORY|O_NOFOLLOW reports for a directory swapped for a symlink.
      return `was replaced by a symlink or another non-directory while staging (${code})`;
    default:
      return `could not be read (${code})`;
  }
}

function asWalkError(error: unknown): unknown {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code === 'string' && PROCESS_RESOURCE_ERRORS.has(code)) return new StagingVolumeError(code, error);
  return error;
}

/** Runs a write to the staged copy; any failure is the volume's, not the entry's. */
async function writeSide<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    throw new StagingVolumeError((error as NodeJS.ErrnoException).code, error);
  }
}

/** Copies an open source file to `dest` (not fsynced: the whole copy is synced at the end). */
async function copyOpenFile(
  input: FileHandle,
  dest: string,
  mode: number,
  count: (bytes: number) => void,
  /** The size fstat saw, which sizes the read buffer (a file that grew since is read in more chunks). */
  expectedSize: number,
  /** Receives a copy of every chunk written, when given. */
  kept?: Buffer[],
): Promise<{ contentHash: string; staged: StagedFingerprint }> {
  const hash = createHash('sha256');
  const output = await writeSide(() => fs.open(dest, 'wx', 0o600));
  let staged: StagedFingerprint;
  try {
    // Sized to the file (one read, then one that sees the end), never more than 256 KiB: a fixed
    // 256 KiB buffer per file was an allocation of its own (outside V8's heap) for every small file,
    // with 16 publishes at once a steady source of garbage collections; up to 4 KiB comes from Node's shared pool.
    const buffer = Buffer.allocUnsafe(Math.min(COPY_BUFFER_BYTES, expectedSize + 1));
    for (;;) {
      const { bytesRead } = await input.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      count(bytesRead);
      const chunk = buffer.subarray(0, bytesRead);
      hash.update(chunk);
      kept?.push(Buffer.from(chunk));
      await writeSide(() => output.write(chunk));
    }
    await writeSide(() => output.chmod(mode));
    staged = stagedFingerprint(await writeSide(() => output.stat({ bigint: true })));
  } catch (error) {
    // A file skipped for a read error must not stay half-written in the copy.
    await output.close().catch(() => undefined);
    await fs.rm(dest, { force: true }).catch(() => undefined);
    throw error;
  }
  await writeSide(() => output.close());
  return { contentHash: hash.digest('hex'), staged };
}

let syncBinary: 'unknown' | 'available' | 'missing' = 'unknown';

/**
 * Makes the staged copy durable in one step: `syncfs(2)` on its file system (coreutils
 * `sync -f`; Node has no binding for it), which flushes every file and directory written above at
 * once rather than waiting on the journal once per file. Without the binary, falls back to
 * fsyncing `paths` (copied files, then directories) in parallel batches.
 */
async function syncStagedCopy(dir: string, paths: string[]): Promise<void> {
  if (syncBinary !== 'missing') {
    try {
      await new Promise<void>((resolve, reject) => execFile('sync', ['-f', dir], (error) => (error ? reject(error) : resolve())));
      syncBinary = 'available';
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      syncBinary = 'missing';
    }
  }
  const batch = 32;
  for (let i = 0; i < paths.length; i += batch) await Promise.all(paths.slice(i, i + batch).map((p) => fsyncPath(p)));
}

/** The link's target as a realm-relative path, or why it may not be copied; both sides resolved with realpath. */
async function insideTarget(link: string, sourceRoot: string): Promise<string | { reason: string }> {
  const text = await fs.readlink(link);
  let resolved: string;
  try {
    resolved = await fs.realpath(link);
  } catch {
    return { reason: `is a symlink to ${JSON.stringify(text)}, which does not exist` };
  }
  if (!isWithin(resolved, sourceRoot, false)) {
    return { reason: `is a symlink that points outside the source realm (${JSON.stringify(text)})` };
  }
  return path.relative(sourceRoot, resolved).split(path.sep).join('/');
}

function modeBits(mode: number): string {
  return (mode & 0o777).toString(8).padStart(4, '0');
}

function entryKind(stat: { isBlockDevice(): boolean; isCharacterDevice(): boolean; isFIFO(): boolean; isSocket(): boolean }): string {
  if (stat.isBlockDevice()) return 'block device';
  if (stat.isCharacterDevice()) return 'character device';
  if (stat.isFIFO()) return 'FIFO';
  if (stat.isSocket()) return 'socket';
  return 'special file';
}

export async function fsyncPath(target: string): Promise<void> {
  const handle = await fs.open(target, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Removes a tree, first making read-only directories writable so removal cannot fail on modes. In
 * the staging worker, by one native `rmSync`: a version of 10,000 files removed through promises
 * cost ~100 ms of the event loop's CPU (a promise and a thread-pool round trip per entry) on top
 * of the unlinks themselves.
 */
export async function removeTree(target: string): Promise<void> {
  await removeTreeInWorker(target);
}
