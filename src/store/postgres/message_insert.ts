/**
 * @module store/postgres/message_insert
 * One batch of messages into `messages` in one statement, and each row's own
 * outcome.
 *
 * - Ids are drawn under the lock that keeps them in commit order (migration
 *   3: the statement takes it first, then draws one id per row in queue
 *   order, so one sender's messages in a batch get increasing ids; the
 *   table's per-row trigger, which does the same for every other writer,
 *   is skipped). The rows the insert returns are
 *   matched back to the queued messages: by `(sender, client id)`, which is
 *   unique, and rows without a client id in id order, which is queue order.
 * - The statement stores nothing if it got the lock only after `insertBefore`
 *   (in the database's own clock, see `db_clock.ts`): a batch held up by a
 *   frozen network or a long lock wait, and already answered `unavailable`,
 *   never commits later.
 * - A repeated `(sender, client id)` stores nothing; its original row is read
 *   in the same statement when the statement's snapshot sees it (and then the
 *   message is not offered to the insert at all, whose conflict check would
 *   wait, holding the id lock, for whatever transaction is updating the
 *   original), else by one more query after the commit. If that query fails, only the repeats are
 *   answered `unavailable`: a committed row is always acknowledged.
 * - A repeat with another recipient or another text is
 *   `ClientMessageIdReusedError`.
 */

import type { Sql } from "postgres";
import type { NewMessage, StoredMessage, StoreResult } from "../repository.ts";
import { ClientMessageIdReusedError, UnavailableError } from "../repository.ts";
import { rowsOf } from "./pg_rows.ts";

/** Per message of the batch: its answer, or the error it is rejected with. */
export type Outcome = StoreResult | Error;

interface Row {
  kind: "inserted" | "existing" | "clock";
  message_id: string | null;
  sender_user_id: string | null;
  recipient_user_id: string | null;
  message_text: string | null;
  client_message_id: string | null;
  sent_at: Date | null;
  in_time: boolean | null;
}

/** What the insert statement answered. */
export interface Inserted {
  /** The database got the lock before the deadline; if not, nothing was inserted. */
  inTime: boolean;
  rows: Row[];
  /** The database's clock while it answered (for `DbClock.observe`). */
  dbNow: Date | undefined;
}

/** Inserts a batch in one statement (one round trip); see the module comment. */
export async function insertRows(
  sql: Sql,
  messages: readonly NewMessage[],
  insertBefore: Date,
): Promise<Inserted> {
  const rows = rowsOf(
    await sql<Row[]>`
    with locked as materialized (
      select chat_lock_message_ids() < ${insertBefore}::timestamptz as in_time
    ), input as materialized (
      select t.*, locked.in_time
      from locked, unnest(
        ${sql.array(messages.map((m) => m.senderUserId))}::bigint[],
        ${sql.array(messages.map((m) => m.recipientUserId))}::bigint[],
        ${sql.array(messages.map((m) => m.messageText))}::text[],
        ${sql.array(messages.map((m) => m.clientMessageId ?? null))}::text[]
      ) with ordinality as t(sender, recipient, body, cmid, ord)
    ), known as materialized (
      -- Repeats whose original this statement's snapshot sees: answered from
      -- here and never offered to the insert, so the insert never waits on the
      -- original row while it holds the id lock (its on conflict check would
      -- wait for any transaction still updating that row, a read receipt's
      -- flags or the game backend's). One probe of the unique key per message:
      -- a lateral join with a limit cannot become a hash join over the whole
      -- table, whatever the statistics say.
      select input.ord, m.* from input
      cross join lateral (
        select * from messages m
        where m.sender_user_id = input.sender and m.client_message_id = input.cmid
        limit 1
      ) m
      where input.in_time and input.cmid is not null
    ), inserted as (
      insert into messages (message_id, sender_user_id, recipient_user_id, message_text,
                            client_message_id)
      select chat_next_message_id(), sender, recipient, body, cmid
      from (select * from input
            where in_time and not exists (select 1 from known where known.ord = input.ord)
            order by ord) ordered
      -- a repeat committed after the snapshot, or within this batch
      on conflict (sender_user_id, client_message_id) do nothing
      returning message_id, sender_user_id, recipient_user_id, message_text, client_message_id,
                sent_at
    )
    select 'inserted' as kind, i.message_id::text, i.sender_user_id::text,
           i.recipient_user_id::text, i.message_text, i.client_message_id, i.sent_at,
           null::boolean as in_time
    from inserted i
    union all
    select 'existing', k.message_id::text, k.sender_user_id::text, k.recipient_user_id::text,
           k.message_text, k.client_message_id, k.sent_at, null
    from known k
    union all
    select 'clock', null, null, null, null, null, clock_timestamp(), (select in_time from locked)`,
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
  lookUp: (keys: NewMessage[]) => Promise<Map<string, StoredMessage>>,
): Promise<Outcome[]> {
  if (!inserted.inTime) {
    const late = new UnavailableError("the database reached the insert after its deadline");
    return messages.map(() => late);
  }
  const outcomes = match(messages, inserted.rows);
  await resolveRepeats(messages, outcomes, inserted.rows, lookUp);
  return outcomes.map((o) => o ?? new Error("unanswered message"));
}

const keyOf = (sender: number | string, cmid: string) => `${sender}:${cmid}`;

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
function match(messages: readonly NewMessage[], rows: Row[]): (Outcome | undefined)[] {
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
    if (m.clientMessageId !== undefined) {
      const key = keyOf(m.senderUserId, m.clientMessageId);
      const row = withKey.get(key);
      if (row === undefined) return; // a repeat: resolved below
      withKey.delete(key); // later messages with this key repeat this one
      outcomes[i] = { message: stored(row), duplicate: false };
      return;
    }
    const row = plain[next++];
    outcomes[i] = row === undefined || !sameContent(m, row)
      ? new Error("an inserted message is missing from the insert's answer")
      : { message: stored(row), duplicate: false };
  });
  return outcomes;
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
  lookUp: (keys: NewMessage[]) => Promise<Map<string, StoredMessage>>,
): Promise<void> {
  const originals = new Map<string, StoredMessage>();
  for (const row of rows) {
    if (row.kind === "clock" || row.client_message_id === null) continue;
    originals.set(keyOf(row.sender_user_id!, row.client_message_id), stored(row));
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
      original.recipientUserId !== m.recipientUserId || original.messageText !== m.messageText
    ) {
      outcomes[i] = new ClientMessageIdReusedError(
        "client_message_id was already used for another message",
      );
    } else {
      outcomes[i] = { message: original, duplicate: true };
    }
  }
}

/** The originals of repeated `(sender, client id)` keys, as committed now. */
export async function lookUpOriginals(
  sql: Sql,
  messages: NewMessage[],
): Promise<Map<string, StoredMessage>> {
  const rows = rowsOf(
    await sql<Row[]>`
    select m.message_id::text, m.sender_user_id::text, m.recipient_user_id::text,
           m.message_text, m.client_message_id, m.sent_at
    from unnest(
      ${sql.array(messages.map((m) => m.senderUserId))}::bigint[],
      ${sql.array(messages.map((m) => m.clientMessageId ?? ""))}::text[]
    ) as k(sender, cmid)
    join messages m on m.sender_user_id = k.sender and m.client_message_id = k.cmid`,
  );
  return new Map(
    rows.map((row) => [keyOf(row.sender_user_id!, row.client_message_id!), stored(row)]),
  );
}
