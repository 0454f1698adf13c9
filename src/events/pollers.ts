/**
 * @module events/pollers
 * Events derived from committed rows: `message.unseen` from `messages`,
 * `report.created` from `chat_reports`, each read in (time, id) order from a
 * cursor kept in `chat_event_cursors`.
 *
 * Why (time, id) and a lag rather than an id cursor: ids are drawn when a row
 * is inserted, not when it commits, so across the cluster a row with a smaller
 * id can commit after a larger one was read, and an id cursor would pass it by.
 * A row's time (`sent_at`, `created_at`, both `default now()`) is its
 * transaction's start, and no transaction inserting such rows outlives
 * `DB_STATEMENT_TIMEOUT_MS` (each is one statement); so once the database's
 * clock is `lagMs` past a time, every row stamped up to it has committed or
 * never will, and the cursor may pass it. One pass reads at most `limit` rows.
 *
 * One node at a time moves a cursor: the pass locks its row `for update skip
 * locked` (another node's pass finds it locked and does nothing), and the
 * events it writes and the cursor's new place commit together, so a crash
 * repeats a pass, never loses or doubles one.
 */

import type { Sql, TransactionSql } from "postgres";

export interface PollerSettings {
  /** How far behind the database's clock a cursor stays: longer than any inserting transaction. */
  commitLagMs: number;
  /** `UNSEEN_DELAY_S` in ms: a message is looked at once it is this old (and past the lag). */
  unseenDelayMs: number;
  /**
   * Messages older than this are not looked at (a push for them would come too late): after
   * an outage, or when the webhook is turned on, a cursor further behind jumps forward.
   */
  unseenMaxAgeMs: number;
  /** When a new event becomes due: it waits this long for companions (`EVENTS_BATCH_MS`). */
  batchMs: number;
  /** Rows one pass reads at most. */
  limit: number;
}

/** What one pass did. */
export interface PassResult {
  /** Rows read (when `limit`, more are probably waiting). */
  read: number;
  /** Events written (a message joining a waiting event writes none). */
  enqueued: number;
}

/**
 * Times travel as text, and go back as `$n::text::timestamptz`: a `Date`, or a parameter typed
 * timestamptz (which postgres.js serialises through `Date`), would cut their microseconds, and
 * the cursor would read its last row again.
 */
interface Cursor {
  at: string;
  /** `at` is before this instant. */
  before_oldest: boolean;
  last_id: string;
  now: Date;
}

/** Locks the cursor of `source`, creating it at `start` before the first pass; null while another node holds it. */
async function lockCursor(
  tx: TransactionSql,
  source: string,
  startLagMs: number,
  maxAgeMs: number,
): Promise<Cursor | null> {
  const cursor = (await tx<Cursor[]>`
    select at::text, last_id::text, now,
           at < now - ${maxAgeMs}::float8 * interval '1 millisecond' as before_oldest
    from chat_event_cursors, (select clock_timestamp() as now) c
    where source = ${source} for update of chat_event_cursors skip locked`)[0];
  if (cursor !== undefined) return cursor;
  // Absent (the first pass ever: start from now, not from the table's first row) or locked.
  await tx`
    insert into chat_event_cursors (source, at, last_id)
    values (${source}, clock_timestamp() - ${startLagMs}::float8 * interval '1 millisecond', 0)
    on conflict (source) do nothing`;
  return null;
}

async function moveCursor(tx: TransactionSql, source: string, at: string, lastId: string) {
  await tx`
    update chat_event_cursors set at = ${at}::text::timestamptz, last_id = ${lastId}::bigint
    where source = ${source}`;
}

/** Far longer than any deployment lives (Postgres intervals reach 178 million years). */
const NO_MAX_AGE_MS = 1000 * 86400 * 365 * 1000;

interface MessageRow {
  message_id: string;
  sender_user_id: string;
  recipient_user_id: string;
  sent_at: string;
  unseen: boolean;
}

/**
 * One pass over `messages`: each message now past `UNSEEN_DELAY_S` that no
 * device of its recipient reported delivered, that is not read (flag or read
 * mark) or deleted, and whose recipient neither muted its sender nor is in
 * do-not-disturb, joins its conversation's `message.unseen` event that is not
 * attempted yet, or starts one (due `batchMs` later, so the conversation's
 * next unseen messages of that window join it).
 */
export function pollMessages(sql: Sql, settings: PollerSettings): Promise<PassResult> {
  return sql.begin(async (tx) => {
    const lagMs = Math.max(settings.commitLagMs, settings.unseenDelayMs);
    const cursor = await lockCursor(tx, "messages", lagMs, settings.unseenMaxAgeMs);
    if (cursor === null) return { read: 0, enqueued: 0 };
    let [from, fromId] = [cursor.at, cursor.last_id];
    if (cursor.before_oldest) {
      [from, fromId] = [
        new Date(cursor.now.getTime() - settings.unseenMaxAgeMs).toISOString(),
        "0",
      ];
    }
    const upTo = new Date(cursor.now.getTime() - lagMs);
    const rows = await tx<MessageRow[]>`
      select m.message_id::text, m.sender_user_id::text, m.recipient_user_id::text,
             m.sent_at::text,
             (m.delivered_at is null and not m.is_read and m.deleted_at is null
              and not exists (select 1 from chat_read_marks r
                              where r.reader_user_id = m.recipient_user_id
                                and r.friend_user_id = m.sender_user_id
                                and r.up_to_message_id >= m.message_id)
              and not exists (select 1 from chat_mutes u
                              where u.user_id = m.recipient_user_id
                                and u.friend_user_id = m.sender_user_id
                                and u.until > ${cursor.now})
              and not exists (select 1 from chat_user_settings s
                              where s.user_id = m.recipient_user_id
                                and s.dnd_until > ${cursor.now})) as unseen
      from messages m
      where (m.sent_at, m.message_id) > (${from}::text::timestamptz, ${fromId}::bigint)
        and m.sent_at <= ${upTo}
      order by m.sent_at, m.message_id
      limit ${settings.limit}`;
    const last = rows.at(-1);
    if (last === undefined) {
      if (from !== cursor.at) await moveCursor(tx, "messages", from, fromId);
      return { read: 0, enqueued: 0 };
    }
    const unseen = rows.filter((row) => row.unseen);
    let enqueued = 0;
    if (unseen.length > 0) {
      const row = (await tx<{ n: number }[]>`
        with input as (
          select * from unnest(
            ${tx.array(unseen.map((r) => r.recipient_user_id))}::bigint[],
            ${tx.array(unseen.map((r) => r.sender_user_id))}::bigint[],
            ${tx.array(unseen.map((r) => r.message_id))}::bigint[]
          ) as t(recipient, sender, message_id)
        ), conversations as (
          select recipient, sender, array_agg(message_id order by message_id) as ids
          from input group by recipient, sender
        ), waiting as (
          -- a batch being sent holds its rows: those are skipped, not waited for
          select e.event_id, e.recipient_user_id, e.sender_user_id from chat_events e
          join conversations c on c.recipient = e.recipient_user_id and c.sender = e.sender_user_id
          where e.type = 'message.unseen' and e.body is null
          for update of e skip locked
        ), joined as (
          select distinct on (recipient_user_id, sender_user_id) * from waiting
          order by recipient_user_id, sender_user_id, event_id
        ), merged as (
          update chat_events e set message_ids = e.message_ids || c.ids
          from joined j join conversations c
            on c.recipient = j.recipient_user_id and c.sender = j.sender_user_id
          where e.event_id = j.event_id
          returning e.event_id
        ), created as (
          insert into chat_events (type, recipient_user_id, sender_user_id, message_ids,
                                   next_attempt_at)
          select 'message.unseen', c.recipient, c.sender, c.ids,
                 clock_timestamp() + ${settings.batchMs}::float8 * interval '1 millisecond'
          from conversations c
          where not exists (select 1 from joined j
                            where j.recipient_user_id = c.recipient and j.sender_user_id = c.sender)
          returning event_id
        )
        select (select count(*) from created)::int as n, (select count(*) from merged)::int as m`)[
        0
      ];
      enqueued = row?.n ?? 0;
    }
    await moveCursor(tx, "messages", last.sent_at, last.message_id);
    return { read: rows.length, enqueued };
  });
}

interface ReportRow {
  report_id: string;
  created_at: string;
}

/** One pass over `chat_reports`: one `report.created` event per new report, due `batchMs` later. */
export function pollReports(sql: Sql, settings: PollerSettings): Promise<PassResult> {
  return sql.begin(async (tx) => {
    // Reports are few and each matters: no maximum age.
    const cursor = await lockCursor(tx, "chat_reports", settings.commitLagMs, NO_MAX_AGE_MS);
    if (cursor === null) return { read: 0, enqueued: 0 };
    const upTo = new Date(cursor.now.getTime() - settings.commitLagMs);
    const rows = await tx<ReportRow[]>`
      with fresh as (
        select * from chat_reports
        where (created_at, report_id) > (${cursor.at}::text::timestamptz, ${cursor.last_id}::bigint)
          and created_at <= ${upTo}
        order by created_at, report_id
        limit ${settings.limit}
      ), created as (
        insert into chat_events (id, type, body, next_attempt_at)
        select 'report-' || r.report_id, 'report.created',
               jsonb_build_object(
                 'id', 'report-' || r.report_id, 'type', 'report.created',
                 'report_id', r.report_id, 'reporter_user_id', r.reporter_user_id,
                 'reported_user_id', r.reported_user_id, 'message_id', r.message_id,
                 'reason', r.reason, 'note', r.note, 'snapshot', r.snapshot),
               clock_timestamp() + ${settings.batchMs}::float8 * interval '1 millisecond'
        from fresh r
        returning event_id
      )
      -- qualified: unqualified, the text columns of the output would be sorted ('10' < '9')
      select report_id::text, created_at::text from fresh
      order by fresh.created_at, fresh.report_id`;
    const last = rows.at(-1);
    if (last === undefined) return { read: 0, enqueued: 0 };
    await moveCursor(tx, "chat_reports", last.created_at, last.report_id);
    return { read: rows.length, enqueued: rows.length };
  });
}
