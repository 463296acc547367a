import { mkdirSync, writeFileSync } from 'node:fs';
import { assetPath } from '../pipelines/core/paths.js';
import os from 'node:os';

/** One benchmark's outcome, written to bench/results/<name>.json. */
export interface BenchResult {
  name: string;
  unit: string;
  /** Each run's figure (e.g. events/s). */
  runs: number[];
  median: number;
  /** The target, when there is one; `met` compares the median with it. */
  target?: number;
  met?: boolean;
  /** Higher is better unless false (latencies). */
  higherIsBetter?: boolean;
  details?: Record<string, unknown>;
}

/** Small seeded PRNG (mulberry32): every run sees the same stream. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Runs `fn` (which returns a figure) `runs` times after `warmup` runs; returns the figures. */
export async function repeat(fn: () => Promise<number> | number, runs = 5, warmup = 1): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn();
  const out: number[] = [];
  for (let i = 0; i < runs; i++) out.push(await fn());
  return out;
}

export function result(name: string, unit: string, runs: number[], opts: { target?: number; higherIsBetter?: boolean; details?: Record<string, unknown> } = {}): BenchResult {
  const m = median(runs);
  const hib = opts.higherIsBetter ?? true;
  return { name, unit, runs: runs.map((r) => Math.round(r * 100) / 100), median: Math.round(m * 100) / 100, target: opts.target, met: opts.target === undefined ? undefined : hib ? m >= opts.target : m <= opts.target, higherIsBetter: hib, details: opts.details };
}

const RESULTS = `${assetPath('bench', 'results')}/`;

/** Writes results as JSON (one file per suite) and prints a summary table. */
export function report(suite: string, results: BenchResult[]): void {
  mkdirSync(RESULTS, { recursive: true });
  const machine = { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version, memGiB: Math.round(os.totalmem() / 2 ** 30) };
  writeFileSync(`${RESULTS}${suite}.json`, JSON.stringify({ suite, at: new Date().toISOString(), machine, results }, null, 2));
  const rows = results.map((r) => [r.name, `${fmt(r.median)} ${r.unit}`, r.target === undefined ? '-' : `${r.higherIsBetter === false ? '≤' : '≥'} ${fmt(r.target)}`, r.met === undefined ? '-' : r.met ? 'yes' : 'NO', r.runs.map(fmt).join(' ')]);
  const head = ['benchmark', 'median', 'target', 'met', 'runs'];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(w[i]!)).join('  ');
  console.log(`\n${suite} (results in bench/results/${suite}.json)\n${line(head)}\n${w.map((x) => '-'.repeat(x)).join('  ')}\n${rows.map(line).join('\n')}`);
}

function fmt(n: number): string {
  return n >= 1000 ? Math.round(n).toLocaleString('en-US') : String(Math.round(n * 100) / 100);
}
