import { userInfo } from 'node:os';
import type { Command } from 'commander';
import type { Role } from '../api/keys-store.js';
import { ConfigError } from '../core/errors.js';
import { DEFAULT_KEY_RATE_LIMIT_PER_S as DEFAULT_RATE_LIMIT_PER_S, KEY_ROLES as ROLES } from '../core/names.js';
import { formatTable } from './format.js';

/** Cellar's database, its API keys and audit log, loaded when a command runs (not for `cellar --help`). */
const load = () => Promise.all([import('../core/config.js'), import('../core/pg.js'), import('../api/keys-store.js'), import('../api/audit.js')]).then(([config, pg, keys, audit]) => ({ ...config, ...pg, ...keys, ...audit }));

function actor(): string {
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return 'cli';
  }
}

const iso = (d: Date | null) => (d ? d.toISOString().replace(/\.\d{3}Z$/, 'Z') : '-');

/** `cellar keys create|list|revoke`: API keys in CELLAR_PG_URL's cellar.api_keys; each change is audited. */
export function registerKeysCommands(program: Command): void {
  const keys = program.command('keys').description('API keys of the read API (roles supplier, reader, operator, admin; stored hashed)');
  keys
    .command('create')
    .description('create a key and print it once (it cannot be shown again)')
    .requiredOption('--name <name>', 'who or what uses the key, e.g. pricing-service')
    .requiredOption('--role <role>', `one of ${ROLES.join(', ')}`)
    .option('--supplier <id>', 'role supplier: the one supplier whose feed the key may push (POST /v1/suppliers/{id}/feed)')
    .option('--rate-limit <n>', `requests per second (burst twice that); 0 = unlimited`, String(DEFAULT_RATE_LIMIT_PER_S))
    .option('--json', 'print {id, name, role, key} as JSON')
    .action(async (o: { name: string; role: string; rateLimit: string; json?: boolean; supplier?: string }) => {
      if (!(ROLES as readonly string[]).includes(o.role)) throw new ConfigError(`--role ${o.role}: expected one of ${ROLES.join(', ')}`);
      const rate = Number(o.rateLimit);
      if (!Number.isInteger(rate) || rate < 0) throw new ConfigError(`--rate-limit ${o.rateLimit}: expected a whole number of requests per second (0 = unlimited)`);
      const { loadRuntimeConfig, createPgPool, createApiKey, recordAudit } = await load();
      const pool = createPgPool(loadRuntimeConfig().pgUrl, { max: 1 });
      try {
        const { key, record } = await createApiKey(pool, { name: o.name, role: o.role as Role, rateLimitPerS: rate, ...(o.supplier !== undefined ? { supplierId: o.supplier } : {}) });
        await recordAudit(pool, { actor: actor(), action: 'keys.create', target: record.id, params: { name: record.name, role: record.role, rateLimitPerS: rate, ...(record.supplierId ? { supplierId: record.supplierId } : {}) }, outcome: 'ok' });
        if (o.json) console.log(JSON.stringify({ id: record.id, name: record.name, role: record.role, ...(record.supplierId ? { supplierId: record.supplierId } : {}), rateLimitPerS: record.rateLimitPerS, key }));
        else {
          console.log(`created key ${record.id} (${record.name}, ${record.role}${record.supplierId ? ` of ${record.supplierId}` : ''}, ${rate ? `${rate} requests/s` : 'no rate limit'})`);
          console.log(`\n  ${key}\n`);
          console.log('This is the only time the key is shown: only its hash is stored.');
        }
      } finally {
        await pool.end();
      }
    });
  keys
    .command('list')
    .description('list keys (never their secrets)')
    .option('--all', 'include revoked keys')
    .option('--json', 'one JSON object per line')
    .action(async (o: { all?: boolean; json?: boolean }) => {
      const { loadRuntimeConfig, createPgPool, listApiKeys } = await load();
      const pool = createPgPool(loadRuntimeConfig().pgUrl, { max: 1 });
      try {
        const list = await listApiKeys(pool, { includeRevoked: o.all });
        if (o.json) for (const k of list) console.log(JSON.stringify(k));
        else {
          console.log(
            formatTable(
              ['id', 'name', 'role', 'rate/s', 'created', 'last used', 'revoked'],
              list.map((k) => [k.id, k.name, k.supplierId ? `${k.role} (${k.supplierId})` : k.role, k.rateLimitPerS || 'unlimited', iso(k.createdAt), iso(k.lastUsedAt), iso(k.revokedAt)]),
            ),
          );
        }
      } finally {
        await pool.end();
      }
    });
  keys
    .command('revoke')
    .description('revoke a key by id or name; running API instances refuse it at once')
    .argument('<id-or-name>')
    .action(async (idOrName: string) => {
      const { loadRuntimeConfig, createPgPool, revokeApiKey, recordAudit } = await load();
      const pool = createPgPool(loadRuntimeConfig().pgUrl, { max: 1 });
      try {
        const k = await revokeApiKey(pool, idOrName);
        await recordAudit(pool, { actor: actor(), action: 'keys.revoke', target: k?.id ?? idOrName, outcome: k ? 'ok' : 'failed', detail: k ? null : 'no live key with this id or name' });
        if (!k) {
          console.error(`cellar: no live key with id or name ${JSON.stringify(idOrName)}`);
          process.exitCode = 1;
          return;
        }
        console.log(`revoked key ${k.id} (${k.name}, ${k.role})`);
      } finally {
        await pool.end();
      }
    });
}
