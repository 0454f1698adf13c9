/**
 * @module store/postgres/updates_queries
 * The v1.2 reads and writes of a user's update stream (migration 6,
 * docs/updates.md): `sync {after_seq}`, the v1.1 `sync {after_message_id}`
 * answered from the stream, and edits and deletions, each one transaction in
 * one SQL function (`chat_change_message`) that checks, changes and numbers
 * the update for every user who gets it.
 *
 * An update row holds what kind of change it was and which message; the
 * message's fields are read from `messages` as they are now, so a synced
 * update shows the message's latest state (edited text, "" once deleted).
 */

import type { Sql } from "postgres";
import type {
  ChangeResult,
  MessagePage,
  MessageRecord,
  ModeratorDeletion,
  Update,
  UpdatePage,
} from "../repository.ts";
import {
  COLUMNS,
  MARK_JOIN,
  type MessageRow,
  messagesBetween,
  NO_UPPER_BOUND,
  READ_COLUMNS,
  record,
} from "./mailbox_queries.ts";
import { rowsOf } from "./pg_rows.ts";

interface UpdateRow extends Partial<MessageRow> {
  kind: string;
  seq: string;
  body: Record<string, unknown> | null;
  update_message_id: string | null;
}

/**
 * `sync {after_seq}`: one ordered range of the user's primary key; each
 * update's message is one probe of `messages`' primary key (and of the read
 * mark and the user's hidden messages). The `head` row carries the user's
 * latest seq, read in the same snapshot.
 */
export async function updatesAfter(
  sql: Sql,
  userId: number,
  afterSeq: number,
  limit: number,
): Promise<UpdatePage> {
  const n = limit + 1;
  const rows = rowsOf(
    await sql<UpdateRow[]>`
    select 'head' as kind, coalesce((select seq from chat_user_state where user_id = ${userId}), 0)::text
             as seq, null::jsonb as body, null::text as update_message_id,
           ${sql.unsafe(NULL_MESSAGE)}
    union all
    (select u.kind, u.seq::text, u.body, u.message_id::text, ${sql.unsafe(READ_COLUMNS)},
            exists (select 1 from chat_hidden_messages h
                    where h.user_id = u.user_id and h.message_id = u.message_id) as hidden
     from (select * from chat_updates
           where (user_id, seq) > (${userId}, ${afterSeq})
             and (user_id, seq) < (${userId}, ${NO_UPPER_BOUND}::bigint)
           order by user_id, seq limit ${n}) u
     left join lateral (
       select ${sql.unsafe(COLUMNS)} from messages where message_id = u.message_id limit 1
     ) m on true
     ${sql.unsafe(MARK_JOIN)}
     order by u.seq)`,
  );
  const head = rows.find((row) => row.kind === "head");
  const updates = rows.filter((row) => row.kind !== "head").map(updateOf);
  return {
    updates: updates.slice(0, limit),
    hasMore: updates.length > limit,
    seq: Number(head?.seq ?? 0),
  };
}

/** Columns of an update row that has no message, for the `head` row. */
const NULL_MESSAGE = `null::bigint as message_id, null::bigint as sender_user_id,
  null::bigint as recipient_user_id, null::text as message_text, null::timestamptz as sent_at,
  null::text as client_message_id, null::timestamptz as delivered_at,
  null::timestamptz as edited_at, null::timestamptz as deleted_at, null::boolean as is_read,
  null::timestamptz as read_at, null::boolean as hidden`;

function updateOf(row: UpdateRow): Update {
  const seq = Number(row.seq);
  switch (row.kind) {
    case "read": {
      const body = row.body ?? {};
      return {
        seq,
        kind: "read",
        read: {
          readerUserId: Number(body.user_id),
          friendUserId: Number(body.friend_user_id),
          upToMessageId: Number(body.up_to_message_id),
          readAt: new Date(String(body.read_at)),
        },
      };
    }
    case "delivered":
      return {
        seq,
        kind: "delivered",
        messageId: Number(row.update_message_id),
        recipientUserId: Number(row.recipient_user_id),
      };
    case "settings_updated":
      return { seq, kind: "settings_updated", settings: row.body };
    default: {
      const kind = row.kind === "message" ? "message" : "message_updated";
      if (row.message_id == null) {
        // The row was removed from `messages` (by the game backend): the
        // update stays in the stream (no gap), as a deletion.
        return { seq, kind: "message_updated", message: vanished(Number(row.update_message_id)) };
      }
      return { seq, kind, message: record(row as MessageRow) };
    }
  }
}

function vanished(messageId: number): MessageRecord {
  return {
    messageId,
    senderUserId: 0,
    recipientUserId: 0,
    messageText: "",
    sentAt: new Date(0),
    clientMessageId: undefined,
    isRead: true,
    readAt: undefined,
    deliveredAt: undefined,
    deletedAt: new Date(0),
  };
}

/** How far before the update of `after_message_id` the v1.1 sync looks for larger ids. */
const V11_LOOKBACK = 512;
/** Updates read per round of the v1.1 sync; at most `V11_ROUNDS` rounds per page. */
const V11_CHUNK = 500;
const V11_ROUNDS = 8;

/**
 * The v1.1 `sync {after_message_id}` on the v1.2 stream (docs/protocol.md,
 * "Catch-up"): the messages a client that last saw `afterMessageId` can
 * have missed. Ids no longer follow commit order, so "a larger id" is not
 * enough: every message whose update follows, in the user's sequence, the
 * update that carried `afterMessageId` is included too, in the order of the
 * sequence. Messages from before migration 6 have no update: they come first,
 * by id. A message with a larger id committed before `afterMessageId`'s was
 * in flight beside it, so its update lies within `V11_LOOKBACK` updates
 * before that one.
 */
export async function messagesAfterV11(
  sql: Sql,
  userId: number,
  afterMessageId: number,
  limit: number,
  sequenceStart: number,
): Promise<MessagePage> {
  let older: MessageRecord[] = [];
  if (afterMessageId < sequenceStart) {
    const page = await messagesBetween(sql, userId, afterMessageId, sequenceStart, limit);
    if (page.hasMore || page.messages.length === limit) {
      return { messages: page.messages, hasMore: true };
    }
    older = page.messages;
  }
  const [start] = rowsOf(
    await sql<{ seq: string | null }[]>`
    select min(seq)::text as seq from chat_updates
    where user_id = ${userId} and message_id = ${afterMessageId}`,
  );
  const from = Number(start?.seq ?? 0);
  const want = limit - older.length + 1;
  const seen = new Set(older.map((m) => m.messageId));
  const picked: number[] = [];
  let cursor = Math.max(0, from - V11_LOOKBACK);
  let more = false;
  for (let round = 0; round < V11_ROUNDS && picked.length < want; round++) {
    const rows = rowsOf(
      await sql<{ seq: string; message_id: string }[]>`
      select u.seq::text as seq, u.message_id::text as message_id from chat_updates u
      where (u.user_id, u.seq) > (${userId}, ${cursor})
        and (u.user_id, u.seq) < (${userId}, ${NO_UPPER_BOUND}::bigint)
        and u.message_id is not null
      order by u.user_id, u.seq limit ${V11_CHUNK}`,
    );
    for (const row of rows) {
      const id = Number(row.message_id);
      cursor = Number(row.seq);
      if (seen.has(id)) continue;
      if (Number(row.seq) <= from && id <= afterMessageId) continue;
      seen.add(id);
      picked.push(id);
      if (picked.length >= want) break;
    }
    if (rows.length < V11_CHUNK) break;
    if (round === V11_ROUNDS - 1) more = true;
  }
  const messages = await messagesById(sql, userId, picked);
  const ordered = picked.flatMap((id) => messages.get(id) ?? []).filter((m) => !m.deletedForMe);
  const all = [...older, ...ordered];
  return { messages: all.slice(0, limit), hasMore: more || all.length > limit };
}

/** The messages with these ids, for `userId` (its read marks and hidden ones). */
async function messagesById(
  sql: Sql,
  userId: number,
  ids: number[],
): Promise<Map<number, MessageRecord>> {
  if (ids.length === 0) return new Map();
  const rows = rowsOf(
    await sql<MessageRow[]>`
    select ${sql.unsafe(READ_COLUMNS)},
      exists (select 1 from chat_hidden_messages h
              where h.user_id = ${userId} and h.message_id = m.message_id) as hidden
    from (select ${sql.unsafe(COLUMNS)} from messages
          where message_id = any(${sql.array(ids)}::bigint[])) m
    ${sql.unsafe(MARK_JOIN)}`,
  );
  return new Map(rows.map((row) => [Number(row.message_id), record(row)]));
}

/** A message the user may see (sender or recipient, not deleted for them). */
export async function messageFor(
  sql: Sql,
  userId: number,
  messageId: number,
): Promise<MessageRecord | undefined> {
  const found = await messagesById(sql, userId, [messageId]);
  const message = found.get(messageId);
  if (message === undefined || message.deletedForMe) return undefined;
  if (message.senderUserId !== userId && message.recipientUserId !== userId) return undefined;
  return message;
}

interface ChangeRow {
  status: string;
  sender_seq: string | null;
  recipient_seq: string | null;
  hidden: boolean | null;
  message_id: string | null;
  sender_user_id: string | null;
  recipient_user_id: string | null;
  message_text: string | null;
  sent_at: Date | null;
  client_message_id: string | null;
  is_read: boolean | null;
  read_at: Date | null;
  delivered_at: Date | null;
  edited_at: Date | null;
  deleted_at: Date | null;
}

/** One edit or deletion (`chat_change_message`, migration 6). */
export async function changeMessage(
  sql: Sql,
  userId: number,
  messageId: number,
  action: "edit" | "everyone" | "me" | "moderator",
  text: string | null,
  windowS: number,
  moderation: string | null,
): Promise<ChangeResult> {
  const [row] = rowsOf(
    await sql<ChangeRow[]>`
    select r.status, r.sender_seq::text, r.recipient_seq::text, r.hidden,
           (r.m).message_id::text, (r.m).sender_user_id::text, (r.m).recipient_user_id::text,
           (r.m).message_text, (r.m).sent_at, (r.m).client_message_id, (r.m).is_read,
           (r.m).read_at, (r.m).delivered_at, (r.m).edited_at, (r.m).deleted_at
    from chat_change_message(${userId}, ${messageId}, ${action}, ${text}, ${windowS},
                             ${moderation}) r`,
  );
  if (row === undefined) return { status: "not_found" };
  switch (row.status) {
    case "changed":
    case "unchanged": {
      const message = record({
        ...(row as unknown as MessageRow),
        hidden: action === "me" && row.hidden === true,
      });
      if (row.status === "unchanged") return { status: "unchanged", message };
      const seqs = new Map<number, number>();
      if (row.sender_seq !== null) seqs.set(message.senderUserId, Number(row.sender_seq));
      if (row.recipient_seq !== null) seqs.set(message.recipientUserId, Number(row.recipient_seq));
      return { status: "changed", message, seqs };
    }
    case "edit_window_passed":
    case "message_deleted":
      return { status: row.status };
    default:
      return { status: "not_found" };
  }
}

/** `POST /messages/delete`: each id deleted for everyone on its sender's behalf. */
export async function deleteAsModerator(
  sql: Sql,
  messageIds: readonly number[],
): Promise<ModeratorDeletion[]> {
  const deleted: ModeratorDeletion[] = [];
  for (const id of new Set(messageIds)) {
    const result = await changeMessage(sql, 0, id, "moderator", null, 0, null);
    if (result.status === "changed") deleted.push({ message: result.message, seqs: result.seqs });
  }
  return deleted;
}
