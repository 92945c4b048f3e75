/**
 * The operator's configuration: flags win over environment variables, which win over defaults.
 * Validated with zod; every error names the flag and the variable.
 */
import os from 'node:os';
import { z } from 'zod';
import { collectSettings, ConfigError, databaseURLSchema, durationSchema, flagOptions, logLevelSchema, parseDuration, parseSettings, type SettingName } from './config.js';

const duration = durationSchema;

const bindAddress = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]*):\d{1,5}$/, 'must be host:port, :port, or 0 to disable (e.g. :8080, 127.0.0.1:0)')
  .or(z.literal('0'));

const booleanLike = z.union([z.boolean(), z.enum(['true', 'false', '1', '0'])]).transform((v) => v === true || v === 'true' || v === '1');

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
  healthProbeBindAddress: bindAddress.default(':8081'),
  maxConcurrentReconciles: z.coerce.number().int('must be a whole number').min(1, 'must be at least 1').max(64, 'must be at most 64').default(4),
  resyncPeriod: duration.default(10 * 60_000),
  ackWait: duration.default(10_000),
  ackRequeue: duration.default(2_000),
  stalledRetry: duration.default(30_000),
  shutdownTimeout: duration.default(30_000),
  logLevel: logLevelSchema,
  durable: booleanLike.default(true),
  realmServerService: z
    .string()
    .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be <namespace>/<service>, e.g. boxel/realm-server')
    .optional(),
});

export type OperatorConfig = z.output<typeof operatorConfigSchema>;

/** Cross-field rules, as client-go enforces them for leader election. */
function checkLeaderElectionTimings(config: OperatorConfig): string[] {
  const problems: string[] = [];
  if (config.renewDeadline >= config.leaseDuration) problems.push('--leader-election-renew-deadline / LEADER_ELECTION_RENEW_DEADLINE: must be shorter than the lease duration');
  if (config.retryPeriod >= config.renewDeadline) problems.push('--leader-election-retry-period / LEADER_ELECTION_RETRY_PERIOD: must be shorter than the renew deadline');
  return problems;
}

/** Flag name ↔ environment variable for every setting. */
export const OPERATOR_SETTINGS: Record<keyof OperatorConfig, SettingName> = {
  databaseURL: { flag: '--database-url', env: 'DATABASE_URL' },
  realmsRoot: { flag: '--realms-root', env: 'REALMS_ROOT' },
  watchNamespace: { flag: '--namespace', env: 'WATCH_NAMESPACE' },
  leaderElection: { flag: '--leader-elect', env: 'LEADER_ELECT' },
  leaderElectionNamespace: { flag: '--leader-election-namespace', env: 'POD_NAMESPACE' },
  leaderElectionID: { flag: '--leader-election-id', env: 'LEADER_ELECTION_ID' },
  identity: { flag: '--identity', env: 'POD_NAME' },
  leaseDuration: { flag: '--leader-election-lease-duration', env: 'LEADER_ELECTION_LEASE_DURATION' },
  renewDeadline: { flag: '--leader-election-renew-deadline', env: 'LEADER_ELECTION_RENEW_DEADLINE' },
  retryPeriod: { flag: '--leader-election-retry-period', env: 'LEADER_ELECTION_RETRY_PERIOD' },
  metricsBindAddress: { flag: '--metrics-bind-address', env: 'METRICS_BIND_ADDRESS' },
  healthProbeBindAddress: { flag: '--health-probe-bind-address', env: 'HEALTH_PROBE_BIND_ADDRESS' },
  maxConcurrentReconciles: { flag: '--max-concurrent-reconciles', env: 'MAX_CONCURRENT_RECONCILES' },
  resyncPeriod: { flag: '--resync-period', env: 'RESYNC_PERIOD' },
  ackWait: { flag: '--ack-wait', env: 'ACK_WAIT' },
  ackRequeue: { flag: '--ack-requeue', env: 'ACK_REQUEUE' },
  stalledRetry: { flag: '--stalled-retry', env: 'STALLED_RETRY' },
  shutdownTimeout: { flag: '--shutdown-timeout', env: 'SHUTDOWN_TIMEOUT' },
  logLevel: { flag: '--log-level', env: 'LOG_LEVEL' },
  durable: { flag: '--durable', env: 'DURABLE' },
  realmServerService: { flag: '--realm-server-service', env: 'REALM_SERVER_SERVICE' },
};

export const operatorFlagOptions = flagOptions(OPERATOR_SETTINGS);

export function loadOperatorConfig(flags: Record<string, string | boolean | undefined>, env: NodeJS.ProcessEnv): OperatorConfig {
  const config = parseSettings(operatorConfigSchema, collectSettings(OPERATOR_SETTINGS, flags, env), OPERATOR_SETTINGS);
  const problems = checkLeaderElectionTimings(config);
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

export { parseDuration };

/** `:8080` → { host: '0.0.0.0', port: 8080 }; `0` → undefined (disabled). */
export function parseBindAddress(address: string): { host: string; port: number } | undefined {
  if (address === '0') return undefined;
  const split = address.lastIndexOf(':');
  const host = address.slice(0, split).replace(/^\[|\]$/g, '') || '0.0.0.0';
  return { host, port: Number(address.slice(split + 1)) };
}
