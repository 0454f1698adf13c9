/**
 * @module metrics
 * What the server counts, in Prometheus' text format for `GET /metrics` on
 * the internal listener, kept with `prom-client`. Hot-path calls are plain
 * counter increments on pre-bound label children.
 */

import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { BUILD_INFO } from "./build_info.ts";
import type { ErrorCode } from "./protocol/mod.ts";

/** The dependencies whose health and latency are exported. */
export type Dependency = "postgres" | "redis";

/**
 * How one call of the moderation hook ended: its answer, or why it failed
 * (`busy`: not called, `MODERATION_MAX_IN_FLIGHT` calls were out already).
 */
export type ModerationResult =
  | "allowed"
  | "replaced"
  | "rejected"
  | "timeout"
  | "connection"
  | "status"
  | "body"
  | "busy";

/** What the rest of the server records. */
export interface Metrics {
  /** A frame received, by its parsed `type` (`binary`, `invalid`, `refused` for the rest). */
  frameIn(type: string): void;
  /** A serialized frame handed to a socket. */
  frameOut(frame: string): void;
  frameDropped(): void;
  errorSent(code: ErrorCode): void;
  /** A message committed and acknowledged, `ms` after its frame was accepted. */
  messageAcknowledged(ms: number): void;
  slowConsumerClosed(): void;
  /** A group-commit batch of `size` rows committed in `ms`. */
  batchCommitted(size: number, ms: number): void;
  /** A frame published on the bus for other nodes; `ok` false when it could not be. */
  busPublished(ok: boolean): void;
  /** A probe of a dependency: whether it answered, and how long it took. */
  dependencyProbed(dependency: Dependency, up: boolean, seconds: number): void;
  /** A message through the moderation hook: how it ended, and how long the call took (none when `busy`). */
  moderationReviewed(result: ModerationResult, seconds: number | undefined): void;
}

/** Values read at scrape time. */
export interface MetricsGauges {
  connections(): { authenticated: number; unauthenticated: number };
  users(): number;
  /** TCP connections on the public listener not upgraded (yet); `ws` transport only. */
  pendingConnections?(): number;
  /** Messages accepted and waiting for the writer. */
  queuedMessages?(): number;
}

/** Frame types counted by name; anything else pushed through /notify counts as `event`. */
const SERVER_TYPES = new Set([
  "authenticated",
  "auth_error",
  "chat_message",
  "message_sent",
  "typing",
  "presence",
  "pong",
  "error",
  "sync_result",
  "history_result",
  "read",
  "delivered",
  "reauthenticated",
  "session_expired",
  "report_received",
]);

/** How often the event loop's lag is sampled. */
const LAG_SAMPLE_MS = 500;
const TYPE_PREFIX = '{"type":"';

export class ServerMetrics implements Metrics {
  readonly registry = new Registry();
  /** Read by the gauges' `collect` callbacks, which prom-client calls with their own `this`. */
  readonly #source: { gauges: MetricsGauges } = {
    gauges: {
      connections: () => ({ authenticated: 0, unauthenticated: 0 }),
      users: () => 0,
    },
  };
  readonly #framesIn: Counter<"type">;
  readonly #framesOut: Counter<"type">;
  /** Each label's child, so a frame costs no hashing of its labels. */
  readonly #framesInByType = new Map<string, Counter.Internal>();
  readonly #framesOutByType = new Map<string, Counter.Internal>();
  readonly #dropped: Counter;
  readonly #slow: Counter;
  readonly #errors: Counter<"code">;
  readonly #stored: Counter;
  readonly #ack: Histogram;
  readonly #batchSize: Histogram;
  readonly #commit: Histogram;
  readonly #publishes: Counter<"result">;
  readonly #refused: Counter;
  readonly #up: Gauge<"dependency">;
  readonly #latency: Gauge<"dependency">;
  readonly #oldestHeartbeat: Gauge;
  /** The largest event-loop lag seen since the last scrape, in seconds. */
  readonly #lag = { max: 0 };
  readonly #evicted: Counter;
  readonly #moderation: Counter<"outcome">;
  readonly #moderationFailures: Counter<"cause">;
  readonly #moderationLatency: Histogram;
  readonly #eventsEnqueued: Counter<"type">;
  readonly #eventsSent: Counter;
  readonly #eventsRetried: Counter;
  readonly #eventsDropped: Counter;
  readonly #eventsLeftOut: Counter;
  readonly #eventsBatch: Histogram<"result">;
  readonly #eventsOldest: Gauge;

  constructor() {
    const registers = [this.registry];
    const source = this.#source;
    new Gauge({
      name: "chat_connections",
      help: "Open WebSocket connections by state.",
      labelNames: ["state"],
      registers,
      collect() {
        const { authenticated, unauthenticated } = source.gauges.connections();
        this.set({ state: "authenticated" }, authenticated);
        this.set({ state: "unauthenticated" }, unauthenticated);
      },
    });
    new Gauge({
      name: "chat_pending_connections",
      help: "Public TCP connections not upgraded to WebSocket (yet), plain HTTP ones included.",
      registers,
      collect() {
        this.set(source.gauges.pendingConnections?.() ?? 0);
      },
    });
    new Gauge({
      name: "chat_message_writer_queue",
      help: "Messages accepted and waiting for a batch of the database writer.",
      registers,
      collect() {
        this.set(source.gauges.queuedMessages?.() ?? 0);
      },
    });
    new Gauge({
      name: "chat_users",
      help: "Users with at least one connection on this node.",
      registers,
      collect() {
        this.set(source.gauges.users());
      },
    });
    new Gauge({
      name: "process_resident_memory_bytes",
      help: "Resident set size in bytes.",
      registers,
      collect() {
        this.set(Deno.memoryUsage().rss);
      },
    });
    new Gauge({
      name: "process_heap_used_bytes",
      help: "V8 heap in use, in bytes (live heap after a full GC when run with --expose-gc).",
      registers,
      collect() {
        // Only a diagnostic run exposes `gc` (--v8-flags=--expose-gc): then the
        // figure is the live heap, which is what a leak check needs.
        (globalThis as { gc?: () => void }).gc?.();
        this.set(Deno.memoryUsage().heapUsed);
      },
    });
    this.#framesIn = new Counter({
      name: "chat_frames_in_total",
      help: "Frames received, by type.",
      labelNames: ["type"],
      registers,
    });
    this.#framesOut = new Counter({
      name: "chat_frames_out_total",
      help: "Frames sent, by type.",
      labelNames: ["type"],
      registers,
    });
    this.#dropped = new Counter({
      name: "chat_frames_dropped_total",
      help: "Typing and presence frames shed for slow consumers.",
      registers,
    });
    this.#slow = new Counter({
      name: "chat_slow_consumer_closes_total",
      help:
        "Connections closed because a frame would have taken their outgoing buffer past its limit.",
      registers,
    });
    this.#errors = new Counter({
      name: "chat_errors_total",
      help: "Error frames sent, by code.",
      labelNames: ["code"],
      registers,
    });
    this.#stored = new Counter({
      name: "chat_messages_stored_total",
      help: "Messages committed to the database.",
      registers,
    });
    this.#ack = new Histogram({
      name: "chat_send_ack_seconds",
      help: "From an accepted chat frame to its acknowledgement (stored).",
      buckets: [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.#batchSize = new Histogram({
      name: "chat_message_batch_size",
      help: "Rows per group-commit batch.",
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 500],
      registers,
    });
    this.#commit = new Histogram({
      name: "chat_message_commit_seconds",
      help: "Time to write and commit one batch.",
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
      registers,
    });
    this.#publishes = new Counter({
      name: "chat_bus_publishes_total",
      help: "Frames published on the bus for other nodes, by result.",
      labelNames: ["result"],
      registers,
    });
    this.#refused = new Counter({
      name: "chat_connections_refused_per_address_total",
      help:
        "TCP connections closed at once: their address held MAX_UNAUTH_PER_IP already, none of them unfinished.",
      registers,
    });
    this.#evicted = new Counter({
      name: "chat_connections_evicted_per_address_total",
      help:
        "Unfinished TCP connections dropped for a newer one from their address at MAX_UNAUTH_PER_IP.",
      registers,
    });
    this.#moderation = new Counter({
      name: "chat_moderation_outcomes_total",
      help:
        "Messages through the moderation hook, by outcome: allowed, replaced, rejected, failed (then MODERATION_FAIL applied).",
      labelNames: ["outcome"],
      registers,
    });
    this.#moderationFailures = new Counter({
      name: "chat_moderation_failures_total",
      help:
        "Failed moderation hook calls, by cause: timeout, connection, status (non-2xx), body (not an answer), busy (MODERATION_MAX_IN_FLIGHT reached, not called).",
      labelNames: ["cause"],
      registers,
    });
    this.#moderationLatency = new Histogram({
      name: "chat_moderation_latency_seconds",
      help: "How long a call of the moderation hook took, answered or failed.",
      buckets: [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    new Gauge({
      name: "chat_build_info",
      help: "Always 1; the labels say which release and protocol version this node runs.",
      labelNames: ["version", "protocol", "deno"],
      registers,
    }).set(
      { version: BUILD_INFO.version, protocol: BUILD_INFO.protocol, deno: Deno.version.deno },
      1,
    );
    this.#up = new Gauge({
      name: "chat_dependency_up",
      help: "1 when the dependency answered its last probe in time, else 0.",
      labelNames: ["dependency"],
      registers,
    });
    this.#latency = new Gauge({
      name: "chat_dependency_latency_seconds",
      help: "How long the dependency's last probe took (a trivial query or PING).",
      labelNames: ["dependency"],
      registers,
    });
    this.#oldestHeartbeat = new Gauge({
      name: "chat_cluster_oldest_heartbeat_age_seconds",
      help:
        "Age of the oldest heartbeat among the nodes the bus lists (a dead node not swept yet).",
      registers,
    });
    this.#eventsEnqueued = new Counter({
      name: "chat_events_enqueued_total",
      help: "Events written to the webhook's outbox, by type.",
      labelNames: ["type"],
      registers,
    });
    this.#eventsSent = new Counter({
      name: "chat_events_sent_total",
      help: "Events the webhook's receiver acknowledged with a 2xx.",
      registers,
    });
    this.#eventsRetried = new Counter({
      name: "chat_events_retried_total",
      help: "Events of a failed webhook batch scheduled for another attempt.",
      registers,
    });
    this.#eventsDropped = new Counter({
      name: "chat_events_dropped_total",
      help: "Events dropped after failing for EVENTS_RETRY_FOR_S.",
      registers,
    });
    this.#eventsLeftOut = new Counter({
      name: "chat_events_left_out_total",
      help: "message.unseen events not sent: their messages were delivered, read or deleted first.",
      registers,
    });
    this.#eventsBatch = new Histogram({
      name: "chat_events_batch_seconds",
      help: "One attempt to post a webhook batch, by result (ok: a 2xx within 5 s).",
      labelNames: ["result"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.#eventsOldest = new Gauge({
      name: "chat_events_oldest_pending_seconds",
      help: "Age of the oldest event waiting in the webhook's outbox (0 when empty or off).",
      registers,
    });
    const lag = this.#lag;
    new Gauge({
      name: "chat_event_loop_lag_seconds",
      help: "The largest delay of a timer past its due time since the last scrape.",
      registers,
      collect() {
        this.set(lag.max);
        lag.max = 0;
      },
    });
  }

  /**
   * Samples the event loop's lag (a timer's delay past its due time) until
   * the returned function is called; the timer does not keep the process up.
   */
  monitorEventLoop(): () => void {
    let due = performance.now() + LAG_SAMPLE_MS;
    const timer = setInterval(() => {
      const now = performance.now();
      this.#lag.max = Math.max(this.#lag.max, Math.max(0, now - due) / 1000);
      due = now + LAG_SAMPLE_MS;
    }, LAG_SAMPLE_MS);
    Deno.unrefTimer(timer);
    return () => clearInterval(timer);
  }

  /** Sets what the scrape-time gauges read (the server, once it exists). */
  setGauges(gauges: MetricsGauges): void {
    this.#source.gauges = gauges;
  }

  frameIn(type: string): void {
    child(this.#framesIn, this.#framesInByType, type).inc();
  }
  frameOut(frame: string): void {
    let type = "event";
    if (frame.startsWith(TYPE_PREFIX)) {
      const name = frame.slice(TYPE_PREFIX.length, frame.indexOf('"', TYPE_PREFIX.length));
      if (SERVER_TYPES.has(name)) type = name;
    }
    child(this.#framesOut, this.#framesOutByType, type).inc();
  }
  frameDropped(): void {
    this.#dropped.inc();
  }
  errorSent(code: ErrorCode): void {
    this.#errors.inc({ code });
  }
  messageAcknowledged(ms: number): void {
    this.#stored.inc();
    this.#ack.observe(ms / 1000);
  }
  slowConsumerClosed(): void {
    this.#slow.inc();
  }
  batchCommitted(size: number, ms: number): void {
    this.#batchSize.observe(size);
    this.#commit.observe(ms / 1000);
  }
  busPublished(ok: boolean): void {
    this.#publishes.inc({ result: ok ? "ok" : "failed" });
  }
  dependencyProbed(dependency: Dependency, up: boolean, seconds: number): void {
    this.#up.set({ dependency }, up ? 1 : 0);
    this.#latency.set({ dependency }, seconds);
  }
  moderationReviewed(result: ModerationResult, seconds: number | undefined): void {
    if (result === "allowed" || result === "replaced" || result === "rejected") {
      this.#moderation.inc({ outcome: result });
    } else {
      this.#moderation.inc({ outcome: "failed" });
      this.#moderationFailures.inc({ cause: result });
    }
    if (seconds !== undefined) this.#moderationLatency.observe(seconds);
  }
  /** The cluster's nodes as the bus lists them, with the oldest heartbeat's age. */
  clusterInspected(oldestHeartbeatAgeSeconds: number): void {
    this.#oldestHeartbeat.set(oldestHeartbeatAgeSeconds);
  }
  /** A TCP connection refused because its address was at its limit. */
  connectionRefusedPerAddress(): void {
    this.#refused.inc();
  }
  /** An address at its limit lost its oldest unfinished connection to a new one. */
  connectionEvictedPerAddress(): void {
    this.#evicted.inc();
  }

  eventsEnqueued(type: string, count: number): void {
    this.#eventsEnqueued.inc({ type }, count);
  }
  eventsSent(count: number): void {
    this.#eventsSent.inc(count);
  }
  eventsRetried(count: number): void {
    this.#eventsRetried.inc(count);
  }
  eventsDropped(count: number): void {
    this.#eventsDropped.inc(count);
  }
  eventsLeftOut(count: number): void {
    this.#eventsLeftOut.inc(count);
  }
  eventsBatchPosted(seconds: number, ok: boolean): void {
    this.#eventsBatch.observe({ result: ok ? "ok" : "failed" }, seconds);
  }
  eventsOldestPending(seconds: number): void {
    this.#eventsOldest.set(seconds);
  }

  /** The Prometheus text exposition of every metric. */
  render(): Promise<string> {
    return this.registry.metrics();
  }
}

/** `counter`'s child for `type`, kept in `children` (label values are a small fixed set). */
function child(
  counter: Counter<"type">,
  children: Map<string, Counter.Internal>,
  type: string,
): Counter.Internal {
  let found = children.get(type);
  if (found === undefined) {
    found = counter.labels(type);
    children.set(type, found);
  }
  return found;
}
