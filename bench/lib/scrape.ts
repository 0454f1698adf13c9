/**
 * @module scrape
 * Reads the real server's own view of a run from `GET /metrics` on its
 * internal listener: histogram deltas between two scrapes (batch size,
 * commit time, accept→acknowledge time) and counter deltas. Missing metrics
 * give `NaN`, so the bench keeps working while the metrics evolve.
 */

/** Sample values by full series name, e.g. `chat_message_batch_size_bucket{le="8"}`. */
export type Scrape = Map<string, number>;

/** Scrapes `/metrics` of every internal port (summed); an empty map when unreachable. */
export async function scrape(internalPorts: number[]): Promise<Scrape> {
  const out: Scrape = new Map();
  for (const port of internalPorts) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`, {
        signal: AbortSignal.timeout(3000),
      });
      const text = await res.text();
      for (const line of text.split("\n")) {
        if (line.startsWith("#") || line.trim() === "") continue;
        const space = line.lastIndexOf(" ");
        const value = Number(line.slice(space + 1));
        if (!Number.isFinite(value)) continue;
        const name = line.slice(0, space);
        out.set(name, (out.get(name) ?? 0) + value);
      }
    } catch { /* no metrics from this node */ }
  }
  return out;
}

export interface HistogramDelta {
  count: number;
  mean: number;
  /** Upper bound of the bucket holding the 50th / 99th percentile. */
  p50: number;
  p99: number;
}

/** The change of histogram `name` between two scrapes. */
export function histogramDelta(a: Scrape, b: Scrape, name: string): HistogramDelta {
  const buckets: { le: number; count: number }[] = [];
  for (const [series, value] of b) {
    const m = new RegExp(`^${name}_bucket\\{.*le="([^"]+)".*\\}$`).exec(series);
    if (!m) continue;
    const le = m[1] === "+Inf" ? Infinity : Number(m[1]);
    buckets.push({ le, count: value - (a.get(series) ?? 0) });
  }
  buckets.sort((x, y) => x.le - y.le);
  const count = (b.get(`${name}_count`) ?? NaN) - (a.get(`${name}_count`) ?? 0);
  const sum = (b.get(`${name}_sum`) ?? NaN) - (a.get(`${name}_sum`) ?? 0);
  const quantile = (q: number) => buckets.find((x) => x.count >= q * count)?.le ?? NaN;
  return { count, mean: count > 0 ? sum / count : NaN, p50: quantile(0.5), p99: quantile(0.99) };
}

/** The change of a counter (all label sets summed when `name` has no braces). */
export function counterDelta(a: Scrape, b: Scrape, name: string): number {
  let total = 0;
  let found = false;
  for (const [series, value] of b) {
    if (series === name || series.startsWith(`${name}{`)) {
      total += value - (a.get(series) ?? 0);
      found = true;
    }
  }
  return found ? total : NaN;
}

/** What the report shows of the server's own measurements over a run. */
export interface ServerView {
  batchRowsMean: number;
  batchRowsP99: number;
  commitMsMean: number;
  commitMsP50: number;
  commitMsP99: number;
  ackMsMean: number;
  ackMsP50: number;
  ackMsP99: number;
  busPublishes: number;
  /** Moderation hook calls answered `allow`, and messages the failure rule decided (`NaN` without the metric). */
  moderationAllowed: number;
  moderationFailed: number;
  /** The server's own timing of a hook call (bucket bounds). */
  moderationMsP50: number;
  moderationMsP99: number;
}

export function serverView(a: Scrape, b: Scrape): ServerView {
  const batch = histogramDelta(a, b, "chat_message_batch_size");
  const commit = histogramDelta(a, b, "chat_message_commit_seconds");
  const ack = histogramDelta(a, b, "chat_send_ack_seconds");
  const hook = histogramDelta(a, b, "chat_moderation_latency_seconds");
  return {
    batchRowsMean: batch.mean,
    batchRowsP99: batch.p99,
    commitMsMean: commit.mean * 1000,
    commitMsP50: commit.p50 * 1000,
    commitMsP99: commit.p99 * 1000,
    ackMsMean: ack.mean * 1000,
    ackMsP50: ack.p50 * 1000,
    ackMsP99: ack.p99 * 1000,
    busPublishes: counterDelta(a, b, "chat_bus_publishes_total"),
    moderationAllowed: counterDelta(a, b, 'chat_moderation_outcomes_total{outcome="allowed"}'),
    moderationFailed: counterDelta(a, b, 'chat_moderation_outcomes_total{outcome="failed"}'),
    moderationMsP50: hook.p50 * 1000,
    moderationMsP99: hook.p99 * 1000,
  };
}
