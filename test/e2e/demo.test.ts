/**
 * `make demo` keeps working: the script runs the whole system and exits 0 with its table; and
 * Ctrl-C (SIGINT to its whole process group, as a terminal sends it) at any point stops it with
 * 130, a one-line notice, no stack trace, and nothing left behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { eventually } from '../support/realms.js';

const repo = path.resolve(import.meta.dirname, '../..');

interface Demo {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

/** Runs the demo in its own process group; `tmp` becomes its TMPDIR so leftovers can be seen. */
function runDemo(tmp?: string): Demo {
  const child = spawn(process.execPath, ['--import', 'tsx', 'hack/demo.ts'], {
    cwd: repo,
    env: { ...process.env, DATABASE_URL: '', ...(tmp ? { TMPDIR: tmp } : {}) },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  return { child, output: () => out, exited };
}

/** True while any process of the group `pgid` is alive. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The embedded PostgreSQL temp dirs under `tmp`. */
async function postgresDirs(tmp: string): Promise<string[]> {
  return (await fs.readdir(tmp).catch(() => [] as string[])).filter((name) => name.startsWith('realm-operator-pg-')).sort();
}

test('hack/demo.ts publishes, republishes and shows every replica serving the new content', async () => {
  const demo = runDemo();
  const code = await demo.exited;
  const out = demo.output();
  expect({ code, tail: out.slice(-3000) }).toMatchObject({ code: 0 });
  expect(out).toMatch(/realm-server-1\s+\| \{"title":"Hello, v1"\} \(hit, epoch 1\)\s+\| \{"title":"Hello, v2"\} \(miss, epoch 2\)/);
  expect(out).toContain('replicas acknowledged 3/3 (Acknowledged)');
  // ... while connected through their own least-privilege role, not the operator's credentials.
  expect(out).toMatch(/realm servers connect as demo_realm_server_[0-9a-f]+, a member of realm_operator_replica/);
  expect(out).toContain('no replica serves pre-publish bytes after Ready.');
}, 180_000);

describe('Ctrl-C', () => {
  let tmp: string;
  beforeEach(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'demo-ctrl-c-'));
    await fs.chmod(tmp, 0o1777); // like /tmp: as root, PostgreSQL runs as `postgres` from a copy in here
  });
  afterEach(async () => {
    await fs.rm(tmp, { recursive: true, force: true });
  });

  async function interruptWhen(demo: Demo, ready: () => Promise<boolean>, what: string): Promise<number | null> {
    await eventually(
      async () => {
        if (demo.child.exitCode !== null) throw new Error(`the demo exited (${demo.child.exitCode}) before it was interrupted:\n${demo.output().slice(-2000)}`);
        return ready();
      },
      120_000,
      () => `${what}; output:\n${demo.output().slice(-2000)}`,
    );
    process.kill(-demo.child.pid!, 'SIGINT');
    return demo.exited;
  }

  function expectQuietInterrupt(code: number | null, out: string): void {
    expect({ code, out: out.slice(-2000) }).toMatchObject({ code: 130 });
    expect(out).toContain('interrupted, cleaning up');
    expect(out).not.toContain('demo failed');
    expect(out).not.toMatch(/\n\s+at .+:\d+:\d+/); // no stack frame
  }

  test('during PostgreSQL start-up (initdb holding its password file): exit 130, no stack, no password file or data directory left', async () => {
    const demo = runDemo(tmp);
    const passwordFileExists = async () => {
      for (const dir of await postgresDirs(tmp)) if (await fs.access(path.join(tmp, dir, 'pwfile')).then(() => true, () => false)) return true;
      return false;
    };
    const code = await interruptWhen(demo, passwordFileExists, 'initdb never started');
    expectQuietInterrupt(code, demo.output());
    await eventually(async () => !groupAlive(demo.child.pid!), 30_000, () => 'processes of the demo outlived it');
    expect(await postgresDirs(tmp)).toEqual([]);
  }, 180_000);

  test('after start-up: exit 130, no stack, every process stopped and PostgreSQL\'s directory removed', async () => {
    const demo = runDemo(tmp);
    const code = await interruptWhen(demo, async () => demo.output().includes('applying PublishedRealm demo'), 'the demo never got going');
    expectQuietInterrupt(code, demo.output());
    await eventually(async () => !groupAlive(demo.child.pid!), 30_000, () => 'processes of the demo outlived it');
    expect(await postgresDirs(tmp)).toEqual([]);
  }, 180_000);
});
