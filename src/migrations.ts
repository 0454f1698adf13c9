/**
 * @module migrations
 * The schema, kept in TypeScript so a compiled binary needs no files.
 *
 * Each migration runs once, in order, inside a transaction holding an
 * advisory lock (several nodes may start at once), and is recorded in
 * `schema_migrations`. Every statement is idempotent, so a database the game
 * backend already created only gains what is missing.
 */

import type { Sql } from "postgres";

export interface Migration {
  version: number;
  name: string;
  sql: string;
  /** Indexes this version adds: `name` and what follows `on` in CREATE INDEX. */
  indexes?: readonly { name: string; on: string }[];
}

/**
 * The transaction-level advisory lock every insert into `messages` takes
 * (migration 3); an arbitrary constant, next to the migration lock's.
 */
export const MESSAGE_ID_LOCK = 7_315_004_212;

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
      alter table users add column if not exists active boolean not null default true;

      create table if not exists friendships (
        friendship_id bigserial primary key,
        requester_user_id bigint not null,
        recipient_user_id bigint not null,
        status text not null,
        created_at timestamptz not null default now()
      );
      create index if not exists friendships_requester_recipient_idx
        on friendships (requester_user_id, recipient_user_id);
      create index if not exists friendships_recipient_requester_idx
        on friendships (recipient_user_id, requester_user_id);

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
      alter table messages add column if not exists client_message_id text;
      create unique index if not exists messages_sender_client_message_id_key
        on messages (sender_user_id, client_message_id);
      create index if not exists messages_recipient_sent_at_idx
        on messages (recipient_user_id, sent_at);
    `,
  },
  {
    // v1.1: receipts, and the indexes that keep sync, history, unread counts and
    // read index scans for a user with millions of messages (docs/query-plans.md).
    version: 2,
    name: "delivered_at and mailbox indexes",
    sql: `alter table messages add column if not exists delivered_at timestamptz;`,
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
    // Ids in commit order (PROTOCOL.md): every insert, ours or the game
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
      end
      $migration$;

      -- Takes the same lock and says when it had it: the writer's deadline check
      -- (message_insert.ts) happens after any wait for the lock.
      create or replace function chat_lock_message_ids() returns timestamptz
      language plpgsql as $body$
      begin
        perform pg_advisory_xact_lock(${MESSAGE_ID_LOCK});
        return clock_timestamp();
      end
      $body$;

      drop trigger if exists chat_message_id_in_commit_order on messages;
      create trigger chat_message_id_in_commit_order before insert on messages
        for each row execute function chat_assign_message_id();
    `,
  },
];

/** An arbitrary constant naming this server's migration lock. */
const MIGRATION_LOCK = 7_315_004_211;

/** Applies the migrations not yet recorded; returns the versions it applied. */
export async function migrate(sql: Sql): Promise<number[]> {
  return await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK})`;
    await tx.unsafe(`
      create table if not exists schema_migrations (
        version integer primary key,
        name text not null,
        applied_at timestamptz not null default now()
      )`);
    const rows = await tx<{ version: number }[]>`select version from schema_migrations`;
    const done = new Set(rows.map((row) => row.version));
    const applied: number[] = [];
    for (const migration of MIGRATIONS) {
      if (done.has(migration.version)) continue;
      await tx.unsafe(migration.sql);
      for (const index of migration.indexes ?? []) {
        await tx.unsafe(`create index if not exists ${index.name} on ${index.on}`);
      }
      await tx`insert into schema_migrations (version, name)
               values (${migration.version}, ${migration.name})`;
      applied.push(migration.version);
    }
    return applied;
  });
}
