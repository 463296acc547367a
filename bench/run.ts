import { report, type BenchResult } from './harness.js';
import { embeddedBenchmarks } from './embedded.bench.js';
import { aggregateBenchmarks } from './aggregate.bench.js';
import { normalizeBenchmarks } from './normalize.bench.js';
import { postgresReadBenchmarks } from './postgres-reads.bench.js';
import { sinkBenchmarks } from './sinks.bench.js';
import { apiBenchmarks } from './api.bench.js';
import { reconcileBenchmarks } from './reconcile.bench.js';
import { cliBenchmarks } from './cli.bench.js';
import { dashboardBenchmarks } from './dashboard.bench.js';
import { kafkaBenchmarks } from './kafka.bench.js';
import { scaleBenchmarks } from './scale.bench.js';
import { feedBenchmarks } from './feed.bench.js';
import { pushBenchmarks } from './push.bench.js';

/** `make bench`: runs every suite (or those named on the command line) and reports each. */
const suites: Record<string, () => Promise<BenchResult[]>> = {
  normalize: normalizeBenchmarks,
  aggregate: aggregateBenchmarks,
  sinks: sinkBenchmarks,
  'postgres-reads': postgresReadBenchmarks,
  embedded: embeddedBenchmarks,
  api: apiBenchmarks,
  reconcile: reconcileBenchmarks,
  cli: cliBenchmarks,
  dashboard: dashboardBenchmarks,
  kafka: kafkaBenchmarks,
  feed: feedBenchmarks,
  push: pushBenchmarks,
  scale: scaleBenchmarks,
};

const wanted = process.argv.slice(2).filter((a) => a in suites);
for (const name of wanted.length ? wanted : Object.keys(suites)) {
  report(name, await suites[name]!());
}
