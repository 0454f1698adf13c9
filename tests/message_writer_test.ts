/**
 * The message writer on real PostgreSQL: each row answered by its own
 * outcome, deadlines in the database's clock, nothing retried in a loop.
 */

import assert from "node:assert/strict";
import { DbClock } from "../src/store/postgres/db_clock.ts";
import type { Logger } from "../src/log.ts";
import { silentLogger } from "../src/log.ts";
import { UnavailableError } from "../src/store/repository.ts";
import { WRITER_SETTINGS } from "../src/store/postgres/repository.ts";
import { insertRows } from "../src/store/postgres/message_insert.ts";
import { connectRepository, createTestDatabase, waitingOnLock } from "./support/db.ts";
import { startDatabaseProxy } from "./support/tcp_proxy.ts";
import { sleep } from "./support/wait.ts";

const connect = (url: string, statementTimeoutMs: number, logger: Logger = silentLogger) =>
  connectRepository(url, { statementTimeoutMs, logger });

Deno.test("a committed row is acknowledged even when the look-up of a repeat's original fails", async () => {
  const db = await createTestDatabase();
  const repository = await connect(db.url, 1500);
  const other = (await import("postgres")).default(db.url, { max: 2, onnotice: () => {} });
  try {
    const base = { senderUserId: 1, recipientUserId: 2 };
    // Another writer (the PHP API) holds its insert of d1 open, with users 1 and 2 locked.
    const holder = Promise.withResolvers<void>();
    const t = other.begin(async (tx) => {
      await tx`insert into messages (sender_user_id, recipient_user_id, message_text, client_message_id)
               values (1, 2, 'retry of d1', 'd1')`;
      await holder.promise;
    });
    await sleep(100);
    // A new message and a retry of d1: their users are held, so they wait in the lane.
    const fresh = repository.storeMessage({ ...base, messageText: "n1", clientMessageId: "n1" });
    const repeat = repository.storeMessage({
      ...base,
      messageText: "retry of d1",
      clientMessageId: "d1",
    });
    await waitingOnLock(db, "chat.updates_recorded");
    // A DDL lock queued behind the batch's insert: the look-up after it must wait.
    const ddl = other.begin(async (tx) => {
      await tx`lock table messages in access exclusive mode`;
      await tx`select pg_sleep(3)`;
    });
    await waitingOnLock(db, "access exclusive");
    holder.resolve();
    await t;
    const stored = await fresh;
    assert.equal(stored.duplicate, false);
    assert.equal(stored.message.messageText, "n1");
    await assert.rejects(repeat, UnavailableError);
    await ddl;
    const [row] = await db
      .sql`select message_id::int as id from messages where client_message_id = 'n1'`;
    assert.equal(row!.id, stored.message.messageId);
    const retried = await repository.storeMessage({
      ...base,
      messageText: "retry of d1",
      clientMessageId: "d1",
    });
    assert.equal(retried.duplicate, true, "the retry of the repeat finds its original");
  } finally {
    await other.end();
    await repository.close();
    await db.drop();
  }
});

Deno.test("in one batch each message gets its own row: identical texts without a client id in queue order, a repeat its original", async () => {
  const db = await createTestDatabase();
  const repository = await connect(db.url, 5000);
  try {
    const to = (recipientUserId: number, messageText: string, clientMessageId?: string) =>
      repository.storeMessage({ senderUserId: 1, recipientUserId, messageText, clientMessageId });
    await to(2, "first", "k1");
    // Queued in one turn: the writer sends them as one batch (or a few, in order).
    const sent = [
      to(2, "same"),
      to(3, "same"),
      to(2, "with key", "k2"),
      to(2, "same"),
      to(2, "first", "k1"),
      to(2, "other"),
      to(2, "with key", "k2"),
    ];
    const results = await Promise.all(sent);
    const shape = results.map((r) => [
      r.message.recipientUserId,
      r.message.messageText,
      r.message.clientMessageId ?? null,
      r.duplicate,
    ]);
    assert.deepEqual(shape, [
      [2, "same", null, false],
      [3, "same", null, false],
      [2, "with key", "k2", false],
      [2, "same", null, false],
      [2, "first", "k1", true],
      [2, "other", null, false],
      [2, "with key", "k2", true],
    ]);
    // One pair's messages get ids in queue order (user 3 has no state row yet: the message
    // to it goes through the waiting lane, after the batch).
    const fresh = results.filter((r) => !r.duplicate && r.message.recipientUserId === 2)
      .map((r) => r.message.messageId);
    assert.deepEqual(fresh, [...fresh].sort((a, b) => a - b), "one pair's ids in queue order");
    assert.equal(results[6]!.message.messageId, results[2]!.message.messageId);
    const rows = await db.sql<{ id: number; recipient: number; text: string }[]>`
      select message_id::int as id, recipient_user_id::int as recipient, message_text as text
      from messages order by message_id`;
    for (const r of results) {
      const row = rows.find((x) => x.id === r.message.messageId);
      assert.deepEqual([row?.recipient, row?.text], [
        r.message.recipientUserId,
        r.message.messageText,
      ]);
    }
    assert.equal(rows.length, 6, "the repeats stored nothing");
  } finally {
    await repository.close();
    await db.drop();
  }
});

Deno.test("a repeat of a row another transaction is updating is answered without waiting for it, and the batch with it commits", async () => {
  const db = await createTestDatabase();
  const repository = await connect(db.url, 1500);
  const other = (await import("postgres")).default(db.url, { max: 1, onnotice: () => {} });
  try {
    const original = await repository.storeMessage({
      senderUserId: 1,
      recipientUserId: 2,
      messageText: "hello",
      clientMessageId: "d1",
    });
    // A long update of that row (the game marking a backlog read), open past the deadline.
    const updating = Promise.withResolvers<void>();
    const holder = other.begin(async (tx) => {
      await tx`update messages set is_read = true where client_message_id = 'd1'`;
      await updating.promise;
    });
    await new Promise((r) => setTimeout(r, 100));
    try {
      // One batch: the repeat and another user's message, while the row lock is held.
      const [repeat, fresh] = await Promise.all([
        repository.storeMessage({
          senderUserId: 1,
          recipientUserId: 2,
          messageText: "hello",
          clientMessageId: "d1",
        }),
        repository.storeMessage({
          senderUserId: 3,
          recipientUserId: 4,
          messageText: "other",
          clientMessageId: "o1",
        }),
      ]);
      assert.deepEqual([repeat.duplicate, repeat.message.messageId], [
        true,
        original.message.messageId,
      ]);
      assert.equal(fresh.duplicate, false);
    } finally {
      updating.resolve();
      await holder;
    }
  } finally {
    await other.end();
    await repository.close();
    await db.drop();
  }
});

Deno.test("a server clock an hour behind the database's still stores messages", async () => {
  const db = await createTestDatabase();
  const realNow = Date.now;
  const repository = await connect(db.url, 5000);
  try {
    Date.now = () => realNow() - 3600_000;
    const stored = await repository.storeMessage({
      senderUserId: 1,
      recipientUserId: 2,
      messageText: "hello",
      clientMessageId: undefined,
    });
    assert.equal(stored.duplicate, false);
    Date.now = () => realNow() + 3600_000;
    const late = await repository.storeMessage({
      senderUserId: 1,
      recipientUserId: 2,
      messageText: "again",
      clientMessageId: undefined,
    });
    assert.ok(late.message.messageId > stored.message.messageId);
  } finally {
    Date.now = realNow;
    await repository.close();
    await db.drop();
  }
});

Deno.test("the database-clock deadline never falls due later than the local one", () => {
  let local = 1000;
  const clock = new DbClock(() => local);
  // The database's clock is 7 s ahead; replies take 20 ms to arrive.
  const dbAt = (t: number) => new Date(t + 7000);
  clock.observe(dbAt(local - 20));
  local += 500;
  const due = clock.after(1000);
  assert.ok(due.getTime() <= dbAt(local + 1000).getTime());
  assert.ok(due.getTime() >= dbAt(local + 1000).getTime() - 20, "only the reply's delay early");
  // A slow reply does not loosen the estimate; a tighter one does tighten it.
  clock.observe(dbAt(local - 400));
  assert.equal(clock.after(0).getTime(), dbAt(local).getTime() - 20);
  clock.observe(dbAt(local - 1));
  assert.equal(clock.after(0).getTime(), dbAt(local).getTime() - 1);
  // After a backwards step at the database, the new clock is followed within 30 s.
  local += 31_000;
  clock.observe(new Date(local + 2000 - 5));
  assert.equal(clock.after(0).getTime(), local + 2000 - 5);
});

Deno.test("with the database unreachable one message costs one failed attempt, not a retry loop", async () => {
  const db = await createTestDatabase();
  const proxy = await startDatabaseProxy();
  const warnings: string[] = [];
  const logger: Logger = { ...silentLogger, warn: (event) => void warnings.push(event) };
  const repository = await connect(proxy.route(db.url), 1000, logger);
  try {
    proxy.cut();
    await assert.rejects(
      repository.storeMessage({
        senderUserId: 1,
        recipientUserId: 2,
        messageText: "during the outage",
        clientMessageId: "o1",
      }),
      UnavailableError,
    );
    const afterFailure = warnings.length;
    await sleep(2000);
    assert.equal(warnings.length, afterFailure, `kept trying: ${warnings.join(", ")}`);
    assert.ok(afterFailure <= 2, `one message logged ${afterFailure} warnings`);
  } finally {
    proxy.restore();
    await repository.close();
    await proxy.close();
    await db.drop();
  }
});

/**
 * The generic plan Postgres keeps for the writer's prepared insert, planned
 * on a table analysed while empty and then grown (a new deployment before
 * autovacuum's first ANALYZE): the probe for repeats must stay on the unique
 * index. The control shows the same plan on a default connection scanning
 * the table, once per repeated message.
 */
Deno.test("the batch insert probes repeats by the unique index even when planned on an empty table", async () => {
  const db = await createTestDatabase();
  const repository = await connect(db.url, 5000); // applies the migrations
  const postgres = (await import("postgres")).default;
  let sent: { text: string; params: unknown[] } | undefined;
  const capture = postgres(db.url, {
    max: 1,
    onnotice: () => {},
    debug: (_connection, query, parameters) => {
      if (query.includes("chat_try_lock_users")) sent = { text: query, params: parameters };
    },
  });
  try {
    await db.sql`analyze messages`;
    await capture`select 1`; // array types, before the first array parameter
    await insertRows(
      capture,
      [{ senderUserId: 1, recipientUserId: 2, messageText: "x", clientMessageId: "x" }],
      new Date(Date.now() + 60_000),
    );
    assert.ok(sent !== undefined, "the batch insert was not captured");
    const planOf = async (settings: Record<string, string>) => {
      const conn = postgres(db.url, {
        max: 1,
        onnotice: () => {},
        connection: { ...settings, plan_cache_mode: "force_generic_plan" },
      });
      try {
        // EXPLAIN without ANALYZE: planned, not run. The generic plan is made
        // on the nearly empty table and kept while the table grows.
        await conn.unsafe(`prepare batch_insert as ${sent!.text}`);
        const explain = async () =>
          (await conn.unsafe(
            `explain (costs off) execute batch_insert(false, '{1,2}'::bigint[],
               '{1}'::bigint[], '{2}'::bigint[], '{"earlier 1"}'::text[], '{e1}'::text[],
               '{null}'::text[], now() + interval '1 minute')`,
          )).map((r) => String(r["QUERY PLAN"])).join("\n");
        await explain();
        await db.sql`insert into messages (sender_user_id, recipient_user_id, message_text,
                                           client_message_id)
                     select g % 50 + 1, g % 50 + 2, 'earlier ' || g, ${crypto.randomUUID()} || g
                     from generate_series(1, 3000) g`;
        return await explain();
      } finally {
        await conn.end();
      }
    };
    const control = await planOf({});
    assert.match(control, /Seq Scan on messages m/, `the hazard no longer reproduces:\n${control}`);
    const writer = await planOf(WRITER_SETTINGS);
    assert.doesNotMatch(writer, /Seq Scan on messages/, writer);
    assert.match(writer, /Index Scan using messages_sender_client_message_id_key on messages m/);
  } finally {
    await capture.end();
    await repository.close();
    await db.drop();
  }
});
