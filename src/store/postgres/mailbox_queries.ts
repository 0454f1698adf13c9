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
import type {
  DeliveredResult,
  MailboxSummary,
  MessagePage,
  MessageRecord,
  ReadResult,
} from "../repository.ts";
import { rowsOf } from "./pg_rows.ts";

/** Above every id (bigint's maximum): "the latest" for `history` without `before`. */
export const NO_UPPER_BOUND = "9223372036854775807";

/** bigint's minimum: the lower end of "every id" in a key range (compared with `>=`). */
const NO_LOWER_BOUND = "-9223372036854775808";

export interface MessageRow {
  message_id: string;
  sender_user_id: string;
  recipient_user_id: string;
  message_text: string;
  sent_at: Date;
  client_message_id: string | null;
  is_read: boolean;
  read_at: Date | null;
  delivered_at: Date | null;
  edited_at: Date | null;
  deleted_at: Date | null;
  hidden?: boolean | null;
}

export function record(row: MessageRow): MessageRecord {
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
    ...(row.edited_at != null ? { editedAt: row.edited_at } : {}),
    ...(row.deleted_at != null ? { deletedAt: row.deleted_at } : {}),
    ...(row.hidden === true ? { deletedForMe: true, messageText: "" } : {}),
  };
}

/** One more row than the page is fetched: its presence is `hasMore`. */
function page(rows: MessageRow[], limit: number): MessagePage {
  return { messages: rows.slice(0, limit).map(record), hasMore: rows.length > limit };
}

export async function mailboxSummary(sql: Sql, userId: number): Promise<MailboxSummary> {
  // Counters, not rows (migration 6): the cost is one row per friend with
  // unread messages, whatever their number; the last id is two index probes.
  // One round trip: `seq` carries the latest seq, `last` the last id, the
  // other rows the unread count of one friend each.
  const rows = rowsOf(
    await sql<{ kind: string; friend: string | null; n: string }[]>`
    select case when c.friend_user_id is null then 'seq' else 'unread' end as kind,
           c.friend_user_id::text as friend, c.n::text as n
    from chat_mailbox(${userId}) c
    union all
    select 'last', null, greatest(
      (select message_id from messages
       where (recipient_user_id, message_id) >= (${userId}, ${NO_LOWER_BOUND}::bigint)
         and (recipient_user_id, message_id) < (${userId}, ${NO_UPPER_BOUND}::bigint)
       order by recipient_user_id desc, message_id desc limit 1),
      (select message_id from messages
       where (sender_user_id, message_id) >= (${userId}, ${NO_LOWER_BOUND}::bigint)
         and (sender_user_id, message_id) < (${userId}, ${NO_UPPER_BOUND}::bigint)
       order by sender_user_id desc, message_id desc limit 1),
      0)::text`,
  );
  const summary: MailboxSummary = {
    unreadCount: 0,
    unreadBySender: new Map(),
    lastMessageId: 0,
    seq: 0,
  };
  for (const row of rows) {
    if (row.kind === "seq") summary.seq = Number(row.n);
    else if (row.kind === "last") summary.lastMessageId = Number(row.n);
    else {
      summary.unreadBySender.set(Number(row.friend), Number(row.n));
      summary.unreadCount += Number(row.n);
    }
  }
  return summary;
}

/**
 * The messages to or from `userId` with an id in (`afterMessageId`,
 * `upToMessageId`], oldest first, deleted-for-me ones left out: the part
 * of the v1.1 `sync` that reaches messages from before migration 6
 * (`updates_queries.ts`).
 */
export async function messagesBetween(
  sql: Sql,
  userId: number,
  afterMessageId: number,
  upToMessageId: number,
  limit: number,
): Promise<MessagePage> {
  const n = limit + 1;
  const rows = rowsOf(
    await sql<MessageRow[]>`
    select ${sql.unsafe(READ_COLUMNS)} from (
      (select ${sql.unsafe(COLUMNS)} from messages, (select ${userId}::bigint as id) reader
       where (recipient_user_id, message_id) > (${userId}, ${afterMessageId})
         and (recipient_user_id, message_id) <= (${userId}, ${upToMessageId})
         and ${sql.unsafe(NOT_HIDDEN)}
       order by recipient_user_id, message_id limit ${n})
      union all
      (select ${sql.unsafe(COLUMNS)} from messages, (select ${userId}::bigint as id) reader
       where (sender_user_id, message_id) > (${userId}, ${afterMessageId})
         and (sender_user_id, message_id) <= (${userId}, ${upToMessageId})
         and recipient_user_id <> ${userId}
         and ${sql.unsafe(NOT_HIDDEN)}
       order by sender_user_id, message_id limit ${n})
      order by message_id limit ${n}
    ) m ${sql.unsafe(MARK_JOIN)}
    order by m.message_id`,
  );
  return page(rows, limit);
}

/**
 * Not deleted for me by the reader: one probe of `chat_hidden_messages`'
 * primary key per row scanned (`$reader` is bound as the query's user).
 */
const NOT_HIDDEN = `not exists (select 1 from chat_hidden_messages h
  where h.user_id = reader.id and h.message_id = messages.message_id)`;

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
      (select ${sql.unsafe(COLUMNS)} from messages, (select ${userId}::bigint as id) reader
       where (recipient_user_id, sender_user_id, message_id)
           >= (${friendUserId}, ${userId}, ${NO_LOWER_BOUND}::bigint)
         and (recipient_user_id, sender_user_id, message_id)
           < (${friendUserId}, ${userId}, ${before}::bigint)
         and ${sql.unsafe(NOT_HIDDEN)}
       order by recipient_user_id desc, sender_user_id desc, message_id desc limit ${n})
      union all
      (select ${sql.unsafe(COLUMNS)} from messages, (select ${userId}::bigint as id) reader
       where (recipient_user_id, sender_user_id, message_id)
           >= (${userId}, ${friendUserId}, ${NO_LOWER_BOUND}::bigint)
         and (recipient_user_id, sender_user_id, message_id)
           < (${userId}, ${friendUserId}, ${before}::bigint)
         and ${userId}::bigint <> ${friendUserId}::bigint
         and ${sql.unsafe(NOT_HIDDEN)}
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
): Promise<ReadResult | undefined> {
  // One small transaction whatever the backlog (`chat_mark_read`, migration 6):
  // the mark rises to the newest unread row this read covers above it, the
  // conversation's count is counted afresh above the new mark (the rows still
  // unread), and the receipt is an update of both users. Two reads at once
  // take the two users' locks in turn; the second finds the first's mark.
  // Past `notAfter` the function raises and changes nothing.
  const [row] = rowsOf(
    await sql<{ read_at: Date; reader_seq: string; friend_seq: string | null }[]>`
    select read_at, reader_seq::text, friend_seq::text
    from chat_mark_read(${readerUserId}, ${friendUserId}, ${upToMessageId},
                        ${notAfter}::timestamptz)`,
  );
  if (row === undefined) return undefined;
  const seqs = new Map([[readerUserId, Number(row.reader_seq)]]);
  if (row.friend_seq !== null) seqs.set(friendUserId, Number(row.friend_seq));
  return { readAt: row.read_at, seqs };
}

export async function markDelivered(
  sql: Sql,
  recipientUserId: number,
  messageId: number,
  notAfter: Date,
): Promise<DeliveredResult> {
  // Two devices at once: the second waits for the first's locks, then finds
  // `delivered_at` set and changes nothing.
  const [row] = rowsOf(
    await sql<
      {
        status: string;
        sender_user_id: string;
        sender_seq: string | null;
        recipient_seq: string | null;
      }[]
    >`
    select status, sender_user_id::text, sender_seq::text, recipient_seq::text
    from chat_mark_delivered(${recipientUserId}, ${messageId}, ${notAfter}::timestamptz)`,
  );
  if (row?.status === "first") {
    const seqs = new Map<number, number>();
    if (row.sender_seq !== null) seqs.set(Number(row.sender_user_id), Number(row.sender_seq));
    if (row.recipient_seq !== null) seqs.set(recipientUserId, Number(row.recipient_seq));
    return { status: "first", senderUserId: Number(row.sender_user_id), seqs };
  }
  return row?.status === "already" ? { status: "already" } : { status: "not_recipient" };
}

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
export const COLUMNS = `message_id, sender_user_id, recipient_user_id, message_text, sent_at,
  client_message_id, is_read, read_at, delivered_at, edited_at, deleted_at`;

/**
 * The mark of each unread row's conversation: one probe of its primary key
 * per unread row of the page, none for a read row (a lateral subquery with a
 * limit is never turned into a join over the whole table).
 */
export const MARK_JOIN = `left join lateral (
    select r.up_to_message_id, r.read_at from chat_read_marks r
    where not m.is_read
      and r.reader_user_id = m.recipient_user_id and r.friend_user_id = m.sender_user_id
    limit 1
  ) r on true`;

/** A row at or below its conversation's mark is read then, its flag set or not. */
export const READ_COLUMNS = `m.message_id, m.sender_user_id, m.recipient_user_id, m.message_text,
  m.sent_at, m.client_message_id, m.delivered_at, m.edited_at, m.deleted_at,
  m.is_read or coalesce(r.up_to_message_id >= m.message_id, false) as is_read,
  case when not m.is_read and r.up_to_message_id >= m.message_id then r.read_at
       else m.read_at end as read_at`;
