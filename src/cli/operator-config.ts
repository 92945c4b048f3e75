/**
 * The operator's configuration: flags win over environment variables, which win over defaults.
 * Validated with zod; every error names the flag and the variable.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import type pg from 'pg';
import { z } from 'zod';
import { WARM_CONNECTIONS } from '../dataplane/db.js';
import { MATRIX_SETTINGS, type MatrixRegistrationSettings } from '../matrix/realm-user.js';
import { parseDomainOverrides, type DomainOverrides } from '../wire/publish-policy.js';
import { realmURLProblem } from '../wire/realm-url.js';
import { collectSettings, ConfigError, databaseURLSchema, durationSchema, flagOptions, logLevelSchema, parseDuration, parseSettings, REQUIRED, type DocumentedSetting, type SettingName } from './config.js';

const duration = durationSchema;

const bindAddress = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]*):\d{1,5}$/, 'must be host:port, :port, or 0 to disable (e.g. :8080, 127.0.0.1:0)')
  .or(z.literal('0'));

const booleanLike = z.union([z.boolean(), z.enum(['true', 'false', '1', '0'])]).transform((v) => v === true || v === 'true' || v === '1');

/** A byte count: plain bytes (`1048576`) or a Ki/Mi/Gi/Ti suffix (`512Mi`, `4Gi`), as Kubernetes quantities write them. */
export const byteSizeSchema = z.union([z.number(), z.string()]).transform((value, ctx) => {
  const bytes = typeof value === 'number' ? value : parseByteSize(value);
  if (bytes === undefined || !Number.isSafeInteger(bytes) || bytes < 1) {
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(value)} is not a size in bytes; use e.g. 1048576, 512Mi, 4Gi` });
    return z.NEVER;
  }
  return bytes;
});

const BYTE_SUFFIXES = { '': 1, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 } as const;

/** `4Gi` → 4294967296, `100` → 100; undefined for anything else (decimal suffixes like `4G` are refused, not guessed). */
export function parseByteSize(text: string): number | undefined {
  const match = /^(\d+)(Ki|Mi|Gi|Ti)?$/.exec(text.trim());
  if (!match) return undefined;
  return Number(match[1]) * BYTE_SUFFIXES[(match[2] ?? '') as keyof typeof BYTE_SUFFIXES];
}

const filePath = z.string().refine((p) => p.startsWith('/'), 'must be an absolute path');

export const operatorConfigSchema = z.object({
  databaseURL: databaseURLSchema,
  realmsRoot: z.string({ error: 'is required' }).min(1, 'is required').refine((p) => p.startsWith('/'), 'must be an absolute path'),
  watchNamespace: z.string().default(''),
  leaderElection: booleanLike.default(true),
  leaderElectionNamespace: z.string().min(1, 'must not be empty').default('realm-operator-system'),
  leaderElectionID: z.string().min(1).max(253).default('realm-operator-leader'),
  identity: z.string().min(1).max(253).default(`${os.hostname()}_${process.pid}`),
  leaseDuration: duration.default(15_000),
  renewDeadline: duration.default(10_000),
  retryPeriod: duration.default(2_000),
  metricsBindAddress: bindAddress.default(':8080'),
  // As controller-runtime's secureServing: HTTPS, and only callers whose bearer token passes a
  // TokenReview and a SubjectAccessReview for `get` on the non-resource URL /metrics.
  metricsSecure: booleanLike.default(false),
  metricsCertFile: filePath.optional(),
  metricsKeyFile: filePath.optional(),
  healthProbeBindAddress: bindAddress.default(':8081'),
  // 8 reconciles, of which at most --max-concurrent-stagings copy: on 2 cores, 1,000 new objects
  // converged sooner than with 4 (docs/publish-statements.md) and than with 16, 32 or 64, whose extra
  // workers only wait for staging slots, write more Publishing statuses and hold more PostgreSQL
  // connections (alternating bench-scale runs, docs/kube-api-cost.md).
  maxConcurrentReconciles: z.coerce.number().int('must be a whole number').min(1, 'must be at least 1').max(64, 'must be at most 64').default(8),
  maxConcurrentStagings: z.coerce.number().int('must be a whole number').min(1, 'must be at least 1').max(64, 'must be at most 64').default(4),
  // Kept open through quiet spells, so a publish never warms a new backend inside the realm lock
  // (src/dataplane/db.ts); 0 for a server short of connections, at the price of that warm-up.
  databaseWarmConnections: z.coerce.number().int('must be a whole number').min(0, 'must be at least 0').max(64, 'must be at most 64').default(WARM_CONNECTIONS),
  resyncPeriod: duration.default(10 * 60_000),
  ackWait: duration.default(10_000),
  ackRequeue: duration.default(2_000),
  // How long past a replica's lease_expires_at it still counts as live (docs/protocol.md).
  replicaLeaseGrace: duration.default(2_000),
  stalledRetry: duration.default(30_000),
  shutdownTimeout: duration.default(30_000),
  logLevel: logLevelSchema,
  durable: booleanLike.default(true),
  maxRealmFiles: z.coerce.number().int('must be a whole number').min(1, 'must be at least 1').default(100_000),
  maxRealmBytes: byteSizeSchema.default(4 * 2 ** 30),
  copyHardLinkedFiles: booleanLike.default(false),
  // Boxel's serverURL: Realms without spec.serverURL get <this>/<owner>/<endpoint>/.
  realmServerURL: z
    .string()
    .superRefine((value, ctx) => {
      const problem = realmURLProblem(value, 'REALM_SERVER_URL');
      if (problem) ctx.addIssue({ code: 'custom', message: `${problem.problem}; ${problem.fix}` });
    })
    .optional(),
  realmServerService: z
    .string()
    .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be <namespace>/<service>, e.g. boxel/realm-server')
    .optional(),
  // The realm users of published realms, registered on Matrix as Boxel does; all three or none.
  matrixURL: z
    .string()
    .refine((value) => {
      try {
        return ['http:', 'https:'].includes(new URL(value).protocol);
      } catch {
        return false;
      }
    }, 'must be the homeserver\'s http:// or https:// base URL, e.g. http://synapse:8008/')
    .optional(),
  matrixRegistrationSecretFile: filePath.optional(),
  realmSecretSeedFile: filePath.optional(),
  // The homeserver's server name (`@user:<server name>`), for the realm user's permission row. The
  // user is registered first, and a publish whose registered id differs is refused. Unset: the publisher's.
  matrixServerName: z
    .string()
    .regex(/^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/, 'must be a Matrix server name (a host name with an optional port, e.g. boxel.ai or localhost:8008)')
    .optional(),
  // Boxel's publish authorization (src/wire/publish-policy.ts). On by default; off only for a
  // database no Boxel user owns (no realm-owner rows, no realm_metadata).
  authorizePublishers: booleanLike.default(true),
  // Hosts published realms may use, on a dot boundary (Boxel's PUBLISHED_REALM_BOXEL_SITE_DOMAIN and
  // ..._SPACE_DOMAIN); unset: the domain rule is off (logged at start-up).
  publishedRealmDomains: z
    .string()
    .transform((value) => value.split(',').map((domain) => domain.trim().toLowerCase()).filter(Boolean))
    .pipe(z.array(z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:\d{1,5})?$/, 'must be comma-separated domains (a host name with an optional port), e.g. boxel.site,boxel.space')))
    .default([]),
  // Boxel's PUBLISHED_REALM_BOXEL_SPACE_DOMAIN: users' own spaces are <localpart>.<domain>, where the
  // path must be the realm's name or its unlisted slug. Also a published-realm domain.
  publishedRealmSpaceDomain: z
    .string()
    .trim()
    .toLowerCase()
    .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:\d{1,5})?$/, 'must be a domain (a host name with an optional port), e.g. boxel.space')
    .optional(),
  // Boxel's PUBLISHED_REALM_DOMAIN_OVERRIDES: a JSON object from source realm URL to the custom
  // domain its published realm may use (src/wire/publish-policy.ts parseDomainOverrides).
  publishedRealmDomainOverrides: z
    .string()
    .transform((value, ctx): DomainOverrides => {
      const parsed = parseDomainOverrides(value);
      if (parsed.ok) return parsed.overrides;
      for (const problem of parsed.problems) ctx.addIssue({ code: 'custom', message: problem });
      return z.NEVER;
    })
    .default({}),
});

type OperatorSettings = z.output<typeof operatorConfigSchema>;

export type OperatorConfig = OperatorSettings & {
  /** Set when Matrix is configured: the published realms' users are registered there. */
  matrix?: MatrixRegistrationSettings;
};

/**
 * The data plane's pool: at most three connections per reconcile at once and two more; of these,
 * --database-warm-connections stay open however long they sit idle.
 */
export function operatorPoolConfig(config: Pick<OperatorConfig, 'databaseURL' | 'maxConcurrentReconciles' | 'databaseWarmConnections'>): pg.PoolConfig {
  const max = config.maxConcurrentReconciles * 3 + 2;
  return { connectionString: config.databaseURL, max, min: Math.min(config.databaseWarmConnections, max), keepAlive: true };
}

/** Cross-field rules, as client-go enforces them for leader election. */
function checkLeaderElectionTimings(config: OperatorConfig): string[] {
  const problems: string[] = [];
  if (config.renewDeadline >= config.leaseDuration) problems.push('--leader-election-renew-deadline / LEADER_ELECTION_RENEW_DEADLINE: must be shorter than the lease duration');
  if (config.retryPeriod >= config.renewDeadline) problems.push('--leader-election-retry-period / LEADER_ELECTION_RETRY_PERIOD: must be shorter than the renew deadline');
  return problems;
}

/** A certificate without its key (or the reverse) is a typo, not a request for a generated one. */
function checkMetricsCertificate(config: OperatorConfig): string[] {
  if ((config.metricsCertFile === undefined) === (config.metricsKeyFile === undefined)) return [];
  return ['--metrics-cert-file / METRICS_CERT_FILE and --metrics-key-file / METRICS_KEY_FILE: give both, or neither for a self-signed certificate generated at start-up'];
}

/** Flag name, environment variable, description and default of every setting (`realm-operator operator --help`). */
export const OPERATOR_SETTINGS: Record<keyof OperatorSettings, DocumentedSetting> = {
  databaseURL: { flag: '--database-url', env: 'DATABASE_URL', description: 'PostgreSQL connection string of Boxel\'s database (postgres:// or postgresql://)', default: REQUIRED },
  realmsRoot: { flag: '--realms-root', env: 'REALMS_ROOT', description: 'Absolute path of the realms directory Boxel\'s realm servers share; published copies go under its _published/', default: REQUIRED },
  watchNamespace: { flag: '--namespace', env: 'WATCH_NAMESPACE', description: 'Namespace whose PublishedRealms are reconciled', default: 'unset: every namespace' },
  leaderElection: { flag: '--leader-elect', env: 'LEADER_ELECT', boolean: true, description: 'Run only while holding the leader-election Lease, so one of several replicas reconciles', default: 'true' },
  leaderElectionNamespace: { flag: '--leader-election-namespace', env: 'POD_NAMESPACE', description: 'Namespace of the leader-election Lease', default: 'realm-operator-system' },
  leaderElectionID: { flag: '--leader-election-id', env: 'LEADER_ELECTION_ID', description: 'Name of the leader-election Lease', default: 'realm-operator-leader' },
  identity: { flag: '--identity', env: 'POD_NAME', description: 'This process\'s holder identity in the Lease (the pod name in a cluster)', default: '<hostname>_<pid>' },
  leaseDuration: { flag: '--leader-election-lease-duration', env: 'LEADER_ELECTION_LEASE_DURATION', description: 'How long a Lease stays valid without renewal before another replica may take it', default: '15s' },
  renewDeadline: { flag: '--leader-election-renew-deadline', env: 'LEADER_ELECTION_RENEW_DEADLINE', description: 'How long the leader keeps retrying a renewal before it gives up leading (shorter than the lease duration)', default: '10s' },
  retryPeriod: { flag: '--leader-election-retry-period', env: 'LEADER_ELECTION_RETRY_PERIOD', description: 'Interval between attempts to acquire or renew the Lease (shorter than the renew deadline)', default: '2s' },
  metricsBindAddress: { flag: '--metrics-bind-address', env: 'METRICS_BIND_ADDRESS', description: 'Address of the Prometheus endpoint /metrics (controller-runtime\'s and the operator\'s metrics); 0 disables it', default: ':8080' },
  metricsSecure: { flag: '--metrics-secure', env: 'METRICS_SECURE', boolean: true, description: 'Serve /metrics over HTTPS to callers allowed `get /metrics` (TokenReview + SubjectAccessReview)', default: 'false' },
  metricsCertFile: { flag: '--metrics-cert-file', env: 'METRICS_CERT_FILE', description: 'TLS certificate for --metrics-secure (with --metrics-key-file)', default: 'unset: a self-signed certificate generated at start-up' },
  metricsKeyFile: { flag: '--metrics-key-file', env: 'METRICS_KEY_FILE', description: 'TLS private key for --metrics-secure (with --metrics-cert-file)', default: 'unset: a self-signed certificate generated at start-up' },
  healthProbeBindAddress: { flag: '--health-probe-bind-address', env: 'HEALTH_PROBE_BIND_ADDRESS', description: 'Address of /healthz and /readyz; 0 disables them', default: ':8081' },
  maxConcurrentReconciles: { flag: '--max-concurrent-reconciles', env: 'MAX_CONCURRENT_RECONCILES', description: 'PublishedRealms reconciled at once (1 to 64); of these, at most --max-concurrent-stagings copy files at once', default: '8' },
  maxConcurrentStagings: { flag: '--max-concurrent-stagings', env: 'MAX_CONCURRENT_STAGINGS', description: 'Publishes copying files at once (1 to 64), whatever the reconciles at once: the others wait for a slot, reconciles that copy nothing never do', default: '4' },
  databaseWarmConnections: { flag: '--database-warm-connections', env: 'DATABASE_WARM_CONNECTIONS', description: `Database connections kept open while idle (0 to 64, at most the pool's size), so a publish after a quiet spell does not prepare and plan its statements on a new connection inside the realm lock; 0 closes every idle one after 10 s`, default: String(WARM_CONNECTIONS) },
  resyncPeriod: { flag: '--resync-period', env: 'RESYNC_PERIOD', description: 'Every object is reconciled again at least this often (the authorization re-check, drift repair)', default: '10m' },
  ackWait: { flag: '--ack-wait', env: 'ACK_WAIT', description: 'How long one reconcile waits for every live replica\'s acknowledgement before requeueing', default: '10s' },
  ackRequeue: { flag: '--ack-requeue', env: 'ACK_REQUEUE', description: 'Requeue delay while some live replica has not acknowledged yet', default: '2s' },
  replicaLeaseGrace: { flag: '--replica-lease-grace', env: 'REPLICA_LEASE_GRACE', description: 'A replica whose lease expired less than this long ago still counts as live (room for clock steps, failovers and pauses; docs/protocol.md)', default: '2s' },
  stalledRetry: { flag: '--stalled-retry', env: 'STALLED_RETRY', description: 'First re-check of a Stalled object whose cause may be fixed outside its spec; doubles up to 10m', default: '30s' },
  shutdownTimeout: { flag: '--shutdown-timeout', env: 'SHUTDOWN_TIMEOUT', description: 'On SIGTERM, how long in-flight reconciles may finish before the process exits', default: '30s' },
  logLevel: { flag: '--log-level', env: 'LOG_LEVEL', description: 'Log level: fatal, error, warn, info, debug or trace (JSON logs on stderr)', default: 'info' },
  durable: { flag: '--durable', env: 'DURABLE', boolean: true, description: 'Make a staged copy durable (one syncfs of the published volume) before swapping it in', default: 'true' },
  maxRealmFiles: { flag: '--max-realm-files', env: 'MAX_REALM_FILES', description: 'Largest realm, in files, that is published; more is Stalled RealmTooLarge', default: '100000' },
  maxRealmBytes: { flag: '--max-realm-bytes', env: 'MAX_REALM_BYTES', description: 'Largest realm, in bytes (or Ki/Mi/Gi/Ti), that is published; more is Stalled RealmTooLarge', default: '4Gi' },
  copyHardLinkedFiles: { flag: '--copy-hard-linked-files', env: 'COPY_HARD_LINKED_FILES', boolean: true, description: 'Copy files with several hard links (skipped by default, with the reason, as they may be shared with another realm)', default: 'false' },
  realmServerURL: { flag: '--realm-server-url', env: 'REALM_SERVER_URL', description: 'Boxel\'s realm server URL (its serverURL): Realms without spec.serverURL are created at <this>/<owner>/<endpoint>/', default: 'unset: Realms must give spec.serverURL' },
  realmServerService: { flag: '--realm-server-service', env: 'REALM_SERVER_SERVICE', description: '<namespace>/<service> of the realm servers: ready pods that never register make a publish PublishedNotifyOnly instead of a wait', default: 'unset: only registered replicas are counted' },
  matrixURL: { flag: '--matrix-url', env: 'MATRIX_URL', description: 'Matrix homeserver base URL: published realms\' users are registered there as Boxel does (with the two secrets)', default: 'unset: realm users are not registered' },
  matrixRegistrationSecretFile: { flag: '--matrix-registration-secret-file', env: 'MATRIX_REGISTRATION_SHARED_SECRET_FILE', description: 'File holding Synapse\'s registration_shared_secret (or the variable MATRIX_REGISTRATION_SHARED_SECRET)', default: 'unset' },
  realmSecretSeedFile: { flag: '--realm-secret-seed-file', env: 'REALM_SECRET_SEED_FILE', description: 'File holding Boxel\'s REALM_SECRET_SEED, from which realm users\' passwords derive (or the variable REALM_SECRET_SEED)', default: 'unset' },
  matrixServerName: { flag: '--matrix-server-name', env: 'MATRIX_SERVER_NAME', description: 'Matrix server name of realm users\' ids (@realm/_published_<id>:<name>)', default: 'unset: the publisher\'s server name' },
  authorizePublishers: { flag: '--authorize-publishers', env: 'AUTHORIZE_PUBLISHERS', boolean: true, description: 'Enforce Boxel\'s publish authorization (realm-owner, publishable, domains); off only for a database no Boxel user owns', default: 'true' },
  publishedRealmDomains: { flag: '--published-realm-domains', env: 'PUBLISHED_REALM_DOMAINS', description: 'Comma-separated domains published realms may use, on a dot boundary (Boxel\'s PUBLISHED_REALM_BOXEL_SITE_DOMAIN)', default: 'unset: the domain rule is off (logged at start-up)' },
  publishedRealmSpaceDomain: { flag: '--published-realm-space-domain', env: 'PUBLISHED_REALM_BOXEL_SPACE_DOMAIN', description: 'Domain of users\' own spaces <localpart>.<domain>, where the path must be the realm\'s name or its slug', default: 'unset' },
  publishedRealmDomainOverrides: { flag: '--published-realm-domain-overrides', env: 'PUBLISHED_REALM_DOMAIN_OVERRIDES', description: 'JSON object from source realm URL to the custom domain its published realm may use (Boxel\'s format)', default: '{}' },
};

/** Secrets also accepted as plain variables (as Boxel's realm server takes them); never as flags, which `ps` shows. */
export const MATRIX_SECRET_VARIABLES = { registrationSecret: 'MATRIX_REGISTRATION_SHARED_SECRET', realmSecretSeed: 'REALM_SECRET_SEED' } as const;

export const operatorFlagOptions = flagOptions(OPERATOR_SETTINGS);

export function loadOperatorConfig(flags: Record<string, string | boolean | undefined>, env: NodeJS.ProcessEnv): OperatorConfig {
  const config = parseSettings(operatorConfigSchema, collectSettings(OPERATOR_SETTINGS, flags, env), OPERATOR_SETTINGS);
  const problems = [...checkLeaderElectionTimings(config), ...checkMetricsCertificate(config)];
  const matrix = resolveMatrixSettings(config, env, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return matrix ? { ...config, matrix } : config;
}

/**
 * The Matrix settings, secrets read from their files (as Kubernetes mounts Secrets; trailing
 * newlines dropped) or plain variables. All three or none: a partial set is refused, naming what
 * is missing, rather than silently publishing without registering realm users.
 */
function resolveMatrixSettings(config: OperatorSettings, env: NodeJS.ProcessEnv, problems: string[]): MatrixRegistrationSettings | undefined {
  const secret = (file: string | undefined, fileSetting: SettingName, variable: string): string | undefined => {
    const plain = env[variable] === '' ? undefined : env[variable];
    if (file !== undefined && plain !== undefined) {
      problems.push(`${fileSetting.flag} / ${fileSetting.env} and ${variable}: give one of them, not both`);
      return undefined;
    }
    if (plain !== undefined) return plain;
    if (file === undefined) return undefined;
    let text: string;
    try {
      text = readFileSync(file, 'utf8').replace(/[\r\n]+$/, '');
    } catch (error) {
      problems.push(`${fileSetting.flag} / ${fileSetting.env}: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); mount the Secret there or fix the path`);
      return undefined;
    }
    if (text === '') problems.push(`${fileSetting.flag} / ${fileSetting.env}: ${file} is empty; put the secret in it`);
    return text || undefined;
  };
  const registrationSharedSecret = secret(config.matrixRegistrationSecretFile, OPERATOR_SETTINGS.matrixRegistrationSecretFile, MATRIX_SECRET_VARIABLES.registrationSecret);
  const realmSecretSeed = secret(config.realmSecretSeedFile, OPERATOR_SETTINGS.realmSecretSeedFile, MATRIX_SECRET_VARIABLES.realmSecretSeed);
  const given = {
    url: config.matrixURL,
    registrationSecret: registrationSharedSecret ?? (config.matrixRegistrationSecretFile ?? env[MATRIX_SECRET_VARIABLES.registrationSecret]),
    realmSecretSeed: realmSecretSeed ?? (config.realmSecretSeedFile ?? env[MATRIX_SECRET_VARIABLES.realmSecretSeed]),
  };
  const missing = (Object.keys(given) as (keyof typeof given)[]).filter((key) => given[key] === undefined || given[key] === '');
  if (missing.length === 3) return undefined;
  if (missing.length > 0) {
    problems.push(
      `Matrix is configured only in part: also set ${missing.map((key) => MATRIX_SETTINGS[key]).join(' and ')} ` +
        '(all three register published realms\' users on Matrix; set none to publish without registering them)',
    );
    return undefined;
  }
  if (!config.matrixURL || !registrationSharedSecret || !realmSecretSeed) return undefined; // a problem was recorded above
  return { matrixURL: config.matrixURL, registrationSharedSecret, realmSecretSeed };
}

export { parseDuration };

/** `:8080` → { host: '0.0.0.0', port: 8080 }; `0` → undefined (disabled). */
export function parseBindAddress(address: string): { host: string; port: number } | undefined {
  if (address === '0') return undefined;
  const split = address.lastIndexOf(':');
  const host = address.slice(0, split).replace(/^\[|\]$/g, '') || '0.0.0.0';
  return { host, port: Number(address.slice(split + 1)) };
}
