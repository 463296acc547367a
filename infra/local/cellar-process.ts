import { createWriteStream } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { packageRoot } from '../../pipelines/core/paths.js';
import type { ChildProcess } from 'node:child_process';
import { spawnManaged } from './process.js';

/** The repository root (where package.json is). */
export const REPO_ROOT = packageRoot();

/**
 * How to start the CLI as this code runs: compiled (`dist/`, as `cellar demo` and the benchmarks run) starts
 * the compiled CLI, as production does; from source (the tests) starts it through tsx.
 */
export const CELLAR_ENTRY: readonly string[] = fileURLToPath(import.meta.url).endsWith('.js')
  ? [join(REPO_ROOT, 'dist', 'pipelines', 'cli', 'main.js')]
  : ['--import', 'tsx', join(REPO_ROOT, 'pipelines', 'cli', 'main.ts')];

/**
 * Node flags every Cellar process runs with (bin/cellar.js' first line, the Dockerfile and the Makefile say
 * the same). V8 reads them only at start: `v8.setFlagsFromString` has no effect on them.
 * - A young generation of 64 MB (V8's default is 16 MB) lets the short-lived objects of a change (row
 *   images, observations, query parameters) die young instead of being copied into the old generation: in
 *   the scale bench the runtime's CPU per change fell from 31 to 27 µs (100k contributors) and from 47 to
 *   39 µs (1M), for about 100–180 MB more resident memory.
 * - An old generation of at least 256 MB before V8 runs a full collection: with little live data (tens of
 *   MB, the embedded suite's) the heap's growth factor alone (CELLAR_HEAP_HEADROOM_PERCENT) left it room for
 *   about a second of promotions at 20k changes/s, so a full collection (about 10 ms, the runtime stopped)
 *   ran every second and showed in freshness p99. Processes whose live data exceeds about 170 MB are not
 *   affected (their growth factor already allows more); others may hold up to that much more garbage.
 */
export const CELLAR_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=64', '--initial-old-space-size=256'];

/**
 * Starts `cellar <args>` as a separate process (compiled or through tsx, as this process runs), with `env`
 * added to this process' environment; stdout and stderr go to `logFile` when given.
 */
export function spawnCellar(args: string[], env: Record<string, string>, logFile?: string): ChildProcess {
  const child = spawnManaged(process.execPath, [...CELLAR_NODE_FLAGS, ...CELLAR_ENTRY, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', logFile ? 'pipe' : 'inherit', logFile ? 'pipe' : 'inherit'],
  });
  if (logFile) {
    const out = createWriteStream(logFile, { flags: 'a' });
    child.stdout?.pipe(out);
    child.stderr?.pipe(out);
  }
  return child;
}
