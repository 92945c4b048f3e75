import { afterEach, describe, expect, jest, test } from '@jest/globals';
import { WorkQueue } from '../../src/runtime/work-queue.js';

/** Lets pending promise callbacks run. */
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Resolves with the promise's value, or 'pending' if it has not settled after a flush. */
async function peek<T>(promise: Promise<T>): Promise<T | 'pending'> {
  let result: T | 'pending' = 'pending';
  void promise.then((value) => (result = value));
  await flush();
  return result;
}

afterEach(() => {
  jest.useRealTimers();
});

describe('WorkQueue', () => {
  test('a key added while queued is queued once, and keys come out in order', async () => {
    const queue = new WorkQueue();
    queue.add('a');
    queue.add('b');
    queue.add('a');
    expect(queue.length).toBe(2);
    expect(await queue.get()).toBe('a');
    expect(await queue.get()).toBe('b');
    expect(queue.length).toBe(0);
  });

  test('a key being processed is not handed to a second worker; re-added, it comes back once after done()', async () => {
    const queue = new WorkQueue();
    queue.add('a');
    const first = await queue.get();
    expect(first).toBe('a');
    queue.add('a');
    queue.add('a');
    queue.add('b');
    // A second worker gets b, and a third gets nothing while a is still being processed.
    expect(await queue.get()).toBe('b');
    const third = queue.get();
    expect(await peek(third)).toBe('pending');
    expect(queue.length).toBe(0);
    queue.done('a');
    expect(await peek(third)).toBe('a');
    expect(queue.length).toBe(0);
  });

  test('done() for a key that was not re-added does not queue it again', async () => {
    const queue = new WorkQueue();
    queue.add('a');
    await queue.get();
    queue.done('a');
    expect(queue.length).toBe(0);
    expect(queue.has('a')).toBe(false);
  });

  test('a waiting worker is woken by add()', async () => {
    const queue = new WorkQueue();
    const waiting = queue.get();
    expect(await peek(waiting)).toBe('pending');
    queue.add('x');
    expect(await waiting).toBe('x');
  });

  test('addRateLimited backs off per key, doubling up to the cap, and forget() starts over', async () => {
    jest.useFakeTimers();
    // random ≈ 1 makes the jittered delay its ceiling: floor(0.999 · min(80, 10·2^n)).
    const queue = new WorkQueue({ backoff: { initialMs: 10, maxMs: 80 }, random: () => 0.999 });
    const expectReadyAfter = (ms: number) => {
      jest.advanceTimersByTime(ms - 1);
      expect(queue.length).toBe(0);
      jest.advanceTimersByTime(1);
      expect(queue.length).toBe(1);
    };
    const cycle = async (delay: number) => {
      queue.addRateLimited('k');
      expectReadyAfter(delay);
      expect(await queue.get()).toBe('k');
      queue.done('k');
    };
    await cycle(9);
    await cycle(19);
    await cycle(39);
    await cycle(79);
    await cycle(79); // capped
    expect(queue.numRequeues('k')).toBe(5);
    // Another key has its own count.
    queue.addRateLimited('other');
    expectReadyAfter(9);
    queue.forget('k');
    expect(queue.numRequeues('k')).toBe(0);
    await queue.get();
    await cycle(9);
  });

  test('jitter keeps the delay within [initial/2, ceiling]', async () => {
    jest.useFakeTimers();
    const queue = new WorkQueue({ backoff: { initialMs: 100, maxMs: 1000 }, random: () => 0 });
    queue.addRateLimited('k');
    jest.advanceTimersByTime(49);
    expect(queue.length).toBe(0);
    jest.advanceTimersByTime(1);
    expect(queue.length).toBe(1);
  });

  test('addAfter keeps the earliest pending time per key', () => {
    jest.useFakeTimers();
    const queue = new WorkQueue();
    queue.addAfter('k', 100);
    queue.addAfter('k', 50);
    queue.addAfter('k', 200); // later: does not postpone
    expect(queue.delayedCount).toBe(1);
    jest.advanceTimersByTime(49);
    expect(queue.length).toBe(0);
    jest.advanceTimersByTime(1);
    expect(queue.length).toBe(1);
    jest.advanceTimersByTime(500);
    expect(queue.length).toBe(1);
    expect(queue.delayedCount).toBe(0);
  });

  test('addAfter with no delay adds at once, and a delayed key already queued is not queued twice', () => {
    jest.useFakeTimers();
    const queue = new WorkQueue();
    queue.addAfter('k', 0);
    expect(queue.length).toBe(1);
    queue.addAfter('k', 10);
    jest.advanceTimersByTime(10);
    expect(queue.length).toBe(1);
  });

  test('shutDown stops handing out keys, ignores adds, and resolves once in-flight work is done', async () => {
    const queue = new WorkQueue();
    queue.add('a');
    queue.add('b');
    expect(await queue.get()).toBe('a');
    expect(await queue.get()).toBe('b');
    const idle = queue.get(); // a worker waiting for more
    const drained = queue.shutDown();
    expect(await peek(idle)).toBeUndefined();
    expect(await queue.get()).toBeUndefined();
    queue.add('c');
    queue.addAfter('d', 1);
    expect(queue.length).toBe(0);
    expect(queue.delayedCount).toBe(0);
    queue.done('a');
    expect(await peek(drained)).toBe('pending');
    queue.add('b'); // re-added while processing, after shutdown: dropped
    queue.done('b');
    expect(await drained).toBe(true);
    expect(queue.length).toBe(0);
  });

  test('shutDown cancels pending delayed adds', async () => {
    jest.useFakeTimers();
    const queue = new WorkQueue();
    queue.addAfter('k', 10);
    expect(await queue.shutDown()).toBe(true);
    jest.advanceTimersByTime(100);
    expect(queue.length).toBe(0);
  });

  test('shutDown gives up after the drain timeout', async () => {
    const queue = new WorkQueue();
    queue.add('stuck');
    await queue.get();
    const started = performance.now();
    expect(await queue.shutDown(50)).toBe(false);
    expect(performance.now() - started).toBeGreaterThanOrEqual(45);
    expect(queue.processingCount).toBe(1);
  });

  test('reports adds, waits, work time and in-flight work through its observer and gauges', async () => {
    let now = 1_000;
    const seen = { added: 0, retried: 0, waited: [] as number[], worked: [] as number[] };
    const queue = new WorkQueue({
      now: () => now,
      observer: {
        added: () => (seen.added += 1),
        retried: () => (seen.retried += 1),
        started: (ms) => seen.waited.push(ms),
        finished: (ms) => seen.worked.push(ms),
      },
    });
    queue.add('a');
    queue.add('a'); // deduplicated: not an add
    queue.add('b');
    now += 30;
    await queue.get(); // a waited 30 ms
    now += 10;
    await queue.get(); // b waited 40 ms
    now += 5;
    expect(queue.unfinishedWorkSeconds()).toBeCloseTo((15 + 5) / 1000);
    expect(queue.longestRunningProcessorSeconds()).toBeCloseTo(15 / 1000);
    queue.done('a');
    queue.addRateLimited('a');
    expect(seen).toEqual({ added: 2, retried: 1, waited: [30, 40], worked: [15] });
    await queue.shutDown(0);
  });
});
