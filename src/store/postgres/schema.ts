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
    // v1.2: one ordered, gap-free stream of updates per user (docs/protocol.md,
    // "Updates"; the design and the alternatives are in docs/updates.md).
    //
    // - `chat_user_state`: one row per user, its latest `seq`. Whatever adds
    //   updates for a user takes that row's lock (`chat_lock_users`, in user
    //   id order, so two writers never deadlock) and holds it to its commit;
    //   the next writer of that user draws its numbers only after the
    //   previous one's rows can be read (a commit is visible before its locks
    //   go), so seqs follow commit order with no gap. Nothing is shared by all
    //   users: the v1.1 cluster-wide id lock (migration 3) goes.
    // - `chat_updates`: the updates themselves; a message's state is read
    //   from `messages` when synced, so it is always the latest.
    // - `chat_unread`: unread counts per conversation, kept by every write
    //   under the reader's lock, so a login reads them instead of counting rows.
    //   `counts_ready`: the user's messages from before this migration are in
    //   them (a background pass, or the first login, adds them once).
    // - `chat_hidden_messages`: deleted for me.
    // - `chat_sequence_start`: the last message id committed before updates
    //   began (read under a table lock, so exact): older messages have no
    //   update; the v1.1 `sync` and the counters' backfill use it.
    //
    // Every insert into `messages` becomes updates: the server's writer records
    // its batch itself in the same statement (`chat_record_messages`) and says
    // so in a transaction-local setting; for every other insert (the game
    // backend's) a statement trigger does the same from its transition table.
    // The old per-row trigger is dropped in the same transaction that creates
    // the new one, under a lock that waits for inserts in flight: no insert
    // falls between the two.
    version: 6,
    name: "per-user update sequences",
    sql: `
      ${addColumn("messages", "edited_at", "timestamptz")}
      ${addColumn("messages", "deleted_at", "timestamptz")}
      ${addColumn("messages", "moderation", "text")}

      create table if not exists chat_user_state (
        user_id bigint primary key,
        seq bigint not null default 0,
        counts_ready boolean not null default false
      );

      create table if not exists chat_updates (
        user_id bigint not null,
        seq bigint not null,
        kind text not null,
        message_id bigint,
        body jsonb,
        created_at timestamptz not null default now(),
        primary key (user_id, seq)
      );

      create table if not exists chat_unread (
        user_id bigint not null,
        friend_user_id bigint not null,
        unread bigint not null,
        primary key (user_id, friend_user_id)
      );

      create table if not exists chat_hidden_messages (
        user_id bigint not null,
        message_id bigint not null,
        primary key (user_id, message_id)
      );

      create table if not exists chat_sequence_start (
        one boolean primary key default true check (one),
        last_message_id bigint not null,
        started_at timestamptz not null default now(),
        backfill_next_user bigint not null default 0,
        backfill_done boolean not null default false
      );

      -- Creates the users' state rows if missing, then locks them in id order
      -- until the transaction ends.
      create or replace function chat_lock_users(p_users bigint[]) returns void
      language plpgsql as $body$
      begin
        insert into chat_user_state (user_id)
          select distinct u from unnest(p_users) u order by u
          on conflict (user_id) do nothing;
        perform 1 from chat_user_state where user_id = any(p_users)
          order by user_id for update;
      end
      $body$;

      -- The server's writer: locks those of the users no other transaction
      -- holds, in id order, and returns them; a message of a user it could not
      -- lock waits in another lane (message_writer.ts), so one held user never
      -- stalls everyone's batch. A user held by another writer's batch (a few
      -- milliseconds) is tried again for up to p_wait_ms, so only a long hold
      -- (the game backend's open transaction) sends messages to the lane. It
      -- never waits for a lock, so it cannot deadlock. A user without a state
      -- row yet is left out too: creating it could wait for another
      -- transaction creating it.
      create or replace function chat_try_lock_users(p_users bigint[], p_wait_ms integer)
      returns bigint[]
      language plpgsql as $body$
      declare
        got bigint[] := '{}';
        more bigint[];
        missing bigint[];
        started timestamptz := clock_timestamp();
      begin
        loop
          select coalesce(array_agg(s.user_id), '{}') into more
            from (select user_id from chat_user_state
                  where user_id = any(p_users) and user_id <> all(got)
                  order by user_id for update skip locked) s;
          got := got || more;
          select coalesce(array_agg(u), '{}') into missing
            from unnest(p_users) u
            where u <> all(got)
              and exists (select 1 from chat_user_state s where s.user_id = u);
          exit when cardinality(missing) = 0
            or clock_timestamp() - started >= make_interval(secs => p_wait_ms / 1000.0);
          perform pg_sleep(0.002);
        end loop;
        return got;
      end
      $body$;

      -- Appends one update to a (locked or not yet locked) user's sequence.
      create or replace function chat_append_update(
        p_user_id bigint, p_kind text, p_message_id bigint, p_body jsonb
      ) returns bigint
      language plpgsql as $body$
      declare
        next_seq bigint;
      begin
        perform chat_lock_users(array[p_user_id]);
        update chat_user_state set seq = seq + 1 where user_id = p_user_id
          returning seq into next_seq;
        insert into chat_updates (user_id, seq, kind, message_id, body)
          values (p_user_id, next_seq, p_kind, p_message_id, p_body);
        return next_seq;
      end
      $body$;

      -- New messages become updates of their sender and recipient, in
      -- message id order per user, and count as unread for the recipient
      -- (unless already read or below the conversation's read mark).
      create or replace function chat_record_messages(
        p_ids bigint[], p_senders bigint[], p_recipients bigint[], p_read boolean[]
      ) returns table (message_id bigint, sender_seq bigint, recipient_seq bigint)
      language plpgsql as $body$
      begin
        if coalesce(array_length(p_ids, 1), 0) = 0 then
          return;
        end if;
        perform chat_lock_users(p_senders || p_recipients);
        insert into chat_unread as c (user_id, friend_user_id, unread)
          select m.recipient, m.sender, count(*)
          from unnest(p_ids, p_senders, p_recipients, p_read) as m(id, sender, recipient, is_read)
          where not m.is_read and m.recipient <> m.sender
            and m.id > coalesce((select r.up_to_message_id from chat_read_marks r
                                 where r.reader_user_id = m.recipient
                                   and r.friend_user_id = m.sender), 0)
          group by m.recipient, m.sender
          order by m.recipient, m.sender
          on conflict (user_id, friend_user_id) do update set unread = c.unread + excluded.unread;
        return query
        with parts as (
          select m.id, m.sender as user_id, true as is_sender
          from unnest(p_ids, p_senders) as m(id, sender)
          union all
          select m.id, m.recipient, false
          from unnest(p_ids, p_senders, p_recipients) as m(id, sender, recipient)
          where m.recipient <> m.sender
        ), numbered as (
          select p.*, row_number() over (partition by p.user_id order by p.id) as n,
                 count(*) over (partition by p.user_id) as total
          from parts p
        ), bumped as (
          update chat_user_state s set seq = s.seq + t.total
          from (select distinct user_id, total from numbered) t
          where s.user_id = t.user_id
          returning s.user_id, s.seq - t.total as base
        ), added as (
          insert into chat_updates (user_id, seq, kind, message_id)
          select n.user_id, b.base + n.n, 'message', n.id
          from numbered n join bumped b on b.user_id = n.user_id
          returning chat_updates.user_id, chat_updates.seq, chat_updates.message_id
        )
        select n.id,
               max(a.seq) filter (where n.is_sender),
               coalesce(max(a.seq) filter (where not n.is_sender), max(a.seq) filter (where n.is_sender))
        from numbered n
        join added a on a.user_id = n.user_id and a.message_id = n.id
        group by n.id;
      end
      $body$;

      -- The writer's deadline (message_insert.ts): a batch that got its users'
      -- locks only after the instant its caller gives up on it stores nothing.
      create or replace function chat_assert_before(p_deadline timestamptz) returns boolean
      language plpgsql as $body$
      begin
        if clock_timestamp() >= p_deadline then
          raise exception 'the database reached the batch after its deadline'
            using errcode = '57014';
        end if;
        return true;
      end
      $body$;

      -- Whether a user's counters hold their messages from before migration 6;
      -- if not, adds them (once: under the user's lock). The caller has locked
      -- the user (chat_lock_users) when it is about to change the counters.
      create or replace function chat_ensure_counts(p_user bigint) returns void
      language plpgsql as $body$
      declare
        start chat_sequence_start;
        ready boolean;
      begin
        select counts_ready into ready from chat_user_state where user_id = p_user;
        if ready then
          return;
        end if;
        select * into start from chat_sequence_start;
        if start.backfill_done or p_user < start.backfill_next_user then
          -- the background pass went past this user: nothing of theirs to add
          if ready is not null then
            update chat_user_state set counts_ready = true where user_id = p_user;
          end if;
          return;
        end if;
        perform chat_lock_users(array[p_user]);
        select counts_ready into ready from chat_user_state where user_id = p_user;
        if ready then
          return;
        end if;
        insert into chat_unread as c (user_id, friend_user_id, unread)
          select p_user, m.sender_user_id, count(*)
          from messages m
          where m.recipient_user_id = p_user and not m.is_read
            and m.message_id <= start.last_message_id
            and m.sender_user_id <> p_user and m.deleted_at is null
            and m.message_id > coalesce((select r.up_to_message_id from chat_read_marks r
                                         where r.reader_user_id = p_user
                                           and r.friend_user_id = m.sender_user_id), 0)
            and not exists (select 1 from chat_hidden_messages h
                            where h.user_id = p_user and h.message_id = m.message_id)
          group by m.sender_user_id
          on conflict (user_id, friend_user_id) do update set unread = c.unread + excluded.unread;
        update chat_user_state set counts_ready = true where user_id = p_user;
      end
      $body$;

      -- A conversation's unread count, counted afresh (after a read raised its
      -- mark): the rows above the mark, not read, not deleted, not hidden.
      -- Plain equalities (a count has no order to keep): PostgreSQL ends an
      -- index scan only at a row comparison's first column, so an upper bound
      -- written as (recipient, sender) <= (user, friend) walked every unread
      -- row of the user's later friends (832 buffers, 11 ms for a user with
      -- 100,000 unread, docs/updates.md "Query plans").
      create or replace function chat_recount_unread(p_user bigint, p_friend bigint) returns void
      language plpgsql as $body$
      declare
        mark bigint := coalesce((select up_to_message_id from chat_read_marks
                                 where reader_user_id = p_user and friend_user_id = p_friend), 0);
      begin
        insert into chat_unread as c (user_id, friend_user_id, unread)
          select p_user, p_friend, count(*) from messages m
          where m.recipient_user_id = p_user and m.sender_user_id = p_friend
            and m.message_id > mark
            and not m.is_read and m.deleted_at is null
            and not exists (select 1 from chat_hidden_messages h
                            where h.user_id = p_user and h.message_id = m.message_id)
          on conflict (user_id, friend_user_id) do update set unread = excluded.unread;
      end
      $body$;

      -- Whether a message counts as unread for its recipient now.
      create or replace function chat_is_unread(p_message messages) returns boolean
      language sql stable as $body$
        select not p_message.is_read and p_message.deleted_at is null
          and p_message.message_id > coalesce((select r.up_to_message_id from chat_read_marks r
                                               where r.reader_user_id = p_message.recipient_user_id
                                                 and r.friend_user_id = p_message.sender_user_id), 0)
          and not exists (select 1 from chat_hidden_messages h
                          where h.user_id = p_message.recipient_user_id
                            and h.message_id = p_message.message_id)
      $body$;

      -- "authenticated": the latest seq, the unread counts by friend and the
      -- last message id, read from the counters (a user not yet counted is
      -- counted once, here).
      create or replace function chat_mailbox(p_user bigint)
      returns table (friend_user_id bigint, n bigint)
      language plpgsql as $body$
      begin
        -- the user's state row exists from the first login on, so the writer
        -- can lock it without creating it (chat_try_lock_users)
        insert into chat_user_state (user_id) values (p_user) on conflict (user_id) do nothing;
        perform chat_ensure_counts(p_user);
        return query
          select null::bigint, coalesce((select seq from chat_user_state where user_id = p_user), 0)
          union all
          select c.friend_user_id, c.unread from chat_unread c
          where c.user_id = p_user and c.unread > 0;
      end
      $body$;

      -- Whether one user's receipts may reach the other: friends (approved,
      -- either direction) and neither blocked the other. A receipt enters the
      -- other user's sequence only then, so a block hides it on sync too.
      create or replace function chat_may_tell(p_a bigint, p_b bigint) returns boolean
      language sql stable as $body$
        select exists (select 1 from friendships f
                       where f.status = 'approved'
                         and ((f.requester_user_id = p_a and f.recipient_user_id = p_b)
                           or (f.requester_user_id = p_b and f.recipient_user_id = p_a)))
          and not exists (select 1 from blocks b
                          where (b.blocker_user_id = p_a and b.blocked_user_id = p_b)
                             or (b.blocker_user_id = p_b and b.blocked_user_id = p_a))
      $body$;

      -- "read": raises the conversation's mark to the newest unread row it
      -- covers, counts what is left, and is an update of both users. Nothing
      -- when it covers no unread row above the mark.
      create or replace function chat_mark_read(
        p_reader bigint, p_friend bigint, p_up_to bigint, p_not_after timestamptz
      ) returns table (read_at timestamptz, reader_seq bigint, friend_seq bigint)
      language plpgsql as $body$
      declare
        target bigint;
        marked timestamptz;
        body jsonb;
      begin
        perform chat_lock_users(array[p_reader, p_friend]);
        perform chat_assert_before(p_not_after);
        perform chat_ensure_counts(p_reader);
        select m.message_id into target from messages m
        where (m.recipient_user_id, m.sender_user_id, m.message_id) > (p_reader, p_friend,
                coalesce((select r.up_to_message_id from chat_read_marks r
                          where r.reader_user_id = p_reader and r.friend_user_id = p_friend),
                         -9223372036854775808))
          and (m.recipient_user_id, m.sender_user_id, m.message_id) <= (p_reader, p_friend, p_up_to)
          and not m.is_read
        order by m.recipient_user_id desc, m.sender_user_id desc, m.message_id desc limit 1;
        if target is null then
          return;
        end if;
        insert into chat_read_marks as r (reader_user_id, friend_user_id, up_to_message_id, read_at)
          values (p_reader, p_friend, target, now())
          on conflict (reader_user_id, friend_user_id) do update
            set up_to_message_id = excluded.up_to_message_id, read_at = excluded.read_at,
                pending = true
          returning r.read_at into marked;
        perform chat_recount_unread(p_reader, p_friend);
        body := jsonb_build_object('user_id', p_reader, 'friend_user_id', p_friend,
                                   'up_to_message_id', p_up_to, 'read_at', marked);
        read_at := marked;
        reader_seq := chat_append_update(p_reader, 'read', null, body);
        if chat_may_tell(p_reader, p_friend) then
          friend_seq := chat_append_update(p_friend, 'read', null, body);
        end if;
        return next;
      end
      $body$;

      -- "delivered": the first device of the recipient showed a message; an
      -- update of the sender and of the recipient.
      create or replace function chat_mark_delivered(
        p_recipient bigint, p_message_id bigint, p_not_after timestamptz
      ) returns table (status text, sender_user_id bigint, sender_seq bigint, recipient_seq bigint)
      language plpgsql as $body$
      declare
        m messages;
      begin
        select * into m from messages where message_id = p_message_id;
        if not found or m.recipient_user_id <> p_recipient then
          status := 'not_recipient';
          return next;
          return;
        end if;
        sender_user_id := m.sender_user_id;
        if m.delivered_at is not null then
          status := 'already';
          return next;
          return;
        end if;
        perform chat_lock_users(array[m.sender_user_id, m.recipient_user_id]);
        perform chat_assert_before(p_not_after);
        update messages set delivered_at = now()
          where message_id = p_message_id and delivered_at is null;
        if not found then
          status := 'already';
          return next;
          return;
        end if;
        status := 'first';
        if chat_may_tell(m.sender_user_id, m.recipient_user_id) then
          sender_seq := chat_append_update(m.sender_user_id, 'delivered', p_message_id, null);
        end if;
        if m.recipient_user_id <> m.sender_user_id then
          recipient_seq := chat_append_update(m.recipient_user_id, 'delivered', p_message_id, null);
        end if;
        return next;
      end
      $body$;

      -- "edit_message", "delete_message" and the moderator's deletion: one
      -- change of one message, checked, made, and recorded as updates.
      -- p_action: 'edit', 'everyone', 'me', 'moderator'.
      create or replace function chat_change_message(
        p_user bigint, p_message_id bigint, p_action text, p_text text,
        p_window_s integer, p_moderation text
      ) returns table (status text, sender_seq bigint, recipient_seq bigint, m messages,
                       hidden boolean)
      language plpgsql as $body$
      declare
        was_unread boolean;
      begin
        select * into m from messages where message_id = p_message_id;
        if not found or (p_action in ('edit', 'everyone') and m.sender_user_id <> p_user)
           or (p_action = 'me' and p_user not in (m.sender_user_id, m.recipient_user_id)) then
          status := 'not_found';
          return next;
          return;
        end if;
        if p_action = 'moderator' then
          p_user := m.sender_user_id;
        end if;
        perform chat_lock_users(case when p_action = 'me' then array[p_user]
                                     else array[m.sender_user_id, m.recipient_user_id] end);
        select * into m from messages where message_id = p_message_id;
        hidden := exists (select 1 from chat_hidden_messages h
                          where h.user_id = p_user and h.message_id = p_message_id);
        if p_action = 'edit' then
          if hidden then
            status := 'not_found';
          elsif m.deleted_at is not null then
            status := 'message_deleted';
          elsif p_window_s <= 0 or now() > m.sent_at + make_interval(secs => p_window_s) then
            status := 'edit_window_passed';
          elsif m.message_text = p_text then
            status := 'unchanged';
          end if;
        elsif p_action = 'me' then
          if hidden then
            status := 'unchanged';
          end if;
        elsif m.deleted_at is not null then
          status := 'unchanged';
        end if;
        if status is not null then
          return next;
          return;
        end if;
        if m.recipient_user_id <> m.sender_user_id
           and (p_action <> 'me' or p_user = m.recipient_user_id) then
          perform chat_ensure_counts(m.recipient_user_id);
          was_unread := chat_is_unread(m);
        else
          was_unread := false;
        end if;
        if p_action = 'edit' then
          update messages set message_text = p_text, edited_at = now(), moderation = p_moderation
            where message_id = p_message_id returning * into m;
        elsif p_action = 'me' then
          insert into chat_hidden_messages (user_id, message_id) values (p_user, p_message_id);
          hidden := true;
        else
          update messages set message_text = '', deleted_at = now()
            where message_id = p_message_id returning * into m;
        end if;
        if was_unread and p_action <> 'edit' then
          update chat_unread set unread = greatest(unread - 1, 0)
            where user_id = m.recipient_user_id and friend_user_id = m.sender_user_id;
        end if;
        status := 'changed';
        if p_action = 'me' then
          if p_user = m.sender_user_id then
            sender_seq := chat_append_update(p_user, 'message_updated', p_message_id, null);
          else
            recipient_seq := chat_append_update(p_user, 'message_updated', p_message_id, null);
          end if;
        else
          sender_seq := chat_append_update(m.sender_user_id, 'message_updated', p_message_id, null);
          if m.recipient_user_id <> m.sender_user_id then
            recipient_seq := chat_append_update(m.recipient_user_id, 'message_updated',
                                                p_message_id, null);
          end if;
        end if;
        return next;
      end
      $body$;

      -- The background pass that adds messages from before migration 6 to the
      -- counters: the next p_users recipients with unread rows, one short
      -- transaction per call, one node at a time (the others find the row
      -- locked and come back later). True once every user is counted.
      create or replace function chat_backfill_counts(p_users integer) returns boolean
      language plpgsql as $body$
      declare
        start chat_sequence_start;
        next_user bigint;
        done integer := 0;
      begin
        select * into start from chat_sequence_start for update skip locked;
        if not found then
          return false;
        end if;
        if start.backfill_done then
          return true;
        end if;
        next_user := start.backfill_next_user;
        loop
          select recipient_user_id into next_user from messages
            where recipient_user_id >= next_user and not is_read
            order by recipient_user_id limit 1;
          if next_user is null then
            update chat_sequence_start set backfill_done = true;
            return true;
          end if;
          perform chat_ensure_counts(next_user);
          done := done + 1;
          next_user := next_user + 1;
          if done >= p_users then
            update chat_sequence_start set backfill_next_user = next_user;
            return false;
          end if;
        end loop;
      end
      $body$;

      -- Every other insert into messages (the game backend's): the same, from
      -- the statement's new rows. The server's writer has recorded its own
      -- rows already and says so in a transaction-local setting.
      create or replace function chat_messages_inserted() returns trigger
      language plpgsql as $body$
      begin
        if current_setting('chat.updates_recorded', true) = 'on' then
          return null;
        end if;
        perform chat_record_messages(array_agg(n.message_id order by n.message_id),
                                     array_agg(n.sender_user_id order by n.message_id),
                                     array_agg(n.recipient_user_id order by n.message_id),
                                     array_agg(n.is_read order by n.message_id))
        from chat_new_messages n;
        return null;
      end
      $body$;

      -- Swap the triggers with no insert in flight: the lock waits for
      -- inserts (and their transactions) to end and holds new ones until
      -- this transaction commits (under the migration's lock timeout).
      do $swap$
      begin
        if not exists (select 1 from pg_trigger
                       where tgrelid = 'messages'::regclass
                         and tgname = 'chat_messages_updates') then
          lock table messages in share row exclusive mode;
          insert into chat_sequence_start (last_message_id)
            select coalesce(max(message_id), 0) from messages
            on conflict (one) do nothing;
          update chat_sequence_start set backfill_done = true where last_message_id = 0;
          drop trigger if exists chat_message_id_in_commit_order on messages;
          create trigger chat_messages_updates after insert on messages
            referencing new table as chat_new_messages
            for each statement execute function chat_messages_inserted();
        end if;
      end
      $swap$;
    `,
    indexes: [
      // the v1.1 sync: the update that carried a message
      {
        name: "chat_updates_message_idx",
        on: "chat_updates (user_id, message_id) where message_id is not null",
      },
      // the backfill of unread counts: recipients with unread rows, one probe each
      // (messages_unread_idx serves it); history without the hidden rows: its primary key
    ],
  },
  {
    // v1.2 (docs/protocol.md, "Reports"): players' reports, each with a snapshot
    // of the conversation around the reported message as it was then. One
    // report per (reporter, message). (`messages.moderation`, what the hook did
    // to a message, is migration 6's.)
    version: 7,
    name: "moderation and reports",
    sql: `
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
  {
    // v1.2 settings (docs/protocol.md, "Settings"): one row per user who changed a
    // setting or was seen going offline, and one row per muted friend (an unmute
    // deletes it). The events webhook reads both to skip muted and DND recipients.
    version: 8,
    name: "settings, mutes and last seen",
    sql: `
      create table if not exists chat_user_settings (
        user_id bigint primary key,
        dnd_until timestamptz,
        appear_offline boolean not null default false,
        last_seen_at timestamptz,
        updated_at timestamptz not null default now()
      );
      create table if not exists chat_mutes (
        user_id bigint not null,
        friend_user_id bigint not null,
        until timestamptz not null,
        primary key (user_id, friend_user_id)
      );
    `,
  },
  {
    // v1.2 events webhook (docs/deploy.md, "Events webhook"). `chat_events` is the
    // outbox: an event waits here until a batch holding it gets a 2xx (then it is
    // deleted) or its retries run out (deleted and counted), so the table holds only
    // what is pending. `chat_event_cursors` keeps how far the pollers that derive
    // events from committed rows have read: `messages` (message.unseen) and
    // `chat_reports` (report.created), each in (time, id) order.
    //
    // The tables it reads come before it: `messages.deleted_at` (6), reports (7),
    // settings and mutes (8).
    version: 9,
    name: "events webhook",
    sql: `
      create table if not exists chat_events (
        event_id bigserial primary key,
        -- the id the receiver deduplicates by, the same in every attempt
        id text not null default gen_random_uuid()::text,
        type text not null,
        -- message.unseen: the conversation and the messages the event gathers
        recipient_user_id bigint,
        sender_user_id bigint,
        message_ids bigint[],
        -- the event as sent; a message.unseen's is fixed at its first attempt
        body jsonb,
        created_at timestamptz not null default clock_timestamp(),
        next_attempt_at timestamptz not null,
        first_attempt_at timestamptz,
        attempts integer not null default 0
      );
      create table if not exists chat_event_cursors (
        source text primary key,
        at timestamptz not null,
        last_id bigint not null
      );
    `,
    indexes: [
      // the message.unseen poller reads messages in (sent_at, message_id) order
      { name: "messages_sent_at_idx", on: "messages (sent_at, message_id)" },
      // the report.created poller
      { name: "chat_reports_created_at_idx", on: "chat_reports (created_at, report_id)" },
      // due events, oldest first
      { name: "chat_events_due_idx", on: "chat_events (next_attempt_at, event_id)" },
      // the oldest pending event's age (a metric)
      { name: "chat_events_created_at_idx", on: "chat_events (created_at)" },
      // a conversation's message.unseen not attempted yet, which new unseen messages join
      {
        name: "chat_events_open_unseen_idx",
        on: "chat_events (recipient_user_id, sender_user_id) where body is null",
      },
    ],
  },
  {
    // One statement for a login (issues 19 and 26): a v1.2 sign-in sent five (the token
    // check, friends, the mailbox, settings and mutes, the friends' last seen), and on this
    // machine the server's cost of a login was mostly writing them. `chat_sign_in` answers
    // the token's verdict and, only when it may sign in, everything `authenticated` reads,
    // as one json value. The mailbox part is `chat_mailbox` (the counters, the user's state
    // row created, a user not yet counted counted once), so it stays O(1) in the mailbox.
    // Functions only: nothing is locked but the function's name.
    version: 10,
    name: "sign-in in one statement",
    sql: `
      -- {"access": "inactive" | "revoked"} or {"access": "ok", "friends": [id…],
      --  "mailbox": [[friend | null, n]…] (null: the latest seq), "last": last message id,
      --  "dnd": ms | null, "offline": bool, "mutes": [[friend, until ms]…],
      --  "seen": [[friend, appear offline, last seen ms | null]…]}; times in Unix ms,
      -- cut to the millisecond as a JavaScript Date holds them. Revoked: issued at or
      -- before the user's last revocation, compared in ms as doubles (as tokenAccess does).
      create or replace function chat_sign_in(p_user bigint, p_issued_at double precision)
      returns json
      language plpgsql as $body$
      declare
        revoked_ms double precision;
        friends bigint[];
        result json;
      begin
        select coalesce((extract(epoch from r.revoked_at) * 1000)::float8, 0) into revoked_ms
        from users u left join chat_token_revocations r on r.user_id = u.user_id
        where u.user_id = p_user and u.active;
        if not found then
          return json_build_object('access', 'inactive');
        end if;
        if p_issued_at * 1000 <= revoked_ms then
          return json_build_object('access', 'revoked');
        end if;
        -- approved friends, either direction, except where either blocked the other
        friends := array(
          select distinct case when f.requester_user_id = p_user then f.recipient_user_id
                               else f.requester_user_id end
          from friendships f
          where f.status = 'approved'
            and (f.requester_user_id = p_user or f.recipient_user_id = p_user)
            and not exists (
              select 1 from blocks b
              where (b.blocker_user_id = f.requester_user_id
                     and b.blocked_user_id = f.recipient_user_id)
                 or (b.blocker_user_id = f.recipient_user_id
                     and b.blocked_user_id = f.requester_user_id)));
        select json_build_object(
          'access', 'ok',
          'friends', to_json(friends),
          'mailbox', (select json_agg(json_build_array(c.friend_user_id, c.n))
                      from chat_mailbox(p_user) c),
          'last', greatest(
            (select message_id from messages
             where (recipient_user_id, message_id) >= (p_user, (-9223372036854775808)::bigint)
               and (recipient_user_id, message_id) < (p_user, 9223372036854775807::bigint)
             order by recipient_user_id desc, message_id desc limit 1),
            (select message_id from messages
             where (sender_user_id, message_id) >= (p_user, (-9223372036854775808)::bigint)
               and (sender_user_id, message_id) < (p_user, 9223372036854775807::bigint)
             order by sender_user_id desc, message_id desc limit 1),
            0),
          'dnd', (select floor(extract(epoch from s.dnd_until) * 1000)
                  from chat_user_settings s
                  where s.user_id = p_user and s.dnd_until > now()),
          'offline', coalesce((select s.appear_offline from chat_user_settings s
                               where s.user_id = p_user), false),
          'mutes', (select json_agg(json_build_array(m.friend_user_id,
                                                     floor(extract(epoch from m.until) * 1000))
                                    order by m.friend_user_id)
                    from chat_mutes m where m.user_id = p_user and m.until > now()),
          'seen', (select json_agg(json_build_array(s.user_id, s.appear_offline,
                                                    floor(extract(epoch from s.last_seen_at) * 1000)))
                   from chat_user_settings s where s.user_id = any(friends)))
        into result;
        return result;
      end
      $body$;
    `,
  },
  {
    // Issue 19, Postgres CPU per message of the write path (docs/updates.md,
    // "What a message costs"). `chat_number_messages` is `chat_record_messages`
    // without taking the users' locks, for a caller that holds them: the
    // writer's batch, after `chat_try_lock_users`, locked and upserted every
    // user of the batch a second time (18 % of its shared buffers).
    // `chat_record_messages` (the trigger, the waiting lane, a node of the
    // previous release) locks them in id order, then calls it: one SQL
    // implementation for every path, as before.
    version: 11,
    name: "numbering under the caller's locks",
    sql: `
      -- New messages become updates of their sender and recipient, in
      -- message id order per user, and count as unread for the recipient
      -- (unless already read or below the conversation's read mark). The
      -- caller holds every user's chat_user_state row lock.
      create or replace function chat_number_messages(
        p_ids bigint[], p_senders bigint[], p_recipients bigint[], p_read boolean[]
      ) returns table (message_id bigint, sender_seq bigint, recipient_seq bigint)
      language plpgsql as $body$
      begin
        if coalesce(array_length(p_ids, 1), 0) = 0 then
          return;
        end if;
        insert into chat_unread as c (user_id, friend_user_id, unread)
          select m.recipient, m.sender, count(*)
          from unnest(p_ids, p_senders, p_recipients, p_read) as m(id, sender, recipient, is_read)
          where not m.is_read and m.recipient <> m.sender
            and m.id > coalesce((select r.up_to_message_id from chat_read_marks r
                                 where r.reader_user_id = m.recipient
                                   and r.friend_user_id = m.sender), 0)
          group by m.recipient, m.sender
          order by m.recipient, m.sender
          on conflict (user_id, friend_user_id) do update set unread = c.unread + excluded.unread;
        return query
        with parts as (
          select m.id, m.sender as user_id, true as is_sender
          from unnest(p_ids, p_senders) as m(id, sender)
          union all
          select m.id, m.recipient, false
          from unnest(p_ids, p_senders, p_recipients) as m(id, sender, recipient)
          where m.recipient <> m.sender
        ), numbered as (
          select p.*, row_number() over (partition by p.user_id order by p.id) as n,
                 count(*) over (partition by p.user_id) as total
          from parts p
        ), bumped as (
          update chat_user_state s set seq = s.seq + t.total
          from (select distinct user_id, total from numbered) t
          where s.user_id = t.user_id
          returning s.user_id, s.seq - t.total as base
        ), added as (
          insert into chat_updates (user_id, seq, kind, message_id)
          select n.user_id, b.base + n.n, 'message', n.id
          from numbered n join bumped b on b.user_id = n.user_id
          returning chat_updates.user_id, chat_updates.seq, chat_updates.message_id
        )
        select n.id,
               max(a.seq) filter (where n.is_sender),
               coalesce(max(a.seq) filter (where not n.is_sender), max(a.seq) filter (where n.is_sender))
        from numbered n
        join added a on a.user_id = n.user_id and a.message_id = n.id
        group by n.id;
      end
      $body$;

      -- The same, for a caller that does not hold the users' locks yet.
      create or replace function chat_record_messages(
        p_ids bigint[], p_senders bigint[], p_recipients bigint[], p_read boolean[]
      ) returns table (message_id bigint, sender_seq bigint, recipient_seq bigint)
      language plpgsql as $body$
      begin
        if coalesce(array_length(p_ids, 1), 0) = 0 then
          return;
        end if;
        perform chat_lock_users(p_senders || p_recipients);
        return query select * from chat_number_messages(p_ids, p_senders, p_recipients, p_read);
      end
      $body$;
    `,
  },
  {
    // Issues 19 and 26, Postgres CPU per login: a user's first login wrote. `chat_mailbox`
    // created the user's state row, then `chat_ensure_counts` set its `counts_ready` (a
    // second version of the row), and the commit waited for its WAL flush: 280–490 µs of
    // the backend's CPU against 100 for a later login (bench/README.md, "Postgres CPU per
    // login"). Now a login reads the row first and writes only when it must:
    // - a counted row, or a row whose user the background pass went past: nothing written;
    // - no row, and nothing of the user's from before v1.2 to count (the pass went past
    //   them, or it is done): the row is created in one insert, already counted, and the
    //   commit does not wait for its WAL flush (`synchronous_commit` off for this
    //   transaction only, and only when it had written nothing before). The row is
    //   re-derivable: lost in a crash, it is the state before the login (no row, seq 0,
    //   nothing to count), which the next login or the first write of the user creates
    //   again; and anything durable that uses it (a message bumping its seq) commits later
    //   in the same WAL, so its flush carries the row. It is still made at the first login
    //   so the writer can lock the user without creating the row (`chat_try_lock_users`);
    // - a user the pass has not reached: counted once under their lock, as before, with a
    //   synchronous commit.
    version: 12,
    name: "a first login without a flush",
    sql: `
      create or replace function chat_mailbox(p_user bigint)
      returns table (friend_user_id bigint, n bigint)
      language plpgsql as $body$
      declare
        ready boolean;
        latest bigint;
        start chat_sequence_start;
      begin
        select s.counts_ready, s.seq into ready, latest from chat_user_state s
        where s.user_id = p_user;
        if ready is null or not ready then
          select * into start from chat_sequence_start;
          if start.backfill_done or p_user < start.backfill_next_user then
            -- nothing of theirs from before v1.2 to count
            if ready is null then
              if txid_current_if_assigned() is null then
                perform set_config('synchronous_commit', 'off', true);
              end if;
              insert into chat_user_state (user_id, counts_ready) values (p_user, true)
                on conflict (user_id) do nothing;
            end if;
          else
            insert into chat_user_state (user_id) values (p_user) on conflict (user_id) do nothing;
            perform chat_ensure_counts(p_user);
          end if;
          latest := (select s.seq from chat_user_state s where s.user_id = p_user);
        end if;
        return query
          select null::bigint, coalesce(latest, 0)
          union all
          select c.friend_user_id, c.unread from chat_unread c
          where c.user_id = p_user and c.unread > 0;
      end
      $body$;
    `,
  },
  {
    // Issue 19, the fixed cost of a batch: Postgres planned the statements inside
    // `chat_number_messages` afresh for every call (custom plans, since their array
    // parameters change every time), about 270 µs of the backend's CPU per batch: a third
    // of a one-message batch's (bench/README.md, "A batch's fixed cost"). Every access in
    // it is an equality on a table's whole primary key (`chat_user_state`, `chat_unread`,
    // `chat_read_marks`), so one generic plan is right whatever the arrays hold, and it is
    // kept for the session. Set on the function alone, not on the writer's connection:
    // forced there, the writer's own statement kept a plan made while `messages` was empty,
    // whose probe for repeats walked a whole index per message (the saturated rate fell to
    // a quarter in the bench; repository.ts, WRITER_SETTINGS).
    version: 13,
    name: "numbering with a generic plan",
    sql: `
      alter function chat_number_messages(bigint[], bigint[], bigint[], boolean[])
        set plan_cache_mode = force_generic_plan;
    `,
  },
  {
    // Issue 19, two nodes writing for the same users. `chat_try_lock_users` locked the users
    // no one held, kept them, and polled for the rest every 2 ms for up to 200 ms. Two
    // writers whose batches share users (every pair split over two nodes, as in the bench's
    // two-node run) each kept a part and polled for the other's: neither could finish until
    // one gave up after 200 ms and sent those users' messages to its waiting lane, whose
    // statements then waited for the same locks for seconds after the load ended.
    // Now the batch takes all its users at once, in id order, waiting for a held one
    // (a lock wait is a queue: writers that lock in id order and hold nothing else take
    // turns, as v1.1's writers did on its one lock, and never deadlock), for at most
    // `p_wait_ms` per lock. A longer hold (the game backend's open transaction, or a
    // transaction locking users out of order) ends the wait: what was locked meanwhile is
    // released (the wait runs in a subtransaction), and the batch takes, without waiting,
    // the users no one holds, as before; the others' messages go to the waiting lane.
    // `lock_timeout` (200 ms) is below Postgres' `deadlock_timeout` (1 s by default), so a
    // wait that would deadlock ends here first. A generic plan: one primary-key probe per user.
    version: 14,
    name: "a batch's users locked in turn",
    sql: `
      create or replace function chat_try_lock_users(p_users bigint[], p_wait_ms integer)
      returns bigint[]
      language plpgsql
      set plan_cache_mode = force_generic_plan
      as $body$
      declare
        got bigint[];
        -- the caller's: only these waits are bounded (a SET LOCAL of another variable
        -- outlives the function, so it is put back by hand when the wait succeeds)
        saved text := current_setting('lock_timeout');
      begin
        begin
          perform set_config('lock_timeout', p_wait_ms || 'ms', true);
          select coalesce(array_agg(s.user_id), '{}') into got
            from (select user_id from chat_user_state
                  where user_id = any(p_users)
                  order by user_id for update) s;
          perform set_config('lock_timeout', saved, true);
          return got;
        exception when lock_not_available then
          -- a user held longer: this subtransaction's locks and setting are undone
        end;
        select coalesce(array_agg(s.user_id), '{}') into got
          from (select user_id from chat_user_state
                where user_id = any(p_users)
                order by user_id for update skip locked) s;
        return got;
      end
      $body$;
    `,
  },
];
