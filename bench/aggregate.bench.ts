import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { RegionalAggregator } from '../pipelines/aggregate/aggregator.js';
import type { StockObservation } from '../schemas/records.js';
import { repeat, result, type BenchResult, rng } from './harness.js';

const EVENTS = 500_000;
const CONTRIBUTORS = 50_000;
const REGIONS = ['eu-west', 'us-east', 'ap-south'];
const SKUS = Array.from({ length: 2_000 }, (_, i) => `wine-${i}`);
const SUPPLIERS = Array.from({ length: 8 }, (_, i) => `supplier-${String.fromCharCode(97 + i)}`);
const WAREHOUSES = Array.from({ length: 24 }, (_, i) => `wh-${i}`);
const BATCH = 2_000;
const MEMORY_CONTRIBUTORS = 200_000;
const T0 = 1_732_000_000_000;


const version = (n: number) => String(n).padStart(20, '0');

function observation(id: number, region: string, sku: string, op: 'UPSERT' | 'DELETE', v: number, bottles: number): StockObservation {
  const supplierId = SUPPLIERS[id % SUPPLIERS.length]!;
  return {
    supplierId,
    warehouseId: WAREHOUSES[id % WAREHOUSES.length]!,
    region,
    sku,
    supplierSku: `S-${sku}`,
    vintage: 2019,
    bottleSizeMl: 750,
    bottles: op === 'DELETE' ? 0 : bottles,
    op,
    contributorId: `${supplierId}/public.stock/id=${id}`,
    sourceVersion: version(v),
    sourceTsMs: T0 + v,
    ingestTsMs: T0 + v + 5,
    traceId: `t-${v}`,
  };
}

/**
 * A CDC-like stream: mostly UPSERTs with increasing versions, ~5% DELETEs, ~5% moves (DELETE at the
 * old key, UPSERT at the new key, same version) and ~3% exact re-deliveries of a recent event.
 */
function stream(): { events: StockObservation[]; mix: Record<string, number> } {
  const rand = rng(42);
  const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)]!;
  const where = Array.from({ length: CONTRIBUTORS }, () => ({ region: pick(REGIONS), sku: pick(SKUS) }));
  const events: StockObservation[] = [];
  const mix = { upsert: 0, delete: 0, move: 0, duplicate: 0 };
  let v = 0;
  while (events.length < EVENTS) {
    const r = rand();
    if (r < 0.03 && events.length > 0) {
      events.push(events[Math.max(0, events.length - 1 - Math.floor(rand() * 500))]!);
      mix.duplicate++;
      continue;
    }
    const id = Math.floor(rand() * CONTRIBUTORS);
    const at = where[id]!;
    const bottles = 1 + Math.floor(rand() * 120);
    v += 1;
    if (r < 0.08) {
      events.push(observation(id, at.region, at.sku, 'DELETE', v, 0));
      mix.delete++;
    } else if (r < 0.13) {
      events.push(observation(id, at.region, at.sku, 'DELETE', v, 0));
      where[id] = { region: pick(REGIONS), sku: pick(SKUS) };
      events.push(observation(id, where[id]!.region, where[id]!.sku, 'UPSERT', v, bottles));
      mix.move++;
    } else {
      events.push(observation(id, at.region, at.sku, 'UPSERT', v, bottles));
      mix.upsert++;
    }
  }
  return { events, mix };
}

/** apply + drain every {@link BATCH} events on a fresh aggregator; returns events/s. */
function throughput(events: StockObservation[]): number {
  const agg = new RegionalAggregator();
  let drained = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < events.length; i++) {
    agg.apply(events[i]!);
    if ((i + 1) % BATCH === 0) drained += agg.drain(Date.now()).totals.length;
  }
  drained += agg.drain(Date.now()).totals.length;
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (drained === 0) throw new Error('aggregator emitted no totals');
  return events.length / secs;
}

/** `global.gc`, exposed at run time when node was not started with --expose-gc. */
function gcFunction(): () => void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/**
 * Heap bytes retained per contributor: an aggregator holding {@link MEMORY_CONTRIBUTORS} distinct
 * contributors (fresh contributorId and sourceVersion strings; supplier, warehouse, region and SKU
 * strings shared, as they are interned in practice), after a drain, measured between two full GCs.
 */
function memoryPerContributor(gc: () => void): { perContributor: number; keys: number } {
  const rand = rng(7);
  const skuOf = Uint16Array.from({ length: MEMORY_CONTRIBUTORS }, () => Math.floor(rand() * SKUS.length));
  // Counted here, not with agg.totals(): in V8 11 `[...map.values()].map(fn)` keeps the last
  // aggregator reachable after it is dropped, which would leak one run into the next baseline.
  const keys = new Set(Array.from(skuOf, (k, i) => k * 3 + (i % 3))).size;
  gc();
  gc();
  const before = process.memoryUsage().heapUsed;
  const agg = new RegionalAggregator();
  for (let i = 0; i < MEMORY_CONTRIBUTORS; i++) {
    agg.apply(observation(100_000 + i, REGIONS[i % 3]!, SKUS[skuOf[i]!]!, 'UPSERT', i + 1, 1 + (i % 50)));
  }
  agg.drain(Date.now());
  gc();
  gc();
  const after = process.memoryUsage().heapUsed;
  if (agg.size !== MEMORY_CONTRIBUTORS) throw new Error(`aggregator holds ${agg.size} entries, expected ${MEMORY_CONTRIBUTORS}`);
  return { perContributor: (after - before) / MEMORY_CONTRIBUTORS, keys };
}

/** Aggregator suite: in-process apply + drain throughput, and retained heap per contributor. */
export async function aggregateBenchmarks(): Promise<BenchResult[]> {
  const { events, mix } = stream();
  const runs = await repeat(() => throughput(events), 5, 1);
  const throughputResult = result('aggregate: in-process apply + drain', 'events/s', runs, {
    target: 300_000,
    details: { events: events.length, contributors: CONTRIBUTORS, regions: REGIONS.length, skus: SKUS.length, drainEvery: BATCH, mix },
  });
  events.length = 0;
  const gc = gcFunction();
  let keys = 0;
  const memRuns = await repeat(() => {
    const m = memoryPerContributor(gc);
    keys = m.keys;
    return m.perContributor;
  }, 3, 0);
  return [
    throughputResult,
    result('aggregate: memory per contributor', 'bytes', memRuns, {
      higherIsBetter: false,
      details: { contributors: MEMORY_CONTRIBUTORS, keys, contributorIdExample: `${SUPPLIERS[0]}/public.stock/id=123456`, note: 'heapUsed delta after full GC, divided by contributors' },
    }),
  ];
}
