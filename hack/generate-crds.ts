/** `make crds`: writes the CRDs generated from the zod schemas to crds/. */
import fs from 'node:fs/promises';
import path from 'node:path';
import { publishedRealmCRDYAML } from '../src/api/v1alpha1/crd.js';
import { GROUP, PLURAL } from '../src/api/v1alpha1/published-realm-types.js';
import { realmCRDYAML } from '../src/api/v1alpha1/realm-crd.js';
import { REALM_PLURAL } from '../src/api/v1alpha1/realm-types.js';

export const CRD_FILE = path.join(import.meta.dirname, '..', 'crds', `${GROUP}_${PLURAL}.yaml`);
export const REALM_CRD_FILE = path.join(import.meta.dirname, '..', 'crds', `${GROUP}_${REALM_PLURAL}.yaml`);
for (const [file, yaml] of [
  [CRD_FILE, publishedRealmCRDYAML()],
  [REALM_CRD_FILE, realmCRDYAML()],
] as const) {
  await fs.writeFile(file, yaml);
  process.stdout.write(`wrote ${path.relative(process.cwd(), file)}\n`);
}
