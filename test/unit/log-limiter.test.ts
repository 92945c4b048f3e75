import { LogLimiter } from '../../src/listener/log-limiter.js';

test('one line per key per interval, then the count of what was suppressed', () => {
  let now = 0;
  const limiter = new LogLimiter(1000, () => now);
  expect(limiter.admit('a')).toEqual({ suppressed: 0 });
  expect(limiter.admit('a')).toBeUndefined();
  expect(limiter.admit('a')).toBeUndefined();
  expect(limiter.admit('b')).toEqual({ suppressed: 0 });
  now = 999;
  expect(limiter.admit('a')).toBeUndefined();
  now = 1000;
  expect(limiter.admit('a')).toEqual({ suppressed: 3 });
  expect(limiter.admit('a')).toBeUndefined();
});

test('remembers a bounded number of keys', () => {
  const limiter = new LogLimiter(1000, () => 0, 2);
  limiter.admit('a');
  limiter.admit('b');
  limiter.admit('c'); // forgets a
  expect(limiter.admit('a')).toEqual({ suppressed: 0 });
  expect(limiter.admit('c')).toBeUndefined();
});
