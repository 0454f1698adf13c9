/**
 * @module store/postgres/message_insert
 * One batch of messages into `messages` in one statement, and each row's own
 * outcome.
 *
 * - Ids come from the table's sequence in queue order (one sender's
 *   messages in a batch get increasing ids); they no longer follow commit
 *   order across the cluster (v1.2): the order that counts is each user's
 *   `seq`. The same statement records the rows' updates
 *   (`chat_number_messages`, migration 11: it numbers the updates and
 *   counts the unread under the senders' and recipients' sequence row locks
 *   `chat_try_lock_users` took first: all at once in id order, waiting up to
 *   200 ms per held user, else those no one holds; the waiting lane's
 *   `chat_record_messages` takes them in id order first, waiting) and sets the transaction-local flag that makes the table's
 *   statement trigger, which does the same for every other writer, skip
 *   them. The rows the insert returns are matched back to the queued
 *   messages: by `(sender, client id)`, which is unique, and rows without a
 *   client id in id order, which is queue order.
 * - The statement raises, and stores nothing, if it got its users' locks only
 *   after `insertBefore` (in the database's own clock, see `db_clock.ts`): a
 *   batch held up by a frozen network or a long lock wait, and already
 *   answered `unavailable`, never commits later.
 * - A repeated `(sender, client id)` stores nothing; its original row is read
 *   in the same statement when the statement's snapshot sees it (and then the
 *   message is not offered to the insert at all, whose conflict check would
 *   wait for whatever transaction is updating the original), else by one more query after the commit. If that query fails, only the repeats are
 *   answered `unavailable`: a committed row is always acknowledged.
 * - A repeat with another recipient or another text is
 *   `ClientMessageIdReusedError` (the text is not compared once the original
 *   was replaced by the moderation hook, edited or deleted).
 */

import type { Sql } from "postgres";
import type { NewMessage, Seqs, StoredMessage, StoreResult } from "../repository.ts";
import { ClientMessageIdReusedError, UnavailableError } from "../repository.ts";
import { rowsOf } from "./pg_rows.ts";

/**
 * A message of a user another transaction held when the batch ran (a long
 * transaction of the game backend's, a user's other write): nothing of it
 * was stored; the writer sends it again in its waiting lane.
 */
export const BUSY = Symbol("busy");

/** Per message of the batch: its answer, the error it is rejected with, or `BUSY`. */
export type Outcome = StoreResult | Error | typeof BUSY;

interface Row {
  kind: "inserted" | "existing" | "busy" | "clock";
  /** `busy`: the message's 1-based place in the batch. */
  ord?: string | null;
  message_id: string | null;
  sender_user_id: string | null;
  recipient_user_id: string | null;
  message_text: string | null;
  client_message_id: string | null;
  sent_at: Date | null;
  in_time: boolean | null;
  sender_seq: string | null;
  recipient_seq: string | null;
  moderation?: string | null;
  edited_at?: Date | null;
  deleted_at?: Date | null;
}

/** What the insert statement answered. */
export interface Inserted {
  /** The database got the lock before the deadline; if not, nothing was inserted. */
  inTime: boolean;
  rows: Row[];
  /** The database's clock while it answered (for `DbClock.observe`). */
  dbNow: Date | undefined;
}

/**
 * How long a batch waits for a user another transaction holds before that
 * user's messages go to the waiting lane (per held user, `lock_timeout`):
 * longer than another writer's batch holds its users (milliseconds), far
 * shorter than the statement timeout and than Postgres' `deadlock_timeout`.
 */
const HELD_WAIT_MS = 200;

/** Inserts a batch in one statement (one round trip); see the module comment. */
export async function insertRows(
  sql: Sql,
  messages: readonly NewMessage[],
  insertBefore: Date,
  /**
   * Wait for users another transaction holds (the waiting lane); otherwise
   * their messages are answered `busy` and nothing of theirs is stored.
   */
  wait = false,
): Promise<Inserted> {
  const users = [...new Set(messages.flatMap((m) => [m.senderUserId, m.recipientUserId]))];
  const rows = rowsOf(
    await sql<Row[]>`
    with recording as materialized (
      -- tells the messages trigger that this statement records its rows' updates itself
      select set_config('chat.updates_recorded', 'on', true) as on,
             ${wait}::boolean as wait, ${sql.array(users)}::bigint[] as users
    ), locked as materialized (
      -- the users this transaction holds (null: wait for all, in the waiting lane): all
      -- of them, taken in id order, unless one is held longer than a batch holds it
      select case when r.wait then null
                  else chat_try_lock_users(r.users, ${sql.unsafe(String(HELD_WAIT_MS))}) end
             as got
      from recording r
    ), input as materialized (
      select t.*, (l.got is null or (t.sender = any(l.got) and t.recipient = any(l.got))) as ready
      from locked l, unnest(
        ${sql.array(messages.map((m) => m.senderUserId))}::bigint[],
        ${sql.array(messages.map((m) => m.recipientUserId))}::bigint[],
        ${sql.array(messages.map((m) => m.messageText))}::text[],
        ${sql.array(messages.map((m) => m.clientMessageId ?? null))}::text[],
        ${sql.array(messages.map((m) => m.moderation ?? null))}::text[]
      ) with ordinality as t(sender, recipient, body, cmid, moderation, ord)
    ), known as materialized (
      -- Repeats whose original this statement's snapshot sees: answered from
      -- here and never offered to the insert, whose on conflict check would
      -- wait for any transaction still updating that row. One probe of the
      -- unique key per message: a lateral join with a limit cannot become a
      -- hash join over the whole table, whatever the statistics say.
      select input.ord, m.*, s.seq as sender_seq from input
      cross join lateral (
        select * from messages m
        where m.sender_user_id = input.sender and m.client_message_id = input.cmid
        limit 1
      ) m
      left join lateral (
        select min(u.seq) as seq from chat_updates u
        where u.user_id = m.sender_user_id and u.message_id = m.message_id
      ) s on true
      where input.cmid is not null
    ), inserted as (
      insert into messages (sender_user_id, recipient_user_id, message_text, client_message_id,
                            moderation)
      select sender, recipient, body, cmid, moderation
      from (select * from input
            where ready and not exists (select 1 from known where known.ord = input.ord)
            order by ord) ordered
      -- a repeat committed after the snapshot, or within this batch
      on conflict (sender_user_id, client_message_id) do nothing
      returning message_id, sender_user_id, recipient_user_id, message_text, client_message_id,
                sent_at, is_read, moderation
    ), recorded as materialized (
      -- without the wait every user of an inserted row is in locked.got, held
      -- by this transaction already: only the waiting lane locks them here
      select r.* from ${sql.unsafe(wait ? "chat_record_messages" : "chat_number_messages")}(
        (select coalesce(array_agg(message_id order by message_id), '{}') from inserted),
        (select coalesce(array_agg(sender_user_id order by message_id), '{}') from inserted),
        (select coalesce(array_agg(recipient_user_id order by message_id), '{}') from inserted),
        (select coalesce(array_agg(is_read order by message_id), '{}') from inserted)
      ) r
    ), checked as materialized (
      -- after the users' locks: a batch that got them too late raises and stores nothing
      select chat_assert_before(${insertBefore}::timestamptz) as in_time
      from (select count(*) from recorded) c
    )
    select 'inserted' as kind, i.message_id::text, i.sender_user_id::text,
           i.recipient_user_id::text, i.message_text, i.client_message_id, i.sent_at,
           null::boolean as in_time, r.sender_seq::text, r.recipient_seq::text,
           i.moderation, null::timestamptz as edited_at, null::timestamptz as deleted_at,
           null::text as ord
    from inserted i join recorded r on r.message_id = i.message_id
    union all
    select 'existing', k.message_id::text, k.sender_user_id::text, k.recipient_user_id::text,
           k.message_text, k.client_message_id, k.sent_at, null, k.sender_seq::text, null,
           k.moderation, k.edited_at, k.deleted_at, null
    from known k
    union all
    select 'busy', null, null, null, null, null, null, null, null, null, null, null, null,
           input.ord::text
    from input
    where not input.ready and not exists (select 1 from known where known.ord = input.ord)
    union all
    select 'clock', null, null, null, null, null, clock_timestamp(),
           (select in_time from checked), null, null, null, null, null, null`,
  );
  const clock = rows.find((row) => row.kind === "clock");
  return { inTime: clock?.in_time === true, rows, dbNow: clock?.sent_at ?? undefined };
}

/**
 * Each message's outcome: its inserted row, or for a repeat its original
 * (read with `lookUp` when the insert could not see it).
 */
export async function outcomesOf(
  messages: readonly NewMessage[],
  inserted: Inserted,
  lookUp: (keys: NewMessage[]) => Promise<Map<string, Original>>,
): Promise<Outcome[]> {
  if (!inserted.inTime) {
    const late = new UnavailableError("the database reached the insert after its deadline");
    return messages.map(() => late);
  }
  const busy = new Set(
    inserted.rows.filter((row) => row.kind === "busy").map((row) => Number(row.ord) - 1),
  );
  const outcomes = match(messages, inserted.rows, busy);
  await resolveRepeats(messages, outcomes, inserted.rows, lookUp);
  return outcomes.map((o) => o ?? new Error("unanswered message"));
}

const keyOf = (sender: number | string, cmid: string) => `${sender}:${cmid}`;

/** The row's update in its sender's and recipient's sequences, those it has. */
function seqsOf(row: Row): Seqs {
  const seqs = new Map<number, number>();
  if (row.sender_seq !== null) seqs.set(Number(row.sender_user_id), Number(row.sender_seq));
  if (row.recipient_seq !== null) {
    seqs.set(Number(row.recipient_user_id), Number(row.recipient_seq));
  }
  return seqs;
}

function stored(row: Row): StoredMessage {
  return {
    messageId: Number(row.message_id),
    senderUserId: Number(row.sender_user_id),
    recipientUserId: Number(row.recipient_user_id),
    messageText: row.message_text!,
    sentAt: row.sent_at!,
    clientMessageId: row.client_message_id ?? undefined,
  };
}

/**
 * Gives each inserted row to the queued message that produced it; repeats stay undefined.
 * Rows with a client id by their unique key. Rows without one never conflict, so each such
 * message got one, and their ids were drawn in queue order: the k-th smallest id among them
 * is the k-th such message's (checked against its content).
 */
function match(
  messages: readonly NewMessage[],
  rows: Row[],
  busy: ReadonlySet<number>,
): (Outcome | undefined)[] {
  const withKey = new Map<string, Row>();
  const plain: Row[] = [];
  for (const row of rows) {
    if (row.kind !== "inserted") continue;
    if (row.client_message_id !== null) {
      withKey.set(keyOf(row.sender_user_id!, row.client_message_id), row);
    } else {
      plain.push(row);
    }
  }
  plain.sort((a, b) => Number(a.message_id) - Number(b.message_id));
  let next = 0;
  const outcomes: (Outcome | undefined)[] = new Array(messages.length);
  messages.forEach((m, i) => {
    if (busy.has(i)) {
      outcomes[i] = BUSY;
      return;
    }
    if (m.clientMessageId !== undefined) {
      const key = keyOf(m.senderUserId, m.clientMessageId);
      const row = withKey.get(key);
      if (row === undefined) return; // a repeat: resolved below
      withKey.delete(key); // later messages with this key repeat this one
      outcomes[i] = { message: stored(row), duplicate: false, seqs: seqsOf(row) };
      return;
    }
    const row = plain[next++];
    outcomes[i] = row === undefined || !sameContent(m, row)
      ? new Error("an inserted message is missing from the insert's answer")
      : { message: stored(row), duplicate: false, seqs: seqsOf(row) };
  });
  return outcomes;
}

/** The stored original of a repeated `(sender, client id)`. */
export interface Original {
  message: StoredMessage;
  /** Its update in the sender's sequence, when it has one (rows from before v1.2 have none). */
  seqs: Seqs;
  /**
   * Its text is still the text sent, so a repeat must match it; not after a
   * moderation hook replaced it, an edit or a deletion.
   */
  textAsSent: boolean;
}

function originalOf(row: Row): Original {
  return {
    message: stored(row),
    seqs: seqsOf(row),
    textAsSent: row.moderation !== "replaced" && row.edited_at === null && row.deleted_at === null,
  };
}

function sameContent(m: NewMessage, row: Row): boolean {
  return row.sender_user_id === String(m.senderUserId) &&
    row.recipient_user_id === String(m.recipientUserId) && row.message_text === m.messageText;
}

/** Answers every repeat by its original row; a repeat whose original cannot be read is unavailable. */
async function resolveRepeats(
  messages: readonly NewMessage[],
  outcomes: (Outcome | undefined)[],
  rows: Row[],
  lookUp: (keys: NewMessage[]) => Promise<Map<string, Original>>,
): Promise<void> {
  const originals = new Map<string, Original>();
  for (const row of rows) {
    if (row.kind === "clock" || row.client_message_id === null) continue;
    originals.set(keyOf(row.sender_user_id!, row.client_message_id), originalOf(row));
  }
  const repeats = messages.flatMap((_, i) => outcomes[i] === undefined ? [i] : []);
  const unseen = repeats.filter((i) =>
    !originals.has(keyOf(messages[i]!.senderUserId, messages[i]!.clientMessageId!))
  );
  if (unseen.length > 0) {
    // Committed by another transaction after this statement's snapshot was taken.
    try {
      for (const [key, row] of await lookUp(unseen.map((i) => messages[i]!))) {
        originals.set(key, row);
      }
    } catch (err) {
      const failed = err instanceof UnavailableError ? err : new UnavailableError(String(err));
      for (const i of unseen) outcomes[i] = failed;
    }
  }
  for (const i of repeats) {
    if (outcomes[i] !== undefined) continue;
    const m = messages[i]!;
    const original = originals.get(keyOf(m.senderUserId, m.clientMessageId!));
    if (original === undefined) {
      outcomes[i] = new UnavailableError("the original of a repeated message was not found");
    } else if (
      original.message.recipientUserId !== m.recipientUserId ||
      (original.textAsSent && original.message.messageText !== m.messageText)
    ) {
      outcomes[i] = new ClientMessageIdReusedError(
        "client_message_id was already used for another message",
      );
    } else {
      outcomes[i] = { message: original.message, duplicate: true, seqs: original.seqs };
    }
  }
}

/** The originals of repeated `(sender, client id)` keys, as committed now. */
export async function lookUpOriginals(
  sql: Sql,
  messages: NewMessage[],
): Promise<Map<string, Original>> {
  const rows = rowsOf(
    await sql<Row[]>`
    select m.message_id::text, m.sender_user_id::text, m.recipient_user_id::text,
           m.message_text, m.client_message_id, m.sent_at, m.moderation, m.edited_at,
           m.deleted_at,
           (select min(u.seq) from chat_updates u
            where u.user_id = m.sender_user_id and u.message_id = m.message_id)::text as sender_seq,
           null as recipient_seq
    from unnest(
      ${sql.array(messages.map((m) => m.senderUserId))}::bigint[],
      ${sql.array(messages.map((m) => m.clientMessageId ?? ""))}::text[]
    ) as k(sender, cmid)
    join messages m on m.sender_user_id = k.sender and m.client_message_id = k.cmid`,
  );
  return new Map(
    rows.map((row) => [keyOf(row.sender_user_id!, row.client_message_id!), originalOf(row)]),
  );
}
