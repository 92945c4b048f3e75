/**
 * The built package: both entry points resolve from inside the repo, the listener entry point
 * pulls in nothing of the operator side, and the CLI migrates a real database.
 * Needs `npm run build` first (`make test` does it).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { createTestDatabase } from '../support/database.js';
import { MIGRATIONS } from '../../src/dataplane/migrations.js';

const run = promisify(execFile);
const repo = path.resolve(import.meta.dirname, '../..');
const dist = path.join(repo, 'dist');

beforeAll(async () => {
  await fs.access(path.join(dist, 'listener/index.js')).catch(() => {
    throw new Error('dist/ is missing: run `npm run build` (make test does) before the integration tests');
  });
});

test('realm-operator and realm-operator/listener resolve and export the documented names', async () => {
  const script = `
    const listener = await import('realm-operator/listener');
    const operator = await import('realm-operator');
    console.log(JSON.stringify({ listener: Object.keys(listener), operator: Object.keys(operator) }));`;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: repo });
  const { listener, operator } = JSON.parse(stdout) as { listener: string[]; operator: string[] };
  expect(listener).toEqual(
    expect.arrayContaining([
      'parseRealmFileChangePayload',
      'parseModuleCacheInvalidation',
      'parseRealmRegistryPayload',
      'REALM_FILE_CHANGES_CHANNEL',
      'REALM_FILE_CHANGES_WILDCARD',
      'MODULE_CACHE_INVALIDATED_CHANNEL',
      'REALM_REGISTRY_CHANNEL',
      'RealmListener',
    ]),
  );
  expect(operator).toEqual(
    expect.arrayContaining(['advisoryLockKey', 'withRealmLock', 'publishRealm', 'unpublishRealm', 'clearRealmDefinitions', 'notifyAllFileChanges', 'enqueueReindex', 'waitForReplicaAcks', 'migrate']),
  );
  // Type declarations are emitted beside the code.
  await fs.access(path.join(dist, 'listener/index.d.ts'));
  await fs.access(path.join(dist, 'index.d.ts'));
});

test('the listener entry point imports nothing from the operator side or Kubernetes', async () => {
  const seen = new Set<string>();
  const packages = new Set<string>();
  async function visit(file: string) {
    if (seen.has(file)) return;
    seen.add(file);
    const source = await fs.readFile(file, 'utf8');
    for (const match of source.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]/g)) {
      const specifier = match[1]!;
      if (specifier.startsWith('.')) await visit(path.resolve(path.dirname(file), specifier));
      else packages.add(specifier.split('/').slice(0, specifier.startsWith('@') ? 2 : 1).join('/'));
    }
  }
  await visit(path.join(dist, 'listener/index.js'));
  const files = [...seen].map((f) => path.relative(dist, f));
  expect(files.every((f) => f.startsWith('listener/') || f.startsWith('wire/') || f.startsWith('common/'))).toBe(true);
  expect([...packages].filter((p) => !p.startsWith('node:')).sort()).toEqual(['pg', 'pino', 'prom-client', 'zod']);
});

test('the CLI migrates a database, checks it, and names bad settings', async () => {
  const db = await createTestDatabase({ migrate: false });
  try {
    const cli = path.join(dist, 'cli/main.js');
    const missing = await run(process.execPath, [cli, 'check-schema'], { env: { ...process.env, DATABASE_URL: db.url } }).catch((e: { code: number; stderr: string }) => e);
    expect(missing).toMatchObject({ code: 1 });
    expect((missing as { stderr: string }).stderr).toMatch(/missing .*table public\.realm_registry.*Fix: run `realm-operator migrate`/);
    const migrated = await run(process.execPath, [cli, 'migrate', '--database-url', db.url]);
    expect(migrated.stdout).toBe(`applied migrations ${MIGRATIONS.map((m) => m.version).join(', ')}\n`);
    expect((await run(process.execPath, [cli, 'migrate', '--database-url', db.url])).stdout).toBe('schema is up to date\n');
    expect((await run(process.execPath, [cli, 'check-schema', '--database-url', db.url])).stdout).toBe('schema is complete\n');
    const bad = await run(process.execPath, [cli, 'migrate', '--database-url', 'mysql://x/y']).catch((e: { stderr: string }) => e);
    expect((bad as { stderr: string }).stderr).toContain('--database-url / DATABASE_URL: must be a postgres:// or postgresql:// connection string');
  } finally {
    await db.drop();
  }
});
