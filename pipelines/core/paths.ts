import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/**
 * The package root (the folder with package.json), found from this file whether it runs from source
 * or from compiled output in dist/. Assets (Avro schemas, SQL migrations) are read relative to it.
 */
export function packageRoot(): string {
  if (root) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) || dir.endsWith(`${'/'}dist`)) {
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the Cellar package root');
    dir = up;
  }
  root = dir;
  return dir;
}

/** A path inside the package, e.g. `assetPath('schemas', 'avro')`. */
export function assetPath(...segments: string[]): string {
  return join(packageRoot(), ...segments);
}
