/**
 * The Realm CustomResourceDefinition, generated from the zod schemas in realm-types.ts by the same
 * builder as PublishedRealm's (crd.ts). `make crds` writes it to crds/.
 */
import { stringify } from 'yaml';
import { buildCRD } from './crd.js';
import { REALM_KIND, REALM_PLURAL, REALM_SHORT_NAMES, REALM_SINGULAR, realmSpecSchema, realmStatusSchema } from './realm-types.js';

export function buildRealmCRD(): Record<string, unknown> {
  return buildCRD({
    kind: REALM_KIND,
    plural: REALM_PLURAL,
    singular: REALM_SINGULAR,
    shortNames: REALM_SHORT_NAMES,
    description: 'Realm is a Boxel source realm, created (or adopted) and deleted as Boxel\'s realm server does it, with every realm-server replica told.',
    printerColumns: [
      { name: 'URL', type: 'string', jsonPath: '.status.url' },
      { name: 'Owner', type: 'string', jsonPath: '.spec.owner' },
      { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
      { name: 'Reason', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].reason', priority: 1 },
      { name: 'Deletion', type: 'string', jsonPath: '.spec.deletionPolicy', priority: 1 },
      { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
    ],
    spec: realmSpecSchema,
    status: realmStatusSchema,
  });
}

export function realmCRDYAML(): string {
  return `# Generated from src/api/v1alpha1/realm-types.ts by \`make crds\`. Do not edit.\n${stringify(buildRealmCRD(), { lineWidth: 0 })}`;
}
