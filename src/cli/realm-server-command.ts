/**
 * `realm-operator realm-server`: the reference realm server (see src/realm-server/). Settings from
 * flags and environment, validated with zod; errors name the flag and the variable.
 */
import os from 'node:os';
import { pino } from 'pino';
import { z } from 'zod';
import { RealmsLayout } from '../dataplane/layout.js';
import { defaultFenceMarginMs, leaseTimingProblems } from '../listener/fence.js';
import { RealmServer } from '../realm-server/realm-server.js';
import { collectSettings, ConfigError, databaseURLSchema, durationSchema, flagOptions, logLevelSchema, parseSettings, REQUIRED, type DocumentedSetting } from './config.js';
import { parseBindAddress } from './operator-config.js';

const duration = durationSchema;
const bindAddress = z.string().regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]*):\d{1,5}$/, 'must be host:port or :port (e.g. :4201, 127.0.0.1:0)');
const booleanLike = z.union([z.boolean(), z.enum(['true', 'false', '1', '0'])]).transform((v) => v === true || v === 'true' || v === '1');

const schema = z.object({
  databaseURL: databaseURLSchema,
  realmsRoot: z.string({ error: 'is required' }).min(1, 'is required').refine((p) => p.startsWith('/'), 'must be an absolute path'),
  listen: bindAddress.default(':4201'),
  /** Metrics, readiness and liveness: never on the serving port. */
  managementListen: bindAddress.default(':9090'),
  serveSourceRealms: booleanLike.default(false),
  replicaID: z.string().min(1).max(200).default(`${os.hostname()}-${process.pid}`),
  leaseDuration: duration.default(15_000),
  heartbeatInterval: duration.default(2_000),
  // Unset: max(500 ms, 10 % of the lease) (src/listener/fence.ts).
  fenceMargin: duration.optional(),
  logLevel: logLevelSchema,
});

/** Flag name, environment variable, description and default of every setting (`realm-operator realm-server --help`). */
export const REALM_SERVER_SETTINGS: Record<keyof z.infer<typeof schema>, DocumentedSetting> = {
  databaseURL: { flag: '--database-url', env: 'DATABASE_URL', description: 'PostgreSQL connection string of Boxel\'s database (postgres:// or postgresql://)', default: REQUIRED },
  realmsRoot: { flag: '--realms-root', env: 'REALMS_ROOT', description: 'Absolute path of the realms directory (published realms are served from its _published/)', default: REQUIRED },
  listen: { flag: '--listen', env: 'LISTEN_ADDRESS', description: 'Address the realm files are served on', default: ':4201' },
  managementListen: { flag: '--management-listen', env: 'MANAGEMENT_LISTEN_ADDRESS', description: 'Address of the management endpoints, never the serving port: /_metrics (Prometheus; also /metrics), /_readyz, /_healthz', default: ':9090' },
  serveSourceRealms: { flag: '--serve-source-realms', env: 'SERVE_SOURCE_REALMS', boolean: true, description: 'Also serve source realms (by default only published realms are served)', default: 'false' },
  replicaID: { flag: '--replica-id', env: 'POD_NAME', description: 'This replica\'s id in realm_operator.replicas and its acknowledgements (the pod name in a cluster)', default: '<hostname>-<pid>' },
  leaseDuration: { flag: '--lease-duration', env: 'LISTENER_LEASE_DURATION', description: 'The replica\'s lease: it stops serving from its cache (fences itself) when it cannot renew it for this long', default: '15s' },
  heartbeatInterval: { flag: '--heartbeat-interval', env: 'LISTENER_HEARTBEAT_INTERVAL', description: 'How often the replica renews its lease over the listener connection', default: '2s' },
  fenceMargin: { flag: '--fence-margin', env: 'LISTENER_FENCE_MARGIN', description: 'The replica stops trusting its cache this long before its lease would end (room for clock steps, slow clocks and pauses; docs/protocol.md)', default: 'unset: max(500ms, 10% of the lease)' },
  logLevel: { flag: '--log-level', env: 'LOG_LEVEL', description: 'Log level: fatal, error, warn, info, debug or trace (JSON logs on stderr)', default: 'info' },
};

export const realmServerFlagOptions = flagOptions(REALM_SERVER_SETTINGS);

export type RealmServerConfig = z.infer<typeof schema> & { fenceMargin: number; bind: BindAddress; management: BindAddress };
type BindAddress = { host: string; port: number };

/** The realm server's settings from flags and environment; a {@link ConfigError} names what to fix. */
export function loadRealmServerConfig(flags: Record<string, string | boolean | undefined>, env: NodeJS.ProcessEnv): RealmServerConfig {
  const config = parseSettings(schema, collectSettings(REALM_SERVER_SETTINGS, flags, env), REALM_SERVER_SETTINGS);
  const bind = parseBindAddress(config.listen)!;
  const management = parseBindAddress(config.managementListen)!;
  if (management.port !== 0 && management.port === bind.port) {
    throw new ConfigError([
      `--management-listen / MANAGEMENT_LISTEN_ADDRESS: ${config.managementListen} is the serving port (--listen ${config.listen}); metrics and readiness are never served there, choose another port (default :9090)`,
    ]);
  }
  const fenceMargin = config.fenceMargin ?? defaultFenceMarginMs(config.leaseDuration);
  const named = (setting: DocumentedSetting) => `${setting.flag} / ${setting.env}`;
  const timing = leaseTimingProblems(
    { leaseDurationMs: config.leaseDuration, heartbeatIntervalMs: config.heartbeatInterval, fenceMarginMs: fenceMargin },
    { leaseDurationMs: named(REALM_SERVER_SETTINGS.leaseDuration), heartbeatIntervalMs: named(REALM_SERVER_SETTINGS.heartbeatInterval), fenceMarginMs: named(REALM_SERVER_SETTINGS.fenceMargin) },
  );
  if (timing.length > 0) throw new ConfigError(timing);
  return { ...config, fenceMargin, bind, management };
}

export async function runRealmServer(flags: Record<string, string | boolean | undefined>, env: NodeJS.ProcessEnv): Promise<void> {
  const config = loadRealmServerConfig(flags, env);
  const logger = pino({ level: config.logLevel });
  const server = new RealmServer({
    databaseURL: config.databaseURL,
    layout: new RealmsLayout(config.realmsRoot),
    replicaId: config.replicaID,
    serveSourceRealms: config.serveSourceRealms,
    logger,
    listener: { leaseDurationMs: config.leaseDuration, heartbeatIntervalMs: config.heartbeatInterval, fenceMarginMs: config.fenceMargin },
  });
  await server.startManagement(config.management.port, config.management.host);
  await server.start(config.bind.port, config.bind.host);
  await new Promise<void>((resolve) => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => resolve());
  });
  logger.info('shutting down: deregistering the replica');
  await server.stop();
}
