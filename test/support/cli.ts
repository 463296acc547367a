import { join } from 'node:path';
import { spawnCellar } from '../../infra/local/cellar-process.js';

/**
 * Runs `cellar <args>` as a process to its end; its exit code and everything it printed (also kept in
 * `logDir`). The output is collected from the process' own pipes until they close: a process' 'exit' can
 * come before its last lines have been read, which made fast commands look as if they printed less.
 */
export async function runCellar(args: string[], env: Record<string, string>, logDir: string): Promise<{ code: number | null; out: string }> {
  const file = join(logDir, `${args[0] ?? 'cellar'}-${Date.now()}-${Math.random().toString(36).slice(2, 6)}.log`);
  const child = spawnCellar(args, env, file);
  const chunks: Buffer[] = [];
  child.stdout?.on('data', (b: Buffer) => chunks.push(b));
  child.stderr?.on('data', (b: Buffer) => chunks.push(b));
  const code = await new Promise<number | null>((resolve) => child.once('close', (c: number | null) => resolve(c)));
  return { code, out: Buffer.concat(chunks).toString('utf8') };
}
