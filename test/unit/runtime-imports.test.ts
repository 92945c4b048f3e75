/**
 * The generic controller runtime knows nothing of realms: every module it imports, transitively,
 * is in src/runtime/ or the neutral src/common/ (never the listener, dataplane, reconciler or API).
 */
import fs from 'node:fs/promises';
import path from 'node:path';

const src = path.resolve(import.meta.dirname, '../../src');

test('src/runtime imports only itself, src/common and packages', async () => {
  const seen = new Set<string>();
  async function visit(file: string): Promise<void> {
    if (seen.has(file)) return;
    seen.add(file);
    const source = await fs.readFile(file, 'utf8');
    for (const match of source.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]/g)) {
      const specifier = match[1]!;
      if (specifier.startsWith('.')) await visit(path.resolve(path.dirname(file), specifier).replace(/\.js$/, '.ts'));
    }
  }
  await visit(path.join(src, 'runtime/index.ts'));
  const outside = [...seen].map((f) => path.relative(src, f)).filter((f) => !f.startsWith('runtime/') && !f.startsWith('common/'));
  expect(outside).toEqual([]);
  expect(seen.size).toBeGreaterThan(5);
});
