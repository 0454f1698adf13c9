/**
 * Chat end to end: real server, real Postgres, real WebSocket clients.
 * Each test has its own database; user ids are local to it.
 */

import assert from "node:assert/strict";
import { countMessages } from "./support/db.ts";
import {
  type MemoryTestServer,
  startMemoryServer,
  type TestServer,
  TRANSPORTS,
  withTestServer,
} from "./support/server.ts";
import { sleep } from "./support/wait.ts";
import { withoutLastSeen } from "./support/client.ts";

/**
 * Runs `body` against a fresh server with users 1..4, 1–2 and 1–3 friends,
 * once per transport: everything above the transport is the same code.
 */
function chatTest(name: string, body: (t: TestServer) => Promise<void>) {
  for (const [transportName, transport] of Object.entries(TRANSPORTS)) {
    Deno.test(
      `${name} [${transportName}]`,
      () => withTestServer({ transport, users: [1, 2, 3, 4], friends: [[1, 2], [3, 1]] }, body),
    );
  }
}

/**
 * The same, for behaviour that needs no database: the server runs on the
 * in-memory repository, seeded alike.
 */
function socketTest(name: string, body: (t: MemoryTestServer) => Promise<void>) {
  for (const [transportName, transport] of Object.entries(TRANSPORTS)) {
    Deno.test(`${name} [${transportName}]`, async () => {
      const t = await startMemoryServer({
        transport,
        users: [1, 2, 3, 4],
        friends: [[1, 2], [3, 1]],
      });
      try {
        await body(t);
      } finally {
        await t.close();
      }
    });
  }
}

chatTest(
  "a message between friends reaches the recipient and is acknowledged after it is stored",
  async (t) => {
    const alice = await t.connectAs(1);
    const bob = await t.connectAs(2);
    alice.send({
      type: "chat_message",
      recipient_user_id: 2,
      message_text: "  hello bob  ",
      client_message_id: "c1",
    });
    const sent = await alice.next("message_sent");
    const received = await bob.next("chat_message");
    const data = sent.data as Record<string, unknown>;
    assert.equal(data.message_text, "hello bob");
    assert.equal(data.sender_user_id, 1);
    assert.equal(data.recipient_user_id, 2);
    assert.equal(data.client_message_id, "c1");
    assert.match(String(data.sent_at), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.deepEqual(received, { type: "chat_message", ...data, seq: 1 });
    assert.equal(sent.seq, 1, "the message is update 1 of alice's sequence");
    const rows = await t.db
      .sql`select message_id, sender_user_id, recipient_user_id, message_text, is_read
                               from messages`;
    assert.equal(rows.length, 1);
    assert.equal(Number(rows[0]!.message_id), data.message_id);
    assert.equal(rows[0]!.message_text, "hello bob");
    assert.equal(rows[0]!.is_read, false);
  },
);

chatTest("a recipient id given as a decimal string is accepted", async (t) => {
  const alice = await t.connectAs(1);
  const bob = await t.connectAs(2);
  alice.send({ type: "chat_message", recipient_user_id: "2", message_text: "hi" });
  const sent = await alice.next("message_sent");
  assert.equal((sent.data as Record<string, unknown>).recipient_user_id, 2);
  assert.equal("client_message_id" in (sent.data as object), false);
  await bob.next("chat_message");
});

chatTest(
  "every device of the recipient and the sender's other devices get the message",
  async (t) => {
    const alicePhone = await t.connectAs(1);
    const aliceLaptop = await t.connectAs(1);
    const bobPhone = await t.connectAs(2);
    const bobLaptop = await t.connectAs(2);
    const carol = await t.connectAs(3);
    alicePhone.send({ type: "chat_message", recipient_user_id: 2, message_text: "sync me" });
    await alicePhone.next("message_sent");
    for (const client of [aliceLaptop, bobPhone, bobLaptop]) {
      assert.equal((await client.next("chat_message")).message_text, "sync me");
    }
    assert.deepEqual(await alicePhone.drainFor(100, "chat_message"), []);
    assert.deepEqual(await carol.drainFor(0, "chat_message"), []);
  },
);

chatTest("text is stored byte-exact, never HTML-escaped", async (t) => {
  const alice = await t.connectAs(1);
  const text = `<script>alert("x")</script>'; drop table messages; -- 🐉 e\u0301`;
  alice.send({ type: "chat_message", recipient_user_id: 2, message_text: text });
  assert.equal(
    ((await alice.next("message_sent")).data as Record<string, unknown>).message_text,
    text,
  );
  const [row] = await t.db.sql`select message_text from messages`;
  assert.equal(row!.message_text, text);
});

chatTest(
  "a retry with the same client_message_id is answered with the original row and not delivered again",
  async (t) => {
    const alice = await t.connectAs(1);
    const bob = await t.connectAs(2);
    alice.send({
      type: "chat_message",
      recipient_user_id: 2,
      message_text: "once",
      client_message_id: "retry-1",
    });
    const first = await alice.next("message_sent");
    await bob.next("chat_message");
    alice.send({
      type: "chat_message",
      recipient_user_id: 2,
      message_text: "once",
      client_message_id: "retry-1",
    });
    const second = await alice.next("message_sent");
    assert.deepEqual(second, first);
    assert.deepEqual(await bob.drainFor(150, "chat_message"), []);
    assert.equal(await countMessages(t.db.sql), 1);
  },
);

chatTest("retries sent together in one batch still store one row", async (t) => {
  const alice = await t.connectAs(1);
  for (let i = 0; i < 5; i++) {
    alice.send({
      type: "chat_message",
      recipient_user_id: 2,
      message_text: "the same text",
      client_message_id: "same",
    });
  }
  const acks = [];
  for (let i = 0; i < 5; i++) acks.push(await alice.next("message_sent"));
  const ids = new Set(acks.map((a) => (a.data as Record<string, unknown>).message_id));
  assert.equal(ids.size, 1);
  assert.equal(await countMessages(t.db.sql), 1);
});

chatTest("messages from one connection are stored and delivered in the order sent", async (t) => {
  const alice = await t.connectAs(1);
  const bob = await t.connectAs(2);
  for (let i = 0; i < 15; i++) {
    alice.send({ type: "chat_message", recipient_user_id: 2, message_text: `n${i}` });
  }
  const got = [];
  for (let i = 0; i < 15; i++) got.push((await bob.next("chat_message")).message_text);
  assert.deepEqual(got, Array.from({ length: 15 }, (_, i) => `n${i}`));
  const rows = await t.db.sql`select message_text from messages order by message_id`;
  assert.deepEqual(rows.map((r) => r.message_text), got);
});

chatTest("the checks answer in the documented order with their codes", async (t) => {
  const anon = await t.connect();
  anon.send({ type: "chat_message", client_message_id: "x" });
  assert.deepEqual(await anon.next("error"), {
    type: "error",
    code: "not_authenticated",
    message: "Not authenticated",
    client_message_id: "x",
  });
  const alice = await t.connectAs(1);
  const cases: [Record<string, unknown>, string, string?][] = [
    [{ message_text: "hi" }, "missing_fields", "Missing required fields"],
    [{ recipient_user_id: 2 }, "missing_fields"],
    [{ recipient_user_id: 0, message_text: "hi" }, "invalid_field"],
    [{ recipient_user_id: -1, message_text: "hi" }, "invalid_field"],
    [{ recipient_user_id: 5.5, message_text: "hi" }, "invalid_field"],
    [{ recipient_user_id: "12a", message_text: "hi" }, "invalid_field"],
    [{ recipient_user_id: 2 ** 53 + 1, message_text: "hi" }, "invalid_field"],
    [{ recipient_user_id: 2, message_text: 42 }, "invalid_field"],
    [{ recipient_user_id: 2, message_text: "hi", client_message_id: "" }, "invalid_field"],
    [
      { recipient_user_id: 2, message_text: "hi", client_message_id: "x".repeat(65) },
      "invalid_field",
    ],
    [{ recipient_user_id: 2, message_text: "   " }, "message_empty"],
    [{ recipient_user_id: 2, message_text: "x".repeat(1001) }, "message_too_long"],
    [{ recipient_user_id: 1, message_text: "me" }, "invalid_recipient"],
    [
      { recipient_user_id: 4, message_text: "stranger" },
      "not_friends",
      "You can only message friends",
    ],
  ];
  for (const [fields, code, message] of cases) {
    alice.send({ type: "chat_message", ...fields });
    const error = await alice.next("error");
    assert.equal(error.code, code, JSON.stringify(fields));
    if (message !== undefined) assert.equal(error.message, message);
  }
  alice.send({ type: "chat_message", recipient_user_id: 2, message_text: "🐉".repeat(1000) });
  await alice.next("message_sent");
  assert.equal(await countMessages(t.db.sql), 1);
});

chatTest("pending and declined friendships do not allow messages", async (t) => {
  await t.db.seed({ users: [5, 6], friends: [[1, 5, "pending"], [6, 1, "declined"]] });
  const alice = await t.connectAs(1);
  for (const recipient of [5, 6]) {
    alice.send({ type: "chat_message", recipient_user_id: recipient, message_text: "hi" });
    assert.equal((await alice.next("error")).code, "not_friends");
  }
});

chatTest(
  "a recipient who blocked the sender is answered forbidden and receives nothing",
  async (t) => {
    await t.db.block(2, 1);
    const alice = await t.connectAs(1);
    const bob = await t.connectAs(2);
    alice.send({
      type: "chat_message",
      recipient_user_id: 2,
      message_text: "hi",
      client_message_id: "b",
    });
    assert.deepEqual(await alice.next("error"), {
      type: "error",
      code: "forbidden",
      message: "Cannot send message to this user",
      client_message_id: "b",
    });
    alice.send({ type: "typing", recipient_user_id: 2 });
    assert.equal((await alice.next("error")).code, "forbidden");
    assert.deepEqual(await bob.drainFor(100), []);
  },
);

chatTest("a friendship made in the database takes effect within five seconds", async (t) => {
  const alice = await t.connectAs(1);
  alice.send({ type: "chat_message", recipient_user_id: 4, message_text: "hi" });
  assert.equal((await alice.next("error")).code, "not_friends");
  await t.db.befriend(4, 1);
  const deadline = Date.now() + 5500;
  while (true) {
    alice.send({ type: "chat_message", recipient_user_id: 4, message_text: "hi" });
    const answer = await alice.next();
    if (answer.type === "message_sent") break;
    assert.ok(Date.now() < deadline, "friendship not seen within 5 s");
    await sleep(250);
  }
});

chatTest("typing reaches every device of a friend and nothing is stored", async (t) => {
  const alice = await t.connectAs(1);
  const bob1 = await t.connectAs(2);
  const bob2 = await t.connectAs(2);
  alice.send({ type: "typing", recipient_user_id: 2 });
  alice.send({ type: "typing", recipient_user_id: "2", is_typing: false });
  for (const bob of [bob1, bob2]) {
    assert.deepEqual(await bob.next("typing"), { type: "typing", user_id: 1, is_typing: true });
    assert.deepEqual(await bob.next("typing"), { type: "typing", user_id: 1, is_typing: false });
  }
  alice.send({ type: "typing", recipient_user_id: 4 });
  assert.equal((await alice.next("error")).code, "not_friends");
  alice.send({ type: "typing", recipient_user_id: 2, is_typing: "yes" });
  assert.equal((await alice.next("error")).code, "invalid_field");
  alice.send({ type: "typing" });
  assert.equal((await alice.next("error")).code, "missing_fields");
  alice.send({ type: "typing", recipient_user_id: 1 });
  assert.equal((await alice.next("error")).code, "invalid_recipient");
  assert.equal(await countMessages(t.db.sql), 0);
});

socketTest(
  "presence: friends see a user come online with the first device and go offline with the last",
  async (t) => {
    const bob = await t.connectAs(2);
    const carol = await t.connectAs(3);
    const stranger = await t.connectAs(4);
    const alice1 = await t.connect();
    alice1.send({ type: "authenticate", auth_token: await t.token(1) });
    const authenticated = await alice1.next("authenticated");
    assert.equal(authenticated.user_id, 1);
    assert.deepEqual([...(authenticated.online_friends as number[])].sort(), [2, 3]);
    for (const friend of [bob, carol]) {
      assert.deepEqual(await friend.next("presence"), {
        type: "presence",
        user_id: 1,
        status: "online",
      });
    }
    const alice2 = await t.connectAs(1);
    await alice1.close();
    assert.deepEqual(await bob.drainFor(150, "presence"), []);
    await alice2.close();
    assert.deepEqual(withoutLastSeen(await bob.next("presence")), {
      type: "presence",
      user_id: 1,
      status: "offline",
    });
    assert.deepEqual(withoutLastSeen(await carol.next("presence")), {
      type: "presence",
      user_id: 1,
      status: "offline",
    });
    assert.deepEqual(await stranger.drainFor(0, "presence"), []);
  },
);

socketTest("ping is answered with pong before and after authentication", async (t) => {
  const anon = await t.connect("/");
  anon.send({ type: "ping" });
  assert.deepEqual(await anon.next(), { type: "pong" });
  const alice = await t.connectAs(1);
  alice.send({ type: "ping" });
  assert.deepEqual(await alice.next(), { type: "pong" });
});

socketTest(
  "frames that are not JSON objects with a string type get invalid_frame or invalid_json",
  async (t) => {
    const client = await t.connect();
    const cases: [string, string][] = [
      ["{", "invalid_json"],
      ["hello", "invalid_json"],
      ["null", "invalid_frame"],
      ["[]", "invalid_frame"],
      ["42", "invalid_frame"],
      ['"text"', "invalid_frame"],
      ["{}", "invalid_frame"],
      ['{"type":5}', "invalid_frame"],
      ['{"type":"launch_missiles"}', "unknown_type"],
      ['{"type":"__proto__"}', "unknown_type"],
    ];
    for (const [text, code] of cases) {
      client.send(text);
      const error = await client.next("error");
      assert.equal(error.code, code, text);
      if (code !== "unknown_type") assert.equal(error.message, "Invalid message format");
    }
    client.ws.send(new Uint8Array([1, 2, 3]));
    assert.equal((await client.next("error")).code, "invalid_frame");
  },
);

chatTest(
  "a block refuses both directions: neither the blocker nor the blocked can write (PROTOCOL check 7)",
  async (t) => {
    await t.db.block(1, 2);
    const alice = await t.connectAs(1);
    const bob = await t.connectAs(2);
    alice.send({ type: "chat_message", recipient_user_id: 2, message_text: "from the blocker" });
    assert.equal((await alice.next("error")).code, "forbidden");
    bob.send({ type: "chat_message", recipient_user_id: 1, message_text: "to the blocker" });
    assert.equal((await bob.next("error")).code, "forbidden");
    assert.equal(await countMessages(t.db.sql), 0);
  },
);

chatTest(
  "a client_message_id reused for another recipient or text is invalid_field and stores nothing",
  async (t) => {
    const alice = await t.connectAs(1);
    const bob = await t.connectAs(2);
    const carol = await t.connectAs(3);
    const frame = { type: "chat_message", client_message_id: "once-only" };
    alice.send({ ...frame, recipient_user_id: 2, message_text: "first" });
    await alice.next("message_sent");
    await bob.next("chat_message");
    for (const [to, text] of [[3, "first"], [2, "other text"]] as const) {
      alice.send({ ...frame, recipient_user_id: to, message_text: text });
      assert.deepEqual(await alice.next(["error", "message_sent"]), {
        type: "error",
        code: "invalid_field",
        message: "client_message_id was already used for another message",
        client_message_id: "once-only",
      });
    }
    assert.deepEqual(await bob.drainFor(200, "chat_message"), []);
    assert.deepEqual(await carol.drainFor(0, "chat_message"), []);
    assert.equal(await countMessages(t.db.sql), 1);
  },
);
