/**
 * The staging token in a staging directory's name: what the sweep of abandoned staging tries the
 * lock of. Copies under a shared lease (`stage-<token>-<n>`) and the older one-copy form
 * (`stage-<token>`) both name their owner's token; any other name is never taken for a copy.
 */
import { stagingTokenOf } from '../../src/dataplane/staging-guard.js';

describe('stagingTokenOf', () => {
  test('a copy under a lease and the one-copy form name the token', () => {
    expect(stagingTokenOf('stage-123-4')).toBe(123);
    expect(stagingTokenOf('stage-123')).toBe(123);
    expect(stagingTokenOf('stage--5-1')).toBe(-5);
    expect(stagingTokenOf(`stage-${2 ** 31 - 1}-${2 ** 31 - 1}`)).toBe(2 ** 31 - 1);
  });

  test('other names, and tokens outside the int key space, are not copies', () => {
    for (const name of ['stage-', 'stage-1-', 'stage-1-2-3', 'stage-1e3', 'stage-0x10', 'stage- 1', 'stage-1.5', 'trash-1', 'crashed-1', 'stage-abc', `stage-${2 ** 31}`, 'stage-99999999999']) {
      expect(stagingTokenOf(name)).toBeUndefined();
    }
  });
});
