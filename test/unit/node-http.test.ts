/**
 * src/runtime/node-http.ts: modules that load node:http through it do not pull Node's bundled
 * undici into the process (an ESM import of node:http does, in Node 24; docs/memory.md).
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';

const REPO = path.resolve(import.meta.dirname, '../..');

/** Node's internal modules with "undici" in their name after running `code` (ESM, with tsx for .ts). */
function undiciLoadedBy(code: string): string[] {
  const result = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `${code}\nprocess.stdout.write(JSON.stringify(process.moduleLoadList.filter((m) => m.includes('undici'))));`], {
    cwd: REPO,
    encoding: 'utf8',
  });
  if (result.status !== 0) throw new Error(`node exited ${result.status}: ${result.stderr}`);
  return JSON.parse(result.stdout) as string[];
}

test('an ESM import of node:http loads undici (why node-http.ts exists)', () => {
  expect(undiciLoadedBy("await import('node:http');")).not.toEqual([]);
});

test('node-http.ts, keep-alive.ts and kubeconfig.ts load node:http and node:https without undici', () => {
  const code = ["const { http, https } = await import('./src/runtime/node-http.ts');", "if (typeof http.request !== 'function' || typeof https.Agent !== 'function') throw new Error('not the http modules');", "await import('./src/runtime/keep-alive.ts');", "await import('./src/runtime/kubeconfig.ts');"].join('\n');
  expect(undiciLoadedBy(code)).toEqual([]);
});
