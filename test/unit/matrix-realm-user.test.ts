/**
 * The pure parts of the realm-user registration. Vectors computed independently with Python's
 * hashlib/hmac (python3 -c, shown above each), not with the code under test:
 *   u = 'realm/_published_3f2c1e0a-8b7d-4c6e-9f10-2a3b4c5d6e7f'; seed = "shhh! it's a secret"
 *   hashlib.sha256((u + seed).encode()).hexdigest()
 *   hmac.new(b'shared-secret', b'\0'.join([b'abcdef0123', u.encode(), pw.encode(), b'notadmin']), hashlib.sha1).hexdigest()
 */
import { bareMatrixUsername, realmUserPassword, registrationBody, registrationMac } from '../../src/matrix/realm-user.js';
import { markReady, markRealmUser, markReconciling, realmUserRecorded, transitionEvent } from '../../src/reconciler/published-realm/conditions.js';

const username = 'realm/_published_3f2c1e0a-8b7d-4c6e-9f10-2a3b4c5d6e7f';
const seed = "shhh! it's a secret";
const password = '594098af04caf59f1bdd715222e9dabb03d85b186ff13ebf56b54c8b62e38cf4';

describe('realm user password (Boxel passwordFromSeed)', () => {
  test('hex SHA-256 of the bare username followed by the seed', () => {
    expect(realmUserPassword(username, seed)).toBe(password);
  });

  test('a full user id hashes as its bare username', () => {
    expect(realmUserPassword(`@${username}:localhost`, seed)).toBe(password);
    expect(bareMatrixUsername(`@${username}:boxel.ai`)).toBe(username);
  });

  test('UTF-8, as Boxel hashes strings', () => {
    // hashlib.sha256(('realm/_published_x' + 'séed').encode('utf8')).hexdigest()
    expect(realmUserPassword('realm/_published_x', 'séed')).toBe('329e2bc6cc9a9974bfc6c436067d11d7a4d15e1ba16dcca2b1629406963b73d5');
  });
});

describe('shared-secret registration MAC (Synapse admin register)', () => {
  test('HMAC-SHA1 over nonce, username, password and notadmin, NUL-separated', () => {
    expect(registrationMac({ sharedSecret: 'shared-secret', nonce: 'abcdef0123', username, password })).toBe('8c1b568cfb4377e99fbfee9b6816d0c225b7c8d9');
  });

  test('the admin flag is part of the MAC', () => {
    const input = { sharedSecret: 'shared-secret', nonce: 'abcdef0123', username, password };
    expect(registrationMac({ ...input, admin: true })).not.toBe(registrationMac(input));
  });

  test('the body is what Boxel sends: displayname = username, not admin', () => {
    expect(registrationBody({ nonce: 'n', username, password, mac: 'm' })).toEqual({ nonce: 'n', username, displayname: username, password, mac: 'm', admin: false });
  });
});

describe('the RealmUserRegistered condition records who was registered', () => {
  const now = new Date('2026-01-01T00:00:00Z');
  const user = (name: string) => `realm/_published_${name}`;

  test('True with the Matrix user id in the message: that user is not registered again; another disk id\'s user is', () => {
    const status = markRealmUser({}, 3, { status: 'True', reason: 'RealmUserRegistered', message: `Registered @${user('a')}:localhost on Matrix.` }, now);
    expect(realmUserRecorded(status, user('a'))).toBe(true);
    expect(realmUserRecorded(status, user('b'))).toBe(false);
    // A prefix of another id is not a match (the id ends at the ':' before the server name).
    expect(realmUserRecorded(markRealmUser({}, 3, { status: 'True', reason: 'RealmUserRegistered', message: `Registered @${user('ab')}:localhost.` }, now), user('a'))).toBe(false);
  });

  test('a failure is not a registration; the other conditions are left as they are', () => {
    const ready = markReady({}, 1, 'Published', 'done', now);
    const failed = markRealmUser(ready, 1, { status: 'False', reason: 'RealmUserRegistrationFailed', message: `registering @${user('a')}:localhost failed` }, now);
    expect(realmUserRecorded(failed, user('a'))).toBe(false);
    expect(failed.conditions!.map((c) => [c.type, c.status])).toEqual([
      ['Ready', 'True'],
      ['RealmUserRegistered', 'False'],
    ]);
  });

  test('a registration failure is a Warning transition', () => {
    const before = markReconciling({}, 1, 'AwaitingAcknowledgement', 'waiting', now);
    const after = markReconciling(before, 1, 'RealmUserRegistrationFailed', 'failed', now);
    expect(transitionEvent(before, after)).toEqual({ type: 'Warning', reason: 'RealmUserRegistrationFailed', message: 'failed' });
  });
});
