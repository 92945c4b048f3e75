/**
 * The generated Realm CRD in the run's real kube-apiserver: it is accepted (CEL cost included),
 * and admission refuses what the controller would refuse, naming the field.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import { GROUP, REALM_PLURAL } from '../../src/api/v1alpha1/realm-types.js';
import { installCRD, must } from '../support/e2e.js';
import { kubectl } from '../support/kube.js';

const namespace = `realm-crd-${randomBytes(3).toString('hex')}`;
const REALM_CRD_FILE = path.resolve(import.meta.dirname, '../../crds', `${GROUP}_${REALM_PLURAL}.yaml`);

function realm(name: string, spec: Record<string, unknown>): string {
  return JSON.stringify({ apiVersion: `${GROUP}/v1alpha1`, kind: 'Realm', metadata: { name, namespace }, spec });
}

beforeAll(async () => {
  await must(['apply', '--server-side', '-f', REALM_CRD_FILE]);
  await must(['wait', '--for=condition=Established', `crd/${REALM_PLURAL}.${GROUP}`, '--timeout=30s']);
  await installCRD();
  await must(['create', 'namespace', namespace]);
}, 60_000);

afterAll(async () => {
  await kubectl(['delete', 'namespace', namespace, '--wait=false']);
});

describe('Realm admission', () => {
  test('a valid Realm is admitted, with the defaults applied', async () => {
    await must(['apply', '-f', '-'], realm('ok', { owner: '@alice:boxel.ai', endpoint: 'notes' }));
    const object = JSON.parse(await must(['get', `${REALM_PLURAL}.${GROUP}`, 'ok', '-n', namespace, '-o', 'json']));
    expect(object.spec).toEqual({ owner: '@alice:boxel.ai', endpoint: 'notes', publishable: true, adopt: false });
  });

  test('an endpoint outside [a-z0-9-] is refused naming spec.endpoint and the rule', async () => {
    const result = await kubectl(['apply', '-f', '-'], { input: realm('bad-endpoint', { owner: '@alice:boxel.ai', endpoint: 'My_Realm' }) });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('spec.endpoint');
    expect(result.stderr).toContain('endpoint must be 1-63 characters of a-z, 0-9 and "-"');
  });

  test('an owner that is not a Matrix user id is refused naming spec.owner', async () => {
    const result = await kubectl(['apply', '-f', '-'], { input: realm('bad-owner', { owner: 'alice', endpoint: 'notes' }) });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('spec.owner');
    expect(result.stderr).toContain('owner must be a Matrix user id');
  });

  test('owner, endpoint and serverURL cannot change', async () => {
    await must(['apply', '-f', '-'], realm('fixed', { owner: '@alice:boxel.ai', endpoint: 'notes', serverURL: 'http://localhost:4201/' }));
    const endpoint = await kubectl(['apply', '-f', '-'], { input: realm('fixed', { owner: '@alice:boxel.ai', endpoint: 'other', serverURL: 'http://localhost:4201/' }) });
    expect(endpoint.code).not.toBe(0);
    expect(endpoint.stderr).toContain('endpoint is immutable');
    const owner = await kubectl(['apply', '-f', '-'], { input: realm('fixed', { owner: '@bob:boxel.ai', endpoint: 'notes', serverURL: 'http://localhost:4201/' }) });
    expect(owner.stderr).toContain('owner is immutable');
    const server = await kubectl(['apply', '-f', '-'], { input: realm('fixed', { owner: '@alice:boxel.ai', endpoint: 'notes', serverURL: 'http://localhost:4202/' }) });
    expect(server.stderr).toContain('serverURL is immutable');
    const removed = await kubectl(['apply', '-f', '-'], { input: realm('fixed', { owner: '@alice:boxel.ai', endpoint: 'notes' }) });
    expect(removed.stderr).toContain('serverURL is immutable');
    // The fields that are not part of the URL may change.
    await must(['apply', '-f', '-'], realm('fixed', { owner: '@alice:boxel.ai', endpoint: 'notes', serverURL: 'http://localhost:4201/', deletionPolicy: 'Retain', name: 'Notes' }));
  });
});

describe('PublishedRealm sourceRealmRef admission', () => {
  const published = (name: string, spec: Record<string, unknown>) =>
    JSON.stringify({ apiVersion: `${GROUP}/v1alpha1`, kind: 'PublishedRealm', metadata: { name, namespace }, spec: { publishedRealmURL: 'http://pub.localhost/x/', ...spec } });

  test('a Realm reference instead of a URL is admitted', async () => {
    await must(['apply', '-f', '-'], published('by-ref', { sourceRealmRef: { name: 'notes' } }));
  });

  test('both or neither of sourceRealmURL and sourceRealmRef are refused with one message', async () => {
    for (const spec of [{}, { sourceRealmURL: 'http://localhost:4201/alice/notes/', sourceRealmRef: { name: 'notes' } }]) {
      const result = await kubectl(['apply', '-f', '-'], { input: published('both-or-neither', spec) });
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain('set exactly one of sourceRealmURL (a URL) and sourceRealmRef (a Realm in this namespace)');
    }
  });

  test('the shipped sample (a Realm and a PublishedRealm by reference) is valid', async () => {
    const sample = path.resolve(import.meta.dirname, '../../deploy/samples/realm.yaml');
    await must(['apply', '--dry-run=server', '-n', 'default', '-f', sample]);
  });
});
