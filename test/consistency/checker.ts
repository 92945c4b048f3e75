/**
 * The consistency checker: records what every read returned and when it started, and the time
 * T_i at which the PublishedRealm's `Ready` for revision i was written.
 *
 * T_i is when the operator decided Ready, not when the driver's poll saw it: the harness takes it
 * from the operator's own log line emitted after every live replica acknowledged and before the
 * status write (see ready-time.ts). So reads that start between the write and the driver's poll
 * are checked too (`checkedBeforeSeen` counts them).
 *
 * Clock: every time here is `Date.now()`, integer milliseconds of the machine's wall clock, the
 * clock the operator's log lines carry (pino `time`), so T_i and read starts compare exactly. A
 * read is checked against T_i when its start is STRICTLY later (start ≥ T_i + 1 ms, so it began
 * after the log instant); the status write follows the log line by at least one API round trip
 * (over 1 ms), so every read that starts after the write is checked.
 *
 * Rules (each counted; the tests assert them):
 * - violation: a read that started after T_i returned 200 with content of a revision < i, or
 *   (when the Ready names the realm that must serve the path, as for a realm nested inside another
 *   realm's URL) content served by another realm (`x-realm-url`);
 * - error after Ready: a read that started after T_i answered non-200 or failed in transport
 *   (counted per replica: a scenario allows them only from the replicas it faulted);
 * - regression: a replica answered an older revision for a file than it answered for it before;
 * - corrupt: a 200 whose body is not a complete file of some revision (the swap is atomic).
 * After `markAbsent` (the realm is being removed) nothing is required until the next Ready.
 *
 * Because T_i is back-dated, a read is judged only once no later mark can precede its start:
 * marks only move forward, and the driver calls `settle(t)` before it starts the next publish
 * (that publish's T is later than t). Reads recorded earlier wait in `pending`. `finish()`
 * judges the rest.
 */

/** Wall-clock milliseconds (`Date.now()`): the clock of the operator's log lines. */
export const now = (): number => Date.now();

export interface ReadRecord {
  replica: string;
  file: string;
  /** Wall time (ms) the request was issued / the response body was complete. */
  start: number;
  end: number;
  /** HTTP status, or undefined for a transport error. */
  status?: number;
  error?: string;
  /** Revision in a 200 body. */
  revision?: number;
  corrupt?: string;
  /** `x-realm-url`: the realm the replica resolved the path to. */
  realm?: string;
  cache?: string;
  epoch?: string;
  servedBy?: string;
}

export interface Violation {
  read: ReadRecord;
  /** The newest revision Ready before the read started, and when (T_i). */
  requiredRevision: number;
  /** The realm that had to serve the read, when the Ready named one. */
  requiredRealm?: string;
  readyAt: number;
  /** ms from T_i to the read's start / end. */
  startAfterReadyMs: number;
  endAfterReadyMs: number;
  /** The same replica's reads just before this one (oldest first). */
  recentReads: ReadRecord[];
  /** Filled by the scenario: logs of the replica and operator around the read. */
  evidence?: Record<string, unknown>;
}

export interface Regression {
  read: ReadRecord;
  previous: ReadRecord;
  /** The newest Ready when the older answer's read started. */
  lastReady?: { revision: number; startAfterReadyMs: number };
}

export interface CheckerCounts {
  reads: number;
  ok: number;
  transportErrors: number;
  non200: Record<string, number>;
  cache: Record<string, number>;
  corrupt: number;
  wrongReplica: number;
  violations: number;
  /** 200 reads that started after some T_i (the ones the rule applies to). */
  checkedAfterReady: number;
  /** Of those, reads that started before the driver's poll saw the Ready (unchecked before T_i was back-dated). */
  checkedBeforeSeen: number;
  /** Non-200 answers and transport errors of reads that started after some T_i (and not while absent). */
  errorsAfterReady: number;
  errorsAfterReadyByReplica: Record<string, number>;
  /** Times a replica served an older revision of a file than it had served before (to a read that ended before this one started). */
  regressions: number;
  regressionsByReplica: Record<string, number>;
}

const RECENT = 200;
const KEEP_VIOLATIONS = 50;
const KEEP_SAMPLES = 20;

export class ConsistencyChecker {
  /** Ready times in publish order: readyTimes[k] = { revision, at, ... }, both non-decreasing. */
  private readonly readyTimes: ReadyMark[] = [];
  readonly counts: CheckerCounts = {
    reads: 0,
    ok: 0,
    transportErrors: 0,
    non200: {},
    cache: {},
    corrupt: 0,
    wrongReplica: 0,
    violations: 0,
    checkedAfterReady: 0,
    checkedBeforeSeen: 0,
    errorsAfterReady: 0,
    errorsAfterReadyByReplica: {},
    regressions: 0,
    regressionsByReplica: {},
  };
  readonly violations: Violation[] = [];
  readonly corruptReads: ReadRecord[] = [];
  readonly errorSamples: ReadRecord[] = [];
  readonly errorAfterReadySamples: Array<{ read: ReadRecord; readyRevision: number; startAfterReadyMs: number }> = [];
  readonly regressionSamples: Regression[] = [];
  private readonly recent = new Map<string, ReadRecord[]>();
  /** Per replica and file, the read of the newest revision so far. */
  private readonly lastRevision = new Map<string, ReadRecord & { revision: number }>();
  private readonly perReplica = new Map<string, { reads: number; ok: number; hits: number; errors: number }>();
  /** Reads not judged yet (a mark earlier than their start may still come), with the replica's reads before them. */
  private pending: Array<{ read: ReadRecord; before: ReadRecord[] }> = [];
  /** No mark will come with a time earlier than this. */
  private settledUntil = -Infinity;

  /**
   * @param onViolation told of each violation (at most 50), e.g. to snapshot logs;
   * @param onJudged told of every read a Ready applied to, with that Ready (scenarios count
   *   what a cut-off replica answered after the Ready that did not wait for it).
   */
  constructor(
    private readonly onViolation?: (v: Violation) => void,
    private readonly onJudged?: (read: ReadRecord, required: ReadyMark) => void,
  ) {}

  /**
   * Records T_i (`at`, when Ready was decided); with `realm`, reads from then on must also be
   * served by that realm. `seenAt`: when the driver saw it (for `checkedBeforeSeen`).
   */
  markReady(revision: number, at: number, options: { realm?: string; seenAt?: number } = {}): void {
    const last = this.readyTimes.at(-1);
    if (last && (revision <= last.revision || at < last.at)) throw new Error(`Ready for revision ${revision} at ${at} after revision ${last.revision} at ${last.at}: revisions and times must increase`);
    if (at < this.settledUntil) throw new Error(`Ready for revision ${revision} at ${at} is earlier than ${this.settledUntil}, when the checker was told no Ready would come before`);
    this.readyTimes.push({ revision, at, ...(options.realm ? { realm: options.realm } : {}), ...(options.seenAt !== undefined ? { seenAt: options.seenAt } : {}) });
    this.settle(at);
  }

  /** From `at` on, nothing is required (the realm is being removed) until the next Ready. */
  markAbsent(at: number): void {
    const last = this.readyTimes.at(-1);
    if (last && at < last.at) throw new Error(`absent at ${at} before the last Ready at ${last.at}`);
    this.readyTimes.push({ revision: last?.revision ?? -1, at, absent: true });
    this.settle(at);
  }

  /** No mark will come earlier than `until`: judges every read that started by then. */
  settle(until: number): void {
    this.settledUntil = Math.max(this.settledUntil, until);
    if (this.pending.length === 0) return;
    const keep: typeof this.pending = [];
    for (const entry of this.pending) {
      if (entry.read.start <= this.settledUntil) this.judge(entry.read, entry.before);
      else keep.push(entry);
    }
    this.pending = keep;
  }

  /** Judges every read still pending (call when reading has stopped). */
  finish(): void {
    this.settle(Infinity);
  }

  /** The newest mark whose time is earlier than `start`, or undefined. */
  requiredAt(start: number): ReadyMark | undefined {
    let lo = 0;
    let hi = this.readyTimes.length - 1;
    let found: ReadyMark | undefined;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.readyTimes[mid]!.at < start) {
        found = this.readyTimes[mid];
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  record(read: ReadRecord): void {
    const c = this.counts;
    c.reads += 1;
    const replica = this.perReplica.get(read.replica) ?? { reads: 0, ok: 0, hits: 0, errors: 0 };
    this.perReplica.set(read.replica, replica);
    replica.reads += 1;
    let recent = this.recent.get(read.replica);
    if (!recent) this.recent.set(read.replica, (recent = []));
    const before = recent.slice(-20);
    recent.push(read);
    if (recent.length > RECENT * 2) recent.splice(0, recent.length - RECENT);

    if (read.status === undefined) {
      c.transportErrors += 1;
      replica.errors += 1;
      if (this.errorSamples.length < 10) this.errorSamples.push(read);
    } else {
      if (read.servedBy !== undefined && read.servedBy !== read.replica) c.wrongReplica += 1;
      if (read.status !== 200) {
        c.non200[read.status] = (c.non200[read.status] ?? 0) + 1;
        replica.errors += 1;
        if (this.errorSamples.length < 10) this.errorSamples.push(read);
      } else {
        if (read.cache) c.cache[read.cache] = (c.cache[read.cache] ?? 0) + 1;
        if (read.cache === 'hit') replica.hits += 1;
        if (read.corrupt !== undefined || read.revision === undefined) {
          c.corrupt += 1;
          if (this.corruptReads.length < KEEP_SAMPLES) this.corruptReads.push(read);
        } else {
          c.ok += 1;
          replica.ok += 1;
          this.checkRegression(read as ReadRecord & { revision: number });
        }
      }
    }
    if (read.start <= this.settledUntil) this.judge(read, before);
    else this.pending.push({ read, before });
  }

  /**
   * Per replica and file: a read that started after a read of a newer revision had ended. Reads
   * that overlap in time may return either (probe readers read the same files concurrently).
   */
  private checkRegression(read: ReadRecord & { revision: number }): void {
    const key = `${read.replica}\u0000${read.file}`;
    const previous = this.lastRevision.get(key);
    if (previous === undefined || read.revision >= previous.revision) {
      this.lastRevision.set(key, read);
      return;
    }
    if (read.start <= previous.end) return;
    this.counts.regressions += 1;
    this.counts.regressionsByReplica[read.replica] = (this.counts.regressionsByReplica[read.replica] ?? 0) + 1;
    if (this.regressionSamples.length < KEEP_SAMPLES) {
      const ready = this.requiredAt(read.start);
      this.regressionSamples.push({ read, previous, ...(ready ? { lastReady: { revision: ready.revision, startAfterReadyMs: read.start - ready.at } } : {}) });
    }
  }

  /** The rules that depend on the Ready marks (all known for this read's start). */
  private judge(read: ReadRecord, before: ReadRecord[]): void {
    const c = this.counts;
    const required = this.requiredAt(read.start);
    if (!required || required.absent) return;
    this.onJudged?.(read, required);
    if (read.status !== 200) {
      c.errorsAfterReady += 1;
      c.errorsAfterReadyByReplica[read.replica] = (c.errorsAfterReadyByReplica[read.replica] ?? 0) + 1;
      if (this.errorAfterReadySamples.length < KEEP_SAMPLES) this.errorAfterReadySamples.push({ read, readyRevision: required.revision, startAfterReadyMs: read.start - required.at });
      return;
    }
    if (read.corrupt !== undefined || read.revision === undefined) return;
    c.checkedAfterReady += 1;
    if (required.seenAt !== undefined && read.start <= required.seenAt) c.checkedBeforeSeen += 1;
    const rightRealm = required.realm === undefined || read.realm === required.realm;
    if (rightRealm && read.revision >= required.revision) return;
    c.violations += 1;
    const violation: Violation = {
      read,
      requiredRevision: required.revision,
      ...(required.realm ? { requiredRealm: required.realm } : {}),
      readyAt: required.at,
      startAfterReadyMs: read.start - required.at,
      endAfterReadyMs: read.end - required.at,
      recentReads: before,
    };
    if (this.violations.length < KEEP_VIOLATIONS) {
      this.violations.push(violation);
      this.onViolation?.(violation);
    }
  }

  replicaCounts(): Record<string, { reads: number; ok: number; hits: number; errors: number }> {
    return Object.fromEntries(this.perReplica);
  }

  readyCount(): number {
    return this.readyTimes.filter((mark) => !mark.absent).length;
  }

  /** Non-200 answers and transport errors after a Ready from replicas outside `allowed`. */
  errorsAfterReadyExcept(allowed: Iterable<string>): Record<string, number> {
    const skip = new Set(allowed);
    return Object.fromEntries(Object.entries(this.counts.errorsAfterReadyByReplica).filter(([replica]) => !skip.has(replica)));
  }
}

export interface ReadyMark {
  revision: number;
  at: number;
  /** The realm that must serve reads from then on. */
  realm?: string;
  /** When the driver saw the Ready (≥ at). */
  seenAt?: number;
  /** Nothing is required from `at` on. */
  absent?: true;
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}
