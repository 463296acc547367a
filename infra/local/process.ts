import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Processes started by this module; all are killed when this process exits, however it exits. */
const children = new Set<ChildProcess>();
/** Async cleanups (stop servers, delete temp data) run first on SIGINT/SIGTERM/SIGHUP. */
const cleanups = new Set<() => Promise<void>>();
let hooked = false;

/** Registers `fn` to run when the process is interrupted; returns a function that unregisters it. */
export function onInterrupt(fn: () => Promise<void>): () => void {
  hookExit();
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

function killAll(): void {
  for (const c of children) {
    try {
      if (c.pid && c.exitCode === null) process.kill(c.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
}

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', killAll);
  // Inside a test runner's worker the runner owns signals; the exit hook above still reaps children.
  if (process.env.VITEST_WORKER_ID) return;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\n${sig}: stopping what was started…\n`);
      const all = Promise.allSettled([...cleanups].map((fn) => fn()));
      const timeout = new Promise((r) => setTimeout(r, 15_000).unref());
      void Promise.race([all, timeout]).finally(() => {
        killAll();
        process.exit(130);
      });
    });
  }
}

/** Spawns a child that is killed when this process exits. */
export function spawnManaged(cmd: string, args: string[], options: SpawnOptions = {}): ChildProcess {
  hookExit();
  const child = spawn(cmd, args, options);
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Sends `signal` and waits up to `timeoutMs` for the child to exit, then SIGKILLs it. */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(timer);
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** A fresh temporary folder, world-writable so servers that drop root can use it. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `cellar-${prefix}-`));
  chmodSync(dir, 0o777);
  return dir;
}

/** Polls `check` until it returns true or `timeoutMs` passes; throws naming `what`. */
export async function waitUntil(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 30_000, everyMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (err) {
      lastErr = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${(lastErr as Error).message}` : ''}`);
}

/** True when `cmd` is on PATH. */
export async function hasCommand(cmd: string): Promise<boolean> {
  const { execFile } = await import('node:child_process');
  return new Promise((resolve) => execFile('sh', ['-c', `command -v ${cmd}`], (err) => resolve(!err)));
}
