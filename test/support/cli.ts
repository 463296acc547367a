import { existsSync, readFileSync } from 'node:fs';
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

/** Waits until `file` (a process' output) holds a match of `re` (the match), or `exited()` first, or the time is up (undefined). */
export async function waitForOutput(file: string, re: RegExp, exited: () => boolean, timeoutMs: number): Promise<RegExpExecArray | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && !exited()) {
    const m = existsSync(file) ? re.exec(readFileSync(file, 'utf8')) : null;
    if (m) return m;
    await new Promise((r) => setTimeout(r, 250));
  }
  return undefined;
}
