/**
 * `kubectl explain` as users read it, with the real kubectl against the real kube-apiserver: the
 * PublishedRealm CRD's descriptions carry defaults and ranges (kubectl prints neither keyword), and
 * `revision` says it is an integer or a string. kubectl 1.37's explain names the type of a field
 * without `type` `<Object>`, and a structural schema forbids `type` on an int-or-string field, so
 * the description and the published OpenAPI's `x-kubernetes-int-or-string` carry it.
 */
import { parse } from 'yaml';
import { publishedRealmCRDYAML } from '../../src/api/v1alpha1/crd.js';
import { installCRD, must } from '../support/e2e.js';
import { kubectl } from '../support/kube.js';
import { eventually } from '../support/realms.js';

/** `kubectl explain <path>` once the API server publishes the CRD's OpenAPI (it lags behind Established). */
async function explain(path: string): Promise<string> {
  let out = '';
  await eventually(async () => {
    const result = await kubectl(['explain', path]);
    out = result.stdout;
    return result.code === 0;
  }, 60_000, () => `kubectl explain ${path} to answer`);
  return out;
}

/** The DESCRIPTION block of an explain output, unwrapped into one line. */
function description(explained: string): string {
  const block = /DESCRIPTION:\n([\s\S]*?)(\n\S|$)/.exec(explained)?.[1] ?? '';
  return block.split('\n').map((l) => l.trim()).filter(Boolean).join(' ');
}

beforeAll(async () => {
  await installCRD();
});

test('the reindex fields show their defaults and ranges', async () => {
  expect(description(await explain('publishedrealm.spec.reindex.priority'))).toMatch(/Default: 10\. Range: 0 to 1000\.$/);
  expect(description(await explain('publishedrealm.spec.reindex.timeoutSeconds'))).toMatch(/Default: 3600\. Range: 1 to 86400\.$/);
  expect(description(await explain('publishedrealm.spec.reindex.enabled'))).toMatch(/Default: true\.$/);
  expect(description(await explain('publishedrealm.spec.suspend'))).toMatch(/Default: false\.$/);
});

test('the URL fields show their length limit', async () => {
  expect(description(await explain('publishedrealm.spec.publishedRealmURL'))).toMatch(/1 to 2048 characters\.$/);
  expect(description(await explain('publishedrealm.spec.sourceRealmURL'))).toMatch(/1 to 2048 characters\.$/);
});

test('revision reads as an integer or a string, and the published OpenAPI marks it int-or-string', async () => {
  expect(description(await explain('publishedrealm.spec.revision'))).toMatch(/^Integer or string \(int-or-string; a string is at most 253 characters\)\./);
  const openapi = JSON.parse(await must(['get', '--raw', '/openapi/v3/apis/realm-operator.dev/v1alpha1']));
  const spec = openapi.components.schemas['dev.realm-operator.v1alpha1.PublishedRealm'].properties.spec;
  expect(spec.properties.revision['x-kubernetes-int-or-string']).toBe(true);
  expect(spec.properties.revision.type).toBeUndefined();
});

test('the spec listing gives every field a description', async () => {
  const fields = (await explain('publishedrealm.spec')).split('FIELDS:')[1]!;
  const entries = [...fields.matchAll(/^ {2}(\w+)\t<[^>]+>.*\n((?: {4}.*\n)+)/gm)].map((m) => m[1]);
  const spec = parse(publishedRealmCRDYAML()).spec.versions[0].schema.openAPIV3Schema.properties.spec;
  expect(entries.sort()).toEqual(Object.keys(spec.properties).sort());
  expect(entries).toEqual(expect.arrayContaining(['publishedRealmURL', 'reindex', 'revision', 'suspend']));
});
