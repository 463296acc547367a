import { report, type BenchResult } from './harness.js';
import { embeddedBenchmarks, historyCostBenchmarks } from './embedded.bench.js';
import { aggregateBenchmarks } from './aggregate.bench.js';
import { normalizeBenchmarks } from './normalize.bench.js';
import { postgresReadBenchmarks } from './postgres-reads.bench.js';
import { sinkBenchmarks } from './sinks.bench.js';
import { apiBenchmarks } from './api.bench.js';
import { reconcileBenchmarks } from './reconcile.bench.js';
import { cliBenchmarks } from './cli.bench.js';
import { dashboardBenchmarks } from './dashboard.bench.js';
import { kafkaBenchmarks, kafkaScaleBenchmarks } from './kafka.bench.js';
import { scaleBenchmarks } from './scale.bench.js';
import { feedBenchmarks } from './feed.bench.js';
import { pushBenchmarks } from './push.bench.js';
import { historyBenchmarks } from './history.bench.js';

/** `make bench`: runs every suite (or those named on the command line) and reports each. */
const suites: Record<string, () => Promise<BenchResult[]>> = {
  normalize: normalizeBenchmarks,
  aggregate: aggregateBenchmarks,
  sinks: sinkBenchmarks,
  'postgres-reads': postgresReadBenchmarks,
  embedded: embeddedBenchmarks,
  'history-cost': historyCostBenchmarks,
  api: apiBenchmarks,
  reconcile: reconcileBenchmarks,
  cli: cliBenchmarks,
  dashboard: dashboardBenchmarks,
  kafka: kafkaBenchmarks,
  'kafka-scale': kafkaScaleBenchmarks,
  feed: feedBenchmarks,
  push: pushBenchmarks,
  history: historyBenchmarks,
  scale: scaleBenchmarks,
};

const wanted = process.argv.slice(2).filter((a) => a in suites);
// history-cost repeats the embedded suite's figure alone, and kafka-scale takes long: run only when named.
const onlyWhenNamed = new Set(['history-cost', 'kafka-scale']);
for (const name of wanted.length ? wanted : Object.keys(suites).filter((n) => !onlyWhenNamed.has(n))) {
  report(name, await suites[name]!());
}
