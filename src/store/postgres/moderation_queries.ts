/**
 * @module store/postgres/moderation_queries
 * The v1.2 moderation queries (docs/protocol.md, "Moderation hook",
 * "Reports"): a sender's message by its `client_message_id` (a retry is
 * answered from it without asking the hook again), and a player's report
 * with its snapshot, as plain functions of a postgres.js client.
 * `repository.ts` wraps each in its deadline.
 */

import type { Sql } from "postgres";
import type { NewReport, ReportResult, StoredMessage } from "../repository.ts";
import { SNAPSHOT_AROUND } from "../repository.ts";
import { rowsOf } from "./pg_rows.ts";

interface ClientMessageDbRow {
  message_id: string;
  sender_user_id: string;
  recipient_user_id: string;
  message_text: string;
  client_message_id: string;
  sent_at: Date;
  moderation: string | null;
}

/** One probe of the `(sender_user_id, client_message_id)` unique index. */
export async function messageByClientId(
  sql: Sql,
  senderUserId: number,
  clientMessageId: string,
): Promise<StoredMessage | undefined> {
  const [row] = rowsOf(
    await sql<ClientMessageDbRow[]>`
    select message_id::text, sender_user_id::text, recipient_user_id::text, message_text,
           client_message_id, sent_at, moderation
    from messages
    where sender_user_id = ${senderUserId} and client_message_id = ${clientMessageId}`,
  );
  if (row === undefined) return undefined;
  return {
    messageId: Number(row.message_id),
    senderUserId: Number(row.sender_user_id),
    recipientUserId: Number(row.recipient_user_id),
    messageText: row.message_text,
    sentAt: row.sent_at,
    clientMessageId: row.client_message_id,
    moderation: row.moderation === "replaced" || row.moderation === "unchecked"
      ? row.moderation
      : undefined,
  };
}

/**
 * Stores a report in one statement. The snapshot is read in the same
 * statement as the insert, so it is the conversation as it is now: the
 * reported message and the `SNAPSHOT_AROUND` nearest before and after it,
 * both directions, each side read as four short ranges of the conversation
 * index (one per direction and side) and cut to the nearest. A message
 * deleted for everyone has its text erased in its row, so the snapshot
 * carries it erased.
 *
 * A repeated report finds the first one and stores nothing; two reports of
 * the same message by the same player at the same instant meet at the unique
 * key, and the loser reads the winner's id.
 */
export async function reportMessage(sql: Sql, report: NewReport): Promise<ReportResult> {
  const { reporterUserId: reporter, messageId } = report;
  const [row] = rowsOf(
    await sql<{ found: boolean; new_id: string | null; old_id: string | null }[]>`
    with target as (
      select message_id, sender_user_id, recipient_user_id from messages
      where message_id = ${messageId}
        and (sender_user_id = ${reporter} or recipient_user_id = ${reporter})
    ), earlier as (
      select report_id from chat_reports
      where reporter_user_id = ${reporter} and message_id = ${messageId}
    ), nearby as (
      (select m.* from messages m, target t
       where m.recipient_user_id = t.recipient_user_id and m.sender_user_id = t.sender_user_id
         and m.message_id < t.message_id
       order by m.recipient_user_id desc, m.sender_user_id desc, m.message_id desc
       limit ${SNAPSHOT_AROUND})
      union all
      (select m.* from messages m, target t
       where m.recipient_user_id = t.sender_user_id and m.sender_user_id = t.recipient_user_id
         and m.message_id < t.message_id
       order by m.recipient_user_id desc, m.sender_user_id desc, m.message_id desc
       limit ${SNAPSHOT_AROUND})
      union all
      (select m.* from messages m, target t
       where m.recipient_user_id = t.recipient_user_id and m.sender_user_id = t.sender_user_id
         and m.message_id >= t.message_id
       order by m.recipient_user_id, m.sender_user_id, m.message_id
       limit ${SNAPSHOT_AROUND + 1})
      union all
      (select m.* from messages m, target t
       where m.recipient_user_id = t.sender_user_id and m.sender_user_id = t.recipient_user_id
         and m.message_id > t.message_id
       order by m.recipient_user_id, m.sender_user_id, m.message_id
       limit ${SNAPSHOT_AROUND})
    ), ranked as (
      select n.*,
        row_number() over (partition by sign(n.message_id - t.message_id)
                           order by abs(n.message_id - t.message_id)) as nearness
      from nearby n, target t
    ), snapshot as (
      select coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
          'message_id', r.message_id,
          'sender_user_id', r.sender_user_id,
          'recipient_user_id', r.recipient_user_id,
          'message_text', r.message_text,
          'sent_at', to_char(r.sent_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
          'client_message_id', r.client_message_id
        )) order by r.message_id), '[]'::jsonb) as messages
      from ranked r
      where r.nearness <= ${SNAPSHOT_AROUND}
    ), inserted as (
      insert into chat_reports (reporter_user_id, reported_user_id, message_id, reason, note, snapshot)
      select ${reporter}, t.sender_user_id, t.message_id, ${report.reason}, ${report.note ?? null},
             (select messages from snapshot)
      from target t
      where not exists (select 1 from earlier)
      on conflict (reporter_user_id, message_id) do nothing
      returning report_id
    )
    select exists (select 1 from target) as found,
           (select report_id::text from inserted) as new_id,
           (select report_id::text from earlier) as old_id`,
  );
  if (row === undefined || !row.found) return { status: "not_found" };
  if (row.new_id !== null) {
    return { status: "reported", reportId: Number(row.new_id), created: true };
  }
  if (row.old_id !== null) {
    return { status: "reported", reportId: Number(row.old_id), created: false };
  }
  // Lost the race at the unique key: the other statement's report is committed now.
  const [winner] = rowsOf(
    await sql<{ report_id: string }[]>`
    select report_id::text from chat_reports
    where reporter_user_id = ${reporter} and message_id = ${messageId}`,
  );
  if (winner === undefined) throw new Error("the report is neither stored nor found");
  return { status: "reported", reportId: Number(winner.report_id), created: false };
}
