/**
 * Hard-links, in one batch per listed directory, the files of a republish that did not change since
 * the previous version (see staging-manifest.ts for "unchanged"), with synchronous file-system calls
 * in one worker thread: per file that is `lstat` of the source, `link(2)` and `lstat` of the link,
 * where the same calls through libuv's thread pool cost a round trip, a promise and a wake-up
 * apiece (1.1–1.8× the time at 10,000 files in bench-staging's floors, more under load). The event loop stays free
 * meanwhile.
 *
 * The checks are the walk's own, made in the same order: the source entry, reached through the
 * listed directory's handle (`/proc/self/fd/<fd>/<name>`, the worker shares the process's
 * descriptors), must be a regular file with the recorded fingerprint (and one link unless
 * hard-linked sources are allowed); the link must have brought in the very inode the previous
 * version staged (dev, inode, mtime) with the size seen, or it is removed. Whatever the batch does
 * not take (changed, missing, unreadable, replaced, a failed link) is left to the walk, which
 * examines it again from scratch — so every refusal and skip reason stays the walk's.
 *
 * Hooks (`WalkOptions.onEntry`, tests only) run on the main thread at the same points as in the walk
 * (before `lstat`, and before the link for a file about to be linked) while the worker waits on a
 * shared flag; an entry whose hook throws is left to the walk, which runs the hook again. The
 * worker is the process's one and serves batches in turn, so a hook must not wait for another
 * staging to progress.
 */
import { lstatSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { ManifestEntry } from '../staging-manifest.js';

export interface LinkCandidate {
  /** The entry's name in the listed directory. */
  name: string;
  /** What the previous version recorded for it. */
  recorded: ManifestEntry;
}

export interface LinkBatch {
  /** The listed source directory, reached as the walk reaches it. */
  sourceDirRef: string;
  /** The same directory in the previous version (the link sources) and in the staged copy. */
  previousDir: string;
  stagedDir: string;
  candidates: LinkCandidate[];
  /** Link sources with more than one hard link too (`copyHardLinkedFiles`); else the walk skips them. */
  allowHardLinkedSources: boolean;
  /** Called (main thread) before the candidate is examined and before it is linked. */
  onEntry?: (index: number, phase: 'examine' | 'open') => void | Promise<void>;
}

/** Removing a link that proved wrong failed: the staged copy's volume is at fault. */
class LinkVolumeError extends Error {
  constructor(
    readonly code: string | undefined,
    message: string,
  ) {
    super(message);
    this.name = 'LinkVolumeError';
  }
}

// Plain JavaScript (a string, so it runs the same from src/ under tsx or Jest and from dist/).
// Requests, by `kind`:
// - 'link' { id, sourceDirRef, previousDir, stagedDir, names, sourceKeys, stagedKeys, allowHardLinked, hookFlag? }, the keys
//   as sourceKey() and stagedKey() in staging-manifest.ts print them (built alike below).
//   Reply: { id, sizes: Float64Array (-1 = not taken) } | { id, volumeError: { code, message } }; { id, hook: { index, phase } } before each hook point.
// - 'measure' { id, sourceDirRef, names, allowHardLinked }: per name, the size lstat sees when it is a regular file the walk
//   would count (one link unless hard-linked files are allowed), else -1. Reply: { id, sizes }.
// - 'remove' { id, target }: removes the tree (rmSync is native: one call for the whole tree), first making read-only
//   directories writable when removal fails on modes. Reply: { id, sizes: empty } | { id, volumeError }.
const WORKER_SOURCE = String.raw`
const fs = require('node:fs');
const path = require('node:path');
const { parentPort } = require('node:worker_threads');
const link = (request) => {
  const { id, sourceDirRef, previousDir, stagedDir, names, sourceKeys, stagedKeys, allowHardLinked } = request;
  const flag = request.hookFlag ? new Int32Array(request.hookFlag) : undefined;
  const hook = (index, phase) => {
    if (!flag) return true;
    Atomics.store(flag, 0, 0);
    parentPort.postMessage({ id, hook: { index, phase } });
    Atomics.wait(flag, 0, 0);
    return Atomics.load(flag, 0) === 1;
  };
  const sizes = new Float64Array(names.length).fill(-1);
  for (let i = 0; i < names.length; i++) {
    if (!hook(i, 'examine')) continue;
    let seen;
    try {
      seen = fs.lstatSync(sourceDirRef + '/' + names[i], { bigint: true });
    } catch {
      continue;
    }
    if (!seen.isFile() || (seen.nlink > 1n && !allowHardLinked)) continue;
    if (seen.dev + ':' + seen.ino + ':' + seen.size + ':' + seen.mtimeNs + ':' + seen.ctimeNs + ':' + (seen.mode & 0o777n) !== sourceKeys[i]) continue;
    if (!hook(i, 'open')) continue;
    const dest = stagedDir + '/' + names[i];
    try {
      fs.linkSync(previousDir + '/' + names[i], dest);
    } catch {
      continue;
    }
    let linked;
    try {
      linked = fs.lstatSync(dest, { bigint: true });
    } catch {}
    if (linked && linked.isFile() && linked.size === seen.size && linked.dev + ':' + linked.ino + ':' + linked.mtimeNs === stagedKeys[i]) {
      sizes[i] = Number(seen.size);
      continue;
    }
    try {
      fs.rmSync(dest, { force: true });
    } catch (error) {
      parentPort.postMessage({ id, volumeError: { code: error.code, message: error.message } });
      return;
    }
  }
  parentPort.postMessage({ id, sizes });
};
const measure = ({ id, sourceDirRef, names, allowHardLinked }) => {
  const sizes = new Float64Array(names.length).fill(-1);
  for (let i = 0; i < names.length; i++) {
    let seen;
    try {
      seen = fs.lstatSync(sourceDirRef + '/' + names[i]);
    } catch {
      continue;
    }
    if (seen.isFile() && (seen.nlink === 1 || allowHardLinked)) sizes[i] = seen.size;
  }
  parentPort.postMessage({ id, sizes });
};
const makeWritable = (dir) => {
  let stat;
  try {
    stat = fs.lstatSync(dir);
  } catch {
    return;
  }
  if (!stat.isDirectory()) return;
  fs.chmodSync(dir, 0o700);
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) if (entry.isDirectory()) makeWritable(path.join(dir, entry.name));
};
const remove = ({ id, target }) => {
  try {
    try {
      fs.rmSync(target, { recursive: true, force: true });
    } catch (error) {
      if (error.code !== 'EACCES' && error.code !== 'EPERM') throw error;
      makeWritable(target);
      fs.rmSync(target, { recursive: true, force: true });
    }
    parentPort.postMessage({ id, sizes: new Float64Array(0) });
  } catch (error) {
    parentPort.postMessage({ id, volumeError: { code: error.code, message: error.message } });
  }
};
parentPort.on('message', (request) => {
  if (request.kind === 'measure') measure(request);
  else if (request.kind === 'remove') remove(request);
  else link(request);
});
`;

interface Pending {
  resolve(sizes: Float64Array): void;
  reject(error: Error): void;
  onHook?: (index: number, phase: 'examine' | 'open') => void;
}

interface LinkWorker {
  worker: Worker;
  pending: Map<number, Pending>;
}

let shared: LinkWorker | undefined;
let nextRequestId = 1;
let linkedInBatches = 0;

/** Files linked by batches since the process started (tests check the walk takes this path). */
export function filesLinkedInBatches(): number {
  return linkedInBatches;
}

/** One worker for the process, started on first use; it does not keep the process alive. */
function linkWorker(): LinkWorker {
  if (shared) return shared;
  const worker = new Worker(WORKER_SOURCE, { eval: true });
  worker.unref(); // referenced only while a batch is pending (below)
  const state: LinkWorker = { worker, pending: new Map() };
  worker.on('message', (message: { id: number; sizes?: Float64Array; volumeError?: { code?: string; message: string }; hook?: { index: number; phase: 'examine' | 'open' } }) => {
    const pending = state.pending.get(message.id);
    if (!pending) return;
    if (message.hook) return pending.onHook?.(message.hook.index, message.hook.phase);
    state.pending.delete(message.id);
    if (state.pending.size === 0) worker.unref();
    if (message.sizes) pending.resolve(message.sizes);
    else pending.reject(new LinkVolumeError(message.volumeError?.code, message.volumeError?.message ?? 'unknown'));
  });
  const fail = (error: Error) => {
    if (shared === state) shared = undefined;
    for (const pending of state.pending.values()) pending.reject(error);
    state.pending.clear();
  };
  worker.on('error', (error) => fail(new Error(`the staging link worker failed: ${error.message}`, { cause: error })));
  worker.on('exit', (code) => fail(new Error(`the staging link worker exited (code ${code})`)));
  shared = state;
  return state;
}

/** Sends one request to the worker; resolves with its sizes. */
function request(message: Record<string, unknown>, onHook?: Pending['onHook']): Promise<Float64Array> {
  const state = linkWorker();
  const id = nextRequestId++;
  return new Promise<Float64Array>((resolve, reject) => {
    state.pending.set(id, { resolve, reject, ...(onHook && { onHook }) });
    state.worker.ref();
    state.worker.postMessage({ ...message, id });
  });
}

/**
 * Links the unchanged candidates into `stagedDir`; for each candidate, the size `lstat` saw when it
 * was linked, or -1 when the walk must take care of it.
 */
export async function linkUnchangedFiles(batch: LinkBatch): Promise<Float64Array> {
  if (batch.candidates.length === 0) return new Float64Array(0);
  const hookFlag = batch.onEntry ? new SharedArrayBuffer(4) : undefined;
  const onEntry = batch.onEntry;
  const onHook =
    onEntry &&
    ((index: number, phase: 'examine' | 'open') => {
      const flag = new Int32Array(hookFlag!);
      const answer = (ok: boolean) => {
        Atomics.store(flag, 0, ok ? 1 : 2);
        Atomics.notify(flag, 0);
      };
      Promise.resolve()
        .then(() => onEntry(index, phase))
        .then(
          () => answer(true),
          () => answer(false),
        );
    });
  const sizes = await request(
    {
      kind: 'link',
      sourceDirRef: batch.sourceDirRef,
      previousDir: batch.previousDir,
      stagedDir: batch.stagedDir,
      names: batch.candidates.map((c) => c.name),
      sourceKeys: batch.candidates.map((c) => c.recorded.source),
      stagedKeys: batch.candidates.map((c) => c.recorded.staged),
      allowHardLinked: batch.allowHardLinkedSources,
      hookFlag,
    },
    onHook,
  );
  for (const size of sizes) if (size >= 0) linkedInBatches += 1;
  return sizes;
}

/**
 * What measuring a listed directory can count without the walk: for each name, the size `lstat`
 * sees (synchronously, in the worker) when it is a regular file the walk would count — one link,
 * or any number with `allowHardLinked` — else -1 (directories, symlinks, anything else, errors:
 * left to the walk, which examines them itself).
 */
export async function measureRegularFiles(sourceDirRef: string, names: string[], allowHardLinked: boolean): Promise<Float64Array> {
  if (names.length === 0) return new Float64Array(0);
  if (names.length > MEASURED_HERE_MAX_NAMES) return request({ kind: 'measure', sourceDirRef, names, allowHardLinked });
  // A short listing (most of a small realm's): its few lstats cost the event loop microseconds,
  // less than the round trip to the worker (a message each way, two wake-ups: ~100 µs of this
  // thread's CPU under bench-scale's load), the same checks as the worker's 'measure'.
  const sizes = new Float64Array(names.length).fill(-1);
  for (const [index, name] of names.entries()) {
    let seen;
    try {
      seen = lstatSync(`${sourceDirRef}/${name}`);
    } catch {
      continue;
    }
    if (seen.isFile() && (seen.nlink === 1 || allowHardLinked)) sizes[index] = seen.size;
  }
  return sizes;
}

/** Listings up to this long are measured on the calling thread (see {@link measureRegularFiles}). */
const MEASURED_HERE_MAX_NAMES = 16;

/**
 * Removes a tree in the worker: one native `rmSync` for the whole tree instead of a promise per
 * entry on the event loop (read-only directories are made writable first when removal fails on
 * modes). Rejects with the error's code and message when it cannot be removed.
 */
export async function removeTreeInWorker(target: string): Promise<void> {
  try {
    await request({ kind: 'remove', target });
  } catch (error) {
    if (error instanceof LinkVolumeError) throw Object.assign(new Error(`could not remove ${target}: ${error.message}`, { cause: error }), { code: error.code });
    throw error;
  }
}
