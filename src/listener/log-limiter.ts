/**
 * Rate limit for repetitive warnings (a sender emitting thousands of bad payloads must not flood
 * the log): at most one line per key per interval, and the next line says how many were
 * suppressed in between. Pure: the clock is injected.
 */
export class LogLimiter {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly intervalMs = 10_000,
    private readonly now: () => number = () => performance.now(),
    /** Keys remembered at most; the oldest are forgotten first. */
    private readonly maxKeys = 1000,
  ) {}

  /** `undefined` when this occurrence is suppressed; otherwise how many were suppressed before it. */
  admit(key: string): { suppressed: number } | undefined {
    const at = this.now();
    const entry = this.last.get(key);
    if (entry && at - entry.at < this.intervalMs) {
      entry.suppressed += 1;
      return undefined;
    }
    this.last.delete(key);
    if (this.last.size >= this.maxKeys) this.last.delete(this.last.keys().next().value!);
    this.last.set(key, { at, suppressed: 0 });
    return { suppressed: entry?.suppressed ?? 0 };
  }
}
