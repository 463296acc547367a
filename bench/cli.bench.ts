import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assetPath } from '../pipelines/core/paths.js';
import { median, result, type BenchResult } from './harness.js';

/** Timed runs of each command in each mode (after WARMUP untimed ones), interleaved so drift hits all alike. */
const RUNS = 15;
const WARMUP = 2;
/** The issue's target: `cellar --version` and `cellar --help` answer in under 300 ms (median, compiled). */
const TARGET_MS = 300;
const EVENTS = 10;

/** The q-quantile of `xs` (nearest rank). */
function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

const round = (n: number) => Math.round(n * 10) / 10;

/**
 * How long `cellar` takes to answer, as a process from start to exit: `--version`, `--help`, and
 * `mapping test` of a supplier file on 10 events (no database: CELLAR_PG_URL unset), each compiled
 * (`node dist/pipelines/cli/main.js`, what `npx cellar` runs after `make build`) and from source through
 * tsx (the baseline: how `cellar` started before dist/ was built for users). Also bare `node -e 0`, the
 * floor no command can go under on this machine. Figures are wall-clock ms per run.
 */
export async function cliBenchmarks(): Promise<BenchResult[]> {
  const root = assetPath();
  const compiled = join(root, 'dist', 'pipelines', 'cli', 'main.js');
  if (!existsSync(compiled)) throw new Error(`${compiled} is missing: build first (make build, or make bench which builds)`);
  const work = mkdtempSync(join(tmpdir(), 'cellar-cli-bench-'));
  try {
    const examples = join(root, 'connectors', 'suppliers', 'examples');
    const sample = readFileSync(join(examples, 'events', 'rhone-imports.jsonl'), 'utf8').split('\n').filter(Boolean);
    // The example's 8 events, then its first ones again (read as stale, as a replay would be): 10 events.
    const events = join(work, 'events.jsonl');
    writeFileSync(events, `${Array.from({ length: EVENTS }, (_, i) => sample[i % sample.length]).join('\n')}\n`);
    const env = { ...process.env };
    delete env.CELLAR_PG_URL; // mapping test from files alone, as on a laptop without Cellar's database

    const commands: Record<string, string[]> = {
      '--version': ['--version'],
      '--help': ['--help'],
      [`mapping test (${EVENTS} events)`]: ['mapping', 'test', '--file', join(examples, 'rhone-imports.yaml'), '--events', events],
    };
    const modes: Record<string, string[]> = {
      compiled: [compiled],
      tsx: ['--import', 'tsx', join(root, 'pipelines', 'cli', 'main.ts')],
    };
    const once = (args: string[]): number => {
      const t0 = process.hrtime.bigint();
      const r = spawnSync(process.execPath, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 16 << 20 });
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (r.status !== 0) throw new Error(`node ${args.join(' ')} exited ${r.status}: ${r.stderr.toString().slice(0, 400)}`);
      return ms;
    };

    const times = new Map<string, number[]>();
    const bare: number[] = [];
    for (let i = 0; i < WARMUP + RUNS; i++) {
      const b = once(['-e', '0']);
      if (i >= WARMUP) bare.push(b);
      for (const [cmd, args] of Object.entries(commands)) {
        for (const [mode, entry] of Object.entries(modes)) {
          const ms = once([...entry, ...args]);
          if (i < WARMUP) continue;
          const key = `${mode} ${cmd}`;
          times.set(key, [...(times.get(key) ?? []), ms]);
        }
      }
    }

    const results: BenchResult[] = [];
    for (const cmd of Object.keys(commands)) {
      const c = times.get(`compiled ${cmd}`)!;
      const t = times.get(`tsx ${cmd}`)!;
      results.push(
        result(`cellar ${cmd}, compiled`, 'ms', c, {
          target: TARGET_MS,
          higherIsBetter: false,
          details: { p90: round(quantile(c, 0.9)), tsxMedian: round(median(t)), tsxP90: round(quantile(t, 0.9)), tsxOverCompiled: round(median(t) / median(c)), bareNodeMedian: round(median(bare)) },
        }),
        result(`cellar ${cmd}, through tsx (baseline)`, 'ms', t, { higherIsBetter: false, details: { p90: round(quantile(t, 0.9)) } }),
      );
    }
    results.push(result('node -e 0 (the floor)', 'ms', bare, { higherIsBetter: false, details: { p90: round(quantile(bare, 0.9)) } }));
    for (const r of results) {
      const p90 = (r.details as { p90?: number } | undefined)?.p90;
      console.log(`${r.name}: median ${r.median} ms, p90 ${p90} ms${r.details && 'tsxOverCompiled' in r.details ? ` (tsx ${String(r.details.tsxOverCompiled)}x slower)` : ''}`);
    }
    return results;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
