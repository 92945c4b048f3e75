import { formatRealmEpochHint, parseRealmEpochHint } from '../../src/wire/epoch-hint.js';

describe('epoch hint payload', () => {
  test('round-trips', () => {
    const hint = { epoch: 4_503_599_627_370_495, realmURL: 'https://realms.example.com/u/pub/' };
    expect(parseRealmEpochHint(formatRealmEpochHint(hint))).toEqual(hint);
  });
  test.each(['', '0 http://a/', '-1 http://a/', '12', '12 ', ' 12 http://a/', '12 http://a/ extra', '1e3 http://a/', '99999999999999999999 http://a/'])(
    'refuses %j',
    (payload) => expect(parseRealmEpochHint(payload)).toBeUndefined(),
  );
});
