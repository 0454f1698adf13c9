/**
 * @module store/postgres/mailbox_queries
 * The v1.1 read-back and receipt queries on PostgreSQL (`sync`, `history`,
 * unread counts, `read`, `delivered`, deactivated users), as plain functions
 * of a postgres.js client. `repository.ts` wraps each in its deadline.
 *
 * Each query is an index scan for a user with millions of messages (the
 * indexes are in `schema.ts`, the plans in the "Query plans" section of
 * docs/protocol.md): "to or from a user" is two ordered scans, one per
 * direction, merged and cut to the limit; the unread counts scan a partial
 * index of unread rows only.
 *
 * A user's (or conversation's) rows are selected as one key range of the
 * index that holds them, written as a row comparison and ordered by the
 * index's whole key: `(recipient_user_id, message_id) > (u, after) and … <
 * (u, bound)`, not `recipient_user_id = u and message_id > after order by
 * message_id`. With the equality the planner may walk the primary key from
 * `after` and filter by user, expecting the user's rows to be spread evenly;
 * for a user whose rows are all old (a heavy user who went quiet) that walk
 * reads every newer row of the table and finds nothing. Ordered by a key
 * the primary key does not hold, the per-user index is the only path that
 * returns the rows in order, whatever the statistics say. (Another index
 * on the comparison's first column alone would do with a sort of all the
 * user's rows: the pool prices sorts out, `repository.ts`.) A count, which
 * has no order and no limit, keeps plain equalities: no walk can look
 * cheaper than the range.
 *
 * `read` writes a per-conversation mark, "read up to" (`chat_read_marks`,
 * migration 4), and the rows' own flags follow in small batches
 * (`read_flags.ts`): every query here counts a row at or below its
 * conversation's mark as read, whether or not its flag is set yet.
 */

import type { Sql } from "postgres";
import type { DeliveredResult, MailboxSummary, MessagePage, MessageRecord } from "../repository.ts";
import { UnavailableError } from "../repository.ts";
import { rowsOf } from "./pg_rows.ts";

/** Above every id (bigint's maximum): "the latest" for `history` without `before`. */
const NO_UPPER_BOUND = "9223372036854775807";

/** bigint's minimum: the lower end of "every id" in a key range (compared with `>=`). */
const NO_LOWER_BOUND = "-9223372036854775808";

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
  // The senders of unread rows are found one index probe each (`senders`), then
  // each sender's rows above its mark are counted: the cost follows the senders
  // and the rows still unread, not rows a mark covers whose flags are not set yet.
  const rows = rowsOf(
    await sql<{ sender: string | null; n: string }[]>`
    with recursive senders (s) as (
      (select sender_user_id from messages
       where (recipient_user_id, sender_user_id) >= (${userId}, ${NO_LOWER_BOUND}::bigint)
         and (recipient_user_id, sender_user_id) < (${userId}, ${NO_UPPER_BOUND}::bigint)
         and not is_read
       order by recipient_user_id, sender_user_id limit 1)
      union all
      select (select m.sender_user_id from messages m
              where (m.recipient_user_id, m.sender_user_id) > (${userId}, senders.s)
                and (m.recipient_user_id, m.sender_user_id) < (${userId}, ${NO_UPPER_BOUND}::bigint)
                and not m.is_read
              order by m.recipient_user_id, m.sender_user_id limit 1)
      from senders where senders.s is not null
    )
    select null::text as sender, greatest(
      (select message_id from messages
       where (recipient_user_id, message_id) >= (${userId}, ${NO_LOWER_BOUND}::bigint)
         and (recipient_user_id, message_id) < (${userId}, ${NO_UPPER_BOUND}::bigint)
       order by recipient_user_id desc, message_id desc limit 1),
      (select message_id from messages
       where (sender_user_id, message_id) >= (${userId}, ${NO_LOWER_BOUND}::bigint)
         and (sender_user_id, message_id) < (${userId}, ${NO_UPPER_BOUND}::bigint)
       order by sender_user_id desc, message_id desc limit 1),
      0)::text as n
    union all
    select senders.s::text, unread.n::text from senders
    cross join lateral (
      select count(*) as n from messages m
      where m.recipient_user_id = ${userId} and m.sender_user_id = senders.s and not m.is_read
        and m.message_id > coalesce((select r.up_to_message_id from chat_read_marks r
                                     where r.reader_user_id = ${userId}
                                       and r.friend_user_id = senders.s), 0)
    ) unread
    where senders.s is not null and unread.n > 0`,
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
    select ${sql.unsafe(READ_COLUMNS)} from (
      (select ${sql.unsafe(COLUMNS)} from messages
       where (recipient_user_id, message_id) > (${userId}, ${afterMessageId})
         and (recipient_user_id, message_id) < (${userId}, ${NO_UPPER_BOUND}::bigint)
       order by recipient_user_id, message_id limit ${n})
      union all
      (select ${sql.unsafe(COLUMNS)} from messages
       where (sender_user_id, message_id) > (${userId}, ${afterMessageId})
         and (sender_user_id, message_id) < (${userId}, ${NO_UPPER_BOUND}::bigint)
         and recipient_user_id <> ${userId}
       order by sender_user_id, message_id limit ${n})
      order by message_id limit ${n}
    ) m ${sql.unsafe(MARK_JOIN)}
    order by m.message_id`,
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
    select ${sql.unsafe(READ_COLUMNS)} from (
      (select ${sql.unsafe(COLUMNS)} from messages
       where (recipient_user_id, sender_user_id, message_id)
           >= (${friendUserId}, ${userId}, ${NO_LOWER_BOUND}::bigint)
         and (recipient_user_id, sender_user_id, message_id)
           < (${friendUserId}, ${userId}, ${before}::bigint)
       order by recipient_user_id desc, sender_user_id desc, message_id desc limit ${n})
      union all
      (select ${sql.unsafe(COLUMNS)} from messages
       where (recipient_user_id, sender_user_id, message_id)
           >= (${userId}, ${friendUserId}, ${NO_LOWER_BOUND}::bigint)
         and (recipient_user_id, sender_user_id, message_id)
           < (${userId}, ${friendUserId}, ${before}::bigint)
         and ${userId}::bigint <> ${friendUserId}::bigint
       order by recipient_user_id desc, sender_user_id desc, message_id desc limit ${n})
      order by message_id desc limit ${n}
    ) m ${sql.unsafe(MARK_JOIN)}
    order by m.message_id desc`,
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
  // One small upsert, whatever the backlog: the mark rises to the newest unread
  // row this read covers above the current mark (`target`), or nothing changes.
  // Raising it only to a row that exists keeps later messages unread: ids are
  // drawn in commit order (migration 3), so a row not yet visible here gets a
  // larger id. Two reads at once: the second waits for the first's row lock,
  // then its `where` sees the first's mark, so only a read that covered an
  // unread row above it changes anything (and is announced).
  // `gate` is evaluated once (materialized): the upsert and the verdict agree.
  const [row] = rowsOf(
    await sql<{ read_at: Date | null; in_time: boolean }[]>`
    with gate as materialized (select clock_timestamp() < ${notAfter}::timestamptz as in_time),
    target as materialized (
      select message_id from messages
      where (recipient_user_id, sender_user_id, message_id) > (${readerUserId}, ${friendUserId},
              coalesce((select up_to_message_id from chat_read_marks
                        where reader_user_id = ${readerUserId}
                          and friend_user_id = ${friendUserId}), ${NO_LOWER_BOUND}::bigint))
        and (recipient_user_id, sender_user_id, message_id)
          <= (${readerUserId}, ${friendUserId}, ${upToMessageId})
        and not is_read
      order by recipient_user_id desc, sender_user_id desc, message_id desc limit 1
    ),
    marked as (
      insert into chat_read_marks as r (reader_user_id, friend_user_id, up_to_message_id, read_at)
      select ${readerUserId}, ${friendUserId}, message_id, now() from target
      where (select in_time from gate)
      on conflict (reader_user_id, friend_user_id) do update
        set up_to_message_id = excluded.up_to_message_id, read_at = excluded.read_at,
            pending = true
        where r.up_to_message_id < excluded.up_to_message_id
      returning read_at
    )
    select (select read_at from marked) as read_at, (select in_time from gate) as in_time`,
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

/**
 * The mark of each unread row's conversation: one probe of its primary key
 * per unread row of the page, none for a read row (a lateral subquery with a
 * limit is never turned into a join over the whole table).
 */
const MARK_JOIN = `left join lateral (
    select r.up_to_message_id, r.read_at from chat_read_marks r
    where not m.is_read
      and r.reader_user_id = m.recipient_user_id and r.friend_user_id = m.sender_user_id
    limit 1
  ) r on true`;

/** A row at or below its conversation's mark is read then, its flag set or not. */
const READ_COLUMNS = `m.message_id, m.sender_user_id, m.recipient_user_id, m.message_text,
  m.sent_at, m.client_message_id, m.delivered_at,
  m.is_read or coalesce(r.up_to_message_id >= m.message_id, false) as is_read,
  case when not m.is_read and r.up_to_message_id >= m.message_id then r.read_at
       else m.read_at end as read_at`;
