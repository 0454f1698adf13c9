/**
 * @module commands
 * The control protocol between the orchestrator (`bench/main.ts`) and each
 * load-generator process (`bench/gen/`, a compiled Go program): one JSON
 * command per line on the worker's stdin, one JSON reply per line on its
 * stdout. The Go side (`gen/runs.go`) mirrors these shapes; keep both in step.
 *
 * Times (`t0`, `t1`, `t2`, `firstStart`, ...) are absolute milliseconds,
 * `performance.timeOrigin + performance.now()`, comparable across processes
 * of one machine to well under a millisecond. A run sends from `t0`, counts
 * from `t1` (after the warm-up) and stops sending at `t2`.
 */

export interface ConnectCommand {
  cmd: "connect";
  /** User `id` connects to `urls[(id - 1) % urls.length]` (pair partners to different nodes). */
  urls: string[];
  userIds: number[];
  /** Handshakes + authentications in flight at once in this worker. */
  concurrency: number;
  /** Signs real tokens (the relay ignores the signature). */
  secret: string;
  timeoutMs: number;
}

export interface ConnectReply {
  connected: number;
  failed: number;
  /** Why connections failed, by reason. */
  failures: Record<string, number>;
  firstStart: number;
  lastDone: number;
  /** Connect start → `authenticated`, per connection (ms). */
  latencies: number[];
}

export interface ThroughputCommand {
  cmd: "throughput";
  /** Unacknowledged messages allowed per sender. */
  window: number;
  t0: number;
  t1: number;
  t2: number;
  drainMs: number;
}

export interface ThroughputReply {
  senders: number;
  sent: number;
  acked: number;
  /** `chat_message` frames received by recipients in [t1, t2). */
  delivered: number;
  errors: Record<string, number>;
  unackedAtEnd: number;
}

export interface LatencyCommand {
  cmd: "latency";
  /** This worker's share of the offered rate (messages per second). */
  ratePerS: number;
  t0: number;
  t1: number;
  t2: number;
  drainMs: number;
}

export interface LatencyReply {
  senders: number;
  sent: number;
  /** Milliseconds, for messages scheduled in [t1, t2). */
  recipient: number[];
  ack: number[];
  recipientFromSchedule: number[];
  /** How late the generator sent each message against its schedule (ms). */
  lag: number[];
  undelivered: number;
  unacked: number;
  errors: Record<string, number>;
}

export interface CloseAllCommand {
  cmd: "closeAll";
  timeoutMs: number;
}

export interface CloseAllReply {
  closed: number;
  remaining: number;
}

/** The storm scenario's commands (`lib/storm.ts`, `gen/storm.go`; replies typed there). */
export interface StormCommand {
  cmd: "stormStart" | "stormMark" | "stormStatus" | "stormQuiet" | "stormReport" | "stormStop";
  [field: string]: unknown;
}

export interface ExitCommand {
  cmd: "exit";
}

export type Command =
  | ConnectCommand
  | ThroughputCommand
  | LatencyCommand
  | CloseAllCommand
  | StormCommand
  | ExitCommand;

/** Absolute milliseconds with sub-millisecond resolution (see the module comment). */
export function absNow(): number {
  return performance.timeOrigin + performance.now();
}

/** Splits a byte stream into lines. */
export async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffered = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buffered += chunk;
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      yield buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
    }
  }
  if (buffered !== "") yield buffered;
}
