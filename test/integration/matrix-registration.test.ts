/**
 * The realm user's registration against a real Synapse (matrix-synapse from PyPI, SQLite,
 * loopback; test/support/synapse.ts): the user id Boxel gets, a login with the password derived
 * from the realm secret seed, idempotence, and refusals that name the setting to fix.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { publishedRealmUsername } from '../../src/dataplane/realm-identity.js';
import { MatrixRegistrationError, realmUserPassword, registerRealmUser } from '../../src/matrix/realm-user.js';
import { startSynapse, synapseUsers, type SynapseServer } from '../support/synapse.js';

let synapse: SynapseServer;
const seed = 'a realm secret seed';

beforeAll(async () => {
  synapse = await startSynapse();
}, 300_000);

afterAll(async () => {
  await synapse?.stop();
});

async function login(username: string, password: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${synapse.url}_matrix/client/v3/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ type: 'm.login.password', identifier: { type: 'm.id.user', user: username }, password }),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

describe('registerRealmUser (real Synapse)', () => {
  test('registers realm/_published_<uuid> as @realm/_published_<uuid>:localhost; the derived password logs in', async () => {
    const username = publishedRealmUsername(randomUUID());
    const user = await registerRealmUser({ matrixURL: synapse.url, registrationSharedSecret: synapse.registrationSharedSecret, realmSecretSeed: seed, username });
    expect(user).toEqual({ userId: `@${username}:localhost`, created: true });
    const loggedIn = await login(username, realmUserPassword(username, seed));
    expect(loggedIn.status).toBe(200);
    expect(loggedIn.body.user_id).toBe(`@${username}:localhost`);
    expect((await login(username, realmUserPassword(username, 'another seed'))).status).toBe(403);
    // Boxel sets the display name to the username.
    const profile = (await (await fetch(`${synapse.url}_matrix/client/v3/profile/${encodeURIComponent(user.userId)}`, { headers: { authorization: `Bearer ${loggedIn.body.access_token}` } })).json()) as { displayname?: string };
    expect(profile.displayname).toBe(username);
  });

  test('registering again is fine (the user exists, its password checked); Synapse still has one such user', async () => {
    const username = publishedRealmUsername(randomUUID());
    const settings = { matrixURL: synapse.url.replace(/\/$/, ''), registrationSharedSecret: synapse.registrationSharedSecret, realmSecretSeed: seed, username };
    expect((await registerRealmUser(settings)).created).toBe(true);
    expect(await registerRealmUser(settings)).toEqual({ userId: `@${username}:localhost`, created: false });
    expect((await synapseUsers(synapse)).filter((u) => u === `@${username}:localhost`)).toHaveLength(1);
  });

  test('an existing user whose password another seed derived: refused, naming the seed setting', async () => {
    const username = publishedRealmUsername(randomUUID());
    await registerRealmUser({ matrixURL: synapse.url, registrationSharedSecret: synapse.registrationSharedSecret, realmSecretSeed: seed, username });
    const error = await registerRealmUser({ matrixURL: synapse.url, registrationSharedSecret: synapse.registrationSharedSecret, realmSecretSeed: 'not the seed', username }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MatrixRegistrationError);
    expect(error).toMatchObject({ setting: 'realmSecretSeed' });
    expect((error as Error).message).toContain('REALM_SECRET_SEED_FILE');
  });

  test('a wrong shared secret: refused, naming the registration secret setting; nobody registered', async () => {
    const username = publishedRealmUsername(randomUUID());
    const error = await registerRealmUser({ matrixURL: synapse.url, registrationSharedSecret: 'not the secret', realmSecretSeed: seed, username }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MatrixRegistrationError);
    expect(error).toMatchObject({ setting: 'registrationSecret' });
    expect((error as Error).message).toMatch(/refused to register realm\/_published_.*MATRIX_REGISTRATION_SHARED_SECRET_FILE/);
    expect(await synapseUsers(synapse)).not.toContain(`@${username}:localhost`);
  });

  test('no homeserver there, or not a Synapse: refused, naming --matrix-url / MATRIX_URL', async () => {
    const closed = await registerRealmUser({ matrixURL: 'http://127.0.0.1:9/', registrationSharedSecret: 's', realmSecretSeed: seed, username: 'realm/_published_x' }).catch((e: unknown) => e);
    expect(closed).toMatchObject({ setting: 'url' });
    expect((closed as Error).message).toContain('cannot reach the Matrix homeserver at http://127.0.0.1:9');
    const notSynapse = await registerRealmUser({ matrixURL: `${synapse.url}nothing/here/`, registrationSharedSecret: 's', realmSecretSeed: seed, username: 'realm/_published_x' }).catch((e: unknown) => e);
    expect(notSynapse).toMatchObject({ setting: 'url' });
    expect((notSynapse as Error).message).toContain('offers no shared-secret registration');
  });
});
