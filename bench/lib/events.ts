/**
 * @module events
 * The events webhook's cost (the `events` scenario), against a receiver in
 * this process that answers 200 at once:
 *
 * - **Outbox per message**: the open loop at a fixed rate against a fresh
 *   server process with `EVENTS_URL` set and against one without, alternating;
 *   server and Postgres CPU per delivered message (the webhook's own two
 *   Postgres connections included). The generator's recipients are connected
 *   but never send `delivered`, which is, for the server, what a recipient
 *   whose devices are all closed looks like: every message goes the whole
 *   `message.unseen` way (polled, joined to or starting its conversation's
 *   event, the event's body worked out, posted, deleted).
 * - **Backlog drain**: 100,000 `message.unseen` events (one message each, to
 *   10,000 recipients from 10 senders each) inserted into `chat_events` as an
 *   outage would leave them; then a server with `EVENTS_URL` starts, and the
 *   time from its first batch to an empty outbox is the drain.
 */

import { absNow } from "./commands.ts";
import { backendPids, type BenchDatabase } from "./db.ts";
import { FRIEND_BASE, PAIR_USERS } from "./layout.ts";
import { cpuSeconds, loadAverage } from "./proc.ts";
import { alternatingPairs, freshServerLatency, type OpenLoopOptions } from "./paired.ts";
import type { LatencyResult, RunContext } from "./scenarios.ts";
import { type StartOptions, startTarget, stopTarget } from "./targets.ts";

const EVENTS_SECRET = "bench-events-secret";

/** A webhook receiver on 127.0.0.1 that answers 200 at once and counts what it got. */
export class CountingReceiver {
  /** Arrival time (absolute ms) and size of every batch. */
  readonly batches: { at: number; events: number }[] = [];
  readonly ids = new Set<string>();
  events = 0;
  readonly #server: Deno.HttpServer<Deno.NetAddr>;

  constructor() {
    this.#server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
      const { events } = await req.json() as { events: { id: string }[] };
      this.batches.push({ at: absNow(), events: events.length });
      this.events += events.length;
      for (const e of events) this.ids.add(e.id);
      return new Response(null, { status: 200 });
    });
  }

  get url(): string {
    return `http://127.0.0.1:${this.#server.addr.port}/events`;
  }

  /** Events that arrived in [t1, t2). */
  eventsBetween(t1: number, t2: number): number {
    return this.batches.filter((b) => b.at >= t1 && b.at < t2).reduce((s, b) => s + b.events, 0);
  }

  reset(): void {
    this.batches.length = 0;
    this.ids.clear();
    this.events = 0;
  }

  close(): Promise<void> {
    return this.#server.shutdown();
  }
}

function eventsEnv(receiver: CountingReceiver, extra: Record<string, string> = {}) {
  return {
    EVENTS_URL: receiver.url,
    EVENTS_SECRET,
    // The pollers lag DB_STATEMENT_TIMEOUT_MS + 1 s (6 s) behind anyway: a 1 s delay only
    // makes them work during the window on the messages of 6 s before, as they would at 15 s.
    UNSEEN_DELAY_S: "1",
    ...extra,
  };
}

/** An outbox and cursors as a server that never ran the webhook leaves them. */
async function clearOutbox(db: BenchDatabase): Promise<void> {
  await db.sql`delete from chat_events`;
  await db.sql`delete from chat_event_cursors`;
}

export interface OutboxCostRun {
  webhook: boolean;
  latency: LatencyResult;
  /** Events the receiver got in the measured window, per second and per message. */
  eventsPerS: number;
  eventsPerMsg: number;
  loadAvgBefore: number;
}

export interface OutboxCostOptions extends OpenLoopOptions {
  runs: number;
}

/** Runs with and without `EVENTS_URL`, alternating which goes first; a fresh server each run. */
export function outboxCostRuns(
  ctx: RunContext,
  start: StartOptions,
  receiver: CountingReceiver,
  o: OutboxCostOptions,
  log: (line: string) => void,
): Promise<OutboxCostRun[]> {
  return alternatingPairs(o.runs, async (webhook, i) => {
    await clearOutbox(ctx.db);
    receiver.reset();
    const { latency, loadAvgBefore } = await freshServerLatency(
      ctx,
      start,
      webhook ? eventsEnv(receiver) : undefined,
      o,
    );
    const seconds = (latency.t2 - latency.t1) / 1000;
    const events = receiver.eventsBetween(latency.t1, latency.t2);
    const delivered = latency.recipient.count;
    log(
      `events: outbox cost run ${i + 1}/${o.runs} ${webhook ? "with" : "without"} EVENTS_URL: ` +
        `server ${latency.targetUsPerMsg} + Postgres ${latency.postgresUsPerMsg} µs/msg, ` +
        `${events} events in the window`,
    );
    return {
      webhook,
      latency,
      eventsPerS: Math.round(events / seconds),
      eventsPerMsg: delivered > 0 ? Math.round(1000 * events / delivered) / 1000 : NaN,
      loadAvgBefore,
    };
  });
}

export interface DrainRun {
  backlog: number;
  /** Distinct ids the receiver got, and every event posted (a repeat would be more). */
  received: number;
  posted: number;
  /** Server listening → first batch arrived. */
  firstBatchS: number;
  /** First batch arrived → the outbox empty. */
  drainS: number;
  eventsPerS: number;
  batches: number;
  serverCpuS: number;
  postgresCpuS: number;
  loadAvgBefore: number;
}

/**
 * Inserts `backlog` due `message.unseen` events (and their messages, an hour old, past the
 * message poller's cursor), starts a server with `EVENTS_URL` and times the drain.
 */
export async function drainRun(
  ctx: RunContext,
  start: StartOptions,
  receiver: CountingReceiver,
  backlog: number,
): Promise<DrainRun> {
  const db = ctx.db;
  await clearOutbox(db);
  await db.sql`
    with m as (
      insert into messages (sender_user_id, recipient_user_id, message_text, sent_at)
      select ${FRIEND_BASE + 1}::bigint + i / ${PAIR_USERS}, 1 + i % ${PAIR_USERS},
             'while the receiver was down ' || i, now() - interval '1 hour'
      from generate_series(0, ${backlog - 1}) i
      returning message_id, sender_user_id, recipient_user_id
    )
    insert into chat_events (type, recipient_user_id, sender_user_id, message_ids, next_attempt_at)
    select 'message.unseen', recipient_user_id, sender_user_id, array[message_id], now()
    from m`;
  // The poller starts from now: the backlog's messages are not looked at again.
  await db.sql`
    insert into chat_event_cursors (source, at, last_id) values ('messages', clock_timestamp(), 0)`;
  await db.sql`analyze messages`;
  await db.sql`analyze chat_events`;
  const [row] = await db.sql<{ n: number }[]>`select count(*)::int as n from chat_events`;
  if (row!.n !== backlog) throw new Error(`events: ${row!.n} events inserted, not ${backlog}`);
  receiver.reset();
  const loadAvgBefore = loadAverage()[0]!;
  const target = await startTarget("server", { ...start, env: eventsEnv(receiver) });
  try {
    const listening = absNow();
    const pid = target.children[0]!.pid;
    while (receiver.batches.length === 0) {
      if (absNow() - listening > 60_000) throw new Error("events: no batch within 60 s");
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const first = receiver.batches[0]!.at;
    const pgPids = await backendPids(db);
    const pgCpu = () => pgPids.reduce((s, p) => s + cpuSeconds(p), 0);
    const [server0, pg0] = [cpuSeconds(pid), pgCpu()];
    const deadline = first + 600_000;
    while (true) {
      const [left] = await db.sql<{ n: number }[]>`select count(*)::int as n from chat_events`;
      if (left!.n === 0) break;
      if (absNow() > deadline) throw new Error(`events: ${left!.n} events left after 600 s`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const emptied = absNow();
    const [server1, pg1] = [cpuSeconds(pid), pgCpu()];
    const drainS = (emptied - first) / 1000;
    return {
      backlog,
      received: receiver.ids.size,
      posted: receiver.events,
      firstBatchS: Math.round((first - listening) / 10) / 100,
      drainS: Math.round(drainS * 100) / 100,
      eventsPerS: Math.round(backlog / drainS),
      batches: receiver.batches.length,
      serverCpuS: Math.round((server1 - server0) * 100) / 100,
      postgresCpuS: Math.round((pg1 - pg0) * 100) / 100,
      loadAvgBefore,
    };
  } finally {
    await stopTarget(target);
  }
}
