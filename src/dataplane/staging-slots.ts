/**
 * How many publishes copy files at once, apart from how many reconciles run at once: a reconcile
 * that needs no copy (a resync, a status-only change, an acknowledgement) never waits behind one
 * that does, and a burst of publishes of large realms copies at most `size` at a time (copying is
 * disk and CPU bound: more at once only share the same disk and cores, and hold more staging space).
 */
export class StagingSlots {
  private free: number;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1) throw new Error(`staging slots must be a whole number of at least 1, not ${size}`);
    this.free = size;
  }

  /** Waits for a free slot (first come, first served); resolves to its release. Aborting `signal` gives up waiting, throwing its reason. */
  async acquire(signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted();
    if (this.free > 0) {
      this.free -= 1;
      return this.releaser();
    }
    await new Promise<void>((resolve, reject) => {
      const granted = () => {
        signal?.removeEventListener('abort', abandon);
        resolve();
      };
      const abandon = () => {
        const at = this.waiting.indexOf(granted);
        if (at >= 0) this.waiting.splice(at, 1);
        reject(signal!.reason);
      };
      this.waiting.push(granted);
      signal?.addEventListener('abort', abandon, { once: true });
    });
    return this.releaser();
  }

  /** Slots in use, and publishes waiting for one (for tests and metrics). */
  get usage(): { busy: number; waiting: number } {
    return { busy: this.size - this.free, waiting: this.waiting.length };
  }

  /** A release that hands the slot to the next waiter (the slot stays taken) or frees it; a second call does nothing. */
  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.free += 1;
    };
  }
}
