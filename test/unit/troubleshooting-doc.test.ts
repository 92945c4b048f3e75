/**
 * docs/troubleshooting.md explains every reason the code can put on a condition or an Event, so the
 * page cannot fall behind: reasons are collected from the sources (the `…Reasons` tables, literal
 * `reason: '…'` values and `reason: 'A' | 'B'` unions in the reconcilers, the API and the data plane)
 * and each must appear in the page as `` `Reason` ``.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Reasons } from '../../src/reconciler/published-realm/conditions.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const PAGE = fs.readFileSync(path.join(ROOT, 'docs/troubleshooting.md'), 'utf8');
const SCANNED = ['src/reconciler', 'src/api', 'src/dataplane'];

function sources(dir: string): string[] {
  return fs.readdirSync(path.join(ROOT, dir), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts')).map((f) => path.join(ROOT, dir, f));
}

/** Reasons written in a source file: `…Reasons = { A: 'A', … }`, `reason: 'A'` and `reason: 'A' | 'B'`. */
function reasonsIn(text: string): string[] {
  const found: string[] = [];
  for (const table of text.matchAll(/export const \w*Reasons = \{([^}]*)\}/g)) {
    for (const value of table[1]!.matchAll(/:\s*'([A-Z][A-Za-z]+)'/g)) found.push(value[1]!);
  }
  for (const literal of text.matchAll(/\breason\??:\s*((?:'[A-Z][A-Za-z]+'\s*\|?\s*)+)/g)) {
    for (const value of literal[1]!.matchAll(/'([A-Z][A-Za-z]+)'/g)) found.push(value[1]!);
  }
  return found;
}

const reasons = new Map<string, string>();
for (const dir of SCANNED) {
  for (const file of sources(dir)) for (const reason of reasonsIn(fs.readFileSync(file, 'utf8'))) reasons.set(reason, path.relative(ROOT, file));
}

test('the scan finds the reasons it should (the collector works)', () => {
  expect(reasonsIn(`export const XReasons = {\n  A: 'Alpha',\n  B: 'Beta',\n} as const;\nconst r = { reason: 'Gamma' }; type T = { reason: 'Delta' | 'Epsilon' };`)).toEqual(['Alpha', 'Beta', 'Gamma', 'Delta', 'Epsilon']);
  for (const reason of Object.values(Reasons)) expect(reasons.has(reason)).toBe(true);
});

test.each([...reasons.keys()].sort().map((reason) => [reason, reasons.get(reason)!]))('%s (from %s) is explained in docs/troubleshooting.md', (reason) => {
  expect(PAGE).toContain(`\`${reason}\``);
});
