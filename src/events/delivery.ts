/**
 * @module events/delivery
 * One batch of the outbox (`chat_events`) to the webhook: claimed, sent,
 * then deleted, rescheduled or dropped.
 *
 * Exactly one node sends a given event at a time: the batch's rows are
 * claimed `for update skip locked` and stay locked in this transaction while
 * the batch is posted (at most `POST_TIMEOUT_MS`), then the outcome is written
 * and committed. Other nodes skip locked rows and send others. A node that
 * dies mid-batch drops its connection, Postgres rolls the claim back, and the
 * rows are claimed again (the receiver may see the batch twice: delivery is
 * at least once, and ids never change). No lease length to tune: the claim
 * lasts exactly as long as the attempt. (The connection's
 * `idle_in_transaction_session_timeout` ends a claim whose node froze.)
 *
 * A `message.unseen` is worked out when first claimed: messages delivered,
 * read or deleted since are left out (an event left with none is deleted
 * unsent), then its body is fixed, and every retry sends the same body.
 */

import type { Sql, TransactionSql } from "postgres";
import { signBody } from "../webhook_signature.ts";
import { unreadTotal } from "./unread.ts";

/** A 2xx within this delivers a batch; anything else, or nothing, is a failure. */
export const POST_TIMEOUT_MS = 5000;
/** The first retry comes after 0.5–1 s; each later one after twice as long, up to 5 min. */
export const BACKOFF_BASE_MS = 1000;
export const BACKOFF_CAP_MS = 300_000;
/** Code points of a message's text in a `message.unseen` preview. */
export const PREVIEW_CODE_POINTS = 100;

export interface DeliverySettings {
  url: string;
  key: CryptoKey;
  batchMax: number;
  retryForS: number;
}

/** What one batch came to. */
export type BatchOutcome =
  | { kind: "empty" }
  /** Every claimed event was left out (its messages seen meanwhile). */
  | { kind: "left_out"; leftOut: number; claimed: number }
  | {
    kind: "sent";
    events: number;
    leftOut: number;
    claimed: number;
    seconds: number;
  }
  | {
    kind: "failed";
    events: number;
    leftOut: number;
    claimed: number;
    seconds: number;
    /** Events whose retry time ran out: deleted. */
    dropped: number;
    /** What went wrong, for the log: `status 500`, `timeout`, a connection error. */
    reason: string;
    /** The lowest number of earlier attempts among the batch's events. */
    attempt: number;
  };

interface Claimed {
  event_id: string;
  id: string;
  type: string;
  recipient_user_id: string | null;
  sender_user_id: string | null;
  body: Record<string, unknown> | null;
  attempts: number;
}

interface UnseenMessage {
  event_id: string;
  message_id: string;
  message_text: string;
}

/**
 * Claims the due events (at most `batchMax`; when that many wait unattempted,
 * the oldest at once), sends them as one batch unless `signal` aborts (then
 * nothing is recorded) and records the outcome.
 */
export function sendBatch(
  sql: Sql,
  settings: DeliverySettings,
  signal: AbortSignal,
): Promise<BatchOutcome> {
  return sql.begin(async (tx): Promise<BatchOutcome> => {
    const claimed = await tx<Claimed[]>`
      with backlog as (
        select count(*) >= ${settings.batchMax} as full
        from (select 1 from chat_events where attempts = 0 limit ${settings.batchMax}) f
      )
      select e.event_id::text, e.id, e.type, e.recipient_user_id::text, e.sender_user_id::text,
             e.body, e.attempts
      from chat_events e, backlog
      where e.next_attempt_at <= clock_timestamp() or (backlog.full and e.attempts = 0)
      order by e.next_attempt_at, e.event_id
      limit ${settings.batchMax}
      for update of e skip locked`;
    if (claimed.length === 0) return { kind: "empty" };
    const bodies = await fixBodies(tx, claimed);
    const leftOut = claimed.length - bodies.length;
    if (bodies.length === 0) return { kind: "left_out", leftOut, claimed: claimed.length };
    const ids = bodies.map((b) => b.eventId);
    const body = JSON.stringify({ time_ms: Date.now(), events: bodies.map((b) => b.body) });
    const started = performance.now();
    const result = await post(settings, body, signal);
    const seconds = (performance.now() - started) / 1000;
    signal.throwIfAborted(); // shutting down: roll the claim back, the batch goes again later
    const counts = { events: ids.length, leftOut, claimed: claimed.length, seconds };
    if (result === "ok") {
      await tx`delete from chat_events where event_id = any(${tx.array(ids)}::bigint[])`;
      return { kind: "sent", ...counts };
    }
    const rescheduled = await tx<{ event_id: string; expired: boolean }[]>`
      update chat_events
      set attempts = attempts + 1,
          next_attempt_at = clock_timestamp() +
            least(${BACKOFF_CAP_MS}::float8, ${BACKOFF_BASE_MS}::float8 * power(2, least(attempts, 30))) *
            (0.5 + random() / 2) * interval '1 millisecond'
      where event_id = any(${tx.array(ids)}::bigint[])
      returning event_id::text,
                next_attempt_at > first_attempt_at + ${settings.retryForS}::float8 * interval '1 second'
                  as expired`;
    const expired = rescheduled.filter((r) => r.expired).map((r) => r.event_id);
    if (expired.length > 0) {
      await tx`delete from chat_events where event_id = any(${tx.array(expired)}::bigint[])`;
    }
    return {
      kind: "failed",
      ...counts,
      dropped: expired.length,
      reason: result,
      attempt: Math.min(...claimed.map((c) => c.attempts)),
    };
  });
}

/**
 * The claimed events' bodies, in claim order: a `message.unseen` not attempted
 * yet is worked out from its messages as they are now and stored; one whose
 * messages were all seen meanwhile is deleted. Marks every event attempted
 * from now (the start of its retry time).
 */
async function fixBodies(
  tx: TransactionSql,
  claimed: readonly Claimed[],
): Promise<{ eventId: string; body: Record<string, unknown> }[]> {
  const fresh = claimed.filter((c) => c.body === null && c.type === "message.unseen");
  const built = new Map<string, Record<string, unknown>>();
  if (fresh.length > 0) {
    const rows = await tx<UnseenMessage[]>`
      select e.event_id::text, m.message_id::text, m.message_text
      from chat_events e
      cross join lateral unnest(e.message_ids) as u(message_id)
      join messages m on m.message_id = u.message_id
      where e.event_id = any(${tx.array(fresh.map((c) => c.event_id))}::bigint[])
        and m.delivered_at is null and not m.is_read and m.deleted_at is null
        and not exists (select 1 from chat_read_marks r
                        where r.reader_user_id = m.recipient_user_id
                          and r.friend_user_id = m.sender_user_id
                          and r.up_to_message_id >= m.message_id)`;
    const byEvent = Map.groupBy(rows, (row) => row.event_id);
    const totals = new Map<number, number>();
    for (const event of fresh) {
      const messages = byEvent.get(event.event_id);
      if (messages === undefined) continue;
      const last = messages.reduce((a, b) => BigInt(b.message_id) > BigInt(a.message_id) ? b : a);
      const recipient = Number(event.recipient_user_id);
      let total = totals.get(recipient);
      if (total === undefined) totals.set(recipient, total = await unreadTotal(tx, recipient));
      built.set(event.event_id, {
        id: event.id,
        type: "message.unseen",
        recipient_user_id: recipient,
        sender_user_id: Number(event.sender_user_id),
        count: messages.length,
        last_message_id: Number(last.message_id),
        preview: Array.from(last.message_text).slice(0, PREVIEW_CODE_POINTS).join(""),
        unread_total: total,
      });
    }
  }
  const bodies: { eventId: string; body: Record<string, unknown> }[] = [];
  const leftOut: string[] = [];
  for (const event of claimed) {
    const body = event.body ?? built.get(event.event_id);
    if (body === undefined) leftOut.push(event.event_id);
    else bodies.push({ eventId: event.event_id, body });
  }
  if (leftOut.length > 0) {
    await tx`delete from chat_events where event_id = any(${tx.array(leftOut)}::bigint[])`;
  }
  if (bodies.length > 0) {
    await tx`
      update chat_events e
      set body = coalesce(e.body, b.body), first_attempt_at = coalesce(e.first_attempt_at, clock_timestamp())
      from unnest(${tx.array(bodies.map((b) => b.eventId))}::bigint[],
                  ${
      tx.array(bodies.map((b) => JSON.stringify(b.body)))
    }::jsonb[]) as b(event_id, body)
      where e.event_id = b.event_id`;
  }
  return bodies;
}

/** Posts one signed batch: `ok` for a 2xx within `POST_TIMEOUT_MS`, else why not. */
async function post(settings: DeliverySettings, body: string, stop: AbortSignal): Promise<string> {
  const timestamp = Math.floor(Date.now() / 1000);
  const timeout = AbortSignal.timeout(POST_TIMEOUT_MS);
  try {
    const response = await fetch(settings.url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-chat-timestamp": String(timestamp),
        "x-chat-signature": await signBody(settings.key, timestamp, body),
      },
      body,
      redirect: "manual",
      signal: AbortSignal.any([timeout, stop]),
    });
    // Only the status counts: the answer's body is let go at once.
    await response.body?.cancel();
    return response.status >= 200 && response.status < 300 ? "ok" : `status ${response.status}`;
  } catch (err) {
    if (timeout.aborted) return "timeout";
    if (stop.aborted) return "stopped";
    return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  }
}
