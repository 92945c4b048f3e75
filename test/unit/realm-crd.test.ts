import fs from 'node:fs/promises';
import path from 'node:path';
import { parse } from 'yaml';
import { buildRealmCRD, realmCRDYAML } from '../../src/api/v1alpha1/realm-crd.js';
import { effectiveDeletionPolicy, GROUP, parseRealmSpec, REALM_PLURAL } from '../../src/api/v1alpha1/realm-types.js';

const crdFile = path.resolve(import.meta.dirname, '../../crds', `${GROUP}_${REALM_PLURAL}.yaml`);

describe('the Realm CRD', () => {
  test('the committed CRD is exactly what the zod schema generates (run `make crds` after changing the schema)', async () => {
    expect(await fs.readFile(crdFile, 'utf8')).toBe(realmCRDYAML());
  });

  test('crds/kustomization.yaml installs it', async () => {
    const kustomization = parse(await fs.readFile(path.join(path.dirname(crdFile), 'kustomization.yaml'), 'utf8'));
    expect(kustomization.resources).toContain(path.basename(crdFile));
  });

  test('every spec and status field has a description (kubectl explain reads well)', () => {
    const root = (buildRealmCRD() as any).spec.versions[0].schema.openAPIV3Schema;
    const undocumented = (schema: any, where: string): string[] => [
      ...(schema.description ? [] : [where]),
      ...Object.entries(schema.properties ?? {}).flatMap(([name, sub]) => undocumented(sub, `${where}.${name}`)),
      ...(schema.items ? undocumented(schema.items, `${where}[]`) : []),
    ];
    expect([...undocumented(root.properties.spec, 'spec'), ...undocumented(root.properties.status, 'status')]).toEqual([]);
  });

  test('owner and endpoint are required; defaults are the ones zod applies', () => {
    const crd = parse(realmCRDYAML());
    const spec = crd.spec.versions[0].schema.openAPIV3Schema.properties.spec;
    expect(spec.required).toEqual(['owner', 'endpoint']);
    expect(spec.properties.publishable.default).toBe(true);
    expect(spec.properties.adopt.default).toBe(false);
    expect(spec.properties.deletionPolicy.enum).toEqual(['Delete', 'Retain']);
    expect(parseRealmSpec({ owner: '@alice:boxel.ai', endpoint: 'notes' })).toEqual({
      ok: true,
      spec: { owner: '@alice:boxel.ai', endpoint: 'notes', publishable: true, adopt: false },
    });
  });
});

describe('parseRealmSpec', () => {
  test('an endpoint outside [a-z0-9-] is refused naming the field and the rule', () => {
    for (const endpoint of ['My-Realm', 'a/b', 'a_b', '..', 'é']) {
      const parsed = parseRealmSpec({ owner: '@alice:boxel.ai', endpoint });
      expect(parsed.ok).toBe(false);
      if (!parsed.ok) expect(parsed.problems).toEqual([expect.stringMatching(/^spec\.endpoint must be 1-63 characters of a-z, 0-9 and "-"/)]);
    }
  });

  test('an owner that is not a Matrix user id and a non-canonical serverURL are refused naming their fields', () => {
    const parsed = parseRealmSpec({ owner: 'alice', endpoint: 'notes', serverURL: 'https://Example.com' });
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) {
      expect(parsed.problems.some((p) => p.startsWith('spec.owner must be a Matrix user id'))).toBe(true);
      expect(parsed.problems.some((p) => p.startsWith('spec.serverURL'))).toBe(true);
    }
  });

  test('deletionPolicy defaults to Delete for a created realm and Retain for an adopted one', () => {
    expect(effectiveDeletionPolicy({ adopt: false })).toBe('Delete');
    expect(effectiveDeletionPolicy({ adopt: true })).toBe('Retain');
    expect(effectiveDeletionPolicy({ adopt: true, deletionPolicy: 'Delete' })).toBe('Delete');
    expect(effectiveDeletionPolicy({ adopt: false, deletionPolicy: 'Retain' })).toBe('Retain');
  });
});
