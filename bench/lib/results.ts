/**
 * The raw data every benchmark writes to bench/results/<bench>.json, which bench/report.ts renders
 * into docs/benchmarks.md (tables and SVG plots). One shape for all benches so the report never
 * hard-codes a number: everything it shows comes from a file a bench run wrote.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const RESULTS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'results');

export interface BenchTable {
  title: string;
  columns: string[];
  rows: (string | number)[][];
  /** What the reader should know to read the numbers (units, what the baseline is). */
  note?: string;
}

export interface BenchSeries {
  title: string;
  xLabel: string;
  yLabel: string;
  /** Plotted on a log scale when values span more than two decades (each axis on its own). */
  lines: { name: string; points: [number, number][] }[];
  /** `line` (default, numeric x) or `bar` (one group of bars per distinct x, one bar per line). */
  kind?: 'line' | 'bar';
}

export interface BenchGoal {
  goal: string;
  target: string;
  measured: string;
  met: boolean;
  /** Where a goal is missed: what limits it (a profile, the floor it hits), with the command. */
  why?: string;
}

export interface BenchResults {
  bench: string;
  command: string;
  startedAt: string;
  durationSeconds: number;
  machine: MachineInfo;
  tables: BenchTable[];
  series: BenchSeries[];
  goals: BenchGoal[];
  /** Free-form raw samples for anyone re-analysing (kept small: summaries, not every sample). */
  raw?: unknown;
}

export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  kernel: string;
  loadAverage1m: number;
  /** The 1-minute load average when the bench process started (other work on a shared machine shows here). */
  loadAverage1mAtStart?: number;
}

/** Taken when a bench imports this module, i.e. as it starts. */
const LOAD_AT_START = Math.round(os.loadavg()[0]! * 100) / 100;

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    kernel: `${os.type()} ${os.release()}`,
    loadAverage1m: Math.round(os.loadavg()[0]! * 100) / 100,
    loadAverage1mAtStart: LOAD_AT_START,
  };
}

export async function writeResults(results: Omit<BenchResults, 'machine'> & { machine?: MachineInfo }): Promise<string> {
  await fs.mkdir(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `${results.bench}.json`);
  await fs.writeFile(file, JSON.stringify({ ...results, machine: results.machine ?? machineInfo() }, null, 2) + '\n');
  return file;
}

/** Prints a table the way every bench prints its tables, aligned columns. */
export function printTable(table: BenchTable): void {
  const cells = [table.columns, ...table.rows.map((r) => r.map(String))];
  const widths = table.columns.map((_, i) => Math.max(...cells.map((r) => String(r[i] ?? '').length)));
  console.log(`\n${table.title}`);
  for (const [n, row] of cells.entries()) {
    console.log(row.map((c, i) => String(c).padStart(widths[i]!)).join('  '));
    if (n === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
  if (table.note) console.log(table.note);
}

/** Prints a bench's goals as a table: target, what was measured, met or not. */
export function printGoals(goals: BenchGoal[]): void {
  printTable({ title: 'Goals', columns: ['goal', 'target', 'measured', 'met'], rows: goals.map((g) => [g.goal, g.target, g.measured, g.met ? 'yes' : 'NO']) });
}
