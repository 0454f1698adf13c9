/**
 * @module client_sync_test
 * The SDK's v1.1 behaviour (catch-up, history, unread, receipts, session lifetime, visible
 * token failures) against an in-process server speaking docs/protocol.md, run twice: as
 * client/chat_client.ts and as the JavaScript the demo page embeds.
 */

import assert from "node:assert/strict";
import * as typedSdk from "../client/chat_client.ts";
import type { ChatClient, ChatClientEvents, ChatClientOptions } from "../client/chat_client.ts";
import { CLIENT_JS } from "../src/demo_page/page.ts";
import { type FakeChatServer, startFakeChatServer } from "./support/fake_chat_server.ts";
import { eventually, sleep } from "./support/wait.ts";

type Sdk = typeof typedSdk;
const embeddedSdk: Sdk = await import(`data:text/javascript,${encodeURIComponent(CLIENT_JS)}`);

function sdkSuite(variant: string, sdk: Sdk): void {
  /** A client for `userId` on `fake` that records the events a game would render. */
  function clientFor(
    fake: FakeChatServer,
    userId: number,
    options: Partial<ChatClientOptions> = {},
  ) {
    const seen = {
      texts: [] as string[],
      unread: [] as ChatClientEvents["unread"][],
      synced: [] as ChatClientEvents["synced"][],
      errors: [] as ChatClientEvents["error"][],
      authenticated: 0,
      tokens: 0,
    };
    const client: ChatClient = new sdk.ChatClient({
      url: fake.url,
      getToken: () => (seen.tokens++, Promise.resolve(fake.token(userId))),
      reconnectBaseMs: 20,
      reconnectCapMs: 100,
      pingIntervalMs: 0,
      ...options,
    });
    client.on("chat_message", (m) => seen.texts.push(m.message_text));
    client.on("unread", (u) => seen.unread.push(u));
    client.on("synced", (s) => seen.synced.push(s));
    client.on("error", (e) => seen.errors.push(e));
    client.on("authenticated", () => seen.authenticated++);
    return { client, seen };
  }

  function fakeTest(name: string, body: (fake: FakeChatServer) => Promise<void>) {
    Deno.test(`${name} (${variant})`, async () => {
      const fake = startFakeChatServer();
      try {
        await body(fake);
      } finally {
        await fake.close();
      }
    });
  }

  fakeTest(
    "a client offline while three messages arrive gets exactly those three, in order, once",
    async (fake) => {
      const { client, seen } = clientFor(fake, 1);
      client.connect();
      await client.once("synced");
      fake.store(2, 1, "live before the drop");
      await eventually("live message", () => seen.texts.length === 1);
      for (const text of ["one", "two", "three"]) fake.store(2, 1, text, { live: false });
      fake.cut(1);
      await eventually("second catch-up", () => seen.synced.length === 2);
      assert.deepEqual(seen.texts, ["live before the drop", "one", "two", "three"]);
      assert.equal(seen.synced[1]!.count, 3);
      assert.equal(client.lastMessageId, 4);
      const syncs = fake.received.filter((r) => r.frame.type === "sync").map((r) => r.frame);
      assert.deepEqual(syncs, [{ type: "sync", after_message_id: 1, limit: 100 }]);
      await client.close();
    },
  );

  fakeTest(
    "catch-up pages with has_more until the last page, without gaps or duplicates",
    async (fake) => {
      for (let i = 1; i <= 5; i++) {
        fake.store(i % 2 ? 2 : 1, i % 2 ? 1 : 2, `m${i}`, {
          live: false,
        });
      }
      const { client, seen } = clientFor(fake, 1, { lastMessageId: 0, syncPageSize: 2 });
      client.connect();
      await client.once("synced");
      assert.deepEqual(seen.texts, ["m1", "m2", "m3", "m4", "m5"]);
      const afters = fake.received.filter((r) => r.frame.type === "sync").map((r) =>
        r.frame.after_message_id
      );
      assert.deepEqual(afters, [0, 2, 4]);
      await client.close();
    },
  );

  fakeTest(
    "a live message that arrives during catch-up is emitted once, after it, in id order",
    async (fake) => {
      const { client, seen } = clientFor(fake, 1);
      client.connect();
      await client.once("synced");
      fake.store(2, 1, "missed", { live: false });
      fake.beforeNextSync(() => fake.store(2, 1, "during catch-up"));
      fake.cut(1);
      await eventually("catch-up", () => seen.synced.length === 2);
      await sleep(50);
      assert.deepEqual(seen.texts, ["missed", "during catch-up"]);
      await client.close();
    },
  );

  fakeTest(
    "a refused catch-up page is an error event and a reconnect, then nothing is missed",
    async (fake) => {
      const { client, seen } = clientFor(fake, 1, { lastMessageId: 0 });
      fake.store(2, 1, "waiting", { live: false });
      fake.refuseNext("sync", "unavailable");
      client.connect();
      await eventually("catch-up after the refusal", () => seen.synced.length === 1);
      assert.deepEqual(seen.errors.map((e) => e.code), ["unavailable", "sync_failed"]);
      assert.equal(seen.authenticated, 2);
      assert.deepEqual(seen.texts, ["waiting"]);
      await client.close();
    },
  );

  fakeTest(
    "an own message whose ack was lost is acknowledged from the catch-up, not emitted",
    async (fake) => {
      const { client, seen } = clientFor(fake, 1);
      client.connect();
      await client.once("synced");
      fake.cutBeforeNextAck(1);
      const sent = await client.send(2, "mine", { clientMessageId: "own-1" });
      assert.equal(sent.message_id, 1);
      assert.equal(sent.client_message_id, "own-1");
      assert.equal(fake.messages.length, 1, "stored once");
      assert.deepEqual(seen.texts, []);
      await client.close();
    },
  );

  fakeTest(
    "the backend's {type, message} push is a backend_chat_message and leaves catch-up alone",
    async (fake) => {
      const { client, seen } = clientFor(fake, 1);
      const pushes: ChatClientEvents["backend_chat_message"][] = [];
      client.on("backend_chat_message", (f) => pushes.push(f));
      client.connect();
      await client.once("synced");
      fake.store(2, 1, "stored", { live: false });
      const push = {
        type: "chat_message",
        message: {
          message_id: 9000,
          sender_user_id: 2,
          recipient_user_id: 1,
          message_content: "x",
        },
      };
      fake.push(1, push);
      await eventually("push emitted", () => pushes.length === 1);
      assert.deepEqual(pushes[0], push);
      assert.deepEqual(seen.texts, [], "not a chat_message event");
      fake.cut(1);
      await eventually("catch-up after the drop", () => seen.synced.length === 2);
      assert.deepEqual(seen.texts, ["stored"]);
      const syncs = fake.received.filter((r) => r.frame.type === "sync").map((r) => r.frame);
      assert.deepEqual(syncs, [{ type: "sync", after_message_id: 0, limit: 100 }]);
      await client.close();
    },
  );

  fakeTest(
    "history() returns pages newest first; scrolling back uses the smallest id",
    async (fake) => {
      for (let i = 1; i <= 5; i++) {
        fake.store(i % 2 ? 2 : 1, i % 2 ? 1 : 2, `h${i}`, {
          live: false,
        });
      }
      fake.store(3, 1, "other conversation", { live: false });
      const { client } = clientFor(fake, 1);
      const first = client.history(2, undefined, 3); // asked before the connection is open
      client.connect();
      const page = await first;
      assert.deepEqual(page.messages.map((m) => m.message_text), ["h5", "h4", "h3"]);
      assert.equal(page.has_more, true);
      const older = await client.history(2, page.messages.at(-1)!.message_id, 3);
      assert.deepEqual(older.messages.map((m) => m.message_text), ["h2", "h1"]);
      assert.equal(older.has_more, false);
      await assert.rejects(client.history(0), RangeError);
      fake.refuseNext("history", "unavailable");
      const refused = await client.history(2).catch((e) => e);
      assert.ok(refused instanceof sdk.ChatSendError);
      assert.equal(refused.code, "unavailable");
      await client.close();
    },
  );

  fakeTest(
    "unread counts come from authenticated, grow with new messages and drop on markRead",
    async (fake) => {
      fake.store(2, 1, "a", { live: false });
      fake.store(2, 1, "b", { live: false });
      fake.store(3, 1, "c", { live: false });
      const alice = clientFor(fake, 1, { autoDelivered: false });
      const bob = clientFor(fake, 2);
      const reads: ChatClientEvents["read"][] = [];
      bob.client.on("read", (r) => reads.push(r));
      alice.client.connect();
      bob.client.connect();
      await Promise.all([alice.client.once("synced"), bob.client.once("synced")]);
      assert.deepEqual(alice.seen.unread.at(-1), {
        type: "unread",
        total: 3,
        by_friend: { "2": 2, "3": 1 },
      });
      const live = await bob.client.send(1, "d");
      await eventually("new message counted", () => alice.seen.unread.at(-1)!.total === 4);
      alice.client.markRead(2, live.message_id);
      assert.deepEqual(alice.client.unread, { type: "unread", total: 1, by_friend: { "3": 1 } });
      await eventually("bob sees the read receipt", () => reads.length === 1);
      assert.equal(reads[0]!.user_id, 1);
      assert.equal(reads[0]!.up_to_message_id, live.message_id);
      assert.equal(fake.messages.filter((m) => m.is_read).length, 3);
      await alice.client.close();
      await bob.client.close();
    },
  );

  fakeTest(
    "incoming messages are reported delivered once; autoDelivered: false sends nothing",
    async (fake) => {
      const alice = clientFor(fake, 1);
      const carol = clientFor(fake, 3, { autoDelivered: false });
      const bob = clientFor(fake, 2);
      const ticks: number[] = [];
      bob.client.on("delivered", (d) => ticks.push(d.message_id));
      for (const c of [alice, bob, carol]) c.client.connect();
      await Promise.all([alice, bob, carol].map((c) => c.client.once("synced")));
      const toAlice = await bob.client.send(1, "hi alice");
      await bob.client.send(3, "hi carol");
      await eventually("delivered tick", () => ticks.length === 1);
      await sleep(100);
      assert.deepEqual(ticks, [toAlice.message_id]);
      assert.equal(fake.received.filter((r) => r.frame.type === "delivered").length, 1);
      carol.client.markDelivered(2);
      await eventually("manual delivered", () => ticks.length === 2);
      await Promise.all([alice, bob, carol].map((c) => c.client.close()));
    },
  );

  fakeTest(
    "the token is refreshed before session_expires_at and the session outlives it",
    async (fake) => {
      let tokens = 0;
      const { client } = clientFor(fake, 1, {
        getToken: () => Promise.resolve(fake.token(1, ++tokens === 1 ? 1500 : 60_000)),
        refreshBeforeMs: 1000,
      });
      const expired: unknown[] = [];
      client.on("session_expired", (f) => expired.push(f));
      client.connect();
      const auth = await client.once("authenticated");
      const renewed = await client.once("reauthenticated");
      assert.ok(Date.parse(renewed.session_expires_at) > Date.parse(auth.session_expires_at!));
      await sleep(1200); // past the first token's expiry
      assert.equal(client.state, "open");
      assert.deepEqual(expired, []);
      assert.equal(fake.connections, 1);
      await client.close();
    },
  );

  fakeTest("session_expired stops reconnecting until connect() is called again", async (fake) => {
    const { client, seen } = clientFor(fake, 1);
    const states: string[] = [];
    client.on("state", (s) => states.push(s.state));
    client.connect();
    await client.once("synced");
    const ended = client.once("session_expired");
    fake.disconnect(1, "banned");
    assert.equal((await ended).reason, "banned");
    assert.equal(client.state, "expired");
    await sleep(300);
    assert.equal(fake.connections, 1, "no reconnect after session_expired");
    assert.equal(states.at(-1), "expired");
    client.connect();
    await eventually("reconnect after connect()", () => seen.authenticated === 2);
    assert.equal(seen.tokens, 2);
    await client.close();
  });

  fakeTest(
    "a failing getToken is an error event with its cause, and the state says why",
    async (fake) => {
      const cause = new TypeError("Invalid URL: '/api/chat-token'");
      let calls = 0;
      const { client, seen } = clientFor(fake, 1, {
        getToken: () => ++calls === 1 ? Promise.reject(cause) : Promise.resolve(""),
        reconnectBaseMs: 1000,
        random: () => 0.01,
      });
      const reasons: string[] = [];
      client.on("state", (s) => s.reason && reasons.push(s.reason));
      client.connect();
      await eventually("two visible failures", () => seen.errors.length >= 2);
      const [first, second] = seen.errors as typedSdk.ClientErrorEvent[];
      assert.equal(first!.code, "get_token_failed");
      assert.equal(first!.cause, cause);
      assert.match(first!.message, /getToken failed: Invalid URL/);
      assert.equal(second!.code, "get_token_failed");
      assert.match(second!.message, /returned no token/);
      assert.match(reasons[0]!, /getToken failed: Invalid URL/);
      await client.close();
    },
  );
}

sdkSuite("TypeScript", typedSdk);
sdkSuite("embedded JS", embeddedSdk);
