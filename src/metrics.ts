/**
 * @module metrics
 * Counters and histograms the server keeps, rendered in the Prometheus text
 * format for `GET /metrics` on the internal listener.
 */

import type { ErrorCode } from "./protocol.ts";

/** What the rest of the server records. */
export interface Metrics {
  frameIn(): void;
  frameOut(): void;
  frameDropped(): void;
  errorSent(code: ErrorCode): void;
  /** A message committed, `ms` after its frame was accepted. */
  messageStored(ms: number): void;
  slowConsumerClosed(): void;
}

/** Gauges read at scrape time. */
export interface MetricsGauges {
  connections(): { authenticated: number; unauthenticated: number };
  users(): number;
}

const LATENCY_BUCKETS_MS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000];

export class ServerMetrics implements Metrics {
  #framesIn = 0;
  #framesOut = 0;
  #dropped = 0;
  #slowConsumers = 0;
  #stored = 0;
  readonly #errors = new Map<ErrorCode, number>();
  readonly #ackBuckets = new Array<number>(LATENCY_BUCKETS_MS.length).fill(0);
  #ackSum = 0;

  frameIn(): void {
    this.#framesIn++;
  }
  frameOut(): void {
    this.#framesOut++;
  }
  frameDropped(): void {
    this.#dropped++;
  }
  errorSent(code: ErrorCode): void {
    this.#errors.set(code, (this.#errors.get(code) ?? 0) + 1);
  }
  messageStored(ms: number): void {
    this.#stored++;
    this.#ackSum += ms;
    for (let i = 0; i < LATENCY_BUCKETS_MS.length; i++) {
      if (ms <= LATENCY_BUCKETS_MS[i]!) this.#ackBuckets[i]!++;
    }
  }
  slowConsumerClosed(): void {
    this.#slowConsumers++;
  }

  /** The Prometheus text exposition of every metric. */
  render(gauges: MetricsGauges): string {
    const lines: string[] = [];
    const metric = (name: string, type: string, help: string, samples: [string, number][]) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, value] of samples) lines.push(`${name}${labels} ${value}`);
    };
    const conns = gauges.connections();
    metric("chat_connections", "gauge", "Open WebSocket connections by state.", [
      ['{state="authenticated"}', conns.authenticated],
      ['{state="unauthenticated"}', conns.unauthenticated],
    ]);
    metric("chat_users", "gauge", "Users with a connection on this node.", [["", gauges.users()]]);
    metric("chat_frames_in_total", "counter", "Frames received.", [["", this.#framesIn]]);
    metric("chat_frames_out_total", "counter", "Frames sent.", [["", this.#framesOut]]);
    metric("chat_frames_dropped_total", "counter", "Droppable frames shed for slow consumers.", [[
      "",
      this.#dropped,
    ]]);
    metric("chat_slow_consumer_closes_total", "counter", "Connections closed as slow consumers.", [[
      "",
      this.#slowConsumers,
    ]]);
    metric(
      "chat_errors_total",
      "counter",
      "Error frames sent, by code.",
      [...this.#errors].map(([code, n]) => [`{code="${code}"}`, n]),
    );
    metric("chat_messages_stored_total", "counter", "Messages committed.", [["", this.#stored]]);
    lines.push(
      "# HELP chat_send_ack_ms Time from an accepted chat frame to its commit.",
      "# TYPE chat_send_ack_ms histogram",
    );
    LATENCY_BUCKETS_MS.forEach((le, i) =>
      lines.push(`chat_send_ack_ms_bucket{le="${le}"} ${this.#ackBuckets[i]}`)
    );
    lines.push(`chat_send_ack_ms_bucket{le="+Inf"} ${this.#stored}`);
    lines.push(`chat_send_ack_ms_sum ${this.#ackSum}`, `chat_send_ack_ms_count ${this.#stored}`);
    const memory = Deno.memoryUsage();
    metric("process_resident_memory_bytes", "gauge", "Resident set size.", [["", memory.rss]]);
    metric("process_heap_used_bytes", "gauge", "V8 heap in use.", [["", memory.heapUsed]]);
    return lines.join("\n") + "\n";
  }
}
