/** `npm run docs:env`: rewrites README.md's environment table from the specs (see env-help.ts). */
import { readFileSync, writeFileSync } from 'node:fs';
import { assetPath } from '../core/paths.js';
import { readmeWithEnvironment } from './env-help.js';

const file = assetPath('README.md');
const before = readFileSync(file, 'utf8');
const after = readmeWithEnvironment(before);
if (after === before) console.log('README.md: the environment table is up to date');
else {
  writeFileSync(file, after);
  console.log('README.md: environment table rewritten from the specs');
}
