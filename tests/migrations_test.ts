/**
 * Migrations: a fresh database gets every table; an existing one only what it
 * lacks; a live game database is never blocked for long; nodes starting
 * together apply each version once; MIGRATE=off/only.
 */

import assert from "node:assert/strict";
import postgres, { type Sql } from "postgres";
import { main } from "../main.ts";
import { loadConfig } from "../src/config.ts";
import { migrate, MIGRATIONS, MIGRATIONS_TABLE } from "../src/store/postgres/migrations.ts";
import {
  connectRepository,
  createTestDatabase,
  type TestDatabase,
  waitingOnLock,
} from "./support/db.ts";
import { sleep } from "./support/wait.ts";

const ALL = MIGRATIONS.map((m) => m.version);

const connect = (url: string, migrate: "auto" | "off" = "auto") =>
  connectRepository(url, { poolSize: 1, migrate });

const recorded = async (db: TestDatabase) =>
  (await db.sql.unsafe(`select version from ${MIGRATIONS_TABLE} order by version`)).map((r) =>
    r.version
  );

/** A client of the test database for one test, ended by `using`-style cleanup. */
const client = (db: TestDatabase): Sql => postgres(db.url, { max: 3, onnotice: () => {} });

const GAME_TABLES = `
  create table users (user_id bigint primary key, username text, check_code text);
  create table friendships (friendship_id serial primary key, requester_user_id bigint not null,
    recipient_user_id bigint not null, status text not null, created_at timestamptz not null default now());
  create table messages (message_id serial primary key, sender_user_id bigint not null,
    recipient_user_id bigint not null, message_text text not null, is_read boolean not null default false,
    sent_at timestamptz not null default now(), read_at timestamptz);`;

Deno.test("migrations on a backend's existing tables add only what is missing and keep the rows", async () => {
  const db = await createTestDatabase();
  try {
    await db.sql.unsafe(`${GAME_TABLES}
      insert into users (user_id, username, check_code) values (1, 'old', 'ABC');
      insert into messages (sender_user_id, recipient_user_id, message_text) values (1, 2, 'legacy');
    `);
    for (let run = 0; run < 2; run++) {
      const repository = await connect(db.url);
      assert.equal(
        await repository.tokenAccess(1, Math.floor(Date.now() / 1000)),
        "ok",
        "existing users default to active",
      );
      const stored = await repository.storeMessage({
        senderUserId: 1,
        recipientUserId: 2,
        messageText: "new",
        clientMessageId: "same",
      });
      assert.equal(stored.duplicate, run === 1);
      await repository.close();
    }
    assert.deepEqual(await recorded(db), ALL);
    const [legacy] = await db
      .sql`select message_text, client_message_id from messages where message_id = 1`;
    assert.deepEqual({ ...legacy }, { message_text: "legacy", client_message_id: null });
    const [user] = await db.sql`select check_code from users where user_id = 1`;
    assert.equal(user!.check_code, "ABC");
    const tables = await db.sql`select table_name from information_schema.tables
                                where table_schema = 'public' order by table_name`;
    assert.deepEqual(tables.map((r) => r.table_name), [
      "blocks",
      "chat_event_cursors",
      "chat_events",
      "chat_hidden_messages",
      "chat_mutes",
      "chat_read_marks",
      "chat_reports",
      "chat_sequence_start",
      MIGRATIONS_TABLE,
      "chat_token_revocations",
      "chat_unread",
      "chat_updates",
      "chat_user_settings",
      "chat_user_state",
      "friendships",
      "messages",
      "users",
    ]);
  } finally {
    await db.drop();
  }
});

Deno.test("another tool's schema_migrations table is left as it is", async () => {
  const db = await createTestDatabase();
  try {
    await db.sql.unsafe(`create table schema_migrations (version varchar(255) primary key);
      insert into schema_migrations values ('20240101000000');`);
    const repository = await connect(db.url);
    await repository.close();
    const rows = await db.sql`select * from schema_migrations`;
    assert.deepEqual(rows.map((r) => ({ ...r })), [{ version: "20240101000000" }]);
    assert.deepEqual(await recorded(db), ALL);
  } finally {
    await db.drop();
  }
});

Deno.test("nodes starting together apply each migration once", async () => {
  const db = await createTestDatabase();
  try {
    const repositories = await Promise.all([connect(db.url), connect(db.url), connect(db.url)]);
    await Promise.all(repositories.map((r) => r.close()));
    assert.deepEqual(await recorded(db), ALL);
  } finally {
    await db.drop();
  }
});

Deno.test("a DDL step gives way to a game transaction: retried with backoff, then start-up fails in one line", async () => {
  const db = await createTestDatabase();
  const game = client(db);
  const migrator = client(db);
  try {
    await db.sql.unsafe(GAME_TABLES);
    // A game transaction holding what an insert holds on messages, for a while.
    const release = Promise.withResolvers<void>();
    const open = game.begin(async (tx) => {
      await tx`lock table messages in row exclusive mode`;
      await release.promise;
    });
    await sleep(100);
    await assert.rejects(
      migrate(migrator, { lockTimeoutMs: 200, attempts: 2, backoffMs: 50 }),
      (err: Error) => {
        assert.match(err.message, /^migration 1 \(chat tables\) failed after 2 tries of 200 ms/);
        assert.ok(!err.message.includes("\n"), "one line");
        return true;
      },
    );
    // Retried long enough, it waits out the game's transaction; meanwhile the game inserts.
    const retries: number[] = [];
    const migrating = migrate(migrator, {
      lockTimeoutMs: 300,
      attempts: 6,
      backoffMs: 1000,
      onRetry: (_, attempt) => retries.push(attempt),
    });
    await waitingOnLock(db, "create table if not exists users"); // the text is cut at 1 kB
    await game.begin(async (tx) => {
      await tx`set local statement_timeout = 3000`;
      await tx`insert into messages (sender_user_id, recipient_user_id, message_text)
               values (1, 2, 'from the game')`;
    });
    release.resolve();
    await open;
    assert.deepEqual(await migrating, ALL);
    assert.ok(retries.length >= 1, "it had to retry");
  } finally {
    await game.end();
    await migrator.end();
    await db.drop();
  }
});

Deno.test("indexes are built concurrently: the game inserts while a build waits", async () => {
  const db = await createTestDatabase();
  const game = client(db);
  const migrator = client(db);
  try {
    await (await connect(db.url)).close();
    await db.sql.unsafe(`drop index messages_unread_idx;
      delete from ${MIGRATIONS_TABLE} where version = 2`);
    const release = Promise.withResolvers<void>();
    const open = game.begin(async (tx) => {
      await tx`lock table messages in row exclusive mode`;
      await release.promise;
    });
    await sleep(100);
    const migrating = migrate(migrator);
    await waitingOnLock(db, "index concurrently");
    await game.begin(async (tx) => {
      await tx`set local statement_timeout = 3000`;
      await tx`insert into messages (sender_user_id, recipient_user_id, message_text)
               values (1, 2, 'from the game')`;
    });
    release.resolve();
    await open;
    assert.deepEqual(await migrating, [2]);
    const [index] = await db.sql`select i.indisvalid as valid from pg_index i
      join pg_class c on c.oid = i.indexrelid where c.relname = 'messages_unread_idx'`;
    assert.equal(index?.valid, true);
  } finally {
    await game.end();
    await migrator.end();
    await db.drop();
  }
});

Deno.test("an invalid index left by a failed concurrent build is dropped and built again", async () => {
  const db = await createTestDatabase();
  try {
    await (await connect(db.url)).close();
    await db.sql.unsafe(`drop index messages_unread_idx;
      insert into messages (sender_user_id, recipient_user_id, message_text)
        values (1, 2, 'a'), (3, 2, 'b');
      delete from ${MIGRATIONS_TABLE} where version = 2`);
    await assert.rejects(db.sql.unsafe(
      `create unique index concurrently messages_unread_idx on messages (recipient_user_id)
       where not is_read`,
    ));
    const state = () =>
      db.sql`select i.indisvalid as valid, i.indisunique as unique from pg_index i
             join pg_class c on c.oid = i.indexrelid where c.relname = 'messages_unread_idx'`;
    assert.deepEqual({ ...(await state())[0] }, { valid: false, unique: true });
    await (await connect(db.url)).close();
    assert.deepEqual({ ...(await state())[0] }, { valid: true, unique: false });
    assert.deepEqual(await recorded(db), ALL);
  } finally {
    await db.drop();
  }
});

Deno.test("MIGRATE=off touches nothing and refuses a schema that is not current, in one line", async () => {
  const db = await createTestDatabase();
  try {
    await db.sql.unsafe(GAME_TABLES);
    await assert.rejects(connect(db.url, "off"), (err: Error) => {
      assert.match(
        err.message,
        new RegExp(
          `lacks migrations ${
            MIGRATIONS.map((m) => m.version).join(",")
          } and MIGRATE=off: run \`deno task migrate\``,
        ),
      );
      assert.ok(!err.message.includes("\n"));
      return true;
    });
    const [column] = await db.sql`select count(*)::int as n from information_schema.columns
      where table_name = 'messages' and column_name = 'client_message_id'`;
    assert.equal(column!.n, 0, "nothing was added");
    await (await connect(db.url)).close();
    await (await connect(db.url, "off")).close();
  } finally {
    await db.drop();
  }
});

Deno.test("MIGRATE=only applies the migrations and exits 0 without serving, AUTH_SECRET or not", async () => {
  const db = await createTestDatabase();
  try {
    const code = await main({ DATABASE_URL: db.url, MIGRATE: "only", LOG_LEVEL: "error" });
    assert.equal(code, 0);
    assert.deepEqual(await recorded(db), ALL);
    assert.equal(loadConfig({ MIGRATE: "only" }).migrate, "only");
    assert.throws(() => loadConfig({ AUTH_SECRET: "x", MIGRATE: "sometimes" }), RangeError);
    assert.throws(() => loadConfig({ MIGRATE: "off" }), /AUTH_SECRET/);
  } finally {
    await db.drop();
  }
});
