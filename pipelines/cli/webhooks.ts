import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type pg from 'pg';
import type { StockEventFilter } from '../events/derive.js';
import type { WebhookSummary } from '../webhooks/store.js';
import { actorOf } from './actor.js';
import { ConfigError } from '../core/errors.js';
import { formatTable } from './format.js';
import { withCellarDb } from './cellar-db.js';

/** Cellar's database, its webhooks and audit log, loaded when a command runs (not for `cellar --help`). */
const load = () =>
  Promise.all([import('../webhooks/store.js'), import('../webhooks/deliveries.js'), import('../api/audit.js')]).then(
    ([store, deliveries, audit]) => ({ ...store, ...deliveries, ...audit }),
  );
type Loaded = Awaited<ReturnType<typeof load>>;

const withDb = <T>(fn: (m: Loaded, pool: pg.Pool) => Promise<T>): Promise<T> => withCellarDb(load, fn);

const iso = (d: Date | null | undefined) => (d ? d.toISOString().replace(/\.\d{3}Z$/, 'Z') : '-');

/** `types sold_out,low_stock; region eu; SKUs wine-*`, or `every event`. */
export function describeFilter(f: StockEventFilter): string {
  const parts = [
    f.types?.length ? `types ${f.types.join(',')}` : '',
    f.region ? `region ${f.region}` : '',
    f.sku ? `SKU ${f.sku}` : '',
    f.skuPrefix ? `SKUs ${f.skuPrefix}*` : '',
  ].filter(Boolean);
  return parts.length ? parts.join('; ') : 'every event';
}

function lastOutcome(w: WebhookSummary): string {
  const l = w.lastDelivery;
  if (!l) return '-';
  return `${iso(l.at)} ${l.status}${l.httpStatus !== null ? ` HTTP ${l.httpStatus}` : ''}${l.error && l.status !== 'delivered' ? `: ${l.error.slice(0, 60)}` : ''}`;
}

/** A whole number ≥ `min` from a flag, or a usage error naming it. */
function intFlag(flag: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min) throw new ConfigError(`${flag} ${v}: expected a whole number of at least ${min}`);
  return n;
}

/** Prints "no webhook …" and sets exit 1. */
function missing(id: string): void {
  console.error(`cellar: no webhook ${JSON.stringify(id)} (cellar webhooks list shows them)`);
  process.exitCode = 1;
}

interface AddOpts {
  url: string;
  type?: string[];
  region?: string;
  sku?: string;
  skuPrefix?: string;
  description?: string;
  maxAttempts?: string;
  secretFile?: string;
  disabled?: boolean;
  json?: boolean;
}

/**
 * `cellar webhooks add|list|show|remove|enable|disable|deliveries|redeliver`: webhook subscriptions in
 * CELLAR_PG_URL, as the API's admin endpoints manage them; each change is audited.
 */
export function registerWebhooksCommands(program: Command): void {
  const webhooks = program.command('webhooks').description('webhook subscriptions to stock events (sold_out, back_in_stock, low_stock): signed POSTs, retried, with a delivery log');
  const audit = (m: Loaded, pool: pg.Pool, action: string, target: string, params: Record<string, unknown> = {}, ok = true) =>
    m.recordAudit(pool, { actor: `cli:${actorOf()}`, action, target, params, outcome: ok ? 'ok' : 'failed' });

  webhooks
    .command('add')
    .description('subscribe a URL to stock events; prints the signing secret once')
    .requiredOption('--url <url>', 'where deliveries are POSTed (http:// or https://)')
    .option('--type <type...>', 'only these event types: sold_out, back_in_stock, low_stock (default all)')
    .option('--region <region>', 'only this region')
    .option('--sku <sku>', 'only this canonical SKU')
    .option('--sku-prefix <prefix>', 'only SKUs starting with this')
    .option('--description <text>', 'what the subscription is for')
    .option('--max-attempts <n>', 'attempts before a delivery is dead (default: the dispatcher\'s, 8)')
    .option('--secret-file <path>', 'read the signing secret from this file (default: generate one)')
    .option('--disabled', 'create it disabled: deliveries are recorded and held until enabled')
    .option('--json', 'print the subscription and its secret as JSON')
    .action(async (o: AddOpts) => {
      const maxAttempts = intFlag('--max-attempts', o.maxAttempts, 1);
      let secret: string | undefined;
      if (o.secretFile !== undefined) {
        try {
          secret = readFileSync(o.secretFile, 'utf8').trim();
        } catch (err) {
          throw new ConfigError(`--secret-file ${o.secretFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
        }
      }
      const filter = { ...(o.type ? { types: o.type } : {}), ...(o.region ? { region: o.region } : {}), ...(o.sku ? { sku: o.sku } : {}), ...(o.skuPrefix ? { skuPrefix: o.skuPrefix } : {}) };
      await withDb(async (m, pool) => {
        const { webhook, secret: key } = await m.createWebhook(pool, {
          url: o.url, filter: filter as StockEventFilter, ...(secret !== undefined ? { secret } : {}), ...(o.description !== undefined ? { description: o.description } : {}),
          ...(maxAttempts !== undefined ? { maxAttempts } : {}), enabled: !o.disabled,
        });
        await audit(m, pool, 'webhooks.create', webhook.id, { url: webhook.url, filter: webhook.filter, enabled: webhook.enabled });
        if (o.json) return void console.log(JSON.stringify({ ...webhook, secret: key }));
        console.log(`created webhook ${webhook.id}${webhook.enabled ? '' : ' (disabled)'}: ${describeFilter(webhook.filter)} → ${webhook.url}`);
        if (secret === undefined) {
          console.log(`\n  ${key}\n`);
          console.log('This is the only time the secret is shown: receivers check each delivery\'s cellar-signature header with it.');
        }
      });
    });

  webhooks
    .command('list')
    .description('list subscriptions with their delivery counts and latest outcome (never secrets)')
    .option('--json', 'one JSON object per line')
    .action(async (o: { json?: boolean }) => {
      await withDb(async (m, pool) => {
        const list = await m.listWebhooks(pool);
        if (o.json) return void list.forEach((w) => console.log(JSON.stringify(w)));
        if (!list.length) return void console.log('no webhooks (cellar webhooks add --url … creates one)');
        console.log(formatTable(
          ['id', 'enabled', 'url', 'events', 'pending', 'delivered', 'dead', 'last attempt'],
          list.map((w) => [w.id, w.enabled ? 'yes' : 'no', w.url, describeFilter(w.filter), w.deliveries.pending, w.deliveries.delivered, w.deliveries.dead, lastOutcome(w)]),
        ));
      });
    });

  webhooks
    .command('show')
    .description('one subscription: its filter, settings, delivery counts and latest outcome')
    .argument('<id>')
    .option('--json', 'as JSON')
    .action(async (id: string, o: { json?: boolean }) => {
      await withDb(async (m, pool) => {
        const w = await m.getWebhook(pool, id);
        if (!w) return missing(id);
        if (o.json) return void console.log(JSON.stringify(w));
        const lines: Array<[string, string]> = [
          ['id', w.id], ['url', w.url], ['events', describeFilter(w.filter)], ['enabled', w.enabled ? 'yes' : 'no (deliveries held)'],
          ['description', w.description || '-'], ['max attempts', w.maxAttempts === null ? 'dispatcher default' : String(w.maxAttempts)], ['created', iso(w.createdAt)],
          ['deliveries', `${w.deliveries.pending} pending, ${w.deliveries.delivered} delivered, ${w.deliveries.dead} dead`],
          ['last attempt', w.lastDelivery ? `${lastOutcome(w)} (event ${w.lastDelivery.eventId}, attempt ${w.lastDelivery.attempts})` : '-'],
        ];
        for (const [k, v] of lines) console.log(`${`${k}:`.padEnd(14)}${v}`);
      });
    });

  webhooks
    .command('remove')
    .description('delete a subscription and its delivery log')
    .argument('<id>')
    .action(async (id: string) => {
      await withDb(async (m, pool) => {
        const ok = await m.deleteWebhook(pool, id);
        await audit(m, pool, 'webhooks.delete', id, {}, ok);
        if (!ok) return missing(id);
        console.log(`removed webhook ${id}`);
      });
    });

  for (const [name, enabled] of [['enable', true], ['disable', false]] as const) {
    webhooks
      .command(name)
      .description(enabled ? 'send a subscription\'s deliveries again, those held while disabled first' : 'hold a subscription\'s deliveries: still recorded (pending), sent once enabled')
      .argument('<id>')
      .action(async (id: string) => {
        await withDb(async (m, pool) => {
          const w = await m.updateWebhook(pool, id, { enabled });
          await audit(m, pool, 'webhooks.update', id, { enabled }, !!w);
          if (!w) return missing(id);
          console.log(`webhook ${id} ${enabled ? 'enabled' : 'disabled'} (${w.deliveries.pending} deliveries pending)`);
        });
      });
  }

  webhooks
    .command('deliveries')
    .description('the delivery log of a subscription, in the order events were taken: status, attempts, last HTTP status and error')
    .argument('<id>')
    .option('--status <status>', 'only pending, delivered or dead')
    .option('--limit <n>', 'at most this many (default 100)')
    .option('--after <seq>', 'only after this seq (the next page)')
    .option('--json', 'one JSON object per line')
    .action(async (id: string, o: { status?: string; limit?: string; after?: string; json?: boolean }) => {
      const limit = intFlag('--limit', o.limit, 1) ?? 100;
      const after = intFlag('--after', o.after, 0);
      await withDb(async (m, pool) => {
        if (o.status !== undefined && !(m.DELIVERY_STATUSES as readonly string[]).includes(o.status)) throw new ConfigError(`--status ${o.status}: expected one of ${m.DELIVERY_STATUSES.join(', ')}`);
        if (!(await m.getWebhook(pool, id))) return missing(id);
        const { deliveries, next } = await m.listDeliveries(pool, id, { limit, ...(after !== undefined ? { after } : {}), ...(o.status ? { status: o.status as 'pending' } : {}) });
        if (o.json) return void deliveries.forEach((d) => console.log(JSON.stringify(d)));
        console.log(formatTable(
          ['seq', 'event', 'type', 'region', 'sku', 'status', 'attempts', 'last status', 'when', 'error'],
          deliveries.map((d) => [d.seq, d.eventId, d.event.type, d.event.region, d.event.sku, d.status, d.attempts, d.lastStatus ?? '-', iso(d.deliveredAt ?? d.lastAttemptAt), (d.status === 'delivered' ? '' : d.lastError ?? '').slice(0, 60)]),
        ));
        if (next !== null) console.log(`\nmore: cellar webhooks deliveries ${id} --after ${next}${o.status ? ` --status ${o.status}` : ''}`);
      });
    });

  webhooks
    .command('redeliver')
    .description('send deliveries again: every dead one, or the one of --event whatever its status (same event id)')
    .argument('<id>')
    .option('--event <event-id>', 'only the delivery of this event')
    .action(async (id: string, o: { event?: string }) => {
      await withDb(async (m, pool) => {
        if (!(await m.getWebhook(pool, id))) return missing(id);
        const requeued = await m.redeliver(pool, id, o.event ? { eventId: o.event } : {});
        await audit(m, pool, 'webhooks.redeliver', o.event ? `${id} ${o.event}` : id, {}, !o.event || requeued.length > 0);
        if (o.event && !requeued.length) {
          console.error(`cellar: webhook ${id} has no delivery of event ${o.event}`);
          process.exitCode = 1;
          return;
        }
        console.log(requeued.length ? `requeued ${requeued.length} deliveries of webhook ${id}` : `webhook ${id} has no dead deliveries`);
      });
    });
}
