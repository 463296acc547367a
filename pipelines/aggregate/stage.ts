import type { DeadLetter, StockObservation } from '../../schemas/records.js';
import { deadLetter, type LetterOrigin } from '../dlq/letter.js';
import type { Contribution, KeyLoad, KeyWant, RegionalAggregator, StockKey } from './aggregator.js';

/** What applying a batch of observations did, besides changing the aggregator. */
export interface AggregateOutcome {
  /** Observations at or below their contributor's applied version (duplicates, replays). */
  stale: number;
  /** Observations the aggregator refused (two bottle sizes at one key, a total out of range). */
  letters: DeadLetter[];
}

/**
 * The aggregate stage of both runtimes: applies observations in order to one aggregator, counting stale
 * ones and dead-lettering refusals with their reason and message. `origin` says where each observation came
 * from (its Kafka offset, or its version in the embedded runtime). The caller drains the aggregator and
 * persists; {@link CellarMetrics.recordStage} records the outcome once it is durable.
 */
export function aggregateObservations<T>(agg: RegionalAggregator, items: Iterable<T>, observation: (item: T) => StockObservation, origin: (item: T, o: StockObservation) => LetterOrigin): AggregateOutcome {
  const out: AggregateOutcome = { stale: 0, letters: [] };
  for (const item of items) {
    const o = observation(item);
    const outcome = agg.apply(o);
    if (outcome === 'applied') continue;
    if (outcome === 'stale') out.stale++;
    else out.letters.push(deadLetter('aggregator', outcome, agg.refusalMessage(o, outcome), { supplierId: o.supplierId, sourcePosition: o.sourceVersion, ...origin(item, o) }));
  }
  return out;
}

/**
 * Loads the persisted state of the keys among `items` the aggregator does not hold (its memory is bounded:
 * {@link RegionalAggregator.evict}), in one read, so they are applied on top of what was counted before:
 * a key with few contributors whole, one with many as its summary and the contributors `items` change
 * (`load`: {@link ContributionStore.loadKeys}). Then, in a second read only when there are any, the rows
 * of contributors `items` change at held keys that hold only some of theirs (`loadEntries`). Both runtimes
 * call it before {@link aggregateObservations}. Returns how many keys were loaded.
 */
export async function holdKeys(
  agg: RegionalAggregator,
  items: Iterable<StockKey & { contributorId: string }>,
  load: (keys: KeyWant[]) => Promise<KeyLoad>,
  loadEntries: (wants: KeyWant[]) => Promise<Contribution[]>,
): Promise<number> {
  const list = Array.isArray(items) ? (items as Array<StockKey & { contributorId: string }>) : [...items];
  const absent = agg.absent(list);
  if (absent.length) {
    const { rows, partial } = await load(absent);
    agg.adopt(absent, rows, partial);
  }
  const missing = agg.missing(list);
  if (missing.length) agg.adoptEntries(missing, await loadEntries(missing));
  return absent.length;
}
