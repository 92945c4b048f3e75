import { backoffDelay } from '../../src/listener/backoff.js';

describe('backoffDelay', () => {
  const policy = { initialMs: 100, maxMs: 5_000 };
  test('grows exponentially up to the cap (upper end of the jitter)', () => {
    const top = () => 0.999999;
    expect(backoffDelay(0, policy, top)).toBe(99);
    expect(backoffDelay(3, policy, top)).toBe(799);
    expect(backoffDelay(10, policy, top)).toBe(4999);
    expect(backoffDelay(1000, policy, top)).toBe(4999);
  });
  test('full jitter, but never below half the initial delay', () => {
    expect(backoffDelay(5, policy, () => 0)).toBe(50);
    const samples = Array.from({ length: 200 }, () => backoffDelay(6, policy));
    expect(Math.min(...samples)).toBeGreaterThanOrEqual(50);
    expect(Math.max(...samples)).toBeLessThanOrEqual(6400);
    expect(new Set(samples).size).toBeGreaterThan(50);
  });
});
