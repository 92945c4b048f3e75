/**
 * The PublishedRealm CustomResourceDefinition, generated from the zod schemas so the API server
 * and the controller validate the same rules. `make crds` writes it to `crds/`; a test fails if
 * the committed file differs from what this produces.
 */
import { z } from 'zod';
import { stringify } from 'yaml';
import {
  GROUP,
  KIND,
  PLURAL,
  publishedRealmSpecSchema,
  publishedRealmStatusSchema,
  SHORT_NAMES,
  SINGULAR,
  VERSION,
} from './published-realm-types.js';

type JSONSchema = Record<string, unknown>;

/** Keywords a Kubernetes structural schema accepts, in the order we print them. */
const KEPT = [
  'description',
  'type',
  'format',
  'enum',
  'default',
  'minimum',
  'maximum',
  'minLength',
  'maxLength',
  'pattern',
  'minItems',
  'maxItems',
  'x-kubernetes-int-or-string',
  'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys',
  'x-kubernetes-validations',
] as const;

/**
 * Turns zod's JSON Schema (draft 2020-12) into a Kubernetes structural schema: drops `$schema`
 * and `additionalProperties`, renders int-or-string unions as `x-kubernetes-int-or-string`, and
 * recurses into `properties` and `items`.
 */
export function toStructuralSchema(schema: JSONSchema): JSONSchema {
  const out: JSONSchema = {};
  if (schema['x-kubernetes-int-or-string']) {
    // zod renders the union as anyOf; Kubernetes wants the marker alone.
    if (schema.description) out.description = schema.description;
    out['x-kubernetes-int-or-string'] = true;
    if (schema['x-kubernetes-validations']) out['x-kubernetes-validations'] = schema['x-kubernetes-validations'];
    return out;
  }
  for (const key of KEPT) if (schema[key] !== undefined) out[key] = schema[key];
  if (out.type === 'integer' && (out.format === undefined) && (schema.maximum === undefined || (schema.maximum as number) > 2 ** 31)) {
    out.format = 'int64';
  }
  // zod emits JS's safe-integer bounds for unbounded ints; Kubernetes needs none.
  if (out.minimum === Number.MIN_SAFE_INTEGER) delete out.minimum;
  if (out.maximum === Number.MAX_SAFE_INTEGER) delete out.maximum;
  const properties = schema.properties as Record<string, JSONSchema> | undefined;
  if (properties) {
    out.type = 'object';
    out.properties = Object.fromEntries(Object.entries(properties).map(([name, sub]) => [name, toStructuralSchema(sub)]));
    const required = (schema.required as string[] | undefined)?.filter((name) => (properties[name] as JSONSchema)?.default === undefined);
    if (required && required.length > 0) out.required = required;
  }
  if (schema.items) out.items = toStructuralSchema(schema.items as JSONSchema);
  return out;
}

/**
 * Appends each field's default and bounds to its description, recursively: `kubectl explain`
 * prints descriptions (and enums) but not `default`, `minimum`/`maximum`, `maxLength` or
 * `maxItems`, so without this a user reading it cannot see them. Generated from the same
 * keywords the API server enforces, so the text cannot drift from the schema.
 */
export function withDefaultsAndRanges(schema: JSONSchema): JSONSchema {
  const out: JSONSchema = { ...schema };
  const notes: string[] = [];
  if (schema.default !== undefined) notes.push(`Default: ${JSON.stringify(schema.default)}.`);
  const { minimum, maximum, minLength, maxLength, minItems, maxItems } = schema as Record<string, number | undefined>;
  if (minimum !== undefined && maximum !== undefined) notes.push(`Range: ${minimum} to ${maximum}.`);
  else if (minimum !== undefined) notes.push(`Minimum: ${minimum}.`);
  else if (maximum !== undefined) notes.push(`Maximum: ${maximum}.`);
  if (maxLength !== undefined) notes.push(minLength ? `${minLength} to ${maxLength} characters.` : `At most ${maxLength} characters.`);
  if (maxItems !== undefined) notes.push(minItems ? `${minItems} to ${maxItems} items.` : `At most ${maxItems} items.`);
  if (notes.length > 0) out.description = [schema.description, ...notes].filter(Boolean).join(' ');
  const properties = schema.properties as Record<string, JSONSchema> | undefined;
  if (properties) out.properties = Object.fromEntries(Object.entries(properties).map(([name, sub]) => [name, withDefaultsAndRanges(sub)]));
  if (schema.items) out.items = withDefaultsAndRanges(schema.items as JSONSchema);
  return out;
}

export function jsonSchemaOf(schema: z.ZodType): JSONSchema {
  return z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JSONSchema;
}

/**
 * `status` defaults to `{observedGeneration: 0}`: the API server fills it in on every read of an
 * object the operator has not written yet. kstatus (Flux's health) calls an object with no status
 * at all Current, so without this a just-applied object passes `wait: true` before the operator
 * has looked at it; observedGeneration 0 < generation makes it InProgress (docs/gitops.md).
 */
export function withPendingStatusDefault(status: JSONSchema): JSONSchema {
  return { ...status, default: { observedGeneration: 0 } };
}

/** What differs between our CRDs; everything else (group, version, scope, status subresource, category) is shared. */
export interface CRDDefinition {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  description: string;
  printerColumns: Array<Record<string, unknown>>;
  spec: z.ZodType;
  status: z.ZodType;
}

/**
 * A CRD of ours from its names and zod schemas: spec with defaults and ranges for kubectl explain,
 * status defaulted to pending (withPendingStatusDefault).
 */
export function buildCRD(definition: CRDDefinition): Record<string, unknown> {
  const { kind, plural, singular, shortNames } = definition;
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.${GROUP}` },
    spec: {
      group: GROUP,
      names: { kind, listKind: `${kind}List`, plural, singular, shortNames, categories: ['boxel'] },
      scope: 'Namespaced',
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: definition.printerColumns,
          schema: {
            openAPIV3Schema: {
              description: definition.description,
              type: 'object',
              required: ['spec'],
              properties: {
                apiVersion: { type: 'string', description: 'APIVersion defines the versioned schema of this representation of an object.' },
                kind: { type: 'string', description: 'Kind is a string value representing the REST resource this object represents.' },
                metadata: { type: 'object' },
                spec: withDefaultsAndRanges(toStructuralSchema(jsonSchemaOf(definition.spec))),
                status: withPendingStatusDefault(toStructuralSchema(jsonSchemaOf(definition.status))),
              },
            },
          },
        },
      ],
    },
  };
}

export function buildPublishedRealmCRD(): Record<string, unknown> {
  return buildCRD({
    kind: KIND,
    plural: PLURAL,
    singular: SINGULAR,
    shortNames: SHORT_NAMES,
    description: 'PublishedRealm publishes a Boxel source realm at a URL and keeps every realm-server replica\'s caches consistent with it.',
    printerColumns: [
      { name: 'Source', type: 'string', jsonPath: '.spec.sourceRealmURL' },
      { name: 'Published', type: 'string', jsonPath: '.spec.publishedRealmURL' },
      { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
      { name: 'Files', type: 'integer', jsonPath: '.status.fileCount' },
      { name: 'Version', type: 'string', jsonPath: '.status.liveVersion' },
      { name: 'Reason', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].reason', priority: 1 },
      { name: 'Epoch', type: 'integer', jsonPath: '.status.epoch', priority: 1 },
      { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
    ],
    spec: publishedRealmSpecSchema,
    status: publishedRealmStatusSchema,
  });
}

export function publishedRealmCRDYAML(): string {
  return `# Generated from src/api/v1alpha1/published-realm-types.ts by \`make crds\`. Do not edit.\n${stringify(buildPublishedRealmCRD(), { lineWidth: 0 })}`;
}
