import { describe, expect, test } from '@jest/globals';
import { StagingSlots } from '../../src/dataplane/staging-slots.js';

describe('StagingSlots (how many publishes copy at once)', () => {
  test('at most `size` held at once; waiters get slots in arrival order as holders release', async () => {
    const slots = new StagingSlots(2);
    const a = await slots.acquire();
    const b = await slots.acquire();
    const order: string[] = [];
    const c = slots.acquire().then((release) => (order.push('c'), release));
    const d = slots.acquire().then((release) => (order.push('d'), release));
    await Promise.resolve();
    expect(slots.usage).toEqual({ busy: 2, waiting: 2 });
    expect(order).toEqual([]);
    a();
    const releaseC = await c;
    expect(order).toEqual(['c']);
    expect(slots.usage).toEqual({ busy: 2, waiting: 1 });
    // A second release of the same slot frees nothing more.
    a();
    expect(slots.usage).toEqual({ busy: 2, waiting: 1 });
    b();
    const releaseD = await d;
    expect(order).toEqual(['c', 'd']);
    releaseC();
    releaseD();
    expect(slots.usage).toEqual({ busy: 0, waiting: 0 });
  });

  test('an aborted wait leaves the queue and takes no slot; an already aborted signal is refused at once', async () => {
    const slots = new StagingSlots(1);
    const held = await slots.acquire();
    const controller = new AbortController();
    const waiting = slots.acquire(controller.signal);
    const next = slots.acquire();
    controller.abort(new Error('leadership lost'));
    await expect(waiting).rejects.toThrow('leadership lost');
    expect(slots.usage).toEqual({ busy: 1, waiting: 1 });
    held();
    (await next)();
    expect(slots.usage).toEqual({ busy: 0, waiting: 0 });
    await expect(slots.acquire(AbortSignal.abort(new Error('gone')))).rejects.toThrow('gone');
    expect(slots.usage).toEqual({ busy: 0, waiting: 0 });
  });

  test('a size that is not a whole number of at least 1 is refused', () => {
    expect(() => new StagingSlots(0)).toThrow('at least 1');
    expect(() => new StagingSlots(1.5)).toThrow('whole number');
  });
});
