/**
 * Renders docs/benchmarks.md and its plots (docs/benchmarks/*.svg) from every
 * bench/results/*.json the benches wrote (format: bench/lib/results.ts). Nothing here holds a
 * number: a bench that has not run yet is listed as such, and re-running a bench then this
 * script is the only way to change the page.
 *
 *   make bench-report
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RESULTS_DIR, type BenchResults, type BenchSeries, type BenchTable } from './lib/results.js';
import { renderPlot } from './lib/svg-plot.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DOC = path.join(ROOT, 'docs', 'benchmarks.md');
const PLOTS = path.join(ROOT, 'docs', 'benchmarks');

/** The issue's order (publish, Boxel, fan-out, scale, controller-runtime); anything else after, by name. */
const ORDER = ['publish-latency', 'publish', 'staging', 'boxel-comparison', 'boxel', 'lock-hold', 'fanout', 'scale', 'controller-runtime'];
const EXPECTED: Record<string, string> = {
  'publish-latency': 'make bench-publish',
  staging: 'make bench-staging',
  'boxel-comparison': 'make bench-boxel',
  fanout: 'make bench-fanout',
  scale: 'make bench-scale',
  'controller-runtime': 'make bench-controller-runtime',
};

interface Loaded {
  file: string;
  results?: BenchResults;
  problem?: string;
}

async function loadAll(): Promise<Loaded[]> {
  const names = (await fs.readdir(RESULTS_DIR).catch(() => [] as string[])).filter((n) => n.endsWith('.json'));
  const loaded = await Promise.all(
    names.map(async (name): Promise<Loaded> => {
      const file = path.join(RESULTS_DIR, name);
      try {
        const parsed = JSON.parse(await fs.readFile(file, 'utf8')) as unknown;
        const problem = shapeProblem(parsed);
        return problem ? { file, problem } : { file, results: parsed as BenchResults };
      } catch (error) {
        return { file, problem: (error as Error).message };
      }
    }),
  );
  const rank = (l: Loaded) => {
    const i = ORDER.indexOf(l.results?.bench ?? path.basename(l.file, '.json'));
    return i === -1 ? ORDER.length : i;
  };
  return loaded.sort((a, b) => rank(a) - rank(b) || a.file.localeCompare(b.file));
}

/** What makes a file unusable, naming the field, or undefined. */
function shapeProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return 'not a JSON object';
  const r = value as Record<string, unknown>;
  for (const field of ['bench', 'command', 'startedAt'] as const) if (typeof r[field] !== 'string') return `field "${field}" must be a string`;
  for (const field of ['tables', 'series', 'goals'] as const) if (!Array.isArray(r[field])) return `field "${field}" must be an array`;
  if (typeof r.machine !== 'object' || r.machine === null) return 'field "machine" must be an object (writeResults adds it)';
  return undefined;
}

/** Markdown table cell: pipes escaped, newlines flattened, numbers with thousands separators. */
function cell(value: string | number | undefined): string {
  if (value === undefined) return '';
  const text = typeof value === 'number' ? formatNumber(value) : value;
  return text.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value)) return value.toLocaleString('en-US');
  return value.toLocaleString('en-US', { maximumSignificantDigits: 4 });
}

function markdownTable(columns: string[], rows: (string | number | undefined)[][]): string {
  const head = `| ${columns.map(cell).join(' | ')} |`;
  // Right-aligned where every value is a number (so digits line up), left otherwise.
  const numeric = columns.map((_, i) => rows.length > 0 && rows.every((row) => typeof row[i] === 'number' || row[i] === undefined));
  const rule = `| ${numeric.map((n) => (n ? '---:' : '---')).join(' | ')} |`;
  return [head, rule, ...rows.map((row) => `| ${columns.map((_, i) => cell(row[i])).join(' | ')} |`)].join('\n');
}

function slug(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 60);
}

function machineLine(r: BenchResults): string {
  const m = r.machine;
  const load = m.loadAverage1mAtStart !== undefined ? `load average (1 min) ${m.loadAverage1mAtStart} at the start and ${m.loadAverage1m} at the end of the run` : `load average ${m.loadAverage1m} (1 min) at the end of the run`;
  return `${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB, ${m.kernel}, Node ${m.node}, ${load}`;
}

function renderTable(table: BenchTable): string {
  return [`**${table.title}**`, '', markdownTable(table.columns, table.rows), ...(table.note ? ['', `_${table.note}_`] : [])].join('\n');
}

async function renderSeries(bench: string, series: BenchSeries, used: Set<string>): Promise<string> {
  let name = `${slug(bench)}-${slug(series.title)}`;
  for (let n = 2; used.has(name); n++) name = `${slug(bench)}-${slug(series.title)}-${n}`;
  used.add(name);
  await fs.writeFile(path.join(PLOTS, `${name}.svg`), renderPlot(series));
  return `![${series.title}](benchmarks/${name}.svg)`;
}

const all = await loadAll();
await fs.mkdir(PLOTS, { recursive: true });
// Plots are regenerated from scratch: a renamed series leaves no stale file behind.
for (const old of await fs.readdir(PLOTS)) if (old.endsWith('.svg')) await fs.rm(path.join(PLOTS, old));

const ok = all.filter((l): l is Loaded & { results: BenchResults } => l.results !== undefined);
const out: string[] = [
  '# Benchmarks',
  '',
  '<!-- Generated by `make bench-report` (bench/report.ts) from bench/results/*.json. Do not edit: re-run the bench, then the report. -->',
  '',
  'Every number here was written by a bench run into `bench/results/<bench>.json` and rendered by `make bench-report`. ' +
    'Each comparison is measured within one run (baselines and floors beside the thing measured, interleaved where the bench can), ' +
    'so **ratios** are what to read: the machine these ran on is small and shared, and absolute times move with its load. ' +
    'Medians and p99 are over the rounds each table names.',
  '',
  '## Goals',
  '',
];
const goalRows = ok.flatMap(({ results: r }) => r.goals.map((g) => [r.bench, g.goal, g.target, g.measured, g.met ? '✅ met' : '❌ missed']));
out.push(goalRows.length > 0 ? markdownTable(['Bench', 'Goal', 'Target', 'Measured', ''], goalRows) : '_No bench has recorded goals yet._');
const timed = ok.filter(({ results: r }) => r.bench in EXPECTED);
if (timed.length > 0) {
  const seconds = timed.reduce((total, { results: r }) => total + r.durationSeconds, 0);
  const loads = ok.flatMap(({ results: r }) => [r.machine.loadAverage1mAtStart, r.machine.loadAverage1m]).filter((l): l is number => l !== undefined);
  out.push(
    '',
    `**\`make bench\` in time:** the ${timed.length} benches' own run times sum to ${formatNumber(Math.round(seconds / 6) / 10)} min ` +
      `(${timed.map(({ results: r }) => `${r.bench} ${formatNumber(r.durationSeconds)} s`).join(', ')}; plus \`make build\` and the report, seconds each) — ` +
      `${seconds <= 30 * 60 ? '✅ within' : '❌ over'} the 30 minutes \`make bench\` may take.`,
    '',
    `**The machine was shared.** These runs had the machine's ${ok[0]!.results.machine.cpus} cores to share with other sessions' builds and test suites running at the same time: ` +
      `1-minute load averages between ${formatNumber(Math.min(...loads))} and ${formatNumber(Math.max(...loads))} were recorded around them (each bench's own below). ` +
      'Absolute times are inflated and noisy for it, CPU seconds less so; ratios within one run are what to compare.',
  );
}
const missing = Object.keys(EXPECTED).filter((bench) => !ok.some((l) => l.results.bench === bench));
if (missing.length > 0) {
  out.push('', `Not run yet (no results file): ${missing.map((b) => `\`${b}\` (\`${EXPECTED[b]}\`)`).join(', ')}.`);
}
const broken = all.filter((l) => l.problem);
if (broken.length > 0) {
  out.push('', 'Results files that could not be read:', '', ...broken.map((l) => `- \`${path.relative(ROOT, l.file)}\`: ${l.problem}`));
}

const usedPlots = new Set<string>();
for (const { results: r } of ok) {
  out.push('', `## ${r.bench}`, '');
  out.push(`\`${r.command}\` — run ${r.startedAt.replace('T', ' ').replace(/\.\d+Z$/, ' UTC')}, ${formatNumber(r.durationSeconds)} s.  `);
  out.push(`Machine: ${machineLine(r)}.`);
  if (r.goals.length > 0) {
    out.push('', '**Goals**', '');
    for (const g of r.goals) {
      out.push(`- ${g.met ? '✅' : '❌'} ${g.goal}: **${g.measured}** (target ${g.target})${g.met ? '' : '.'}`);
      if (g.why) out.push(`  - Why: ${g.why.replace(/\r?\n/g, ' ')}`);
    }
  }
  for (const table of r.tables) out.push('', renderTable(table));
  for (const series of r.series) out.push('', await renderSeries(r.bench, series, usedPlots));
}

await fs.writeFile(DOC, `${out.join('\n')}\n`);
console.log(`wrote ${path.relative(process.cwd(), DOC)} (${ok.length} bench${ok.length === 1 ? '' : 'es'}, ${usedPlots.size} plot${usedPlots.size === 1 ? '' : 's'})`);
for (const l of broken) console.error(`could not read ${path.relative(process.cwd(), l.file)}: ${l.problem}`);
