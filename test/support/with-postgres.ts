/**
 * Runs a command with a real PostgreSQL: `DATABASE_URL` when set, else an embedded server started
 * for the duration of the command and removed afterwards (also on Ctrl-C or SIGTERM).
 * The command sees the server as REALM_OPERATOR_TEST_ADMIN_URL.
 *
 *   tsx test/support/with-postgres.ts -- <command> [args...]
 */
import { spawn } from 'node:child_process';
import { startEmbeddedPostgres, type PostgresServer } from './embedded-postgres.js';

const separator = process.argv.indexOf('--');
const [command, ...args] = separator >= 0 ? process.argv.slice(separator + 1) : [];
if (!command) {
  process.stderr.write('usage: with-postgres.ts -- <command> [args...]\n');
  process.exit(2);
}

let server: PostgresServer | undefined;
let adminURL = process.env.DATABASE_URL;
if (!adminURL) {
  const started = performance.now();
  server = await startEmbeddedPostgres();
  adminURL = server.adminURL;
  process.stderr.write(`embedded PostgreSQL on 127.0.0.1:${server.port} (started in ${Math.round(performance.now() - started)} ms)\n`);
}

// `node` is the Node running this script (Node 24 from node_modules), not whichever is first on PATH.
const child = spawn(command === 'node' ? process.execPath : command, args, { stdio: 'inherit', env: { ...process.env, REALM_OPERATOR_TEST_ADMIN_URL: adminURL } });
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal));
const code = await new Promise<number>((resolve) => child.on('exit', (c, s) => resolve(c ?? (s ? 128 + 1 : 1))));
await server?.destroy();
process.exit(code);
