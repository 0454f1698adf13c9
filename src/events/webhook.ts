/**
 * @module events/webhook
 * The events webhook of one node: two loops on a PostgreSQL client of their
 * own (two connections, so a receiver that hangs or fails holds nothing the
 * chat needs), started and stopped by the server.
 *
 * - The poll loop derives events from committed rows (`pollers.ts`) every
 *   `pollMs`, and measures the oldest pending event's age once a second.
 * - The send loop posts one batch at a time (`delivery.ts`); a full batch is
 *   followed at once by the next, so a backlog drains at the receiver's pace.
 *
 * Every node with `EVENTS_URL` runs both; the cursors' and the events' row
 * locks make each pass and each batch one node's.
 */

import postgres from "postgres";
import { errorMessage, type Logger } from "../log.ts";
import { type BatchOutcome, POST_TIMEOUT_MS, sendBatch } from "./delivery.ts";
import { type PollerSettings, pollMessages, pollReports } from "./pollers.ts";
import { importSigningKey } from "../webhook_signature.ts";

/** What the webhook counts; `ServerMetrics` implements it. */
export interface EventsMetrics {
  /** Events written to the outbox, by type. */
  eventsEnqueued(type: string, count: number): void;
  /** Events a receiver acknowledged. */
  eventsSent(count: number): void;
  /** Events of a failed batch that will be tried again. */
  eventsRetried(count: number): void;
  /** Events whose retry time ran out. */
  eventsDropped(count: number): void;
  /** `message.unseen` events not sent: their messages were seen first. */
  eventsLeftOut(count: number): void;
  /** One attempt to post a batch, how long it took and whether a 2xx came back. */
  eventsBatchPosted(seconds: number, ok: boolean): void;
  /** Age of the oldest event in the outbox (0 when empty). */
  eventsOldestPending(seconds: number): void;
}

export interface EventsOptions {
  databaseUrl: string;
  statementTimeoutMs: number;
  url: string;
  secret: string;
  batchMax: number;
  batchMs: number;
  retryForS: number;
  unseenDelayS: number;
  logger: Logger;
  metrics: EventsMetrics;
}

export interface EventsWebhook {
  /** Ends both loops (a batch in flight is abandoned and goes again later) and the connections. */
  stop(): Promise<void>;
}

/** Added to the statement timeout: commit time past the last statement's deadline. */
const COMMIT_MARGIN_MS = 1000;
/** Rows one pass of a poller reads at most. */
const POLL_LIMIT = 1000;
const GAUGE_EVERY_MS = 1000;
/** The longest pause after a database error, doubling from `pollMs`. */
const MAX_ERROR_PAUSE_MS = 5000;

export async function startEventsWebhook(options: EventsOptions): Promise<EventsWebhook> {
  const { logger, metrics } = options;
  const key = await importSigningKey(options.secret);
  const sql = postgres(options.databaseUrl, {
    max: 2,
    connect_timeout: Math.ceil(options.statementTimeoutMs / 1000),
    idle_timeout: 60,
    connection: {
      statement_timeout: options.statementTimeoutMs,
      // A node frozen mid-batch must not hold its claim for ever.
      idle_in_transaction_session_timeout: POST_TIMEOUT_MS + options.statementTimeoutMs + 5000,
      application_name: "geobeasts-chat-events",
    },
    onnotice: () => {},
  });
  const commitLagMs = options.statementTimeoutMs + COMMIT_MARGIN_MS;
  const unseenDelayMs = Math.round(options.unseenDelayS * 1000);
  const settings: PollerSettings = {
    commitLagMs,
    unseenDelayMs,
    unseenMaxAgeMs: Math.max(commitLagMs, unseenDelayMs) + options.retryForS * 1000,
    batchMs: options.batchMs,
    limit: POLL_LIMIT,
  };
  const delivery = {
    url: options.url,
    key,
    batchMax: options.batchMax,
    retryForS: options.retryForS,
  };
  // Under the batch window, so that a conversation's next unseen messages join its waiting event.
  const pollMs = Math.min(250, Math.max(20, Math.round(options.batchMs / 2)));
  const stopping = new AbortController();
  const signal = stopping.signal;

  const run = async (name: string, step: () => Promise<boolean>) => {
    let failures = 0;
    while (!signal.aborted) {
      let again = false;
      try {
        again = await step();
        failures = 0;
      } catch (err) {
        if (signal.aborted) break;
        failures++;
        logger.warn("events_db_error", { loop: name, failures, error: errorMessage(err) });
      }
      if (!again) {
        await pause(Math.min(MAX_ERROR_PAUSE_MS, pollMs * 2 ** Math.min(failures, 8)), signal);
      }
    }
  };

  let gaugeDue = 0;
  const poll = async () => {
    const reports = await pollReports(sql, settings);
    const messages = await pollMessages(sql, settings);
    if (reports.enqueued > 0) metrics.eventsEnqueued("report.created", reports.enqueued);
    if (messages.enqueued > 0) metrics.eventsEnqueued("message.unseen", messages.enqueued);
    if (performance.now() >= gaugeDue) {
      gaugeDue = performance.now() + GAUGE_EVERY_MS;
      const row = (await sql<{ age: number | null }[]>`
        select extract(epoch from clock_timestamp() - min(created_at))::float8 as age
        from chat_events`)[0];
      metrics.eventsOldestPending(Math.max(0, row?.age ?? 0));
    }
    return reports.read === POLL_LIMIT || messages.read === POLL_LIMIT;
  };

  const send = async () => {
    const outcome = await sendBatch(sql, delivery, signal);
    record(outcome);
    return outcome.kind !== "empty" && outcome.claimed === options.batchMax ||
      outcome.kind === "left_out";
  };

  const record = (outcome: BatchOutcome) => {
    if (outcome.kind === "empty") return;
    if (outcome.leftOut > 0) metrics.eventsLeftOut(outcome.leftOut);
    if (outcome.kind === "sent") {
      metrics.eventsBatchPosted(outcome.seconds, true);
      metrics.eventsSent(outcome.events);
    } else if (outcome.kind === "failed") {
      metrics.eventsBatchPosted(outcome.seconds, false);
      metrics.eventsRetried(outcome.events - outcome.dropped);
      logger.warn("events_batch_failed", {
        events: outcome.events,
        reason: outcome.reason,
        attempt: outcome.attempt + 1,
      });
      if (outcome.dropped > 0) {
        metrics.eventsDropped(outcome.dropped);
        logger.error("events_dropped", {
          events: outcome.dropped,
          retried_for_s: options.retryForS,
        });
      }
    }
  };

  const loops = [run("poll", poll), run("send", send)];
  logger.info("events_webhook_started", {
    batch_max: options.batchMax,
    batch_ms: options.batchMs,
    unseen_delay_s: options.unseenDelayS,
  });
  return {
    async stop() {
      stopping.abort();
      await Promise.all(loops);
      await sql.end({ timeout: 2 });
    },
  };
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}
