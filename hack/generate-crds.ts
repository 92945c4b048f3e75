/** `make crds`: writes the CRD generated from the zod schemas to crds/. */
import fs from 'node:fs/promises';
import path from 'node:path';
import { publishedRealmCRDYAML } from '../src/api/v1alpha1/crd.js';
import { GROUP, PLURAL } from '../src/api/v1alpha1/published-realm-types.js';

export const CRD_FILE = path.join(import.meta.dirname, '..', 'crds', `${GROUP}_${PLURAL}.yaml`);
await fs.writeFile(CRD_FILE, publishedRealmCRDYAML());
process.stdout.write(`wrote ${path.relative(process.cwd(), CRD_FILE)}\n`);
