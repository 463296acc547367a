#!/usr/bin/env -S node --max-semi-space-size=64 --initial-old-space-size=256
// The flags on the first line: see CELLAR_NODE_FLAGS in infra/local/cellar-process.ts (`node bin/cellar.js`
// skips that line: pass them yourself, as the Makefile does).
// `cellar`: runs the compiled CLI (dist/, built by `make build`, `make demo`, `make test` or `npm run build`)
// when it is newer than every source file it was compiled from; otherwise the sources through tsx, which
// is slower to start but never stale.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const compiled = join(root, 'dist', 'pipelines', 'cli', 'main.js');
/** The folders the CLI is compiled from (tsconfig.json's include, less tests and benches). */
const SOURCES = ['pipelines', 'connectors', 'schemas', 'sinks', 'infra'];

/** The newest modification time of a .ts file under `dir`, in ms (0 when there is none). */
function newestSource(dir) {
  let newest = 0;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

function compiledIsFresh() {
  if (!existsSync(compiled)) return false;
  const built = statSync(compiled).mtimeMs;
  return SOURCES.every((d) => newestSource(join(root, d)) <= built);
}

if (compiledIsFresh()) {
  await import(pathToFileURL(compiled).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(join(root, 'pipelines', 'cli', 'main.ts')).href);
}
