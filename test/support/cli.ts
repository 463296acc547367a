import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnCellar } from '../../infra/local/cellar-process.js';

/** Runs `cellar <args>` as a process to its end; its exit code and everything it printed (kept in `logDir`). */
export async function runCellar(args: string[], env: Record<string, string>, logDir: string): Promise<{ code: number | null; out: string }> {
  const file = join(logDir, `${args[0] ?? 'cellar'}-${Date.now()}-${Math.random().toString(36).slice(2, 6)}.log`);
  const child = spawnCellar(args, env, file);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  return { code, out: readFileSync(file, 'utf8') };
}
