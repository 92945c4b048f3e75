/** `make demo` keeps working: the script runs the whole system and exits 0 with its table. */
import { spawn } from 'node:child_process';
import path from 'node:path';

test('hack/demo.ts publishes, republishes and shows every replica serving the new content', async () => {
  const repo = path.resolve(import.meta.dirname, '../..');
  const child = spawn(process.execPath, ['--import', 'tsx', 'hack/demo.ts'], { cwd: repo, env: { ...process.env, DATABASE_URL: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  expect({ code, tail: out.slice(-3000) }).toMatchObject({ code: 0 });
  expect(out).toMatch(/realm-server-1\s+\| \{"title":"Hello, v1"\} \(hit, epoch 1\)\s+\| \{"title":"Hello, v2"\} \(miss, epoch 2\)/);
  expect(out).toContain('replicas acknowledged 3/3 (Acknowledged)');
  expect(out).toContain('no replica serves pre-publish bytes after Ready.');
}, 180_000);
