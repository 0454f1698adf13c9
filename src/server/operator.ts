/**
 * @module server/operator
 * What an operator sees besides `/metrics`: the dependencies probed on a
 * timer (`chat_dependency_up`, `chat_dependency_latency_seconds`), one
 * summary log line a minute at `info`, and the data of the status page
 * (`GET /status/data`), all read from the same registry `/metrics` renders:
 * there is no second bookkeeping.
 */

import type { Bus } from "../bus/mod.ts";
import { BUILD_INFO } from "../build_info.ts";
import type { Logger } from "../log.ts";
import { errorMessage } from "../log.ts";
import type { ServerMetrics } from "../metrics.ts";
import type { ChatRepository } from "../store/mod.ts";

/** How often Postgres and Redis are probed. */
const PROBE_INTERVAL_MS = 5_000;
/** How often the summary line is logged. */
const SUMMARY_INTERVAL_MS = 60_000;

export interface OperatorDeps {
  metrics: ServerMetrics;
  repository: ChatRepository;
  bus: Bus;
  logger: Logger;
  /** Whether the bus talks to a broker (Redis) whose health is worth a gauge. */
  busHasBroker: boolean;
}

/** One value of a metric, as prom-client reports it. */
interface Sample {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

/** Every metric's samples by name, from the registry `/metrics` renders. */
async function samples(metrics: ServerMetrics): Promise<Map<string, Sample[]>> {
  const json = await metrics.registry.getMetricsAsJSON();
  return new Map(json.map((m) => [m.name, m.values as Sample[]]));
}

function total(byName: Map<string, Sample[]>, name: string): number {
  return (byName.get(name) ?? []).reduce((sum, s) => sum + s.value, 0);
}

function byLabel(byName: Map<string, Sample[]>, name: string, label: string) {
  const out: Record<string, number> = {};
  for (const s of byName.get(name) ?? []) {
    const key = String(s.labels[label] ?? "");
    if (s.value > 0) out[key] = (out[key] ?? 0) + s.value;
  }
  return out;
}

/** A histogram's cumulative buckets (`le` → count), `+Inf` last. */
function buckets(byName: Map<string, Sample[]>, name: string): [number, number][] {
  return (byName.get(name) ?? [])
    .filter((s) => s.metricName === `${name}_bucket`)
    .map((
      s,
    ): [number, number] => [s.labels.le === "+Inf" ? Infinity : Number(s.labels.le), s.value])
    .sort((a, b) => a[0] - b[0]);
}

/** What `GET /status/data` answers: this node's counters (cumulative) and the cluster's nodes. */
export async function statusData(deps: OperatorDeps): Promise<Record<string, unknown>> {
  const m = await samples(deps.metrics);
  let cluster: { nodes: unknown[]; error?: string } = { nodes: [] };
  try {
    cluster = { nodes: (await deps.bus.inspect?.())?.nodes ?? [] };
  } catch (err) {
    cluster = { nodes: [], error: errorMessage(err) };
  }
  const dependency = (name: string) => {
    const up = (m.get("chat_dependency_up") ?? []).find((s) => s.labels.dependency === name);
    const latency = (m.get("chat_dependency_latency_seconds") ?? [])
      .find((s) => s.labels.dependency === name);
    return up === undefined ? null : { up: up.value === 1, latency_s: latency?.value ?? null };
  };
  return {
    time_ms: Date.now(),
    build: BUILD_INFO,
    connections: byLabel(m, "chat_connections", "state"),
    users: total(m, "chat_users"),
    pending_connections: total(m, "chat_pending_connections"),
    frames_in: byLabel(m, "chat_frames_in_total", "type"),
    frames_out: byLabel(m, "chat_frames_out_total", "type"),
    frames_dropped: total(m, "chat_frames_dropped_total"),
    messages_stored: total(m, "chat_messages_stored_total"),
    errors: byLabel(m, "chat_errors_total", "code"),
    slow_consumer_closes: total(m, "chat_slow_consumer_closes_total"),
    bus_publishes: byLabel(m, "chat_bus_publishes_total", "result"),
    send_ack_buckets: buckets(m, "chat_send_ack_seconds"),
    batch_size_buckets: buckets(m, "chat_message_batch_size"),
    commit_buckets: buckets(m, "chat_message_commit_seconds"),
    dependencies: { postgres: dependency("postgres"), redis: dependency("redis") },
    event_loop_lag_s: total(m, "chat_event_loop_lag_seconds"),
    memory_bytes: total(m, "process_resident_memory_bytes"),
    cluster,
  };
}

/**
 * Starts the probes and the summary line; the returned function stops them
 * and resolves once a probe under way has ended.
 */
export function startOperatorWatch(deps: OperatorDeps): () => Promise<void> {
  const { metrics, repository, bus, logger } = deps;
  let probing: Promise<void> | undefined;
  const probe = async () => {
    const started = performance.now();
    const pgUp = await repository.isReady().catch(() => false);
    metrics.dependencyProbed("postgres", pgUp, (performance.now() - started) / 1000);
    const at = performance.now();
    const inspection = await bus.inspect?.().catch(() => undefined);
    if (deps.busHasBroker) {
      const up = inspection !== undefined && bus.isReady();
      metrics.dependencyProbed("redis", up, (performance.now() - at) / 1000);
    }
    if (inspection !== undefined) {
      const now = Date.now();
      const oldest = Math.min(now, ...inspection.nodes.map((n) => n.lastHeartbeatAt));
      metrics.clusterInspected(Math.max(0, now - oldest) / 1000);
    }
  };
  const probeTimer = setInterval(() => {
    probing ??= probe().finally(() => probing = undefined);
  }, PROBE_INTERVAL_MS);
  probing = probe().finally(() => probing = undefined);

  let last: { at: number; stored: number; errors: Record<string, number> } | undefined;
  const summarize = async () => {
    const m = await samples(metrics);
    const now = performance.now();
    const stored = total(m, "chat_messages_stored_total");
    const errors = byLabel(m, "chat_errors_total", "code");
    if (last === undefined) {
      last = { at: now, stored, errors }; // the first minute starts here
      return;
    }
    const seconds = (now - last.at) / 1000;
    // Error frames of the last minute by code, one field each (`errors_rate_limited`: 3).
    const newErrors: Record<string, number> = {};
    for (const [code, n] of Object.entries(errors)) {
      const delta = n - (last.errors[code] ?? 0);
      if (delta > 0) newErrors[`errors_${code}`] = delta;
    }
    logger.info("summary", {
      connections: total(m, "chat_connections"),
      users: total(m, "chat_users"),
      messages_per_s: Math.round(((stored - last.stored) / seconds) * 10) / 10,
      ...newErrors,
    });
    last = { at: now, stored, errors };
  };
  void summarize();
  const summaryTimer = setInterval(() => void summarize(), SUMMARY_INTERVAL_MS);
  return async () => {
    clearInterval(probeTimer);
    clearInterval(summaryTimer);
    await probing;
  };
}
