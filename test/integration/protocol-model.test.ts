/**
 * The acknowledged-invalidation protocol's Promela model (model/realm-invalidation.pml), checked
 * exhaustively by Spin in its bounded configurations through hack/model.sh (which installs Spin,
 * cached; `make test` installs it first): the protocol must hold, and every mutant the model
 * declares must be caught with a counterexample. docs/protocol-model.md describes the model.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect, test } from '@jest/globals';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');

/** The mutant flags the model's header declares (`*   NAME   what it breaks`). */
async function declaredMutants(): Promise<string[]> {
  const source = await fs.readFile(path.join(ROOT, 'model/realm-invalidation.pml'), 'utf8');
  const header = source.slice(0, source.indexOf('*/'));
  const section = header.slice(header.indexOf('Each mutant is one -D flag'), header.indexOf('Bounds ('));
  return [...section.matchAll(/^ \*\s+([A-Z][A-Z_]+)\s{2,}/gm)].map((m) => m[1]!);
}

// Exhaustive state-space search: minutes on a busy two-core machine, so a longer budget than the
// project default; nothing here is timed, the bound only stops a hung verifier.
test('Spin: the protocol holds in every bounded slice and every mutant yields a counterexample', async () => {
  const mutants = await declaredMutants();
  expect(mutants.length).toBeGreaterThanOrEqual(7);

  const result = await run('bash', [path.join(ROOT, 'hack/model.sh')], { env: { ...process.env, MODEL: 'bounded' }, maxBuffer: 16 << 20 }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code?: number; stdout?: string; stderr?: string }) => ({ code: error.code ?? -1, stdout: error.stdout ?? '', stderr: error.stderr ?? '' }),
  );
  const lines = result.stdout.split('\n');
  expect({ code: result.code, stderr: result.code === 0 ? '' : result.stderr, stdout: result.stdout }).toMatchObject({ code: 0 });

  const slices = lines.filter((l) => /^model \S+\s+holds: \d+ states/.test(l));
  expect(slices.length).toBeGreaterThanOrEqual(2);
  for (const mutant of mutants) {
    expect(lines.find((l) => l.startsWith(`mutant ${mutant} `))).toMatch(/ killed: counterexample of \d+ steps/);
  }
}, 30 * 60_000);
