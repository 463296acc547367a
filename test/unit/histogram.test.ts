import { describe, expect, it } from 'vitest';
import { histogramQuantile } from '../../pipelines/core/histogram.js';

describe('histogramQuantile', () => {
  it('interpolates inside the bucket holding the rank, as histogram_quantile does', () => {
    // 100 observations: 50 ≤ 0.01, 40 in (0.01, 0.05], 10 in (0.05, 0.1].
    const cum: Array<[number, number]> = [[0.01, 50], [0.05, 90], [0.1, 100], [Infinity, 100]];
    expect(histogramQuantile(0.5, cum)).toBeCloseTo(0.01);
    expect(histogramQuantile(0.7, cum)).toBeCloseTo(0.01 + 0.04 * (20 / 40));
    expect(histogramQuantile(0.99, cum)).toBeCloseTo(0.05 + 0.05 * (9 / 10));
  });

  it('answers the largest finite bound for a rank in +Inf, and nothing without observations', () => {
    expect(histogramQuantile(0.99, [[0.01, 1], [1, 1], [Infinity, 10]])).toBe(1);
    expect(histogramQuantile(0.5, [[0.01, 0], [Infinity, 0]])).toBeUndefined();
    expect(histogramQuantile(0.5, [])).toBeUndefined();
  });
});
