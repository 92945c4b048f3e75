/**
 * The acknowledged-invalidation protocol's Promela model (model/realm-invalidation.pml), checked
 * exhaustively by Spin in its bounded configurations through hack/model.sh (which installs Spin,
 * cached; `make test` installs it first): the protocol must hold, and every mutant the model
 * declares must be caught with a counterexample. docs/protocol-model.md describes the model.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect, test } from '@jest/globals';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');

/** The mutant flags the model's header declares (`*   NAME   what it breaks`). */
async function declaredMutants(): Promise<string[]> {
  const source = await fs.readFile(path.join(ROOT, 'model/realm-invalidation.pml'), 'utf8');
  const header = source.slice(0, source.indexOf('*/'));
  // Up to the completion-proof mutants, which hack/model.sh does not run (checked below).
  const section = header.slice(header.indexOf('Each mutant is one -D flag'), header.indexOf('Mutants of the completion proofs'));
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

/**
 * The completion-proof mutants the model's header lists with their slice (`*   NAME  slice  what`,
 * in the block after "Mutants of the completion proofs"), each run here as hack/model.sh runs its
 * own: the slice's bounds from hack/model.sh, spin -a, gcc, pan; each must end in a counterexample.
 */
async function proofMutants(): Promise<Array<{ name: string; slice: string }>> {
  const source = await fs.readFile(path.join(ROOT, 'model/realm-invalidation.pml'), 'utf8');
  const header = source.slice(0, source.indexOf('*/'));
  const block = header.slice(header.indexOf('Mutants of the completion proofs'), header.indexOf('Bounds ('));
  return [...block.matchAll(/^ \*\s+([A-Z][A-Z_]+)\s+([a-z]+)\s{2,}/gm)].map((m) => ({ name: m[1]!, slice: m[2]! }));
}

test('Spin: every completion-proof mutant yields a counterexample in its slice', async () => {
  const mutants = await proofMutants();
  expect(mutants.map((m) => m.name)).toEqual(expect.arrayContaining(['PROOF_ANY_EPOCH', 'PROOF_NO_GRACE']));
  const script = await fs.readFile(path.join(ROOT, 'hack/model.sh'), 'utf8');
  const spin = (await run('bash', [path.join(ROOT, 'hack/model.sh'), '--install'])).stdout.trim();
  for (const { name, slice } of mutants) {
    const bounds = new RegExp(`"${slice}:([^"]+)"`).exec(script)?.[1];
    expect({ name, slice, bounds }).toMatchObject({ bounds: expect.stringMatching(/-D/) });
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), `realm-model-${name}-`));
    try {
      await fs.copyFile(path.join(ROOT, 'model/realm-invalidation.pml'), path.join(dir, 'model.pml'));
      await run(spin, ['-a', `-D${name}`, ...bounds!.split(/\s+/), 'model.pml'], { cwd: dir });
      await run('gcc', ['-O2', '-w', '-DSAFETY', '-DNOBOUNDCHECK', '-DMEMLIM=4096', '-DCOLLAPSE', '-o', 'pan', 'pan.c'], { cwd: dir });
      const pan = await run('./pan', ['-m2000000', '-w26'], { cwd: dir, maxBuffer: 16 << 20 }).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? '' }));
      expect({ name, verdict: /errors: (\d+)/.exec(pan.stdout)?.[1], violated: /assertion violated/.test(pan.stdout) }).toEqual({ name, verdict: '1', violated: true });
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }
}, 30 * 60_000);
