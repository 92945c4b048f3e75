/**
 * `realm-operator realm-server`: the reference realm server (see src/realm-server/). Settings from
 * flags and environment, validated with zod; errors name the flag and the variable.
 */
import os from 'node:os';
import { pino } from 'pino';
import { z } from 'zod';
import { RealmsLayout } from '../dataplane/layout.js';
import { RealmServer } from '../realm-server/realm-server.js';
import { collectSettings, ConfigError, databaseURLSchema, durationSchema, flagOptions, logLevelSchema, parseSettings, type SettingName } from './config.js';
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
  logLevel: logLevelSchema,
});

export const REALM_SERVER_SETTINGS: Record<keyof z.infer<typeof schema>, SettingName> = {
  databaseURL: { flag: '--database-url', env: 'DATABASE_URL' },
  realmsRoot: { flag: '--realms-root', env: 'REALMS_ROOT' },
  listen: { flag: '--listen', env: 'LISTEN_ADDRESS' },
  managementListen: { flag: '--management-listen', env: 'MANAGEMENT_LISTEN_ADDRESS' },
  serveSourceRealms: { flag: '--serve-source-realms', env: 'SERVE_SOURCE_REALMS', boolean: true },
  replicaID: { flag: '--replica-id', env: 'POD_NAME' },
  leaseDuration: { flag: '--lease-duration', env: 'LISTENER_LEASE_DURATION' },
  heartbeatInterval: { flag: '--heartbeat-interval', env: 'LISTENER_HEARTBEAT_INTERVAL' },
  logLevel: { flag: '--log-level', env: 'LOG_LEVEL' },
};

export const realmServerFlagOptions = flagOptions(REALM_SERVER_SETTINGS);

export type RealmServerConfig = z.infer<typeof schema> & { bind: BindAddress; management: BindAddress };
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
  return { ...config, bind, management };
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
    listener: { leaseDurationMs: config.leaseDuration, heartbeatIntervalMs: config.heartbeatInterval },
  });
  await server.startManagement(config.management.port, config.management.host);
  await server.start(config.bind.port, config.bind.host);
  await new Promise<void>((resolve) => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => resolve());
  });
  logger.info('shutting down: deregistering the replica');
  await server.stop();
}
