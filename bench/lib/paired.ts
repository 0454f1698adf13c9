/**
 * @module paired
 * What the `events` and `hook` scenarios share: the open loop against a fresh server process per
 * run, with a feature's settings and without, in pairs whose order alternates (without first,
 * then with first, …), so a drift of the machine over the runs stays out of the per-pair
 * difference.
 */

import { loadAverage } from "./proc.ts";
import { type LatencyResult, latencyRun, type RunContext } from "./scenarios.ts";
import { type StartOptions, startTarget, stopTarget } from "./targets.ts";

export interface OpenLoopOptions {
  ratePerS: number;
  pairs: number;
  warmupMs: number;
  durationMs: number;
}

/** `runs` pairs of `fn(false)` and `fn(true)`, the order alternating; results in run order. */
export async function alternatingPairs<R>(
  runs: number,
  fn: (on: boolean, pair: number) => Promise<R>,
): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < runs; i++) {
    for (const on of i % 2 === 0 ? [false, true] : [true, false]) out.push(await fn(on, i));
  }
  return out;
}

/**
 * One open-loop run against a server started for it with `env` on top of the bench's settings,
 * stopped after; with the load average when it started.
 */
export async function freshServerLatency(
  ctx: RunContext,
  start: StartOptions,
  env: Record<string, string> | undefined,
  o: OpenLoopOptions,
): Promise<{ latency: LatencyResult; loadAvgBefore: number }> {
  await ctx.db.sql`analyze messages`;
  const loadAvgBefore = loadAverage()[0]!;
  const target = await startTarget("server", { ...start, env });
  try {
    return { latency: await latencyRun(ctx, target, o), loadAvgBefore };
  } finally {
    await stopTarget(target);
  }
}

/** The i-th run of `on` minus the i-th of `off`, for every pair both have. */
export function pairDifferences<R>(off: R[], on: R[], pick: (r: R) => number): number[] {
  return Array.from(
    { length: Math.min(off.length, on.length) },
    (_, i) => pick(on[i]!) - pick(off[i]!),
  );
}
