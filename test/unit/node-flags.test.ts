/**
 * The operator's Node flags (src/cli/node-flags.ts) are what every launcher runs it with: the
 * image's ENTRYPOINT and bin/realm-operator are executed here with a stand-in `node` that prints
 * the arguments it was given, so a launcher that drifts from the constant fails.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { nodeFlagsFor, OPERATOR_NODE_FLAGS } from '../../src/cli/node-flags.js';

const REPO = path.resolve(import.meta.dirname, '../..');
let scratch: string;
let fakeNode: string;

beforeAll(() => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'node-flags-'));
  fs.mkdirSync(path.join(scratch, 'fake-bin'));
  fakeNode = path.join(scratch, 'fake-bin/node');
  // Prints one argument per line: what the launcher passed to node.
  fs.writeFileSync(fakeNode, '#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n', { mode: 0o755 });
});
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

function argsOf(result: ReturnType<typeof spawnSync>): string[] {
  if (result.status !== 0) throw new Error(`launcher exited ${result.status}: ${String(result.stderr)}`);
  return String(result.stdout).split('\n').filter(Boolean);
}

describe('nodeFlagsFor', () => {
  it('gives the operator command the memory flags and every other command none', () => {
    expect(OPERATOR_NODE_FLAGS).toContain('--no-opt');
    expect(nodeFlagsFor('operator')).toEqual(OPERATOR_NODE_FLAGS);
    for (const command of ['realm-server', 'migrate', 'check-schema', 'seed-sample', undefined]) expect(nodeFlagsFor(command)).toEqual([]);
  });
});

describe('a Node process with the operator flags', () => {
  // --lite-mode (jitless) removes WebAssembly, and with it fetch (undici parses HTTP in WebAssembly):
  // the operator registers realm users on Matrix with fetch.
  it('still has WebAssembly, so fetch works', async () => {
    const { createServer } = await import('node:http');
    const server = createServer((_req, res) => res.end('reached'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    try {
      const code = `fetch('http://127.0.0.1:${port}/').then(async (r) => process.stdout.write(typeof WebAssembly + ' ' + (await r.text())))`;
      const child = spawn(process.execPath, [...OPERATOR_NODE_FLAGS, '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      let err = '';
      child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
      const status = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      expect({ status, out, err }).toEqual({ status: 0, out: 'object reached', err: '' });
    } finally {
      server.close();
    }
  });
});

describe('the image ENTRYPOINT', () => {
  const line = fs.readFileSync(path.join(REPO, 'Dockerfile'), 'utf8').split('\n').find((l) => l.startsWith('ENTRYPOINT '));
  const entrypoint = JSON.parse(line!.slice('ENTRYPOINT '.length)) as string[];
  const run = (args: string[]) =>
    argsOf(spawnSync(entrypoint[0]!, [...entrypoint.slice(1), ...args], { env: { PATH: `${path.dirname(fakeNode)}:/usr/bin:/bin` }, encoding: 'utf8' }));

  it.each([
    [['operator'], [...OPERATOR_NODE_FLAGS, 'dist/cli/main.js', 'operator']],
    [['operator', '--namespace', 'a b'], [...OPERATOR_NODE_FLAGS, 'dist/cli/main.js', 'operator', '--namespace', 'a b']],
    [['realm-server', '--port', '4201'], ['dist/cli/main.js', 'realm-server', '--port', '4201']],
    [['migrate'], ['dist/cli/main.js', 'migrate']],
  ])('runs `%j` as node %j', (args, expected) => {
    expect(run(args)).toEqual(expected);
  });
});

describe('bin/realm-operator', () => {
  it.each([
    [['operator', '--log-level', 'debug'], (main: string) => [...nodeFlagsFor('operator'), main, 'operator', '--log-level', 'debug']],
    [['realm-server'], (main: string) => [main, 'realm-server']],
  ])('runs `%j` with the same flags as the image', (args, expected) => {
    // A copy beside a stand-in dist/: the launcher finds dist/ relative to itself.
    const root = path.join(scratch, 'checkout');
    fs.mkdirSync(path.join(root, 'bin'), { recursive: true });
    fs.mkdirSync(path.join(root, 'dist/cli'), { recursive: true });
    fs.copyFileSync(path.join(REPO, 'bin/realm-operator'), path.join(root, 'bin/realm-operator'));
    fs.writeFileSync(path.join(root, 'dist/cli/main.js'), '');
    const result = spawnSync(path.join(root, 'bin/realm-operator'), args, { env: { PATH: '/usr/bin:/bin', REALM_OPERATOR_NODE: fakeNode }, encoding: 'utf8' });
    expect(argsOf(result)).toEqual(expected(path.join(root, 'dist/cli/main.js')));
  });
});
