/**
 * `seed-sample` registers its realm as Boxel's create-realm would, so the shipped sample
 * (deploy/samples: publisher @alice:localhost) passes the operator's authorization rules.
 */
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { seedSampleRealm } from '../../src/cli/seed-sample.js';
import { checkPublishable } from '../../src/dataplane/publish.js';
import { PublishNotAuthorizedError } from '../../src/dataplane/realm-state.js';
import { dataPlane, openDataPlaneFixture, type DataPlaneFixture } from '../support/realms.js';

let fixture: DataPlaneFixture;
beforeAll(async () => {
  fixture = await openDataPlaneFixture();
});
afterAll(async () => fixture?.close());

test('the sample source realm is publishable by its owner (and only by its owner) under the authorization rules', async () => {
  const sourceURL = 'http://localhost:4201/alice/blog/';
  await seedSampleRealm(fixture.db.pool, { realmsRoot: fixture.layout.root, sourceURL, owner: 'alice' });
  await seedSampleRealm(fixture.db.pool, { realmsRoot: fixture.layout.root, sourceURL, owner: 'alice' }); // idempotent
  const { rows } = await fixture.db.pool.query('SELECT username, read, write, realm_owner FROM realm_user_permissions WHERE realm_url = $1', [sourceURL]);
  expect(rows).toEqual([{ username: '@alice:localhost', read: true, write: true, realm_owner: true }]);
  const plane = dataPlane(fixture.db.pool, fixture.layout, { authorization: { publishedRealmDomains: ['localhost:4201'] } });
  const publishedRealmURL = 'http://alice.localhost:4201/blog/';
  await expect(checkPublishable(plane, { sourceRealmURL: sourceURL, publishedRealmURL, publisher: '@alice:localhost' })).resolves.toBeDefined();
  await expect(checkPublishable(plane, { sourceRealmURL: sourceURL, publishedRealmURL, publisher: '@bob:localhost' })).rejects.toBeInstanceOf(PublishNotAuthorizedError);
});
