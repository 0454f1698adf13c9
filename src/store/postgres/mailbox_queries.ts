/**
 * @module store/postgres/mailbox_queries
 * The v1.1 read-back and receipt queries on PostgreSQL (`sync`, `history`,
 * unread counts, `read`, `delivered`, deactivated users), as plain functions
 * of a postgres.js client. `repository.ts` wraps each in its deadline.
 *
 * Each query is an index scan for a user with millions of messages (the
 * indexes are in `migrations.ts`, the plans in the "Query plans" section of docs/protocol.md):
 * "to or from a user" is two ordered scans, one per direction, merged and cut
 * to the limit; the unread counts scan a partial index of unread rows only.
 */

import type { Sql } from "postgres";
import type { DeliveredResult, MailboxSummary, MessagePage, MessageRecord } from "../repository.ts";
import { UnavailableError } from "../repository.ts";
import { rowsOf } from "./pg_rows.ts";

/** Above every id (bigint's maximum): "the latest" for `history` without `before`. */
const NO_UPPER_BOUND = "9223372036854775807";

interface MessageRow {
  message_id: string;
  sender_user_id: string;
  recipient_user_id: string;
  message_text: string;
  sent_at: Date;
  client_message_id: string | null;
  is_read: boolean;
  read_at: Date | null;
  delivered_at: Date | null;
}

function record(row: MessageRow): MessageRecord {
  return {
    messageId: Number(row.message_id),
    senderUserId: Number(row.sender_user_id),
    recipientUserId: Number(row.recipient_user_id),
    messageText: row.message_text,
    sentAt: row.sent_at,
    clientMessageId: row.client_message_id ?? undefined,
    isRead: row.is_read,
    readAt: row.read_at ?? undefined,
    deliveredAt: row.delivered_at ?? undefined,
  };
}

/** One more row than the page is fetched: its presence is `hasMore`. */
function page(rows: MessageRow[], limit: number): MessagePage {
  return { messages: rows.slice(0, limit).map(record), hasMore: rows.length > limit };
}

export async function mailboxSummary(sql: Sql, userId: number): Promise<MailboxSummary> {
  // One round trip: the first row carries the last id, the others the unread counts.
  const rows = rowsOf(
    await sql<{ sender: string | null; n: string }[]>`
    select null::text as sender, coalesce(greatest(
      (select max(message_id) from messages where recipient_user_id = ${userId}),
      (select max(message_id) from messages where sender_user_id = ${userId})
    ), 0)::text as n
    union all
    select sender_user_id::text, count(*)::text from messages
    where recipient_user_id = ${userId} and not is_read
    group by sender_user_id`,
  );
  const summary: MailboxSummary = { unreadCount: 0, unreadBySender: new Map(), lastMessageId: 0 };
  for (const row of rows) {
    if (row.sender === null) {
      summary.lastMessageId = Number(row.n);
    } else {
      summary.unreadBySender.set(Number(row.sender), Number(row.n));
      summary.unreadCount += Number(row.n);
    }
  }
  return summary;
}

export async function messagesAfter(
  sql: Sql,
  userId: number,
  afterMessageId: number,
  limit: number,
): Promise<MessagePage> {
  const n = limit + 1;
  const rows = rowsOf(
    await sql<MessageRow[]>`
    select * from (
      (select ${sql.unsafe(COLUMNS)} from messages
       where recipient_user_id = ${userId} and message_id > ${afterMessageId}
       order by message_id limit ${n})
      union all
      (select ${sql.unsafe(COLUMNS)} from messages
       where sender_user_id = ${userId} and recipient_user_id <> ${userId}
         and message_id > ${afterMessageId}
       order by message_id limit ${n})
    ) m order by message_id limit ${n}`,
  );
  return page(rows, limit);
}

export async function conversationBefore(
  sql: Sql,
  userId: number,
  friendUserId: number,
  beforeMessageId: number | undefined,
  limit: number,
): Promise<MessagePage> {
  const n = limit + 1;
  const before = beforeMessageId === undefined ? NO_UPPER_BOUND : String(beforeMessageId);
  const rows = rowsOf(
    await sql<MessageRow[]>`
    select * from (
      (select ${sql.unsafe(COLUMNS)} from messages
       where recipient_user_id = ${friendUserId} and sender_user_id = ${userId}
         and message_id < ${before}::bigint
       order by message_id desc limit ${n})
      union all
      (select ${sql.unsafe(COLUMNS)} from messages
       where recipient_user_id = ${userId} and sender_user_id = ${friendUserId}
         and ${userId}::bigint <> ${friendUserId}::bigint and message_id < ${before}::bigint
       order by message_id desc limit ${n})
    ) m order by message_id desc limit ${n}`,
  );
  return page(rows, limit);
}

export async function markRead(
  sql: Sql,
  readerUserId: number,
  friendUserId: number,
  upToMessageId: number,
  notAfter: Date,
): Promise<Date | undefined> {
  // `gate` is evaluated once (materialized): the update and the verdict agree.
  const [row] = rowsOf(
    await sql<{ read_at: Date | null; in_time: boolean }[]>`
    with gate as materialized (select clock_timestamp() < ${notAfter}::timestamptz as in_time),
    changed as (
      update messages set is_read = true, read_at = now()
      where recipient_user_id = ${readerUserId} and sender_user_id = ${friendUserId}
        and message_id <= ${upToMessageId} and not is_read
        and (select in_time from gate)
      returning read_at
    )
    select max(read_at) as read_at, (select in_time from gate) as in_time from changed`,
  );
  if (row?.in_time !== true) throw new UnavailableError(LATE);
  return row.read_at ?? undefined;
}

export async function markDelivered(
  sql: Sql,
  recipientUserId: number,
  messageId: number,
  notAfter: Date,
): Promise<DeliveredResult> {
  // Two devices at once: the second waits for the first's row lock, then finds
  // `delivered_at` set and updates nothing; its snapshot still sees the row as its own.
  const [row] = rowsOf(
    await sql<{ first_sender: string | null; mine: boolean; in_time: boolean }[]>`
    with gate as materialized (select clock_timestamp() < ${notAfter}::timestamptz as in_time),
    updated as (
      update messages set delivered_at = now()
      where message_id = ${messageId} and recipient_user_id = ${recipientUserId}
        and delivered_at is null and (select in_time from gate)
      returning sender_user_id
    )
    select (select sender_user_id::text from updated) as first_sender,
      exists (select 1 from messages
              where message_id = ${messageId} and recipient_user_id = ${recipientUserId}) as mine,
      (select in_time from gate) as in_time`,
  );
  if (row?.in_time !== true) throw new UnavailableError(LATE);
  if (row.first_sender != null) return { status: "first", senderUserId: Number(row.first_sender) };
  return row.mine ? { status: "already" } : { status: "not_recipient" };
}

/**
 * A receipt the database reached after its deadline changed nothing: the
 * caller has answered (or is about to answer) `unavailable`.
 */
const LATE = "the database reached the receipt after its deadline";

export async function inactiveUsers(sql: Sql, userIds: readonly number[]): Promise<number[]> {
  if (userIds.length === 0) return [];
  const rows = rowsOf(
    await sql<{ id: string }[]>`
    select k.id::text as id from unnest(${sql.array([...userIds])}::bigint[]) as k(id)
    where not exists (select 1 from users u where u.user_id = k.id and u.active)`,
  );
  return rows.map((row) => Number(row.id));
}

/** bigint columns arrive as decimal strings (postgres.js's default for int8). */
const COLUMNS = `message_id, sender_user_id, recipient_user_id, message_text, sent_at,
  client_message_id, is_read, read_at, delivered_at`;
