/**
 * The published realm's content: ~15 files in nested directories, a few KB each, every one
 * embedding its path and the revision it was written for, with a deterministic body so a reader
 * can tell a complete file of revision N from anything else (a torn, truncated or wrong file).
 */
import { createHash } from 'node:crypto';

export const REALM_FILES: readonly string[] = [
  'index.json',
  'realm.json',
  'cards/1.json',
  'cards/2.json',
  'cards/3.json',
  'cards/4.json',
  'cards/5.json',
  'cards/archive/2023/old.json',
  'cards/archive/2024/recent.json',
  'people/alice.json',
  'people/bob.json',
  'people/team/leads.json',
  'assets/theme.css.json',
  'assets/icons/star.json',
  'deep/a/b/c/d/leaf.json',
];

const memo = new Map<string, string>();

/** The exact content of `file` at `revision` (2–5 KB, depending on the file). */
export function fileContent(file: string, revision: number): string {
  const key = `${revision}:${file}`;
  let content = memo.get(key);
  if (content === undefined) {
    content = render(file, revision);
    if (memo.size > 600) memo.clear();
    memo.set(key, content);
  }
  return content;
}

function render(file: string, revision: number): string {
  const size = 2048 + (createHash('sha256').update(file).digest()[0]! % 4) * 1024;
  const header = `{"revision":${revision},"file":${JSON.stringify(file)},"padding":"`;
  const footer = `"}\n`;
  let padding = '';
  let block = 0;
  while (header.length + padding.length + footer.length < size) {
    padding += createHash('sha256').update(`${file}:${revision}:${block++}`).digest('hex');
  }
  padding = padding.slice(0, Math.max(0, size - header.length - footer.length));
  return header + padding + footer;
}

export function realmContent(revision: number): Record<string, string> {
  return Object.fromEntries(REALM_FILES.map((f) => [f, fileContent(f, revision)]));
}

export type BodyCheck = { kind: 'ok'; revision: number } | { kind: 'corrupt'; reason: string; revision?: number };

/** Classifies a 200 body read for `file`: a complete file of some revision, or corrupt. */
export function checkBody(file: string, body: string): BodyCheck {
  const match = /^\{"revision":(\d+),"file":("(?:[^"\\]|\\.)*")/.exec(body);
  if (!match) return { kind: 'corrupt', reason: `unrecognised body (${body.length} bytes): ${JSON.stringify(body.slice(0, 80))}` };
  const revision = Number(match[1]);
  const named = JSON.parse(match[2]!) as string;
  if (named !== file) return { kind: 'corrupt', reason: `body is ${named}, not ${file}`, revision };
  if (body !== fileContent(file, revision)) return { kind: 'corrupt', reason: `body of revision ${revision} is not the complete file (${body.length} bytes)`, revision };
  return { kind: 'ok', revision };
}
