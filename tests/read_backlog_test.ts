/**
 * `read` of a large unread backlog (docs/protocol.md, "Receipts"): the receipt
 * takes effect at once as a per-conversation mark, whatever the backlog, and
 * the rows' own `is_read`/`read_at` flags follow in short transactions that
 * hold up no one else's writes, across a restart too. Real server, real
 * Postgres; the backlog is inserted by one SQL statement, as the game
 * backend's rows would be.
 */

import assert from "node:assert/strict";
import { connectRepository, createTestDatabase, type TestDatabase } from "./support/db.ts";
import { startTestServer } from "./support/server.ts";

/** Inserts `rows` messages from 2 to 1 (client ids `c1`…), unread; resolves with the last id. */
async function backlog(db: TestDatabase, rows: number): Promise<number> {
  await db.sql.begin(async (tx) => {
    await tx`set local chat.message_ids_locked = 'on'`; // one statement: ids drawn in order
    await tx`
      insert into messages (sender_user_id, recipient_user_id, message_text, client_message_id)
      select 2, 1, 'backlog ' || g, 'c' || g from generate_series(1, ${rows}) g`;
  });
  const [row] = await db.sql<{ last: number }[]>`select max(message_id)::int as last from messages`;
  return row!.last;
}

async function unflagged(db: TestDatabase): Promise<number> {
  const [row] = await db.sql<{ n: number }[]>`
    select count(*)::int as n from messages where recipient_user_id = 1 and not is_read`;
  return row!.n;
}

/** Polls until `check` holds (30 s at most: the flags of 50,000 rows take seconds). */
async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`not within 30 s: ${what}`);
}

Deno.test("a read of 50,000 unread messages, more than one statement can update within the statement timeout, takes effect at once and the flags follow", async () => {
  // Updating 50,000 rows takes over a second here: past a 1 s deadline, a read
  // done as one UPDATE would be rolled back and answered unavailable. (Not
  // less: a new pool connection's first query runs under it too, and takes
  // over 500 ms on a loaded machine.)
  const t = await startTestServer({ env: { DB_STATEMENT_TIMEOUT_MS: "1000" } });
  try {
    for (const id of [1, 2, 3]) await t.db.addUser(id);
    await t.db.befriend(1, 2);
    await t.db.befriend(3, 1);
    const last = await backlog(t.db, 50_000);
    const bob = await t.connectAs(2);
    const alice = await t.connectAs(1);
    alice.send({ type: "read", friend_user_id: 2, up_to_message_id: last });
    const receipt = await bob.next("read");
    assert.equal(receipt.up_to_message_id, last);
    // A message that arrives after the read is unread, whatever the mark.
    const carol = await t.connectAs(3);
    carol.send({ type: "chat_message", recipient_user_id: 1, message_text: "after" });
    await carol.next("message_sent");

    const fresh = await t.connect();
    fresh.send({ type: "authenticate", auth_token: await t.token(1) });
    const signedIn = await fresh.next("authenticated");
    assert.equal(signedIn.unread_count, 1);
    assert.deepEqual(signedIn.unread_by_friend, { "3": 1 });
    fresh.send({ type: "sync", after_message_id: last - 3 });
    const page = (await fresh.next("sync_result")).messages as Record<string, unknown>[];
    assert.deepEqual(
      page.map((m) => [m.message_text, m.is_read, m.read_at]),
      [
        ["backlog 49998", true, receipt.read_at],
        ["backlog 49999", true, receipt.read_at],
        ["backlog 50000", true, receipt.read_at],
        ["after", false, undefined],
      ],
    );
    fresh.send({ type: "history", friend_user_id: 2, limit: 1 });
    const history = (await fresh.next("history_result")).messages as Record<string, unknown>[];
    assert.deepEqual(history.map((m) => [m.is_read, m.read_at]), [[true, receipt.read_at]]);

    await eventually(async () => (await unflagged(t.db)) === 1, "every backlog row flagged");
    const [flags] = await t.db.sql<{ read_at: Date; pending: boolean }[]>`
      select min(m.read_at) as read_at, bool_or(r.pending) as pending
      from messages m, chat_read_marks r where m.sender_user_id = 2`;
    assert.equal(flags!.read_at.toISOString(), receipt.read_at, "the receipt's read_at");
    assert.equal(flags!.pending, false);
    alice.send({ type: "read", friend_user_id: 2, up_to_message_id: last });
    assert.deepEqual(await bob.drainFor(300, "read"), [], "nothing left to read: nothing sent");
  } finally {
    await t.close();
  }
});

Deno.test("while a backlog's flags are being set, a re-sent client_message_id of a backlog row and another pair's message are both acknowledged", async () => {
  const t = await startTestServer();
  try {
    for (const id of [1, 2, 3, 4]) await t.db.addUser(id);
    await t.db.befriend(1, 2);
    await t.db.befriend(3, 4);
    const last = await backlog(t.db, 100_000);
    const [alice, bob, carol] = [await t.connectAs(1), await t.connectAs(2), await t.connectAs(3)];
    alice.send({ type: "read", friend_user_id: 2, up_to_message_id: last });
    await bob.next("read");
    // Bob's client re-sends five backlog messages (their texts and client ids as stored).
    const resent = [1, 25_000, 50_000, 75_000, 99_999];
    const again = (k: number) => ({ message_text: `backlog ${k}`, client_message_id: `c${k}` });
    for (const k of resent) bob.send({ type: "chat_message", recipient_user_id: 1, ...again(k) });
    carol.send({ type: "chat_message", recipient_user_id: 4, message_text: "unrelated" });
    const acks = [];
    for (const _ of resent) acks.push(await bob.next(["message_sent", "error"]));
    const unrelated = await carol.next(["message_sent", "error"]);
    const left = await unflagged(t.db);
    assert.deepEqual(
      acks.map((a) => [a.type, (a.data as Record<string, unknown>)?.message_text]),
      resent.map((k) => ["message_sent", `backlog ${k}`]),
    );
    assert.equal(unrelated.type, "message_sent");
    assert.ok(left > 0, "all were answered while backlog rows still lacked their flags");
  } finally {
    await t.close();
  }
});

Deno.test("a read mark left pending by a node that stopped mid-way is finished by the next start", async () => {
  const db = await createTestDatabase();
  try {
    const first = await connectRepository(db.url);
    const last = await backlog(db, 50_000);
    const readAt = (await first.markRead(1, 2, last))?.readAt;
    assert.ok(readAt instanceof Date);
    await first.close(); // stops after the batch in progress
    const [mark] = await db.sql<{ pending: boolean }[]>`select pending from chat_read_marks`;
    assert.equal(mark!.pending, true);
    assert.ok((await unflagged(db)) > 0, "stopped before every flag was set");

    const second = await connectRepository(db.url);
    try {
      const pending = async () =>
        (await db.sql<{ pending: boolean }[]>`select pending from chat_read_marks`)[0]!.pending;
      await eventually(async () => !(await pending()), "the mark is no longer pending");
      assert.equal(await unflagged(db), 0);
      const [flags] = await db.sql<{ read_at: Date }[]>`
        select min(read_at) as read_at from messages having max(read_at) = min(read_at)`;
      assert.equal(flags?.read_at.getTime(), readAt.getTime(), "every row the read's time");
    } finally {
      await second.close();
    }
  } finally {
    await db.drop();
  }
});
