/**
 * The consistency checker: records what every read returned and when it started, and the time
 * T_i at which the driver saw the PublishedRealm `Ready` for revision i.
 *
 * Violation: a read that STARTED after T_i and returned 200 with content of a revision < i, or
 * (when the Ready names the realm that must serve the path, as for a realm nested inside another
 * realm's URL) content served by another realm (`x-realm-url`). After `markAbsent` (the nested
 * realm is being removed) nothing is required until the next Ready.
 * Reads are checked as they complete (the driver records T_i synchronously when it sees Ready,
 * so any read starting later than T_i finds it recorded). Non-200 answers and connection errors
 * are expected during faults and only counted; a 200 whose body is not a complete file of some
 * revision is counted as `corrupt` (the atomic swap promises there are none).
 */

/** Wall-clock milliseconds with sub-millisecond precision, comparable across the harness. */
export const now = (): number => performance.timeOrigin + performance.now();

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
  /** Times a replica served an older revision than it had served before (allowed: rollbacks of uncommitted publishes). */
  regressions: number;
}

const RECENT = 200;
const KEEP_VIOLATIONS = 50;
const KEEP_CORRUPT = 20;

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
    regressions: 0,
  };
  readonly violations: Violation[] = [];
  readonly corruptReads: ReadRecord[] = [];
  readonly errorSamples: ReadRecord[] = [];
  private readonly recent = new Map<string, ReadRecord[]>();
  private readonly lastRevision = new Map<string, ReadRecord & { revision: number }>();
  /** Reads that returned an older revision than the same replica had returned for the file before (not violations: none was Ready). */
  readonly regressionSamples: Array<{ read: ReadRecord; previous: ReadRecord; lastReady?: { revision: number; startAfterReadyMs: number } }> = [];
  private readonly perReplica = new Map<string, { reads: number; ok: number; hits: number; errors: number }>();

  constructor(private readonly onViolation?: (v: Violation) => void) {}

  /** Records T_i; with `realm`, reads from then on must also be served by that realm. */
  markReady(revision: number, at: number, realm?: string): void {
    const last = this.readyTimes.at(-1);
    if (last && (revision <= last.revision || at < last.at)) throw new Error(`Ready for revision ${revision} at ${at} after revision ${last.revision} at ${last.at}: revisions and times must increase`);
    this.readyTimes.push({ revision, at, ...(realm ? { realm } : {}) });
  }

  /** From `at` on, nothing is required (the realm is being removed) until the next Ready. */
  markAbsent(at: number): void {
    const last = this.readyTimes.at(-1);
    if (last && at < last.at) throw new Error(`absent at ${at} before the last Ready at ${last.at}`);
    this.readyTimes.push({ revision: last?.revision ?? -1, at, absent: true });
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
      return;
    }
    if (read.servedBy !== undefined && read.servedBy !== read.replica) c.wrongReplica += 1;
    if (read.status !== 200) {
      c.non200[read.status] = (c.non200[read.status] ?? 0) + 1;
      replica.errors += 1;
      if (this.errorSamples.length < 10) this.errorSamples.push(read);
      return;
    }
    if (read.cache) c.cache[read.cache] = (c.cache[read.cache] ?? 0) + 1;
    if (read.cache === 'hit') replica.hits += 1;
    if (read.corrupt !== undefined || read.revision === undefined) {
      c.corrupt += 1;
      if (this.corruptReads.length < KEEP_CORRUPT) this.corruptReads.push(read);
      return;
    }
    c.ok += 1;
    replica.ok += 1;
    const key = `${read.replica}\u0000${read.file}`;
    const previous = this.lastRevision.get(key);
    if (previous !== undefined && read.revision < previous.revision) {
      c.regressions += 1;
      if (this.regressionSamples.length < 10) {
        const ready = this.requiredAt(read.start);
        this.regressionSamples.push({ read, previous, lastReady: ready ? { revision: ready.revision, startAfterReadyMs: read.start - ready.at } : undefined });
      }
    }
    this.lastRevision.set(key, read as ReadRecord & { revision: number });

    const required = this.requiredAt(read.start);
    if (!required || required.absent) return;
    c.checkedAfterReady += 1;
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
}

export interface ReadyMark {
  revision: number;
  at: number;
  /** The realm that must serve reads from then on. */
  realm?: string;
  /** Nothing is required from `at` on. */
  absent?: true;
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}
