/**
 * The `PublishedRealm` API, `realm-operator.dev/v1alpha1`. The zod schemas here are the single
 * source of truth: the CRD's OpenAPI schema (with its descriptions and CEL rules) is generated
 * from them (`crd.ts`, `make crds`), and the controller validates every object with them again,
 * so a spec that slipped past admission (an older CRD, a direct etcd write) becomes `Stalled`
 * with the same message instead of a crash loop.
 */
import { z } from 'zod';
import { MAX_REALM_URL_BYTES, realmURLProblem } from '../../wire/realm-url.js';

export const GROUP = 'realm-operator.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = 'PublishedRealm';
export const PLURAL = 'publishedrealms';
export const SINGULAR = 'publishedrealm';
export const SHORT_NAMES = ['prealm'];
/** Holds the object until its realm is unpublished. */
export const UNPUBLISH_FINALIZER = `${GROUP}/unpublish`;

/**
 * Printable ASCII only. Canonical URLs are ASCII (WHATWG serialization percent-encodes the path and
 * IDNA-encodes the host), and this makes the CRD's `maxLength` — which counts characters, as CEL's
 * size() does — a byte limit equal to zod's MAX_REALM_URL_BYTES, so nothing the API server admits
 * is Stalled for its length.
 */
export const ASCII_URL_RULE = `self.matches('^[!-~]*$')`;

/** CEL rules that mirror `realmURLProblem` as closely as CEL allows (it cannot canonicalize). */
const realmURLRules = (field: string) => [
  { rule: 'isURL(self)', message: `${field} must be an absolute URL, e.g. "https://realms.example.com/user/realm/"` },
  {
    rule: ASCII_URL_RULE,
    message: `${field} must be ASCII: percent-encode other characters in the path (é → %C3%A9) and write the host in punycode (xn--…)`,
  },
  { rule: `self.matches('^(?i)https?://')`, message: `${field} must use http:// or https://` },
  { rule: `self.endsWith('/')`, message: `${field} must end with "/"` },
  { rule: `!self.contains('?') && !self.contains('#')`, message: `${field} must not have a query string or fragment` },
  { rule: `!self.matches('\\\\s')`, message: `${field} must not contain whitespace` },
  { rule: `!self.matches('^https?://[^/]*@')`, message: `${field} must not contain credentials (user:password@)` },
  // A regex, not url(self).getHostname().lowerAscii(): the API server refuses that rule's estimated cost.
  { rule: `!self.matches('^https?://[^/]*[A-Z]')`, message: `${field} must have a lower-case scheme and host` },
];

function realmURL(field: string, description: string) {
  return z
    .string()
    .min(1)
    .max(MAX_REALM_URL_BYTES)
    .superRefine((value, ctx) => {
      const problem = realmURLProblem(value, `spec.${field}`);
      if (problem) ctx.addIssue({ code: 'custom', message: problem.message });
    })
    .meta({ description, 'x-kubernetes-validations': realmURLRules(field) });
}

export const reindexSpecSchema = z
  .object({
    enabled: z.boolean().default(true).meta({ description: 'Enqueue a from-scratch reindex after every live replica has acknowledged the publish.' }),
    priority: z.number().int().min(0).max(1000).default(10).meta({ description: 'Priority of the reindex job (Boxel publishes use 10).' }),
    timeoutSeconds: z.number().int().min(1).max(86_400).default(3600).meta({ description: 'Timeout of the reindex job, in seconds.' }),
  })
  .meta({ description: 'How the published realm is re-indexed after each publish.' });

export const publishedRealmSpecSchema = z
  .object({
    sourceRealmURL: realmURL(
      'sourceRealmURL',
      'URL of the source realm to publish, exactly as registered in realm_registry: http(s), canonical, ending in "/".',
    ),
    publishedRealmURL: realmURL(
      'publishedRealmURL',
      'URL the realm is published at: http(s), canonical, ending in "/". Immutable; to publish elsewhere, create another PublishedRealm.',
    ).meta({
      'x-kubernetes-validations': [
        ...realmURLRules('publishedRealmURL'),
        { rule: 'self == oldSelf', message: 'publishedRealmURL is immutable; delete this PublishedRealm and create a new one to publish at another URL' },
      ],
    }),
    revision: z
      .union([z.string().max(253), z.number().int()])
      .optional()
      .meta({
        description: 'Any value; change it to republish the current contents of the source realm (a commit, a date, a counter).',
        'x-kubernetes-int-or-string': true,
        // int-or-string fields cannot carry maxLength, so CEL bounds the string form.
        'x-kubernetes-validations': [{ rule: 'type(self) == int || size(self) <= 253', message: 'revision must be at most 253 characters' }],
      }),
    owner: z
      .string()
      .min(1)
      .max(253)
      .optional()
      .meta({ description: 'Username recorded as owner_username of the published realm and used for the reindex job. Defaults to the source realm\'s owner.' }),
    reindex: reindexSpecSchema.optional(),
    suspend: z.boolean().default(false).meta({ description: 'Stop reconciling: no publish, no republish, no status changes. Deletion still unpublishes.' }),
  })
  .meta({
    description: 'What to publish and where.',
    'x-kubernetes-validations': [
      { rule: 'self.sourceRealmURL != self.publishedRealmURL', message: 'sourceRealmURL and publishedRealmURL must differ' },
    ],
  });

export const conditionSchema = z
  .object({
    type: z.string().min(1).max(316).meta({ description: 'Condition type: Ready, Reconciling or Stalled.' }),
    status: z.enum(['True', 'False', 'Unknown']).meta({ description: 'True, False or Unknown.' }),
    observedGeneration: z.number().int().min(0).optional().meta({ description: 'metadata.generation the condition was set for.' }),
    lastTransitionTime: z.string().meta({ description: 'When the status last changed.', format: 'date-time' }),
    reason: z.string().min(1).max(1024).meta({ description: 'Machine-readable reason in CamelCase.' }),
    message: z.string().max(32_768).meta({ description: 'What happened, and what to do about it.' }),
  })
  .meta({ description: 'A standard Kubernetes condition.' });

export const replicaStatusSchema = z
  .object({
    acknowledged: z.number().int().min(0).meta({ description: 'Live replicas that dropped their caches of this realm since the last publish.' }),
    expected: z.number().int().min(0).meta({ description: 'Live (registered, unexpired lease) replicas.' }),
    missing: z.array(z.string().meta({ description: 'A replica id.' })).max(20).optional().meta({ description: 'Up to 20 live replicas that have not acknowledged yet.' }),
    unregistered: z
      .array(z.string().meta({ description: 'A pod name.' }))
      .max(20)
      .optional()
      .meta({ description: 'Up to 20 ready realm-server pods (from the configured Service\'s EndpointSlices) that do not run the acknowledging listener, such as unmodified Boxel servers.' }),
    mode: z.enum(['Acknowledged', 'NotifyOnly']).meta({
      description: 'Acknowledged: Ready means every live replica acknowledged. NotifyOnly: some or all realm-server replicas do not register (e.g. unmodified Boxel servers), so for them the publish was only announced by NOTIFY.',
    }),
  })
  .meta({ description: 'Acknowledged invalidation of the latest publish.' });

export const publishedRealmStatusSchema = z
  .object({
    observedGeneration: z.number().int().min(0).optional().meta({ description: 'The metadata.generation this status describes.' }),
    conditions: z.array(conditionSchema).optional().meta({
      description: 'Ready (always present), and Reconciling or Stalled while True.',
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['type'],
    }),
    publishedGeneration: z.number().int().min(0).optional().meta({ description: 'The metadata.generation whose spec was last published.' }),
    publishedRevision: z.string().optional().meta({ description: 'spec.revision as of the last publish.' }),
    publishedAt: z.string().optional().meta({ description: 'When the content was last published.', format: 'date-time' }),
    diskId: z.string().optional().meta({ description: 'The published realm directory under <realms root>/_published/.' }),
    fileCount: z.number().int().min(0).optional().meta({ description: 'Files in the published content.' }),
    totalBytes: z.number().int().min(0).optional().meta({ description: 'Bytes in the published content.' }),
    contentDigest: z.string().optional().meta({ description: 'sha256 over the published files: paths, modes and contents.' }),
    epoch: z.number().int().min(0).optional().meta({ description: 'The realm\'s invalidation epoch after the last publish.' }),
    replicas: replicaStatusSchema.optional(),
    reindexJobId: z.number().int().min(0).optional().meta({ description: 'id of the jobs row of the reindex enqueued after the last publish.' }),
  })
  .meta({ description: 'What the operator observed and did.' });

export type PublishedRealmSpec = z.output<typeof publishedRealmSpecSchema>;
export type PublishedRealmStatus = z.output<typeof publishedRealmStatusSchema>;
export type Condition = z.output<typeof conditionSchema>;

export interface PublishedRealm {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND;
  metadata: {
    name: string;
    namespace: string;
    uid?: string;
    generation?: number;
    resourceVersion?: string;
    deletionTimestamp?: string;
    finalizers?: string[];
    creationTimestamp?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  /** Unvalidated: parse with {@link parsePublishedRealmSpec} before use. */
  spec: unknown;
  status?: PublishedRealmStatus;
}

/** Validates a spec; on failure returns every problem as `spec.<path>: <message>`. */
export function parsePublishedRealmSpec(spec: unknown): { ok: true; spec: PublishedRealmSpec } | { ok: false; problems: string[] } {
  const result = publishedRealmSpecSchema.safeParse(spec);
  if (result.success) {
    if (result.data.sourceRealmURL === result.data.publishedRealmURL) {
      return { ok: false, problems: ['spec: sourceRealmURL and publishedRealmURL must differ'] };
    }
    return { ok: true, spec: result.data };
  }
  const problems = result.error.issues.map((issue) => {
    // Our URL messages already name their field.
    if (issue.message.startsWith('spec.')) return issue.message;
    const where = ['spec', ...issue.path.map(String)].join('.');
    return `${where}: ${issue.message}`;
  });
  return { ok: false, problems: [...new Set(problems)] };
}
