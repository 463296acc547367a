import { createWriteStream } from 'node:fs';
import { packageRoot } from '../../pipelines/core/paths.js';
import type { ChildProcess } from 'node:child_process';
import { spawnManaged } from './process.js';

/** The repository root (where package.json is). */
export const REPO_ROOT = packageRoot();

/**
 * Starts `cellar <args>` as a separate process from source (through tsx), with `env` added to this
 * process' environment; stdout and stderr go to `logFile` when given.
 */
export function spawnCellar(args: string[], env: Record<string, string>, logFile?: string): ChildProcess {
  const child = spawnManaged(process.execPath, ['--import', 'tsx', 'pipelines/cli/main.ts', ...args], {
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
