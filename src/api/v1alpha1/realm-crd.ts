/**
 * The Realm CustomResourceDefinition, generated from the zod schemas in realm-types.ts with the
 * same structural-schema conversion as PublishedRealm's (crd.ts). `make crds` writes it to crds/.
 */
import { stringify } from 'yaml';
import { buildPublishedRealmCRD, jsonSchemaOf, toStructuralSchema, withDefaultsAndRanges, withPendingStatusDefault } from './crd.js';
import { GROUP, REALM_KIND, REALM_PLURAL, REALM_SHORT_NAMES, REALM_SINGULAR, realmSpecSchema, realmStatusSchema, VERSION } from './realm-types.js';

/**
 * PublishedRealm's CRD with Realm's names, columns and schemas: the same structure (group, version,
 * status subresource, boxel category) from one place.
 */
export function buildRealmCRD(): Record<string, unknown> {
  const template = buildPublishedRealmCRD() as { spec: { versions: Array<{ schema: { openAPIV3Schema: { properties: Record<string, unknown> } } }> } };
  const [version] = template.spec.versions;
  const root = version!.schema.openAPIV3Schema;
  return {
    ...template,
    metadata: { name: `${REALM_PLURAL}.${GROUP}` },
    spec: {
      ...template.spec,
      names: { kind: REALM_KIND, listKind: `${REALM_KIND}List`, plural: REALM_PLURAL, singular: REALM_SINGULAR, shortNames: REALM_SHORT_NAMES, categories: ['boxel'] },
      versions: [
        {
          ...version,
          additionalPrinterColumns: [
            { name: 'URL', type: 'string', jsonPath: '.status.url' },
            { name: 'Owner', type: 'string', jsonPath: '.spec.owner' },
            { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
            { name: 'Reason', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].reason', priority: 1 },
            { name: 'Deletion', type: 'string', jsonPath: '.spec.deletionPolicy', priority: 1 },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
          schema: {
            openAPIV3Schema: {
              ...root,
              description: 'Realm is a Boxel source realm, created (or adopted) and deleted as Boxel\'s realm server does it, with every realm-server replica told.',
              properties: {
                ...root.properties,
                // kubectl explain shows each field's default and range, as for PublishedRealm.
                spec: withDefaultsAndRanges(toStructuralSchema(jsonSchemaOf(realmSpecSchema))),
                status: withPendingStatusDefault(toStructuralSchema(jsonSchemaOf(realmStatusSchema))),
              },
            },
          },
        },
      ],
    },
  };
}

export function realmCRDYAML(): string {
  return `# Generated from src/api/v1alpha1/realm-types.ts by \`make crds\`. Do not edit.\n${stringify(buildRealmCRD(), { lineWidth: 0 })}`;
}
