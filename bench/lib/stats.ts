/**
 * @module stats
 * Percentiles of samples and the median/min/max summary of repeated runs.
 */

/** The `p`-th percentile (0–100) of `samples` by nearest rank; `NaN` when empty. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = Float64Array.from(samples).sort();
  return percentileSorted(sorted, p);
}

/** `percentile` on an already sorted array. */
export function percentileSorted(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

/** Mean, p50, p99, p99.9 and max of `samples`. */
export function latencySummary(samples: readonly number[]): {
  count: number;
  mean: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
} {
  const sorted = Float64Array.from(samples).sort();
  return {
    count: sorted.length,
    mean: sorted.length === 0 ? NaN : sorted.reduce((a, b) => a + b, 0) / sorted.length,
    p50: percentileSorted(sorted, 50),
    p99: percentileSorted(sorted, 99),
    p999: percentileSorted(sorted, 99.9),
    max: sorted.length === 0 ? NaN : sorted[sorted.length - 1]!,
  };
}

export interface Spread {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

/** Median (mean of the middle two for an even count), min and max of per-run values. */
export function spread(values: readonly number[]): Spread {
  const runs = values.filter((v) => Number.isFinite(v));
  if (runs.length === 0) return { median: NaN, min: NaN, max: NaN, runs: [...values] };
  const sorted = [...runs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]!, runs: [...values] };
}

/** Per-run ratios `a[i] / b[i]` (runs alternate, so each pair shares the machine's mood). */
export function ratios(a: readonly number[], b: readonly number[]): Spread {
  return spread(a.map((value, i) => value / b[i]!));
}
