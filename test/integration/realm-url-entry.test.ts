/**
 * The data plane's own URL check (real PostgreSQL, real files): a realm URL Boxel's wire format
 * cannot carry, or an alias of a canonical one, is refused before anything is written or
 * announced, even when the caller skipped the CRD and zod.
 */
import { publishRealm, unpublishRealm } from '../../src/dataplane/publish.js';
import { REALM_FILE_CHANGES_CHANNEL, REALM_REGISTRY_CHANNEL } from '../../src/wire/channels.js';
import { RealmURLError } from '../../src/wire/realm-url.js';
import { createSourceRealm, openDataPlaneFixture, recordNotifications, type DataPlaneFixture } from '../support/realms.js';

describe('publishRealm and unpublishRealm refuse URLs Boxel cannot carry', () => {
  let fixture: DataPlaneFixture;
  const source = 'http://localhost:4201/alice/site/';

  beforeAll(async () => {
    fixture = await openDataPlaneFixture();
    await createSourceRealm(fixture.db.pool, fixture.layout, source, { 'index.json': '{}' });
  });
  afterAll(() => fixture.close());

  const registryURLs = async () => (await fixture.db.pool.query<{ url: string }>('SELECT url FROM realm_registry ORDER BY url')).rows.map((row) => row.url);

  test.each([
    ['a "/:" in the published URL', { sourceRealmURL: source, publishedRealmURL: 'http://pub.localhost/u/:r/' }, 'publishedRealmURL: contains "/:", where Boxel\'s realm_file_changes parser splits'],
    ['a "/:" in the source URL', { sourceRealmURL: 'http://localhost:4201/alice/:site/', publishedRealmURL: 'http://pub.localhost/site/' }, 'sourceRealmURL: contains "/:"'],
    ['a trailing-dot host', { sourceRealmURL: source, publishedRealmURL: 'http://pub.localhost.:4201/site/' }, 'publishedRealmURL: is not in canonical form; use "http://pub.localhost:4201/site/"'],
    ['a percent-encoded letter', { sourceRealmURL: source, publishedRealmURL: 'http://pub.localhost/%73ite/' }, 'publishedRealmURL: is not in canonical form; use "http://pub.localhost/site/"'],
  ])('publish: %s is refused with why, and nothing is written or announced', async (_name, request, message) => {
    const before = await registryURLs();
    const notifications = await recordNotifications(fixture.db.url, [REALM_FILE_CHANGES_CHANNEL, REALM_REGISTRY_CHANNEL]);
    try {
      const refusal = publishRealm(fixture.plane, request);
      await expect(refusal).rejects.toBeInstanceOf(RealmURLError);
      await expect(refusal).rejects.toThrow(message);
      expect(await registryURLs()).toEqual(before);
      // A NOTIFY sent before the refusal would have arrived by the time this round trip returns.
      await fixture.db.pool.query('SELECT pg_notify($1, $2)', [REALM_REGISTRY_CHANNEL, 'fence']);
      await notifications.waitFor((n) => n.payload === 'fence');
      expect(notifications.received.map((n) => n.payload)).toEqual(['fence']);
    } finally {
      await notifications.close();
    }
  });

  test('unpublish: a "/:" URL is refused with why', async () => {
    const refusal = unpublishRealm(fixture.plane, 'https://h.example/u/:r/');
    await expect(refusal).rejects.toBeInstanceOf(RealmURLError);
    await expect(refusal).rejects.toThrow('so Boxel would read every change to this realm as a path of "https://h.example/u/"');
  });
});
