import type { DeadLetter, StockObservation } from '../../schemas/records.js';
import { deadLetter, type LetterOrigin } from '../dlq/letter.js';
import type { Contribution, RegionalAggregator, StockKey } from './aggregator.js';

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
 * Loads, in one read, the persisted state of the keys among `keys` the aggregator does not hold (its memory
 * is bounded: {@link RegionalAggregator.evict}), so they are applied on top of what was counted before.
 * Both runtimes call it before {@link aggregateObservations}. Returns how many keys were loaded.
 */
export async function holdKeys(agg: RegionalAggregator, keys: Iterable<StockKey>, load: (keys: StockKey[]) => Promise<Contribution[]>): Promise<number> {
  const absent = agg.absent(keys);
  if (absent.length) agg.adopt(absent, await load(absent));
  return absent.length;
}
