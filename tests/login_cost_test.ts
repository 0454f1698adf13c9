/**
 * A sign-in costs the same for 10 unread messages and for 5,000
 * (docs/protocol.md, "Unread counts"): what `authenticated` reads of the
 * mailbox, counted by Postgres itself (the rows its statements read from
 * `messages` and its indexes, in the transaction's own statistics), not timed.
 */

import assert from "node:assert/strict";
import * as mailbox from "../src/store/postgres/mailbox_queries.ts";
import { migrate } from "../src/store/postgres/migrations.ts";
import { signIn } from "../src/store/postgres/sign_in.ts";
import { connectRepository, createTestDatabase } from "./support/db.ts";
import { startTestServer } from "./support/server.ts";

Deno.test("a user with 20,000 unread messages signs in with their counts, last id, seq, settings and friends' last seen, as one with 2 does", async () => {
  const t = await startTestServer();
  try {
    for (const id of [1, 2, 3, 4]) await t.db.addUser(id);
    for (const [a, b] of [[1, 2], [3, 4], [3, 2]]) await t.db.befriend(a!, b!);
    // The game backend's rows: 2 unread to user 1, 20,000 to user 3 (and 5 from 2 to 3).
    await t.db.sql`insert into messages (sender_user_id, recipient_user_id, message_text)
                   select 2, 1, 'to 1: ' || g from generate_series(1, 2) g`;
    await t.db.sql`insert into messages (sender_user_id, recipient_user_id, message_text)
                   select 4, 3, 'to 3: ' || g from generate_series(1, 20000) g`;
    await t.db.sql`insert into messages (sender_user_id, recipient_user_id, message_text)
                   select 2, 3, 'to 3 from 2: ' || g from generate_series(1, 5) g`;
    const [last] = await t.db.sql<{ to1: number; to3: number }[]>`
      select max(message_id) filter (where recipient_user_id = 1)::int as to1,
             max(message_id) filter (where recipient_user_id = 3)::int as to3 from messages`;
    // User 3 mutes 4 and is in do-not-disturb; 4 appears offline (last seen then).
    const until = new Date(Math.floor(Date.now() / 1000) * 1000 + 3_600_000).toISOString();
    const three = await t.connectAs(3);
    three.send({ type: "settings", mute: { friend_user_id: 4, until }, dnd_until: until });
    await three.next("settings_updated");
    const four = await t.connectAs(4);
    four.send({ type: "settings", appear_offline: true });
    await four.next("settings_updated");
    three.close();

    const signIn = async (userId: number) => {
      const client = await t.connect();
      client.send({ type: "authenticate", auth_token: await t.token(userId) });
      const frame = await client.next("authenticated");
      client.close();
      return frame;
    };
    for (let round = 0; round < 2; round++) {
      const few = await signIn(1);
      assert.equal(few.unread_count, 2);
      assert.deepEqual(few.unread_by_friend, { "2": 2 });
      assert.equal(few.last_message_id, last!.to1);
      assert.deepEqual(few.online_friends, []);
      assert.deepEqual(few.settings, { muted: {}, dnd_until: null, appear_offline: false });
      const many = await signIn(3);
      assert.equal(many.unread_count, 20_005);
      assert.deepEqual(many.unread_by_friend, { "2": 5, "4": 20_000 });
      assert.equal(many.last_message_id, last!.to3);
      assert.equal(many.seq, 20_005 + 1, "the messages and the settings change");
      assert.deepEqual(many.settings, {
        muted: { "4": until },
        dnd_until: until,
        appear_offline: false,
      });
      // 4 is connected but appears offline: not online, their last seen shown.
      assert.deepEqual(many.online_friends, []);
      assert.deepEqual(Object.keys(many.last_seen as object), ["4"]);
    }
  } finally {
    await t.close();
  }
});

Deno.test("a sign-in reads a few rows of messages whether 10 or 5,000 are unread", async () => {
  const db = await createTestDatabase();
  const repository = await connectRepository(db.url);
  const session = await db.sql.reserve();
  try {
    // The game backend's rows: 10 unread to user 1, 5,000 unread to user 3, and traffic of others.
    await db.sql`insert into messages (sender_user_id, recipient_user_id, message_text)
                 select 2, 1, 'to 1: ' || g from generate_series(1, 10) g`;
    await db.sql`insert into messages (sender_user_id, recipient_user_id, message_text)
                 select 4, 3, 'to 3: ' || g from generate_series(1, 5000) g`;
    await db.sql`insert into messages (sender_user_id, recipient_user_id, message_text)
                 select 10 + g % 50, 11 + g % 50, 'others' from generate_series(1, 5000) g`;
    await db.sql`analyze messages`;

    for (const id of [1, 3]) await db.addUser(id);
    /** Rows the summary (or the whole sign-in) read from `messages` and its indexes. */
    // Counted as a difference: the backend's pending counts can span transactions (PostgreSQL
    // reports them at most once a second), so a second call's count can include the first's.
    const readSoFar = async () => {
      const [row] = await session<{ n: string }[]>`
        select (sum(pg_stat_get_xact_tuples_returned(c.oid))
                + sum(pg_stat_get_xact_tuples_fetched(c.oid)))::text as n
        from pg_class c
        where c.oid = 'messages'::regclass
           or c.oid in (select indexrelid from pg_index where indrelid = 'messages'::regclass)`;
      return Number(row!.n);
    };
    const cost = async (userId: number, whole: boolean) => {
      await session`begin`;
      try {
        const before = await readSoFar();
        const summary = whole
          ? await signIn(session, userId, Math.floor(Date.now() / 1000)).then((s) =>
            s.access === "ok" ? s.mailbox : undefined
          )
          : await mailbox.mailboxSummary(session, userId);
        assert.ok(summary !== undefined, "signed in");
        return { rows: (await readSoFar()) - before, summary };
      } finally {
        await session`rollback`;
      }
    };
    // The first sign-in after the rows arrived, then a later one: both read the counters.
    // And the same for the whole sign-in's statement (`chat_sign_in`).
    for (let round = 0; round < 4; round++) {
      const few = await cost(1, round >= 2);
      const many = await cost(3, round >= 2);
      assert.equal(few.summary.unreadCount, 10);
      assert.equal(many.summary.unreadCount, 5000);
      assert.deepEqual(many.summary.unreadBySender, new Map([[4, 5000]]));
      // The two last-id probes (a row or two each, whatever the mailbox); counting the
      // unread rows would read at least 5,000.
      for (const [unread, { rows }] of [[10, few], [5000, many]] as const) {
        assert.ok(rows <= 8, `${rows} rows of messages read for ${unread} unread`);
      }
    }
  } finally {
    session.release();
    await repository.close();
    await db.drop();
  }
});

Deno.test("a first login with nothing to count makes the user's row in one write that does not wait for the disk, and a later one writes nothing", async () => {
  const db = await createTestDatabase();
  await migrate(db.sql);
  const session = await db.sql.reserve();
  try {
    for (const id of [1, 2, 3]) await db.addUser(id);
    await db.befriend(1, 2);
    /** One sign-in in a transaction of its own, rolled back or committed: what it wrote. */
    const signInOnce = async (userId: number, keep: boolean) => {
      await session`begin`;
      try {
        const result = await signIn(session, userId, Math.floor(Date.now() / 1000));
        const [tx] = await session<{ wrote: boolean; sync: string }[]>`
          select txid_current_if_assigned() is not null as wrote,
                 current_setting('synchronous_commit') as sync`;
        return { result, wrote: tx!.wrote, sync: tx!.sync };
      } finally {
        await session.unsafe(keep ? "commit" : "rollback");
      }
    };
    const stateOf = async (userId: number) =>
      (await db.sql<{ seq: number; counts_ready: boolean }[]>`
        select seq::int, counts_ready from chat_user_state where user_id = ${userId}`)[0];

    // A fresh database: the counters' pass is done, nothing of anyone's to count.
    const first = await signInOnce(1, true);
    assert.equal(first.result.access, "ok");
    assert.deepEqual(first.result.access === "ok" && first.result.friends, [2]);
    assert.equal(first.wrote, true, "the first login makes the row");
    assert.equal(first.sync, "off", "its commit does not wait for the WAL flush");
    assert.deepEqual({ ...await stateOf(1) }, { seq: 0, counts_ready: true }, "counted already");

    const again = await signInOnce(1, false);
    assert.equal(again.wrote, false, "a later login writes nothing");
    assert.equal(again.sync, "on");

    // A row the writer made before the first login (counts_ready false), the pass done.
    await db.sql`insert into messages (sender_user_id, recipient_user_id, message_text)
                 values (2, 3, 'hello')`;
    assert.deepEqual({ ...await stateOf(3) }, { seq: 1, counts_ready: false });
    const withRow = await signInOnce(3, false);
    assert.equal(withRow.wrote, false, "nothing to count: nothing written");
    assert.ok(withRow.result.access === "ok");
    assert.equal(withRow.result.mailbox.unreadCount, 1);
    assert.equal(withRow.result.mailbox.seq, 1);

    // A user the counters' pass has not reached: counted at the login, committed as before.
    await db.sql`update chat_sequence_start set backfill_done = false, backfill_next_user = 0`;
    const counted = await signInOnce(2, true);
    assert.equal(counted.wrote, true);
    assert.equal(counted.sync, "on", "counting commits with the flush");
    assert.deepEqual({ ...await stateOf(2) }, { seq: 1, counts_ready: true });
  } finally {
    session.release();
    await db.drop();
  }
});
