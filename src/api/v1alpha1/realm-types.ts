/**
 * The `Realm` API (a Boxel source realm), `realm-operator.dev/v1alpha1`. As for PublishedRealm,
 * the zod schemas are the single source of truth: the CRD (realm-crd.ts, `make crds`) is generated
 * from them and the controller validates every object with them again.
 *
 * A Realm is what Boxel's `POST /_create-realm` makes (cardstack/boxel
 * packages/realm-server/handlers/create-realm.ts): the owner's Matrix user id and an endpoint give
 * the URL `<serverURL>/<owner>/<endpoint>/` and the directory `<realms root>/<owner>/<endpoint>/`.
 * Deleting it does what Boxel's `DELETE /_delete-realm` does (handlers/handle-delete-realm.ts).
 */
import { z } from 'zod';
import { conditionSchema, GROUP, matrixUserID, realmURL, VERSION, type PublishedRealm } from './published-realm-types.js';

export { GROUP, VERSION };
export const API_VERSION = `${GROUP}/${VERSION}`;
export const REALM_KIND = 'Realm';
export const REALM_PLURAL = 'realms';
export const REALM_SINGULAR = 'realm';
export const REALM_SHORT_NAMES = ['srealm'];
/** Holds the object until its realm is deleted (or, with `deletionPolicy: Retain`, let go). */
export const REALM_FINALIZER = `${GROUP}/delete-realm`;

/** Boxel's create-realm refuses any other endpoint ("contains invalid characters"). */
export const ENDPOINT_PATTERN = '^[a-z0-9-]+$';
/** Longest endpoint: one path segment; a DNS label's length keeps URLs and directories reasonable. */
export const MAX_ENDPOINT_LENGTH = 63;

export const DELETION_POLICIES = ['Delete', 'Retain'] as const;
export type DeletionPolicy = (typeof DELETION_POLICIES)[number];

const endpointMessage = `endpoint must be 1-${MAX_ENDPOINT_LENGTH} characters of a-z, 0-9 and "-" (Boxel's rule for realm endpoints), e.g. "my-realm"`;

/** The two fields that make the URL and directory never change: a realm cannot be moved. */
const immutable = (field: string) => ({
  rule: 'self == oldSelf',
  message: `${field} is immutable (it is part of the realm's URL and directory); delete this Realm and create another to use a different ${field}`,
});

const ownerSchema = matrixUserID('owner');

export const realmSpecSchema = z
  .object({
    owner: ownerSchema.meta({
      description:
        'The Matrix user id owning the realm, "@localpart:server" (e.g. "@alice:boxel.ai"): its localpart is the first path segment of the URL and directory, and it gets read, write and realm-owner, as in Boxel\'s create-realm. Immutable.',
      'x-kubernetes-validations': [...((ownerSchema.meta()?.['x-kubernetes-validations'] as unknown[] | undefined) ?? []), immutable('owner')],
    }),
    endpoint: z
      .string()
      .min(1)
      .max(MAX_ENDPOINT_LENGTH)
      .superRefine((value, ctx) => {
        if (!new RegExp(ENDPOINT_PATTERN).test(value)) ctx.addIssue({ code: 'custom', message: `spec.${endpointMessage}` });
      })
      .meta({
        description: 'The realm\'s name in its URL, `<serverURL>/<owner>/<endpoint>/`: a-z, 0-9 and "-". Immutable.',
        'x-kubernetes-validations': [{ rule: `self.matches('${ENDPOINT_PATTERN}')`, message: endpointMessage }, immutable('endpoint')],
      }),
    serverURL: realmURL(
      'serverURL',
      'The realm server\'s URL the realm URL is made from (Boxel\'s serverURL, e.g. "https://app.boxel.ai/"): http(s), canonical, ending in "/". Default: the operator\'s REALM_SERVER_URL. Immutable.',
    )
      .optional(),
    name: z.string().min(1).max(1024).optional().meta({ description: 'The realm\'s display name, written to realm.json (cardInfo.name) on creation. Default: the endpoint.' }),
    backgroundURL: z.string().min(1).max(2048).optional().meta({ description: 'Background image URL written to realm.json on creation.' }),
    iconURL: z.string().min(1).max(2048).optional().meta({ description: 'Icon URL written to realm.json on creation.' }),
    publishable: z.boolean().default(true).meta({ description: 'realm_metadata.publishable: whether the realm may be published (Boxel creates realms publishable).' }),
    adopt: z
      .boolean()
      .default(false)
      .meta({
        description:
          'Adopt the Boxel realm already registered at this URL instead of creating one: nothing is written and its files are not touched; the object then manages its deletion. False: a realm already at the URL is refused (Stalled, URLTaken).',
      }),
    deletionPolicy: z.enum(DELETION_POLICIES).optional().meta({
      description:
        'What deleting this object does to the Boxel realm. Delete: what Boxel\'s delete-realm does (the realms published from it, its rows and its files go, every replica is told). Retain: the realm is left as it is (rows and files). Default: Delete for a realm this object created, Retain for an adopted one.',
    }),
  })
  .meta({
    description: 'Which Boxel source realm, and how it is created.',
    'x-kubernetes-validations': [
      {
        rule: 'has(self.serverURL) == has(oldSelf.serverURL) && (!has(self.serverURL) || self.serverURL == oldSelf.serverURL)',
        message: 'serverURL is immutable (it is part of the realm\'s URL), and cannot be added or removed later; delete this Realm and create another to use a different serverURL',
      },
    ],
  });

export const realmStatusSchema = z
  .object({
    observedGeneration: z.number().int().min(0).optional().meta({ description: 'The metadata.generation this status describes.' }),
    conditions: z.array(conditionSchema).optional().meta({
      description: 'Ready (always present); Reconciling or Stalled while True.',
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['type'],
    }),
    url: z.string().optional().meta({ description: 'The realm\'s URL, <serverURL>/<owner>/<endpoint>/.' }),
    diskId: z.string().optional().meta({ description: 'The realm\'s directory under the realms root, <owner>/<endpoint>.' }),
    adopted: z.boolean().optional().meta({ description: 'True when the realm existed before this object and was adopted rather than created.' }),
    indexJobId: z.number().int().min(0).optional().meta({ description: 'id of the jobs row of the initial from-scratch index enqueued on creation.' }),
    deletion: z
      .object({
        removed: z
          .array(
            z.object({
              url: z.string().meta({ description: 'A removed realm\'s URL.' }),
              diskId: z.string().meta({ description: 'Its directory: <owner>/<endpoint> for the source realm, _published/<id> for a published one.' }),
              epoch: z.number().int().min(0).optional().meta({ description: 'The invalidation epoch replicas acknowledge for its removal.' }),
            }).meta({ description: 'A removed realm.' }),
          )
          .optional()
          .meta({ description: 'The realms removed (the published realms, then the source realm itself).' }),
        committedAt: z.string().optional().meta({ description: 'When the database deletion committed.', format: 'date-time' }),
      })
      .optional()
      .meta({ description: 'Progress of the deletion, for people (kubectl): removing files, telling replicas, waiting for their acknowledgements. The operator resumes from realm_operator.pending_realm_removals, written in the delete transaction.' }),
  })
  .meta({ description: 'What the operator observed and did.' });

export type RealmSpec = z.output<typeof realmSpecSchema>;
export type RealmStatus = z.output<typeof realmStatusSchema>;

export interface Realm {
  apiVersion: typeof API_VERSION;
  kind: typeof REALM_KIND;
  metadata: PublishedRealm['metadata'];
  /** Unvalidated: parse with {@link parseRealmSpec} before use. */
  spec: unknown;
  status?: RealmStatus;
}

/** Validates a spec; on failure returns every problem as `spec.<path>: <message>`. */
export function parseRealmSpec(spec: unknown): { ok: true; spec: RealmSpec } | { ok: false; problems: string[] } {
  const result = realmSpecSchema.safeParse(spec);
  if (result.success) return { ok: true, spec: result.data };
  const problems = result.error.issues.map((issue) => {
    if (issue.message.startsWith('spec.')) return issue.message;
    return `${['spec', ...issue.path.map(String)].join('.')}: ${issue.message}`;
  });
  return { ok: false, problems: [...new Set(problems)] };
}

/** The deletion policy in effect: the spec's, else Delete for a created realm and Retain for an adopted one. */
export function effectiveDeletionPolicy(spec: Pick<RealmSpec, 'deletionPolicy' | 'adopt'>): DeletionPolicy {
  return spec.deletionPolicy ?? (spec.adopt ? 'Retain' : 'Delete');
}
