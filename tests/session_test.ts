/**
 * Sessions and their frame handlers in-process (tests/support/session_harness.ts):
 * what a client is answered, with no socket and no database. The same
 * behaviours over real sockets and Postgres are in chat_test, auth_test and
 * receipts_test.
 */

import assert from "node:assert/strict";
import { createLogger } from "../src/log.ts";
import { slowSubscribe } from "./support/cluster.ts";
import { type FakeSocket, SessionHarness } from "./support/session_harness.ts";
import { sleep } from "./support/wait.ts";

async function withHarness(
  fn: (h: SessionHarness) => Promise<void>,
  env?: Record<string, string>,
): Promise<void> {
  const h = await SessionHarness.start(env === undefined ? {} : { env });
  try {
    await fn(h);
  } finally {
    await h.close();
  }
}

Deno.test("a message to a friend is stored, delivered to the friend and acknowledged to the sender", () =>
  withHarness(async (h) => {
    h.repository.befriend(1, 2);
    const alice = await h.join(1);
    const bob = await h.join(2);
    alice.push({
      type: "chat_message",
      recipient_user_id: 2,
      message_text: "hi bob",
      client_message_id: "c1",
    });
    const sent = await alice.next("message_sent");
    const got = await bob.next("chat_message");
    assert.equal((sent.data as { message_id: number }).message_id, got.message_id);
    assert.equal(got.message_text, "hi bob");
    assert.equal(h.repository.messages.length, 1);
  }));

Deno.test("refusals carry their code and the frame's client_message_id, and store nothing", () =>
  withHarness(async (h) => {
    h.repository.befriend(1, 2);
    h.repository.addUser(3);
    h.repository.block(2, 1);
    const alice = await h.join(1);
    const cases: [Record<string, unknown>, string][] = [
      [{ recipient_user_id: 1 }, "invalid_recipient"],
      [{ recipient_user_id: 3 }, "not_friends"],
      [{ recipient_user_id: 2 }, "forbidden"],
    ];
    for (const [frame, code] of cases) {
      alice.push({ type: "chat_message", message_text: "x", client_message_id: code, ...frame });
      const error = await alice.next("error");
      assert.equal(error.code, code);
      assert.equal(error.client_message_id, code);
    }
    assert.equal(h.repository.messages.length, 0);
  }));

Deno.test("a database outage is answered unavailable with the client_message_id, for chat and catch-up alike", () =>
  withHarness(async (h) => {
    h.repository.befriend(1, 2);
    const alice = await h.join(1);
    h.repository.down = true;
    alice.push({
      type: "chat_message",
      recipient_user_id: 2,
      message_text: "x",
      client_message_id: "m",
    });
    const chat = await alice.next("error");
    assert.deepEqual([chat.code, chat.client_message_id], ["unavailable", "m"]);
    alice.push({ type: "sync", after_message_id: 0 });
    const sync = await alice.next("error");
    assert.deepEqual([sync.code, sync.client_message_id], ["unavailable", undefined]);
    alice.push({ type: "read", friend_user_id: 2, up_to_message_id: 1 });
    assert.equal((await alice.next("error")).code, "unavailable");
    assert.equal(alice.closed, undefined, "an outage does not close the session");
  }));

Deno.test("frames that need authentication are refused not_authenticated before it", () =>
  withHarness(async (h) => {
    const socket = h.connect();
    socket.push({
      type: "chat_message",
      recipient_user_id: 2,
      message_text: "x",
      client_message_id: "a",
    });
    const error = await socket.next("error");
    assert.deepEqual([error.code, error.client_message_id], ["not_authenticated", "a"]);
    socket.push({ type: "ping" });
    assert.equal((await socket.next()).type, "pong");
  }));

Deno.test("a second authenticate is refused already_authenticated; a bad token is auth_error", () =>
  withHarness(async (h) => {
    const alice = await h.join(1);
    alice.push({ type: "authenticate", auth_token: await h.token(1) });
    assert.equal((await alice.next("error")).code, "already_authenticated");
    const other = h.connect();
    other.push({ type: "authenticate", auth_token: "1:123:deadbeef" });
    assert.equal((await other.next()).type, "auth_error");
  }));

Deno.test("a chat burst over the rate is refused rate_limited per message, in order", () =>
  withHarness(async (h) => {
    h.repository.befriend(1, 2);
    const alice = await h.join(1);
    for (let i = 0; i < 4; i++) {
      alice.push({
        type: "chat_message",
        recipient_user_id: 2,
        message_text: `m${i}`,
        client_message_id: `c${i}`,
      });
    }
    const answers = [];
    for (let i = 0; i < 4; i++) {
      const frame = await alice.next();
      answers.push(
        frame.type === "error" ? `${frame.code}:${frame.client_message_id}` : frame.type,
      );
    }
    assert.deepEqual(answers, [
      "message_sent",
      "message_sent",
      "rate_limited:c2",
      "rate_limited:c3",
    ]);
    assert.equal(h.repository.messages.length, 2);
  }, { CHAT_RATE_BURST: "2", CHAT_RATE_PER_S: "0.01" }));

Deno.test("read of one's own id is refused; a read receipt reaches the friend", () =>
  withHarness(async (h) => {
    h.repository.befriend(1, 2);
    const alice = await h.join(1);
    const bob = await h.join(2);
    alice.push({ type: "chat_message", recipient_user_id: 2, message_text: "x" });
    const data = (await alice.next("message_sent")).data as { message_id: number };
    bob.push({ type: "read", friend_user_id: 2, up_to_message_id: data.message_id });
    assert.equal((await bob.next("error")).code, "invalid_field");
    bob.push({ type: "read", friend_user_id: 1, up_to_message_id: data.message_id });
    const receipt = await alice.next("read");
    assert.deepEqual([receipt.user_id, receipt.up_to_message_id], [2, data.message_id]);
  }));

/**
 * Runs `body` while every `sync` of the memory repository waits for
 * `release()` (counted in `started`); all are let through at the end, so a
 * failed assertion cannot leave a session waiting forever.
 */
async function holdingSyncs(
  h: SessionHarness,
  body: (syncs: { readonly started: number; release(): void }) => Promise<void>,
): Promise<void> {
  const held: (() => void)[] = [];
  const original = h.repository.messagesAfter.bind(h.repository);
  let started = 0;
  let holding = true;
  h.repository.messagesAfter = async (...args) => {
    started++;
    if (holding) await new Promise<void>((resolve) => held.push(resolve));
    return original(...args);
  };
  const release = () => {
    for (const resume of held.splice(0)) resume();
  };
  try {
    await body({
      get started() {
        return started;
      },
      release,
    });
  } finally {
    holding = false;
    release();
  }
}

Deno.test("a user's database frames beyond 2 in flight and 2 waiting are refused rate_limited at once, from any socket", () =>
  withHarness(async (h) => {
    const sockets: FakeSocket[] = [];
    for (let i = 0; i < 6; i++) sockets.push(await h.join(1));
    await holdingSyncs(h, async (syncs) => {
      for (const socket of sockets) socket.push({ type: "sync", after_message_id: 0 });
      for (const socket of sockets.slice(4)) {
        const error = await socket.next("error");
        assert.deepEqual([error.code, error.message], [
          "rate_limited",
          "Too many requests in progress, slow down",
        ]);
      }
      assert.equal(syncs.started, 2, "two run; two wait without touching the database");
      for (const socket of sockets.slice(0, 4)) assert.deepEqual(await socket.unread(), []);
      syncs.release();
      await sockets[0]!.next("sync_result");
      await sockets[1]!.next("sync_result");
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(syncs.started, 4, "the waiting two ran once slots were free");
      syncs.release();
      await sockets[2]!.next("sync_result");
      await sockets[3]!.next("sync_result");
    });
    assert.equal(h.context.userWork.users, 0, "nothing is kept for a user with no work");
    // Another user is not held up by user 1's share.
    const bob = await h.join(2);
    bob.push({ type: "read", friend_user_id: 1, up_to_message_id: 1 });
    bob.push({ type: "ping" });
    assert.equal((await bob.next()).type, "pong");
  }, { MAX_DB_FRAMES_PER_USER: "2", MAX_QUEUED_DB_FRAMES_PER_USER: "2" }));

Deno.test("a user's sync and history pages past CATCH_UP_BYTES_PER_S wait until the allowance has refilled; nothing is refused and others are not held", async () => {
  let clock = 0;
  const h = await SessionHarness.start({
    env: { CATCH_UP_BYTES_PER_S: "1024", PAGE_MAX_BYTES: "1024" },
    monotonic: () => clock,
  });
  try {
    h.repository.addUser(1);
    h.repository.addUser(2);
    h.repository.befriend(1, 2);
    await h.repository.storeMessage({
      senderUserId: 2,
      recipientUserId: 1,
      messageText: "x".repeat(1000),
      clientMessageId: undefined,
    });
    const alice = await h.join(1);
    // Four pages of one 1,000-character message: past the allowance of 4 s × 1 KiB.
    for (let i = 0; i < 4; i++) {
      alice.push({ type: "sync", after_message_id: 0, limit: 1 });
      assert.equal((await alice.next("sync_result")).has_more, false);
    }
    alice.push({ type: "history", friend_user_id: 2, limit: 1 });
    const pages = async () => (await alice.unread()).filter((f) => f.type === "history_result");
    assert.deepEqual(await pages(), [], "the page waits while the allowance is owed");
    const bob = await h.join(2);
    bob.push({ type: "sync", after_message_id: 0, limit: 1 });
    assert.equal((await bob.next("sync_result")).type, "sync_result", "another user's is not");
    assert.deepEqual(await pages(), [], "still owed: the clock has not moved");
    clock += 1000; // a second: 1 KiB more, what the four pages owed beyond 4 KiB
    const page = await alice.next("history_result");
    assert.equal((page.messages as unknown[]).length, 1);
    assert.equal(alice.sent.filter((f) => f.type === "error").length, 0, "nothing was refused");
  } finally {
    await h.close();
  }
});

Deno.test("frames a connection sends beyond MAX_QUEUED_FRAMES unhandled are refused rate_limited at once, not queued", () =>
  withHarness(async (h) => {
    const alice = await h.join(1);
    alice.push({ type: "ping" });
    // authenticate and the ping answered and off the queue
    assert.deepEqual((await alice.unread()).map((f) => f.type), ["pong"]);
    await holdingSyncs(h, async (syncs) => {
      alice.push({ type: "sync", after_message_id: 0 }); // handled, held
      for (let i = 0; i < 10; i++) alice.push({ type: "ping" });
      const refused = (await alice.unread()).map((f) => `${f.type}:${f.code}:${f.message}`);
      assert.deepEqual(
        refused,
        Array(3).fill("error:rate_limited:Too many frames waiting, slow down"),
        "the sync and 7 pings fill the queue of 8; 3 pings are refused",
      );
      syncs.release();
      assert.equal((await alice.next()).type, "sync_result");
      for (let i = 0; i < 7; i++) assert.equal((await alice.next()).type, "pong");
    });
    alice.push({ type: "ping" });
    assert.equal((await alice.next()).type, "pong", "room again once handled");
  }, { MAX_QUEUED_FRAMES: "8" }));

Deno.test("a client that stops reading is closed as a slow consumer instead of being sent a frame that would take its queue past SEND_BUFFER_MAX_BYTES", () =>
  withHarness(async (h) => {
    const max = 64 * 1024;
    h.repository.befriend(1, 2);
    const escaped = "\u0001".repeat(1000); // 6 bytes a character once JSON-escaped
    for (let i = 0; i < 20; i++) {
      await h.repository.storeMessage({
        senderUserId: 2,
        recipientUserId: 1,
        messageText: escaped,
        clientMessageId: undefined,
      });
    }
    const alice = await h.join(1);
    const bob = await h.join(2);
    alice.stopReading();
    for (let i = 0; i < 5; i++) {
      bob.push({ type: "chat_message", recipient_user_id: 1, message_text: escaped });
      await alice.next("chat_message");
    }
    const queued = alice.bufferedAmount;
    assert.ok(queued > 0 && queued < max / 2, `${queued} bytes queued before the sync`);
    // One page of up to PAGE_MAX_BYTES: more than the room left in the queue.
    alice.push({ type: "sync", after_message_id: 0, limit: 500 });
    for (let i = 0; i < 100 && alice.closed === undefined; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(alice.closed?.code, 1013, "closed as a slow consumer");
    assert.equal(alice.closed?.reason, "slow consumer");
    assert.match(await h.metrics.render(), /chat_slow_consumer_closes_total 1\b/);
    assert.ok(alice.peakBuffered <= max, `${alice.peakBuffered} bytes queued, the cap is ${max}`);
    assert.deepEqual(
      alice.sent.filter((f) => f.type === "sync_result"),
      [],
      "the page was not queued",
    );
  }, {
    SEND_BUFFER_MAX_BYTES: String(64 * 1024),
    SEND_BUFFER_SHED_BYTES: String(16 * 1024),
    PAGE_MAX_BYTES: String(64 * 1024),
  }));

Deno.test("frames routed to a session while it joins are held up to SEND_BUFFER_MAX_BYTES; one more closes it as a slow consumer", async () => {
  const max = 64 * 1024;
  const h = await SessionHarness.start({
    env: {
      SEND_BUFFER_MAX_BYTES: String(max),
      SEND_BUFFER_SHED_BYTES: String(16 * 1024),
      PAGE_MAX_BYTES: String(max),
    },
    wrapBus: (bus) => slowSubscribe(bus, 500), // a join that takes half a second
  });
  try {
    h.repository.befriend(1, 2);
    h.repository.addUser(1);
    const bob = await h.join(2);
    const alice = h.connect();
    alice.push({ type: "authenticate", auth_token: await h.token(1) });
    for (let i = 0; i < 100 && h.hub.connectionCount < 2; i++) await sleep(5);
    assert.equal(h.hub.connectionCount, 2, "alice is joining");
    const escaped = "\u0001".repeat(1000); // a chat_message of about 6 KiB
    for (let i = 0; i < 20; i++) {
      bob.push({ type: "chat_message", recipient_user_id: 1, message_text: escaped });
      await bob.next("message_sent");
    }
    for (let i = 0; i < 200 && alice.closed === undefined; i++) await sleep(10);
    assert.deepEqual(alice.closed, { code: 1013, reason: "slow consumer" });
    assert.deepEqual(alice.sent.map((f) => f.type), [], "nothing held reached the socket");
    assert.match(await h.metrics.render(), /chat_slow_consumer_closes_total 1\b/);
  } finally {
    await h.close();
  }
});

Deno.test("authenticated carries the connection's limits as configured", () =>
  withHarness(async (h) => {
    const alice = h.connect();
    h.repository.addUser(1);
    alice.push({ type: "authenticate", auth_token: await h.token(1) });
    assert.deepEqual((await alice.next("authenticated")).limits, {
      chat_per_s: 2.5,
      chat_burst: 7,
      frames_per_s: 30,
      max_message_chars: 500,
    });
  }, {
    CHAT_RATE_PER_S: "2.5",
    CHAT_RATE_BURST: "7",
    FRAME_RATE_PER_S: "30",
    MAX_MESSAGE_CHARS: "500",
  }));

Deno.test("rate_limited says in retry_after_ms when the next message is accepted, and it is", () =>
  withHarness(async (h) => {
    h.repository.befriend(1, 2);
    const alice = await h.join(1);
    const chat = (id: string) => ({
      type: "chat_message",
      recipient_user_id: 2,
      message_text: id,
      client_message_id: id,
    });
    alice.push(chat("a"));
    assert.equal((await alice.next()).type, "message_sent");
    alice.push(chat("b"));
    const refused = await alice.next();
    assert.equal(refused.code, "rate_limited");
    assert.equal(refused.client_message_id, "b");
    // One token every 400 ms, just spent: the next one is at most 400 ms away.
    const wait = refused.retry_after_ms as number;
    assert.ok(Number.isInteger(wait) && wait > 0 && wait <= 400, `retry_after_ms ${wait}`);
    await new Promise((resolve) => setTimeout(resolve, wait));
    alice.push(chat("b"));
    assert.equal((await alice.next()).type, "message_sent");
    assert.equal(h.repository.messages.length, 2);
  }, { CHAT_RATE_BURST: "1", CHAT_RATE_PER_S: "2.5" }));

Deno.test("a frame over the frame rate is refused rate_limited with retry_after_ms", () =>
  withHarness(async (h) => {
    const alice = await h.join(1);
    for (let i = 0; i < 3; i++) alice.push({ type: "ping" });
    const answers = [await alice.next(), await alice.next(), await alice.next()];
    const refused = answers.find((frame) => frame.type === "error")!;
    assert.equal(refused.code, "rate_limited");
    const wait = refused.retry_after_ms as number;
    assert.ok(Number.isInteger(wait) && wait > 0 && wait <= 500, `retry_after_ms ${wait}`);
  }, { FRAME_RATE_PER_S: "2" }));

Deno.test("refused sign-ins are logged with the client's address, never the token", async () => {
  const lines: string[] = [];
  const logger = createLogger("info", (line) => lines.push(line));
  const h = await SessionHarness.start({ logger });
  try {
    const socket = h.connect("198.51.100.23");
    const token = "1:1764612000:" + "ab".repeat(32);
    socket.push({ type: "authenticate", auth_token: token });
    assert.equal((await socket.next()).type, "auth_error");
    const failed = lines.map((line) => JSON.parse(line)).filter((l) => l.event === "auth_failed");
    assert.equal(failed.length, 1, lines.join("\n"));
    assert.equal(failed[0].client_ip, "198.51.100.23");
    assert.ok(!lines.some((line) => line.includes("abab")), "no token in the log");
  } finally {
    await h.close();
  }
});
