/**
 * When was Ready decided? From the operator's own log lines, not from when a poll saw the status.
 *
 * The reconciler logs `waiting for replica acknowledgements` ({ epoch }) before it waits and
 * `replicas acknowledged` once every live replica acknowledged the epoch (or let its lease lapse),
 * then writes `Ready=True` (src/reconciler/published-realm/reconciler.ts). Both lines carry the
 * object (`publishedRealm: namespace/name`) and pino's `time` (`Date.now()` of the operator, the
 * same machine clock as the readers'). The `replicas acknowledged` line that follows a wait for
 * epoch E is therefore a lower bound of the Ready write for E, and no earlier than the moment the
 * guarantee holds (every live replica dropped its cache). Every operator process of a scenario is
 * searched (a crashed or failed-over leader may have decided it), and the earliest time wins:
 * from that instant on no replica may serve older content, whoever writes the status.
 *
 * A Ready the logs do not explain (no such line for the epoch Ready reports) fails the run rather
 * than falling back to the poll's time: a renamed log line must not silently weaken the checker.
 */

export const WAITING_MESSAGE = 'waiting for replica acknowledgements';
export const ACKNOWLEDGED_MESSAGE = 'replicas acknowledged';

type LogLine = Record<string, unknown>;

/** Every `replicas acknowledged` time per `${publishedRealm}\u0000${epoch}`, scanned incrementally. */
export class ReadyDecisions {
  private readonly times = new Map<string, number[]>();
  /** Per log source: lines scanned so far and the epoch each object last waited for. */
  private readonly sources = new Map<object, { scanned: number; waiting: Map<string, number> }>();

  /** Scans the new lines of `lines` (one operator process's log, in order; `source` identifies it). */
  scan(source: object, lines: readonly LogLine[]): void {
    let state = this.sources.get(source);
    if (!state) this.sources.set(source, (state = { scanned: 0, waiting: new Map() }));
    for (; state.scanned < lines.length; state.scanned++) {
      const line = lines[state.scanned]!;
      const object = line.publishedRealm;
      if (typeof object !== 'string') continue;
      if (line.msg === WAITING_MESSAGE) {
        const epoch = Number(line.epoch);
        if (Number.isFinite(epoch)) state.waiting.set(object, epoch);
      } else if (line.msg === ACKNOWLEDGED_MESSAGE && typeof line.time === 'number') {
        const epoch = state.waiting.get(object);
        if (epoch === undefined) continue;
        const key = `${object}\u0000${epoch}`;
        const known = this.times.get(key);
        if (known) known.push(line.time);
        else this.times.set(key, [line.time]);
      }
    }
  }

  /**
   * The earliest time, not before `since` (the publish's request: an object deleted and created
   * again under its name must not match an older line), at which every live replica had
   * acknowledged `epoch` of `publishedRealm` (namespace/name); undefined if none is logged.
   */
  decidedAt(publishedRealm: string, epoch: number, since = -Infinity): number | undefined {
    const times = (this.times.get(`${publishedRealm}\u0000${epoch}`) ?? []).filter((t) => t >= since);
    return times.length > 0 ? Math.min(...times) : undefined;
  }
}
