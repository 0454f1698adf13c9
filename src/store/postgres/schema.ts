/**
 * @module store/postgres/schema
 * The schema as numbered migrations, kept in TypeScript so a compiled binary
 * needs no files; `migrations.ts` applies them.
 *
 * Every step is safe to repeat and to run beside the game backend: tables,
 * columns and the trigger are added only when missing (so an existing table
 * is not locked when nothing is to be added to it), and indexes are listed
 * apart from the SQL so they are built `CONCURRENTLY`, without blocking the
 * game's inserts.
 */

/** An index a migration adds, built with CREATE [UNIQUE] INDEX CONCURRENTLY IF NOT EXISTS. */
export interface IndexSpec {
  name: string;
  /** What follows `on` in CREATE INDEX: the table, the columns, any `where`. */
  on: string;
  unique?: boolean;
}

export interface Migration {
  version: number;
  name: string;
  /** Run in one transaction, under a lock timeout. */
  sql: string;
  /** Built after `sql`, each concurrently, outside any transaction. */
  indexes?: readonly IndexSpec[];
}

/**
 * The transaction-level advisory lock every insert into `messages` takes
 * (migration 3); an arbitrary constant.
 */
export const MESSAGE_ID_LOCK = 7_315_004_212;

/** `alter table … add column` only when the column is missing (ALTER locks the table even when it is not). */
function addColumn(table: string, column: string, definition: string): string {
  return `
    do $add$ begin
      if not exists (select 1 from information_schema.columns
                     where table_schema = current_schema() and table_name = '${table}'
                       and column_name = '${column}') then
        alter table ${table} add column ${column} ${definition};
      end if;
    end $add$;`;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "chat tables",
    sql: `
      create table if not exists users (
        user_id bigint primary key,
        username text,
        active boolean not null default true
      );
      ${addColumn("users", "active", "boolean not null default true")}

      create table if not exists friendships (
        friendship_id bigserial primary key,
        requester_user_id bigint not null,
        recipient_user_id bigint not null,
        status text not null,
        created_at timestamptz not null default now()
      );

      create table if not exists blocks (
        block_id bigserial primary key,
        blocker_user_id bigint not null,
        blocked_user_id bigint not null,
        created_at timestamptz not null default now(),
        unique (blocker_user_id, blocked_user_id)
      );

      create table if not exists messages (
        message_id bigserial primary key,
        sender_user_id bigint not null,
        recipient_user_id bigint not null,
        message_text text not null,
        is_read boolean not null default false,
        sent_at timestamptz not null default now(),
        read_at timestamptz
      );
      ${addColumn("messages", "client_message_id", "text")}
    `,
    indexes: [
      {
        name: "friendships_requester_recipient_idx",
        on: "friendships (requester_user_id, recipient_user_id)",
      },
      {
        name: "friendships_recipient_requester_idx",
        on: "friendships (recipient_user_id, requester_user_id)",
      },
      // the dedup key of (sender, client_message_id); `on conflict` needs it valid
      {
        name: "messages_sender_client_message_id_key",
        on: "messages (sender_user_id, client_message_id)",
        unique: true,
      },
      { name: "messages_recipient_sent_at_idx", on: "messages (recipient_user_id, sent_at)" },
    ],
  },
  {
    // v1.1: receipts, and the indexes that keep sync, history, unread counts and
    // read index scans for a user with millions of messages (docs/protocol.md, "Query plans").
    version: 2,
    name: "delivered_at and mailbox indexes",
    sql: addColumn("messages", "delivered_at", "timestamptz"),
    indexes: [
      // sync, messages to the user (and the last id)
      { name: "messages_recipient_message_id_idx", on: "messages (recipient_user_id, message_id)" },
      // sync, messages from the user (and the last id)
      { name: "messages_sender_message_id_idx", on: "messages (sender_user_id, message_id)" },
      // history: one direction of a conversation per scan
      {
        name: "messages_conversation_idx",
        on: "messages (recipient_user_id, sender_user_id, message_id)",
      },
      // unread counts and read: the unread rows only
      {
        name: "messages_unread_idx",
        on: "messages (recipient_user_id, sender_user_id, message_id) where not is_read",
      },
    ],
  },
  {
    // Ids in commit order (docs/protocol.md, "Frames"): every insert, ours or the game
    // backend's, takes its id under one transaction-level lock, held until
    // its transaction ends. Postgres makes a commit visible before it releases
    // the transaction's locks, so the next inserter draws its id only after the
    // previous one's rows can be read: a reader that has seen id N can never
    // later see an id below N. The column default's value (drawn before the
    // lock) is replaced and left as a gap, as sequences allow.
    version: 3,
    name: "message ids in commit order",
    sql: `
      do $migration$
      declare
        seq text := pg_get_serial_sequence('messages', 'message_id');
      begin
        if seq is null then
          raise exception 'messages.message_id has no sequence';
        end if;
        execute format($f$
          create or replace function chat_assign_message_id() returns trigger
          language plpgsql as $body$
          begin
            perform pg_advisory_xact_lock(%s);
            new.message_id := nextval(%L::regclass);
            return new;
          end
          $body$ $f$, ${MESSAGE_ID_LOCK}, seq);
        -- The chat server's own batches draw their ids under the lock themselves
        -- (chat_next_message_id) and skip the per-row trigger.
        execute format($f$
          create or replace function chat_next_message_id() returns bigint
          language sql as $body$ select nextval(%L::regclass) $body$ $f$, seq);
        if not exists (select 1 from pg_trigger
                       where tgrelid = 'messages'::regclass
                         and tgname = 'chat_message_id_in_commit_order') then
          create trigger chat_message_id_in_commit_order before insert on messages
            for each row
            when (current_setting('chat.message_ids_locked', true) is distinct from 'on')
            execute function chat_assign_message_id();
        end if;
      end
      $migration$;

      -- Takes the same lock for the rest of the transaction and says when it had
      -- it (the writer's deadline check, message_insert.ts, comes after any wait
      -- for the lock). The transaction-local setting tells the trigger that
      -- this transaction's inserts draw their ids under the lock already.
      create or replace function chat_lock_message_ids() returns timestamptz
      language plpgsql as $body$
      begin
        perform pg_advisory_xact_lock(${MESSAGE_ID_LOCK});
        perform set_config('chat.message_ids_locked', 'on', true);
        return clock_timestamp();
      end
      $body$;
    `,
  },
  {
    // v1.1 reads that take effect at once (docs/protocol.md, "Receipts"): a `read`
    // writes one row here, "read up to", instead of updating every row it covers;
    // unread counts, `sync` and `history` read the mark, and the rows' own
    // `is_read`/`read_at` (which the game backend reads) are set behind it in
    // small batches (`read_marks.ts`). `pending`: some rows at or below the mark
    // may still lack their flags; a node finds such marks at start and periodically.
    version: 4,
    name: "read marks",
    sql: `
      create table if not exists chat_read_marks (
        reader_user_id bigint not null,
        friend_user_id bigint not null,
        up_to_message_id bigint not null,
        read_at timestamptz not null,
        pending boolean not null default true,
        primary key (reader_user_id, friend_user_id)
      );
    `,
    indexes: [
      {
        name: "chat_read_marks_pending_idx",
        on: "chat_read_marks (reader_user_id, friend_user_id) where pending",
      },
    ],
  },
  {
    // `POST /disconnect` revokes the users' tokens issued up to that instant
    // (docs/protocol.md, "POST /disconnect"): one row per user, the latest
    // revocation. The server's own table; the login query reads it beside `users`.
    version: 5,
    name: "token revocations",
    sql: `
      create table if not exists chat_token_revocations (
        user_id bigint primary key,
        revoked_at timestamptz not null
      );
    `,
  },
  {
    // v1.2 (docs/protocol.md, "Moderation hook", "Reports"): what the hook did to a
    // message (`replaced`, `unchecked`; null when it allowed it or no hook ran), and
    // players' reports, each with a snapshot of the conversation around the
    // reported message as it was then. One report per (reporter, message).
    version: 7,
    name: "moderation and reports",
    sql: `
      ${addColumn("messages", "moderation", "text")}

      create table if not exists chat_reports (
        report_id bigserial primary key,
        reporter_user_id bigint not null,
        reported_user_id bigint not null,
        message_id bigint not null,
        reason text not null,
        note text,
        snapshot jsonb not null,
        created_at timestamptz not null default now(),
        unique (reporter_user_id, message_id)
      );
    `,
  },
];
