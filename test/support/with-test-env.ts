/**
 * Runs a command with the test environment, and tears it down afterwards (also on Ctrl-C or
 * SIGTERM); exits with the command's exit code.
 *
 *   tsx test/support/with-test-env.ts [--kube] -- <command> [args...]
 *
 * - PostgreSQL: `DATABASE_URL` when set, else an embedded server (as with-postgres.ts), exported
 *   as REALM_OPERATOR_TEST_ADMIN_URL.
 * - With --kube, a local Kubernetes control plane (etcd + kube-apiserver, see control-plane.ts),
 *   exported as REALM_OPERATOR_TEST_KUBECONFIG (admin kubeconfig), REALM_OPERATOR_TEST_KUBECTL
 *   (kubectl binary) and REALM_OPERATOR_TEST_KUBE_ASSETS (directory of the binaries).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { startControlPlane, kubeAssets, type ControlPlane } from './control-plane.js';
import { startEmbeddedPostgres, type PostgresServer } from './embedded-postgres.js';

const separator = process.argv.indexOf('--');
const flags = separator >= 0 ? process.argv.slice(2, separator) : process.argv.slice(2);
const [command, ...args] = separator >= 0 ? process.argv.slice(separator + 1) : [];
const unknown = flags.filter((f) => f !== '--kube');
if (!command || unknown.length > 0) {
  process.stderr.write(`usage: with-test-env.ts [--kube] -- <command> [args...]${unknown.length ? ` (unknown: ${unknown.join(' ')})` : ''}\n`);
  process.exit(2);
}
const withKube = flags.includes('--kube');

let postgres: PostgresServer | undefined;
let plane: ControlPlane | undefined;
let child: ChildProcess | undefined;
let tearingDown: Promise<void> | undefined;

function teardown(): Promise<void> {
  tearingDown ??= Promise.allSettled([plane?.stop(), postgres?.destroy()]).then(() => undefined);
  return tearingDown;
}

// While the command runs, a signal goes to it and we tear down once it has exited. During
// start-up we let what is starting finish, then tear it all down (a second signal exits at once).
// control-plane.ts also stops its plane on these signals by itself.
let interrupted: NodeJS.Signals | undefined;
const exitCode = (signal: NodeJS.Signals) => (signal === 'SIGINT' ? 130 : 143);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (child) {
      child.kill(signal);
      return;
    }
    if (interrupted) process.exit(exitCode(signal));
    interrupted = signal;
  });
}

const ms = (since: number) => `${Math.round(performance.now() - since)} ms`;
const env: NodeJS.ProcessEnv = { ...process.env };
try {
  const started = performance.now();
  const startPostgres = async () => {
    if (process.env.DATABASE_URL) {
      env.REALM_OPERATOR_TEST_ADMIN_URL = process.env.DATABASE_URL;
      return;
    }
    const t = performance.now();
    postgres = await startEmbeddedPostgres();
    env.REALM_OPERATOR_TEST_ADMIN_URL = postgres.adminURL;
    process.stderr.write(`embedded PostgreSQL on 127.0.0.1:${postgres.port} (started in ${ms(t)})\n`);
  };
  const startKube = async () => {
    if (!withKube) return;
    const t = performance.now();
    const assets = await kubeAssets(); // on a fresh machine this builds the binaries, with progress on stderr
    const tPlane = performance.now();
    plane = await startControlPlane({ assets });
    env.REALM_OPERATOR_TEST_KUBECONFIG = plane.kubeconfigPath;
    env.REALM_OPERATOR_TEST_KUBECTL = plane.kubectlPath;
    env.REALM_OPERATOR_TEST_KUBE_ASSETS = plane.assets;
    const assetsTime = tPlane - t > 1_000 ? `; binaries took ${Math.round(tPlane - t)} ms` : '';
    process.stderr.write(`Kubernetes control plane at ${plane.server} (started in ${ms(tPlane)}${assetsTime})\n`);
  };
  const results = await Promise.allSettled([startPostgres(), startKube()]);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (interrupted) throw new Error(`interrupted (${interrupted})`);
  if (failed) throw failed.reason;
  if (withKube) process.stderr.write(`test environment ready in ${ms(started)}\n`);
} catch (error) {
  process.stderr.write(`with-test-env: ${error instanceof Error ? error.message : String(error)}\n`);
  await teardown();
  process.exit(interrupted ? exitCode(interrupted) : 1);
}

// `node` is the Node running this script (Node 24 from node_modules), not whichever is first on PATH.
child = spawn(command === 'node' ? process.execPath : command, args, { stdio: 'inherit', env });
const code = await new Promise<number>((resolve) => {
  child!.once('error', (error) => {
    process.stderr.write(`with-test-env: cannot run ${command}: ${error.message}\n`);
    resolve(127);
  });
  child!.once('exit', (c, signal) => resolve(c ?? (signal === 'SIGINT' || signal === 'SIGTERM' ? exitCode(signal) : 1)));
});
await teardown();
process.exit(code);
