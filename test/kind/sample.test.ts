/**
 * The shipped sample in the real cluster: `kubectl apply -f deploy/samples/published-realm.yaml`
 * publishes the source realm deploy/kind's seed Job registered, `kubectl wait --for=condition=Ready`
 * returns, and every realm-server pod serves the published files, acknowledged by all of them.
 */
import path from 'node:path';
import { SAMPLE_FILES } from '../../src/cli/seed-sample.js';
import { closeApi, getFromEveryRealmServer, getOrUndefined, kubectl, must, realmServerPods, waitFor } from '../support/kind.js';
import type { PublishedRealm } from '../../src/api/v1alpha1/published-realm-types.js';

const SAMPLE = path.resolve(import.meta.dirname, '../../deploy/samples/published-realm.yaml');
const OBJECT_PATH = '/apis/realm-operator.dev/v1alpha1/namespaces/default/publishedrealms/blog';

afterAll(async () => {
  await kubectl(['delete', '-f', SAMPLE, '--ignore-not-found', '--timeout=120s']);
  closeApi();
}, 150_000);

test('the sample PublishedRealm becomes Ready, `kubectl wait` returns, and every realm-server pod serves it', async () => {
  await must(['apply', '-f', SAMPLE]);
  const waited = await kubectl(['wait', '--for=condition=Ready', 'publishedrealm/blog', '-n', 'default', '--timeout=180s']);
  expect({ code: waited.code, stderr: waited.stderr }).toEqual({ code: 0, stderr: '' });
  expect(waited.stdout).toMatch(/publishedrealm\.realm-operator\.dev\/blog condition met/);

  const object = (await getOrUndefined<PublishedRealm>(OBJECT_PATH))!;
  const pods = (await realmServerPods()).filter((p) => p.ready && !p.deleting).map((p) => p.name);
  expect(pods.length).toBeGreaterThanOrEqual(3);
  expect(object.status?.publishedRevision).toBe('1');
  // Every realm-server pod runs the listener and acknowledged: no notify-only fallback.
  expect(object.status?.replicas).toMatchObject({ mode: 'Acknowledged', expected: pods.length, acknowledged: pods.length });
  expect(object.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({ status: 'True', reason: 'Published' });

  // `kubectl get` prints the printer columns.
  const table = await must(['get', 'publishedrealms', '-n', 'default', 'blog']);
  expect(table).toMatch(/^NAME\s+SOURCE\s+PUBLISHED\s+READY/m);
  expect(table).toMatch(/blog\s+http:\/\/localhost:4201\/alice\/blog\/\s+http:\/\/alice\.localhost:4201\/blog\/\s+True/);

  for (const file of ['index.json', 'posts/first.json']) {
    const answers = await waitFor(
      async () => {
        const results = await getFromEveryRealmServer('alice.localhost:4201', `/blog/${file}`);
        return results.size >= 3 ? results : undefined;
      },
      30_000,
      () => `answers from 3 realm-server pods for ${file}`,
    );
    for (const [pod, answer] of answers) expect({ pod, file, status: answer.status, body: answer.body }).toEqual({ pod, file, status: 200, body: SAMPLE_FILES[file] });
  }
}, 300_000);
