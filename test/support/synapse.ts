/**
 * A real Synapse (Matrix homeserver) for tests: `matrix-synapse` from PyPI in the venv that
 * `hack/synapse.sh` provides (installed once, reused), run on a free loopback port with SQLite
 * in a temporary directory. server_name `localhost`, a random registration_shared_secret, only the
 * client API (no federation listener, no key servers), rate limits out of the way.
 *
 * Teardown as control-plane.ts does it: `stop()`, the parent's 'exit', SIGINT and SIGTERM kill
 * Synapse and remove the directory, and a detached watchdog does both if this process dies
 * without running any handler (SIGKILL, a force-exited Jest worker).
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { freePort } from './embedded-postgres.js';

export interface SynapseServer {
  /** `http://127.0.0.1:<port>/` */
  url: string;
  serverName: string;
  registrationSharedSecret: string;
  /** Wall-clock time from startSynapse() to `/_matrix/client/versions` answering, in ms. */
  startedInMs: number;
  /** The SQLite database (users live in its `users` table). */
  databasePath: string;
  /** Kills Synapse and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

const REPO_ROOT = path.resolve(import.meta.dirname, '../..');

/** The venv holding Synapse: REALM_OPERATOR_SYNAPSE_VENV, else what `hack/synapse.sh` prints (installing it the first time). */
export async function synapseVenv(): Promise<string> {
  if (process.env.REALM_OPERATOR_SYNAPSE_VENV) return process.env.REALM_OPERATOR_SYNAPSE_VENV;
  const { stdout } = await promisify(execFile)('bash', [path.join(REPO_ROOT, 'hack/synapse.sh')], { maxBuffer: 1 << 20, timeout: 15 * 60_000 });
  const venv = stdout.trim().split('\n').pop();
  if (!venv) throw new Error('hack/synapse.sh printed no venv directory; run `make synapse` to see why');
  return venv;
}

export async function startSynapse(): Promise<SynapseServer> {
  // Its port is probed free, then bound by Synapse seconds later (Python's start-up): should another
  // server take it meanwhile, start again on another.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startSynapseOnce();
    } catch (error) {
      if (attempt >= 3 || !/Address already in use/i.test((error as Error).message)) throw error;
    }
  }
}

async function startSynapseOnce(): Promise<SynapseServer> {
  const started = performance.now();
  const venv = await synapseVenv();
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'realm-operator-synapse-'));
  const port = await freePort();
  const serverName = 'localhost';
  const registrationSharedSecret = randomBytes(24).toString('hex');
  const databasePath = path.join(dir, 'homeserver.db');
  const configPath = path.join(dir, 'homeserver.yaml');
  const unlimited = { per_second: 10_000, burst_count: 10_000 };
  const config = {
    server_name: serverName,
    pid_file: path.join(dir, 'homeserver.pid'),
    listeners: [{ port, bind_addresses: ['127.0.0.1'], type: 'http', tls: false, x_forwarded: false, resources: [{ names: ['client'], compress: false }] }],
    database: { name: 'sqlite3', args: { database: databasePath } },
    media_store_path: path.join(dir, 'media'),
    signing_key_path: path.join(dir, 'signing.key'),
    registration_shared_secret: registrationSharedSecret,
    macaroon_secret_key: randomBytes(24).toString('hex'),
    form_secret: randomBytes(24).toString('hex'),
    report_stats: false,
    enable_metrics: false,
    trusted_key_servers: [],
    suppress_key_server_warning: true,
    federation_domain_whitelist: [],
    rc_login: { address: unlimited, account: unlimited, failed_attempts: unlimited },
    rc_registration: unlimited,
    rc_message: unlimited,
    rc_admin_redaction: unlimited,
  };
  await fsp.writeFile(configPath, YAML.stringify(config), { mode: 0o600 });
  // An ed25519 signing key is any 32 random bytes (Synapse reads `<alg> <version> <unpadded base64 seed>`).
  await fsp.writeFile(config.signing_key_path, `ed25519 a_test ${randomBytes(32).toString('base64').replace(/=+$/, '')}\n`, { mode: 0o600 });

  const proc = spawn(path.join(venv, 'bin', 'python'), ['-m', 'synapse.app.homeserver', '--config-path', configPath], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SYNAPSE_NO_TLS: '1', PYTHONUNBUFFERED: '1' },
  });
  let log = '';
  const keep = (chunk: Buffer) => (log = (log + chunk.toString()).slice(-6000));
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  const exited = new Promise<never>((_, reject) => proc.once('exit', (code, signal) => reject(new Error(`synapse exited (${code ?? signal}) before answering:\n${log}`))));
  exited.catch(() => undefined);

  // Kills Synapse and removes `dir` if this process dies without running any handler.
  const watchdog = spawn('sh', ['-c', 'cat >/dev/null 2>&1; kill -TERM "$1" 2>/dev/null; sleep 3; kill -KILL "$1" 2>/dev/null; rm -rf "$2"', 'sh', String(proc.pid ?? 0), dir], {
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  watchdog.on('error', () => undefined);
  watchdog.stdin!.on('error', () => undefined);
  watchdog.unref();
  (watchdog.stdin as unknown as { unref?: () => void }).unref?.();

  const killNow = () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      // the watchdog retries
    }
  };
  const onSignal = (signal: NodeJS.Signals) => {
    void stop().finally(() => {
      // Re-raise for the default action unless someone else handles this signal.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    });
  };
  process.on('exit', killNow);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let stopping: Promise<void> | undefined;
  function stop(): Promise<void> {
    stopping ??= (async () => {
      process.off('exit', killNow);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      if (proc.exitCode === null && proc.signalCode === null) {
        const gone = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
        await gone;
        clearTimeout(timer);
      }
      try {
        process.kill(-watchdog.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
      watchdog.stdin!.destroy();
      await fsp.rm(dir, { recursive: true, force: true });
    })();
    return stopping;
  }

  const url = `http://127.0.0.1:${port}/`;
  try {
    const deadline = Date.now() + 120_000;
    for (;;) {
      const answered = await Promise.race([
        fetch(`${url}_matrix/client/versions`, { signal: AbortSignal.timeout(2_000) }).then((r) => r.ok, () => false),
        exited,
      ]);
      if (answered) break;
      if (Date.now() > deadline) throw new Error(`synapse did not answer /_matrix/client/versions within 120 s:\n${log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { url, serverName, registrationSharedSecret, startedInMs: Math.round(performance.now() - started), databasePath, stop };
}

/** `@<localpart>:<server>` of every user Synapse has, from its admin-free SQLite view (python's sqlite3). */
export async function synapseUsers(server: SynapseServer): Promise<string[]> {
  const venv = await synapseVenv();
  const { stdout } = await promisify(execFile)(path.join(venv, 'bin', 'python'), [
    '-c',
    'import sqlite3, sys, json; c = sqlite3.connect(sys.argv[1]); print(json.dumps([r[0] for r in c.execute("SELECT name FROM users ORDER BY name")]))',
    server.databasePath,
  ]);
  return JSON.parse(stdout) as string[];
}
