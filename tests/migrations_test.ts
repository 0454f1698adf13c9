/** Migrations: a fresh database gets every table; an existing one only what it lacks. */

import assert from "node:assert/strict";
import { silentLogger } from "../src/log.ts";
import { PostgresRepository } from "../src/repository_postgres.ts";
import { createTestDatabase } from "./support/db.ts";

const connect = (url: string) =>
  PostgresRepository.connect({
    url,
    poolSize: 1,
    statementTimeoutMs: 5000,
    relationCacheMs: 0,
    logger: silentLogger,
  });

Deno.test("migrations on a backend's existing tables add only what is missing and keep the rows", async () => {
  const db = await createTestDatabase();
  try {
    await db.sql.unsafe(`
      create table users (user_id bigint primary key, username text, check_code text);
      create table friendships (friendship_id serial primary key, requester_user_id bigint not null,
        recipient_user_id bigint not null, status text not null, created_at timestamptz not null default now());
      create table messages (message_id serial primary key, sender_user_id bigint not null,
        recipient_user_id bigint not null, message_text text not null, is_read boolean not null default false,
        sent_at timestamptz not null default now(), read_at timestamptz);
      insert into users (user_id, username, check_code) values (1, 'old', 'ABC');
      insert into messages (sender_user_id, recipient_user_id, message_text) values (1, 2, 'legacy');
    `);
    for (let run = 0; run < 2; run++) {
      const repository = await connect(db.url);
      assert.equal(await repository.isActiveUser(1), true, "existing users default to active");
      const stored = await repository.storeMessage({
        senderUserId: 1,
        recipientUserId: 2,
        messageText: "new",
        clientMessageId: "same",
      });
      assert.equal(stored.duplicate, run === 1);
      await repository.close();
    }
    const versions = await db.sql`select version from schema_migrations`;
    assert.deepEqual(versions.map((r) => r.version), [1, 2, 3]);
    const [legacy] = await db
      .sql`select message_text, client_message_id from messages where message_id = 1`;
    assert.deepEqual({ ...legacy }, { message_text: "legacy", client_message_id: null });
    const [user] = await db.sql`select check_code from users where user_id = 1`;
    assert.equal(user!.check_code, "ABC");
    const tables = await db.sql`select table_name from information_schema.tables
                                where table_schema = 'public' order by table_name`;
    assert.deepEqual(tables.map((r) => r.table_name), [
      "blocks",
      "friendships",
      "messages",
      "schema_migrations",
      "users",
    ]);
  } finally {
    await db.drop();
  }
});
