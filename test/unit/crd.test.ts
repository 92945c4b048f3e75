import fs from 'node:fs/promises';
import path from 'node:path';
import { parse } from 'yaml';
import { buildPublishedRealmCRD, publishedRealmCRDYAML, toStructuralSchema } from '../../src/api/v1alpha1/crd.js';
import { ASCII_URL_RULE, GROUP, parsePublishedRealmSpec, PLURAL } from '../../src/api/v1alpha1/published-realm-types.js';
import { MAX_REALM_URL_BYTES } from '../../src/wire/realm-url.js';

const crdFile = path.resolve(import.meta.dirname, '../../crds', `${GROUP}_${PLURAL}.yaml`);

describe('the PublishedRealm CRD', () => {
  test('the committed CRD is exactly what the zod schema generates (run `make crds` after changing the schema)', async () => {
    expect(await fs.readFile(crdFile, 'utf8')).toBe(publishedRealmCRDYAML());
  });

  test('every spec and status field has a description (kubectl explain reads well)', () => {
    const crd = buildPublishedRealmCRD() as { spec: { versions: Array<{ schema: { openAPIV3Schema: Record<string, unknown> } }> } };
    const root = crd.spec.versions[0]!.schema.openAPIV3Schema as { properties: Record<string, Record<string, unknown>> };
    const undocumented: string[] = [];
    const walk = (schema: Record<string, unknown>, where: string) => {
      if (!schema.description) undocumented.push(where);
      for (const [name, sub] of Object.entries((schema.properties as Record<string, Record<string, unknown>>) ?? {})) walk(sub, `${where}.${name}`);
      if (schema.items) walk(schema.items as Record<string, unknown>, `${where}[]`);
    };
    walk(root.properties.spec!, 'spec');
    walk(root.properties.status!, 'status');
    expect(undocumented).toEqual([]);
  });

  test('defaults in the CRD are the defaults zod applies', () => {
    const parsed = parsePublishedRealmSpec({ sourceRealmURL: 'http://h/a/', publishedRealmURL: 'http://h/b/', reindex: {} });
    expect(parsed).toEqual({
      ok: true,
      spec: { sourceRealmURL: 'http://h/a/', publishedRealmURL: 'http://h/b/', suspend: false, reindex: { enabled: true, priority: 10, timeoutSeconds: 3600 } },
    });
    const crd = parse(publishedRealmCRDYAML());
    const spec = crd.spec.versions[0].schema.openAPIV3Schema.properties.spec;
    expect(spec.properties.suspend.default).toBe(false);
    expect(spec.properties.reindex.properties.priority.default).toBe(10);
    expect(spec.properties.reindex.properties.timeoutSeconds.default).toBe(3600);
    expect(spec.properties.reindex.properties.enabled.default).toBe(true);
    expect(spec.required).toEqual(['sourceRealmURL', 'publishedRealmURL']);
    expect(spec.properties.publishedRealmURL.maxLength).toBe(2048);
    expect(spec.properties.publishedRealmURL['x-kubernetes-validations']).toContainEqual(expect.objectContaining({ rule: 'self == oldSelf' }));
  });

  test('structural conversion drops what Kubernetes refuses', () => {
    expect(
      toStructuralSchema({
        $schema: 'x',
        type: 'object',
        additionalProperties: false,
        properties: { n: { type: 'integer', minimum: Number.MIN_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER }, v: { anyOf: [{ type: 'string' }, { type: 'integer' }], 'x-kubernetes-int-or-string': true } },
        required: ['n'],
      }),
    ).toEqual({ type: 'object', properties: { n: { type: 'integer', format: 'int64' }, v: { 'x-kubernetes-int-or-string': true } }, required: ['n'] });
  });
});

describe('URL length: what the API server admits, zod accepts', () => {
  const crd = parse(publishedRealmCRDYAML());
  const spec = crd.spec.versions[0].schema.openAPIV3Schema.properties.spec;
  // The CEL pattern, as JavaScript reads it (RE2 and JS agree on this character class).
  const asciiPattern = new RegExp(/^self\.matches\('(.*)'\)$/.exec(ASCII_URL_RULE)![1]!);

  test.each([['sourceRealmURL'], ['publishedRealmURL']])('%s: ASCII only, so maxLength in characters is zod\'s byte limit', (field) => {
    const schema = spec.properties[field];
    expect(schema.maxLength).toBe(MAX_REALM_URL_BYTES);
    expect(schema['x-kubernetes-validations']).toContainEqual(expect.objectContaining({ rule: ASCII_URL_RULE, message: expect.stringContaining(`${field} must be ASCII`) }));
  });

  test('the longest URL the CRD admits (maxLength ASCII characters) is accepted by zod', () => {
    const prefix = 'http://pub.localhost/';
    const longest = `${prefix}${'a'.repeat(MAX_REALM_URL_BYTES - prefix.length - 1)}/`;
    expect(longest.length).toBe(MAX_REALM_URL_BYTES);
    expect(asciiPattern.test(longest)).toBe(true);
    expect(parsePublishedRealmSpec({ sourceRealmURL: 'http://h/a/', publishedRealmURL: longest })).toMatchObject({ ok: true });
  });

  test('a URL of at most maxLength characters but more bytes (the 4,076-byte case) fails the CRD\'s ASCII rule, so admission refuses it', () => {
    const prefix = 'http://h.localhost/';
    const multibyte = `${prefix}${'é'.repeat(MAX_REALM_URL_BYTES - prefix.length - 1)}/`;
    expect(multibyte.length).toBeLessThanOrEqual(MAX_REALM_URL_BYTES);
    expect(Buffer.byteLength(multibyte)).toBe(4_076);
    expect(asciiPattern.test(multibyte)).toBe(false);
    expect(asciiPattern.test('http://pub.localhost/%C3%A9/')).toBe(true);
    expect(asciiPattern.test('http://xn--caf-dma.localhost/a/')).toBe(true);
  });
});

describe('spec validation (the controller\'s second check)', () => {
  test.each([
    [{ publishedRealmURL: 'http://h/b/' }, 'spec.sourceRealmURL: Invalid input: expected string, received undefined'],
    [{ sourceRealmURL: 'http://h/a', publishedRealmURL: 'http://h/b/' }, 'spec.sourceRealmURL: does not end with "/"; use "http://h/a/"'],
    [{ sourceRealmURL: 'http://h/a/', publishedRealmURL: 'http://h/a/' }, 'spec: sourceRealmURL and publishedRealmURL must differ'],
    [{ sourceRealmURL: 'http://h/a/', publishedRealmURL: 'http://h:80/b/' }, 'spec.publishedRealmURL: is not in canonical form; use "http://h/b/" (lower-case scheme and host, no default port, no dot segments)'],
    [{ sourceRealmURL: 'http://h/a/', publishedRealmURL: 'http://h/b/', reindex: { priority: 5000 } }, 'spec.reindex.priority: Too big: expected number to be <=1000'],
    [{ sourceRealmURL: 'http://h/a/', publishedRealmURL: 'http://h/b/', owner: '' }, 'spec.owner: Too small: expected string to have >=1 characters'],
  ])('%j → %s', (spec, problem) => {
    const result = parsePublishedRealmSpec(spec);
    expect(result.ok).toBe(false);
    expect(result.ok ? [] : result.problems).toContain(problem);
  });
});
