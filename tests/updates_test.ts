/**
 * One ordered stream of updates per user, and editing and deleting
 * (docs/protocol.md, "Updates", "Editing and deleting"): real servers, real
 * Postgres, what a device sees on the wire and what the database keeps.
 */

import assert from "node:assert/strict";
import type { TestClient } from "./support/client.ts";
import { CLUSTER_KINDS, nodesTest } from "./support/cluster.ts";
import { startTestServer, type TestServer } from "./support/server.ts";
import { within } from "./support/wait.ts";

type Frame = Record<string, unknown>;

async function say(from: TestClient, to: number, text: string): Promise<Frame> {
  from.send({ type: "chat_message", recipient_user_id: to, message_text: text });
  return await from.next("message_sent");
}

const idOf = (sent: Frame) => (sent.data as { message_id: number }).message_id;

/** Every update of the user after `afterSeq`, paging until `has_more` is false. */
async function syncAll(client: TestClient, afterSeq: number): Promise<Frame[]> {
  const updates: Frame[] = [];
  let after = afterSeq;
  for (let page = 0; page < 100; page++) {
    client.send({ type: "sync", after_seq: after, limit: 500 });
    const result = await client.next("sync_result");
    const got = result.updates as Frame[];
    updates.push(...got);
    if (got.length > 0) after = got.at(-1)!.seq as number;
    if (result.has_more !== true) return updates;
  }
  throw new Error("sync never ended");
}

async function withServer(body: (t: TestServer) => Promise<void>, env = {}): Promise<void> {
  const t = await startTestServer({
    users: [1, 2, 3, 4, 5, 6],
    friends: [[1, 2], [3, 1], [5, 6]],
    env,
  });
  try {
    await body(t);
  } finally {
    await t.close();
  }
}

Deno.test("a device offline while a message, an edit, a deletion and a read of an older message happen gets all four from sync, in order, in their latest state", async () => {
  await withServer(async (t) => {
    const alice = await t.connectAs(1);
    const bobPhone = await t.connectAs(2);
    const older = idOf(await say(alice, 2, "older"));
    const edited = idOf(await say(alice, 2, "typo"));
    const deleted = idOf(await say(alice, 2, "oops"));
    bobPhone.send({ type: "sync", after_seq: 0 });
    const seen = (await bobPhone.next("sync_result")).seq as number;
    assert.equal(seen, 3);
    bobPhone.close();

    const fresh = idOf(await say(alice, 2, "while you were away"));
    alice.send({ type: "edit_message", message_id: edited, message_text: "fixed" });
    const editAck = await alice.next("message_updated");
    assert.equal((editAck.message as Frame).message_text, "fixed");
    alice.send({ type: "delete_message", message_id: deleted, for: "everyone" });
    await alice.next("message_updated");
    const bobLaptop = await t.connectAs(2);
    bobLaptop.send({ type: "read", friend_user_id: 1, up_to_message_id: older });
    const receipt = await alice.next("read");

    const updates = await syncAll(bobLaptop, seen);
    assert.deepEqual(updates.map((u) => [u.type, u.seq]), [
      ["chat_message", 4],
      ["message_updated", 5],
      ["message_updated", 6],
      ["read", 7],
    ]);
    assert.equal(updates[0]!.message_id, fresh);
    const edit = updates[1]!.message as Frame;
    assert.deepEqual([edit.message_id, edit.message_text], [edited, "fixed"]);
    assert.match(String(edit.edited_at), /^\d{4}-\d\d-\d\dT/);
    const deletion = updates[2]!.message as Frame;
    assert.deepEqual([deletion.message_id, deletion.message_text], [deleted, ""]);
    assert.match(String(deletion.deleted_at), /^\d{4}-\d\d-\d\dT/);
    assert.deepEqual(updates[3], { ...receipt, seq: 7 });
    // alice's receipt carries her own number for it
    assert.equal(receipt.seq, 7);
  });
});

Deno.test("a sync shows a message in its latest state: an update made before an edit shows the edited text", async () => {
  await withServer(async (t) => {
    const alice = await t.connectAs(1);
    const bob = await t.connectAs(2);
    const id = idOf(await say(alice, 2, "first"));
    await bob.next("chat_message");
    alice.send({ type: "edit_message", message_id: id, message_text: "second" });
    await alice.next("message_updated");
    const [message, edit] = await syncAll(bob, 0);
    assert.equal(message!.type, "chat_message");
    assert.equal(message!.message_text, "second");
    assert.equal((edit!.message as Frame).message_text, "second");
  });
});

for (const kind of CLUSTER_KINDS) {
  nodesTest(
    kind,
    "three friends sending 50 messages each to one user at once over two nodes give that user seqs 1..150, live and synced",
    {
      users: [1, 2, 3, 4],
      friends: [[1, 2], [1, 3], [1, 4]],
      // 50 messages in one go after the sign-in's frame: 51 frames, one over the default frame
      // bucket of 50 unless 20 ms passed since the sign-in (a fast sign-in failed it).
      env: { CHAT_RATE_BURST: "50", CHAT_RATE_PER_S: "50", FRAME_RATE_PER_S: "200" },
    },
    async ([a, b]) => {
      const inbox = await a!.connectAs(1);
      const senders = [await a!.connectAs(2), await b!.connectAs(3), await b!.connectAs(4)];
      const sending = senders.map(async (client, i) => {
        for (let n = 0; n < 50; n++) {
          client.send({ type: "chat_message", recipient_user_id: 1, message_text: `${i}:${n}` });
        }
        for (let n = 0; n < 50; n++) await client.next("message_sent");
      });
      await Promise.all(sending);
      const live: number[] = [];
      for (let n = 0; n < 150; n++) live.push((await inbox.next("chat_message")).seq as number);
      const expected = Array.from({ length: 150 }, (_, i) => i + 1);
      assert.deepEqual([...live].sort((x, y) => x - y), expected, "no gap, no duplicate");
      const synced = await syncAll(inbox, 0);
      assert.deepEqual(synced.map((u) => u.seq), expected);
      // each sender's messages keep their order in the recipient's sequence
      for (let i = 0; i < 3; i++) {
        const mine = synced.filter((u) => String(u.message_text).startsWith(`${i}:`));
        assert.deepEqual(
          mine.map((u) => u.message_text),
          [...Array(50).keys()].map((n) => `${i}:${n}`),
        );
      }
    },
  );
}

Deno.test("a row the game backend inserts becomes an update of both users, delivered by sync", async () => {
  await withServer(async (t) => {
    const bob = await t.connectAs(2);
    await t.db.sql`insert into messages (sender_user_id, recipient_user_id, message_text)
                   values (1, 2, 'from the game')`;
    const [update] = await syncAll(bob, 0);
    assert.deepEqual([update!.type, update!.seq, update!.message_text], [
      "chat_message",
      1,
      "from the game",
    ]);
    const alice = await t.connectAs(1);
    const [own] = await syncAll(alice, 0);
    assert.equal(own!.message_text, "from the game");
  });
});

Deno.test("edit_message: only the sender, within the window, not after a deletion; the same text changes nothing", async () => {
  await withServer(async (t) => {
    const alice = await t.connectAs(1);
    const bob = await t.connectAs(2);
    const carol = await t.connectAs(3);
    const id = idOf(await say(alice, 2, "hello"));
    await bob.next("chat_message");
    bob.send({ type: "edit_message", message_id: id, message_text: "mine now" });
    assert.deepEqual(await bob.next("error"), {
      type: "error",
      code: "not_found",
      message: "Message not found",
    });
    carol.send({ type: "edit_message", message_id: id, message_text: "x" });
    assert.equal((await carol.next("error")).code, "not_found");
    alice.send({ type: "edit_message", message_id: 999_999, message_text: "x" });
    assert.equal((await alice.next("error")).code, "not_found", "an id that does not exist");
    alice.send({ type: "edit_message", message_id: id, message_text: "   " });
    assert.equal((await alice.next("error")).code, "message_empty");
    alice.send({ type: "edit_message", message_id: id });
    assert.equal((await alice.next("error")).code, "missing_fields");
    alice.send({ type: "edit_message", message_id: "x", message_text: "y" });
    assert.equal((await alice.next("error")).code, "invalid_field");

    alice.send({ type: "edit_message", message_id: id, message_text: "hello" });
    const same = await alice.next("message_updated");
    assert.equal(same.seq, undefined, "the same text: no update");
    assert.deepEqual(await bob.drainFor(200, "message_updated"), []);

    alice.send({ type: "edit_message", message_id: id, message_text: "hello, bob" });
    const mine = await alice.next("message_updated");
    const theirs = await bob.next("message_updated");
    assert.equal((theirs.message as Frame).message_text, "hello, bob");
    assert.deepEqual([mine.seq, theirs.seq], [2, 2]);
    const [row] = await t.db.sql`select message_text, edited_at from messages
                                 where message_id = ${id}`;
    assert.equal(row!.message_text, "hello, bob");
    assert.ok(row!.edited_at instanceof Date);

    alice.send({ type: "delete_message", message_id: id, for: "everyone" });
    await alice.next("message_updated");
    alice.send({ type: "edit_message", message_id: id, message_text: "back" });
    assert.equal((await alice.next("error")).code, "message_deleted");
  });
});

Deno.test("an edit after EDIT_WINDOW_S is edit_window_passed, and 0 turns editing off", async () => {
  await withServer(async (t) => {
    const alice = await t.connectAs(1);
    const id = idOf(await say(alice, 2, "hello"));
    await t.db.sql`update messages set sent_at = now() - interval '2 minutes'
                   where message_id = ${id}`;
    alice.send({ type: "edit_message", message_id: id, message_text: "late" });
    assert.equal((await alice.next("error")).code, "edit_window_passed");
  }, { EDIT_WINDOW_S: "60" });
  await withServer(async (t) => {
    const alice = await t.connectAs(1);
    const id = idOf(await say(alice, 2, "hello"));
    alice.send({ type: "edit_message", message_id: id, message_text: "never" });
    assert.equal((await alice.next("error")).code, "edit_window_passed");
  }, { EDIT_WINDOW_S: "0" });
});

Deno.test("a deletion for everyone erases the text in the database and stops it counting as unread", async () => {
  await withServer(async (t) => {
    const alice = await t.connectAs(1);
    const bob = await t.connectAs(2);
    const id = idOf(await say(alice, 2, "secret"));
    await bob.next("chat_message");
    bob.send({ type: "delete_message", message_id: id, for: "everyone" });
    assert.equal((await bob.next("error")).code, "not_found", "only the sender");
    alice.send({ type: "delete_message", message_id: id });
    assert.equal((await alice.next("error")).code, "missing_fields");
    alice.send({ type: "delete_message", message_id: id, for: "all" });
    assert.equal((await alice.next("error")).code, "invalid_field");
    alice.send({ type: "delete_message", message_id: id, for: "everyone" });
    const mine = await alice.next("message_updated");
    const theirs = await bob.next("message_updated");
    for (const frame of [mine, theirs]) {
      assert.equal((frame.message as Frame).message_text, "");
      assert.match(String((frame.message as Frame).deleted_at), /^\d{4}-\d\d-\d\dT/);
    }
    const [row] = await t.db.sql`select message_text, deleted_at from messages
                                 where message_id = ${id}`;
    assert.equal(row!.message_text, "", "the text is gone from the row");
    assert.ok(row!.deleted_at instanceof Date);
    const [found] = await t.db.sql`select count(*)::int as n from messages
                                   where message_text like '%secret%'`;
    assert.equal(found!.n, 0);
    const again = await t.connectAs(2);
    again.send({ type: "delete_message", message_id: id, for: "everyone" });
    assert.equal((await again.next("error")).code, "not_found");
    const fresh = await t.connect();
    fresh.send({ type: "authenticate", auth_token: await t.token(2) });
    assert.equal((await fresh.next("authenticated")).unread_count, 0);
    alice.send({ type: "delete_message", message_id: id, for: "everyone" });
    const repeat = await alice.next("message_updated");
    assert.equal(repeat.seq, undefined, "deleting again changes nothing");
  });
});

Deno.test("a deletion for me hides the message from that user's history and unread count only", async () => {
  await withServer(async (t) => {
    const alice = await t.connectAs(1);
    const bob = await t.connectAs(2);
    const kept = idOf(await say(alice, 2, "keep"));
    const hidden = idOf(await say(alice, 2, "hide"));
    await bob.next("chat_message");
    await bob.next("chat_message");
    bob.send({ type: "delete_message", message_id: hidden, for: "me" });
    const ack = await bob.next("message_updated");
    assert.deepEqual(ack.message, {
      message_id: hidden,
      sender_user_id: 1,
      recipient_user_id: 2,
      message_text: "",
      sent_at: (ack.message as Frame).sent_at,
      deleted_for_me: true,
    });
    assert.equal(ack.seq, 3);
    assert.deepEqual(await alice.drainFor(200, "message_updated"), [], "alice is not told");

    bob.send({ type: "history", friend_user_id: 1 });
    const bobs = (await bob.next("history_result")).messages as Frame[];
    assert.deepEqual(bobs.map((m) => m.message_id), [kept]);
    alice.send({ type: "history", friend_user_id: 2 });
    const alices = (await alice.next("history_result")).messages as Frame[];
    assert.deepEqual(alices.map((m) => m.message_id), [hidden, kept]);

    const fresh = await t.connect();
    fresh.send({ type: "authenticate", auth_token: await t.token(2) });
    const signedIn = await fresh.next("authenticated");
    assert.deepEqual([signedIn.unread_count, signedIn.unread_by_friend], [1, { "1": 1 }]);
    const synced = await syncAll(fresh, 0);
    const shown = synced.find((u) => u.type === "chat_message" && u.message_id === hidden);
    assert.deepEqual([shown?.message_text, shown?.deleted_for_me], ["", true]);
    // the row itself is untouched
    const [row] = await t.db.sql`select message_text from messages where message_id = ${hidden}`;
    assert.equal(row!.message_text, "hide");
  });
});

Deno.test("POST /messages/delete deletes for everyone on a moderator's behalf and tells both users", async () => {
  await withServer(async (t) => {
    const alice = await t.connectAs(1);
    const bob = await t.connectAs(2);
    const id = idOf(await say(alice, 2, "spam"));
    await bob.next("chat_message");
    const post = (body: unknown, secret = "test-notify-secret") =>
      fetch(`${t.internalUrl}/messages/delete`, {
        method: "POST",
        headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    const bad = await post({ message_ids: [] });
    assert.equal(bad.status, 400);
    assert.ok(typeof (await bad.json()).error === "string");
    const wrong = await post({ message_ids: [id] }, "wrong");
    assert.equal(wrong.status, 401);
    await wrong.body?.cancel();
    const res = await post({ message_ids: [id, id, 999_999], reason: "spam" });
    assert.equal(res.status, 202);
    assert.deepEqual(await res.json(), { deleted: 1 });
    for (const client of [alice, bob]) {
      const frame = await client.next("message_updated");
      assert.equal((frame.message as Frame).message_text, "");
      assert.equal(typeof frame.seq, "number");
    }
    const again = await post({ message_ids: [id] });
    assert.deepEqual(await again.json(), { deleted: 0 });
  }, { NOTIFY_SECRET: "test-notify-secret" });
});

Deno.test("writes for conversations with no user in common do not wait for each other", async () => {
  await withServer(async (t) => {
    const alice = await t.connectAs(1);
    const bob = await t.connectAs(2);
    // The game backend inserts a message between 5 and 6 and keeps its transaction open.
    const holder = await t.db.sql.reserve();
    try {
      await holder`begin`;
      await holder`insert into messages (sender_user_id, recipient_user_id, message_text)
                   values (5, 6, 'held open')`;
      // alice → bob commits while the other transaction holds users 5 and 6.
      const sent = await within(5000, say(alice, 2, "not held up"), "an unrelated message");
      assert.equal((sent.data as Frame).message_text, "not held up");
      await bob.next("chat_message");
      const [open] = await t.db.sql`select count(*)::int as n from pg_stat_activity
                                    where state = 'idle in transaction'
                                      and datname = current_database()`;
      assert.ok(open!.n >= 1, "the other transaction was still open");
    } finally {
      await holder`rollback`;
      holder.release();
    }
  });
});

Deno.test("a message to a user another transaction holds waits in its own lane while everyone else's go on, and keeps its order", async () => {
  await withServer(async (t) => {
    const alice = await t.connectAs(1);
    const bob = await t.connectAs(2);
    const five = await t.connectAs(5);
    const six = await t.connectAs(6);
    const holder = await t.db.sql.reserve();
    let released = false;
    try {
      await holder`begin`;
      await holder`insert into messages (sender_user_id, recipient_user_id, message_text)
                   values (6, 5, 'held open')`;
      for (const n of [1, 2, 3]) {
        five.send({ type: "chat_message", recipient_user_id: 6, message_text: `wait ${n}` });
      }
      // Queued behind the held users, and after them: alice's messages are not.
      for (const n of [1, 2, 3]) {
        const sent = await within(5000, say(alice, 2, `go ${n}`), "a message of other users");
        assert.equal((sent.data as Frame).message_text, `go ${n}`);
      }
      assert.deepEqual(await five.drainFor(100, "message_sent"), [], "still waiting");
      await holder`commit`;
      released = true;
      const acks = [];
      for (let n = 0; n < 3; n++) acks.push(await five.next("message_sent"));
      assert.deepEqual(acks.map((a) => (a.data as Frame).message_text), [
        "wait 1",
        "wait 2",
        "wait 3",
      ]);
      // six: the game's row first (committed first), then five's three in order
      const updates = await syncAll(six, 0);
      assert.deepEqual(updates.map((u) => [u.seq, u.message_text]), [
        [1, "held open"],
        [2, "wait 1"],
        [3, "wait 2"],
        [4, "wait 3"],
      ]);
      await bob.next("chat_message");
    } finally {
      if (!released) await holder`rollback`;
      holder.release();
    }
  });
});

Deno.test("sync answers a bad after_seq with invalid_field and an unauthenticated one with not_authenticated", async () => {
  await withServer(async (t) => {
    const anon = await t.connect();
    anon.send({ type: "sync", after_seq: 0 });
    assert.equal((await anon.next("error")).code, "not_authenticated");
    const alice = await t.connectAs(1);
    for (const after of [-1, 1.5, "x"]) {
      alice.send({ type: "sync", after_seq: after });
      assert.equal((await alice.next("error")).code, "invalid_field");
    }
    alice.send({ type: "sync", after_seq: 0, limit: 501 });
    assert.equal((await alice.next("error")).code, "invalid_field");
    alice.send({ type: "sync", after_seq: 0 });
    assert.deepEqual(await alice.next("sync_result"), {
      type: "sync_result",
      updates: [],
      has_more: false,
      seq: 0,
    });
  });
});

Deno.test("the v1.1 sync after an id also returns a message with a smaller id that committed later", async () => {
  await withServer(async (t) => {
    const alice = await t.connectAs(1);
    const bob = await t.connectAs(2);
    await t.db.sql`select setval(pg_get_serial_sequence('messages', 'message_id'), 100)`;
    const seenLast = idOf(await say(alice, 2, "101"));
    await bob.next("chat_message");
    // An id drawn earlier whose row commits after 101's (here: the game backend's own id).
    await t.db
      .sql`insert into messages (message_id, sender_user_id, recipient_user_id, message_text)
                   values (50, 1, 2, 'late')`;
    const newer = idOf(await say(alice, 2, "102"));
    bob.send({ type: "sync", after_message_id: seenLast });
    const page = await bob.next("sync_result");
    assert.deepEqual((page.messages as Frame[]).map((m) => [m.message_id, m.message_text]), [
      [50, "late"],
      [newer, "102"],
    ]);
    assert.equal(page.has_more, false);
  });
});
