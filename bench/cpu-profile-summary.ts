/**
 * Sums V8 .cpuprofile files (bench/fanout-child.ts FANOUT_CPU_PROFILE_DIR) into self time by
 * function and by where the code lives, so a fleet's profiles read as one:
 *
 *   npx tsx bench/cpu-profile-summary.ts <dir> [prefix] [top]
 *
 * prefix: only files whose name starts with it (e.g. bench-listener-); top: functions listed (30).
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const [dir, prefix = '', top = '30'] = process.argv.slice(2);
if (!dir) throw new Error('usage: cpu-profile-summary.ts <dir> [prefix] [top]');
const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile') && f.startsWith(prefix));
const byFunction = new Map<string, number>();
const byArea = new Map<string, number>();
let total = 0;

/** Where a frame's code lives: our source, a package, Node itself, or V8's own bookkeeping. */
function area(url: string, name: string): string {
  if (!url) return name.startsWith('(') ? name : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return `package ${pkg[1]}`;
  if (url.startsWith('node:')) return 'node:*';
  const own = /\/(src|bench)\/(.*)$/.exec(url);
  return own ? `${own[1]}/${own[2]}` : url;
}

for (const file of files) {
  const profile = JSON.parse(await readFile(path.join(dir, file), 'utf8')) as Profile;
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  for (const [i, id] of profile.samples.entries()) {
    const us = profile.timeDeltas[i + 1] ?? 0; // a sample's time is the gap to the next one
    const frame = nodes.get(id)!.callFrame;
    if (frame.functionName === '(idle)') continue;
    const short = frame.url.replace(/^.*\/(node_modules|src|bench)\//, '$1/');
    const key = `${frame.functionName || '(anonymous)'} ${short}:${frame.lineNumber + 1}`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + us);
    const where = area(frame.url, frame.functionName);
    byArea.set(where, (byArea.get(where) ?? 0) + us);
    total += us;
  }
}
const show = (title: string, m: Map<string, number>, n: number) => {
  console.log(`\n${title}`);
  for (const [k, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, n)) console.log(`${(us / 1000).toFixed(1).padStart(9)} ms ${((100 * us) / total).toFixed(1).padStart(5)}%  ${k}`);
};
console.log(`${files.length} profiles, ${(total / 1000).toFixed(1)} ms busy (idle left out)`);
show('by area (self time)', byArea, 20);
show('by function (self time)', byFunction, Number(top));
