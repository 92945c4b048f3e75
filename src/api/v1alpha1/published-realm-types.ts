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

/** An IPv4 address as WHATWG serializes it: four decimal numbers, no leading zeros. */
const CANONICAL_IPV4 = '(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])([.](25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}';

/**
 * CEL rules that mirror `realmURLProblem`, so `kubectl apply` refuses what the controller would
 * refuse later. Each names one way a URL differs from its canonical form (what `new URL()`
 * serializes, without the aliases it keeps); CEL cannot canonicalize, so each is a pattern.
 * Left to zod: IPv6 literals in non-canonical form, invalid punycode and mixed-script host labels.
 * Character classes (`[.]`) rather than escapes keep the rules readable through CEL's string quoting.
 */
export const realmURLRules = (field: string) => [
  { rule: 'isURL(self)', message: `${field} must be an absolute URL, e.g. "https://realms.example.com/user/realm/"` },
  {
    rule: ASCII_URL_RULE,
    message: `${field} must be ASCII: percent-encode other characters in the path (é → %C3%A9) and write the host in punycode (xn--…)`,
  },
  { rule: `self.matches('^https?://[^/]')`, message: `${field} must use http:// or https:// (in lower case) followed by a host` },
  { rule: `self.endsWith('/')`, message: `${field} must end with "/"` },
  { rule: `!self.contains('?') && !self.contains('#')`, message: `${field} must not have a query string or fragment` },
  { rule: `!self.matches('\\\\s')`, message: `${field} must not contain whitespace` },
  { rule: `!self.matches('^https?://[^/]*@')`, message: `${field} must not contain credentials (user:password@)` },
  // A regex, not url(self).getHostname().lowerAscii(): the API server refuses that rule's estimated cost.
  { rule: `!self.matches('^https?://[^/]*[A-Z]')`, message: `${field} must have a lower-case scheme and host` },
  {
    rule: `!self.contains('/:')`,
    message: `${field} must not contain "/:": Boxel's realm_file_changes parser splits "<realm URL>:<path>" payloads at the first "/:", so it would misread every change to this realm; choose a URL in which no path segment starts with ":"`,
  },
  {
    rule: `!self.matches('^https?://[^/]*/(.*/)?([.]|%2[eE]){1,2}/')`,
    message: `${field} must not contain "." or ".." path segments (nor %2E, %2E%2E): give the URL they resolve to`,
  },
  {
    rule: `!self.matches('^http://[^/]*:0*80/') && !self.matches('^https://[^/]*:0*443/')`,
    message: `${field} must not give the scheme's default port (:80 for http, :443 for https): remove it`,
  },
  { rule: `!self.matches('^https?://[^/[]*:(0[0-9]|/)')`, message: `${field} must not have an empty port or one with leading zeros` },
  { rule: `!self.matches('^https?://[^/]*[.](:[0-9]*)?/')`, message: `${field} must not end its host with ".": remove the dot (it names the same host)` },
  { rule: `!self.matches('^https?://[^/]*%')`, message: `${field} must not percent-encode the host` },
  {
    rule: `!self.matches('^https?://([^/:@]*[.])?(0[xX][0-9a-fA-F]*|[0-9]+)(:[0-9]*)?/') || self.matches('^https?://${CANONICAL_IPV4}(:[0-9]*)?/')`,
    message: `${field}: a host ending in a number is an IPv4 address; write it as four decimal numbers without leading zeros, e.g. 127.0.0.1`,
  },
  {
    rule: `!self.contains('\\\\')`,
    message: `${field} must use "/" between path segments, not "\\"`,
  },
  {
    rule: `!self.matches('[{}<>"\`]')`,
    message: `${field} must percent-encode the characters " < > \` { } (%22 %3C %3E %60 %7B %7D)`,
  },
  {
    rule: `!self.matches('%(2[dDeE]|3[0-9]|4[1-9a-fA-F]|5[0-9aAfF]|6[1-9a-fA-F]|7[0-9aAeE])')`,
    message: `${field} must not percent-encode letters, digits, "-", ".", "_" or "~" (e.g. %61 for "a"): write them as themselves`,
  },
  {
    rule: `!self.matches('%([0-9a-fA-F][a-f]|[a-f][0-9a-fA-F])')`,
    message: `${field} must write percent-encoding in upper case (%C3%A9, not %c3%a9)`,
  },
];

export function realmURL(field: string, description: string) {
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

/** Longest Matrix user id, in bytes (Matrix spec, appendices: user identifiers). */
export const MAX_MATRIX_USER_ID_BYTES = 255;

/**
 * A Matrix user id as the Matrix spec says new ones are formed: `@`, a localpart of `a-z 0-9 . _ = - / +`
 * (Boxel's realm users are `realm/_published_<id>`, hence `/`), `:`, and a server name (a DNS name,
 * IPv4 address or bracketed IPv6 address, with an optional port).
 */
export const MATRIX_USER_ID_PATTERN = '^@[a-z0-9._=/+-]+:([0-9A-Za-z.-]+|\\[[0-9A-Fa-f:.]+\\])(:[0-9]{1,5})?$';

export function matrixUserID(field: string) {
  const message = `${field} must be a Matrix user id "@localpart:server" with a localpart of a-z, 0-9 and . _ = - / + (e.g. "@alice:boxel.ai")`;
  const pattern = new RegExp(MATRIX_USER_ID_PATTERN);
  return z
    .string()
    .max(MAX_MATRIX_USER_ID_BYTES)
    .superRefine((value, ctx) => {
      if (!pattern.test(value)) ctx.addIssue({ code: 'custom', message: `spec.${message}` });
    })
    .meta({
      // The CEL rule, not `pattern`, so the API server's refusal reads as the message, not the regex.
      // maxLength counts characters; the pattern admits ASCII only, so it is also the byte limit.
      'x-kubernetes-validations': [{ rule: `self.matches('${MATRIX_USER_ID_PATTERN.replaceAll('\\', '\\\\')}')`, message }],
    });
}

export const reindexSpecSchema = z
  .object({
    enabled: z.boolean().default(true).meta({ description: 'Enqueue a from-scratch reindex after every live replica has acknowledged the publish.' }),
    priority: z.number().int().min(0).max(1000).default(10).meta({ description: 'Priority of the reindex job (Boxel publishes use 10).' }),
    timeoutSeconds: z.number().int().min(1).max(86_400).default(3600).meta({ description: 'Timeout of the reindex job, in seconds.' }),
  })
  .meta({ description: 'How the published realm is re-indexed after each publish.' });

/** A content version name the operator creates for a publish (`v<ms>-<hex8>`), as kept for rollback. */
export const CONTENT_VERSION_PATTERN = '^v[0-9]{1,15}-[0-9a-f]{8}$';

export const historySpecSchema = z
  .object({
    limit: z.number().int().min(1).max(20).default(3).meta({
      description: 'How many published versions to keep for rollback, the live one included (1 to 20). Older ones are deleted after each publish or rollback.',
    }),
    maxBytes: z.number().int().min(0).optional().meta({
      description:
        'Byte budget of the kept versions (each counted at its full totalBytes, though files unchanged between versions share disk blocks). The live version is always kept; older ones beyond the budget are deleted. Unset: no budget.',
    }),
  })
  .meta({ description: 'Which published versions are kept for spec.rollbackTo.' });

export const publishedRealmSpecSchema = z
  .object({
    sourceRealmURL: realmURL(
      'sourceRealmURL',
      'URL of the source realm to publish, exactly as registered in realm_registry: http(s), canonical, ending in "/". Set exactly one of sourceRealmURL and sourceRealmRef.',
    ).optional(),
    sourceRealmRef: z
      .object({ name: z.string().min(1).max(253).meta({ description: 'Name of the Realm.' }) })
      .optional()
      .meta({
        description:
          'A Realm in this namespace whose realm to publish, instead of sourceRealmURL (set exactly one). While that Realm is missing or being deleted, nothing is published or republished (Stalled).',
      }),
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
        description:
          'Integer or string (int-or-string; a string is at most 253 characters). Any value; change it to republish the current contents of the source realm (a commit, a date, a counter). 7 and "7" are different values, and so are unset and set.',
        'x-kubernetes-int-or-string': true,
        // int-or-string fields cannot carry maxLength, so CEL bounds the string form.
        'x-kubernetes-validations': [{ rule: 'type(self) == int || size(self) <= 253', message: 'revision must be at most 253 characters' }],
      }),
    publisher: matrixUserID('publisher').optional().meta({
      description:
        'The Matrix user publishing the realm, "@localpart:server" (e.g. "@alice:boxel.ai"); it gets read and realm-owner on the published realm, as in Boxel. Defaults to the source realm\'s owner.',
    }),
    owner: z
      .string()
      .min(1)
      .max(253)
      .optional()
      .meta({
        description:
          'Deprecated and ignored: Boxel records the published realm\'s own realm user (realm/_published_<disk id>) as its owner, so the operator does too. Still accepted so existing objects stay valid; set spec.publisher for the publishing user.',
      }),
    reindex: reindexSpecSchema.optional(),
    history: historySpecSchema.optional(),
    rollbackTo: z
      .string()
      .max(40)
      .superRefine((value, ctx) => {
        if (!new RegExp(CONTENT_VERSION_PATTERN).test(value)) ctx.addIssue({ code: 'custom', message: 'spec.rollbackTo must be a kept version id such as "v1764130000000-0a1b2c3d" (see status.versions or `kubectl realm versions <name>`)' });
      })
      .optional()
      .meta({
        description:
          'A kept version (status.versions[].version) to serve instead of the latest publish: one atomic swap, no copy, then the same acknowledged invalidation and reindex as a publish (Ready reason RolledBack). While set, changes to revision do not republish; remove it to publish the current contents of the source realm again. A version that is not kept is Stalled (VersionNotKept).',
        'x-kubernetes-validations': [{ rule: `self.matches('${CONTENT_VERSION_PATTERN}')`, message: 'rollbackTo must be a kept version id such as "v1764130000000-0a1b2c3d" (see status.versions or `kubectl realm versions <name>`)' }],
      }),
    suspend: z.boolean().default(false).meta({ description: 'Stop reconciling: no publish, no republish, no status changes. Deletion still unpublishes.' }),
  })
  .meta({
    description: 'What to publish and where.',
    'x-kubernetes-validations': [
      { rule: 'has(self.sourceRealmURL) != has(self.sourceRealmRef)', message: 'set exactly one of sourceRealmURL (a URL) and sourceRealmRef (a Realm in this namespace)' },
      { rule: '!has(self.sourceRealmURL) || self.sourceRealmURL != self.publishedRealmURL', message: 'sourceRealmURL and publishedRealmURL must differ' },
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

export const keptVersionSchema = z
  .object({
    version: z.string().meta({ description: 'The version id, for spec.rollbackTo.' }),
    epoch: z.number().int().min(0).meta({ description: 'The epoch it was first published at.' }),
    digest: z.string().meta({ description: 'sha256 over its files: paths, modes and contents.' }),
    fileCount: z.number().int().min(0).meta({ description: 'Files in it.' }),
    totalBytes: z.number().int().min(0).meta({ description: 'Bytes in it.' }),
    publishedAt: z.string().meta({ description: 'When it was published.', format: 'date-time' }),
    revision: z.string().optional().meta({ description: 'spec.revision it was published for.' }),
    live: z.boolean().meta({ description: 'True for the version served now.' }),
  })
  .meta({ description: 'A published version kept for rollback.' });

export const publishedRealmStatusSchema = z
  .object({
    observedGeneration: z.number().int().min(0).optional().meta({ description: 'The metadata.generation this status describes.' }),
    conditions: z.array(conditionSchema).optional().meta({
      description: 'Ready (always present); Reconciling or Stalled while True; RealmUserRegistered once the operator (with Matrix configured) has tried to register the published realm\'s Matrix realm user (False with reason RealmUserRegistrationFailed while that fails; without Matrix it is absent and Ready\'s message says the user was not registered).',
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
    liveVersion: z.string().optional().meta({ description: 'The content version served now (after a publish or a rollback).' }),
    versions: z
      .array(keptVersionSchema)
      .max(20)
      .optional()
      .meta({ description: 'The kept published versions, newest first; spec.rollbackTo may name any of them.' }),
  })
  .meta({ description: 'What the operator observed and did.' });

/** A parsed spec: its source is sourceRealmURL or sourceRealmRef. */
export type PublishedRealmSpecInput = z.output<typeof publishedRealmSpecSchema>;
/** A spec with its source resolved to a URL (src/reconciler/realm/source-ref.ts). */
export type PublishedRealmSpec = PublishedRealmSpecInput & { sourceRealmURL: string };
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
export function parsePublishedRealmSpec(spec: unknown): { ok: true; spec: PublishedRealmSpecInput } | { ok: false; problems: string[] } {
  const result = publishedRealmSpecSchema.safeParse(spec);
  if (result.success) {
    if ((result.data.sourceRealmURL === undefined) === (result.data.sourceRealmRef === undefined)) {
      return { ok: false, problems: ['spec: set exactly one of sourceRealmURL (a URL) and sourceRealmRef (a Realm in this namespace)'] };
    }
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
