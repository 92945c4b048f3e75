import { advisoryLockKey } from '../../src/wire/lock-key.js';

describe('advisoryLockKey', () => {
  // Vectors computed independently with Python:
  //   int.from_bytes(hashlib.sha256(url.encode()).digest()[:8], 'big', signed=True)
  test.each([
    ['http://localhost:4201/user/realm/', '7876873406826934149'],
    ['https://realms.example.com/a/', '-2314120539095631112'],
  ])('%s → %s', (url, expected) => {
    expect(advisoryLockKey(url)).toBe(expected);
  });

  test('the exact string matters (no normalization)', () => {
    expect(advisoryLockKey('http://h/a/')).not.toBe(advisoryLockKey('http://h/a'));
  });
});
