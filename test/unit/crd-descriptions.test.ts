/** The CRD's descriptions carry each field's default and bounds (kubectl explain prints neither keyword). */
import { parse } from 'yaml';
import { publishedRealmCRDYAML, withDefaultsAndRanges } from '../../src/api/v1alpha1/crd.js';

test('defaults, ranges, lengths and item counts are appended to the description', () => {
  expect(
    withDefaultsAndRanges({
      type: 'object',
      description: 'Root.',
      properties: {
        n: { type: 'integer', description: 'A number.', default: 10, minimum: 0, maximum: 1000 },
        m: { type: 'integer', description: 'At least one.', minimum: 1 },
        s: { type: 'string', description: 'A name.', minLength: 1, maxLength: 253 },
        l: { type: 'array', description: 'Some ids.', maxItems: 20, items: { type: 'string', description: 'An id.', maxLength: 63 } },
        b: { type: 'boolean', description: 'A switch.', default: false },
        plain: { type: 'string', description: 'Nothing to add.' },
      },
    }),
  ).toEqual({
    type: 'object',
    description: 'Root.',
    properties: {
      n: { type: 'integer', description: 'A number. Default: 10. Range: 0 to 1000.', default: 10, minimum: 0, maximum: 1000 },
      m: { type: 'integer', description: 'At least one. Minimum: 1.', minimum: 1 },
      s: { type: 'string', description: 'A name. 1 to 253 characters.', minLength: 1, maxLength: 253 },
      l: { type: 'array', description: 'Some ids. At most 20 items.', maxItems: 20, items: { type: 'string', description: 'An id. At most 63 characters.', maxLength: 63 } },
      b: { type: 'boolean', description: 'A switch. Default: false.', default: false },
      plain: { type: 'string', description: 'Nothing to add.' },
    },
  });
});

test('every defaulted or bounded spec field of the PublishedRealm CRD says so in its description', () => {
  const spec = parse(publishedRealmCRDYAML()).spec.versions[0].schema.openAPIV3Schema.properties.spec;
  const missing: string[] = [];
  const walk = (schema: Record<string, any>, where: string) => {
    if (schema.default !== undefined && !schema.description.includes(`Default: ${JSON.stringify(schema.default)}.`)) missing.push(`${where} default`);
    if (schema.maximum !== undefined && !schema.description.includes(String(schema.maximum))) missing.push(`${where} maximum`);
    if (schema.maxLength !== undefined && !schema.description.includes(`${schema.maxLength} characters`)) missing.push(`${where} maxLength`);
    for (const [name, sub] of Object.entries(schema.properties ?? {})) walk(sub as Record<string, any>, `${where}.${name}`);
  };
  walk(spec, 'spec');
  expect(missing).toEqual([]);
  expect(spec.properties.revision.description).toMatch(/^Integer or string/);
});
