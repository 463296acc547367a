/**
 * The q-quantile of cumulative histogram counts `[upper bound, count]` (sorted by bound, +Inf last),
 * interpolated linearly inside the bucket that holds it as Prometheus' `histogram_quantile` does; the
 * largest finite bound when it falls in +Inf; undefined without observations. In the buckets' unit.
 */
export function histogramQuantile(q: number, cumulative: Array<[number, number]>): number | undefined {
  const total = cumulative.at(-1)?.[1] ?? 0;
  if (total <= 0) return undefined;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, c] of cumulative) {
    if (c >= rank) {
      if (!Number.isFinite(le)) return prevLe;
      return prevLe + ((le - prevLe) * (rank - prevCount)) / Math.max(1, c - prevCount);
    }
    prevLe = le;
    prevCount = c;
  }
  return prevLe;
}
