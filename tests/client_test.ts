/**
 * @module client_test
 * The client SDK against a real server, run twice: as client/chat_client.ts and as the
 * JavaScript the demo page embeds (which must be self-contained to work there).
 */

import assert from "node:assert/strict";
import * as typedSdk from "../client/chat_client.ts";
import type {
  ChatClient,
  ChatClientOptions,
  ClientErrorEvent,
  WebSocketLike,
} from "../client/chat_client.ts";
import { CLIENT_JS } from "../src/demo_page/page.ts";
import { countMessages, createTestDatabase } from "./support/db.ts";
import { startTestServer, type TestServer } from "./support/server.ts";
import { fakeWebSocket, steeredWebSocket } from "./support/sdk_socket.ts";
import { eventually } from "./support/wait.ts";

type Sdk = typeof typedSdk;
const embeddedSdk: Sdk = await import(`data:text/javascript,${encodeURIComponent(CLIENT_JS)}`);

/** A real WebSocket whose incoming frames `tamper` may drop, or answer by cutting the connection. */
function tamperingWebSocket(
  tamper: (frame: { type: string }, connection: number) => "pass" | "drop" | "cut",
): new (url: string) => WebSocketLike {
  return steeredWebSocket({
    deliver(data, ws, connection) {
      const action = tamper(JSON.parse(data), connection);
      if (action === "cut") ws.close();
      return action === "pass";
    },
  });
}

/** A real WebSocket whose incoming frames `rewrite` may change, and whose sent frames are kept. */
function rewritingWebSocket(
  rewrite: (frame: Record<string, unknown>) => Record<string, unknown>,
  sent: Record<string, unknown>[],
): new (url: string) => WebSocketLike {
  return steeredWebSocket({
    rewrite: (data) => JSON.stringify(rewrite(JSON.parse(data))),
    sent: (data) => sent.push(JSON.parse(data)),
  });
}

/** Every test below, for one form of the SDK. */
function sdkSuite(variant: string, sdk: Sdk): void {
  /** A client for `userId` with quick reconnects; counts its token requests. */
  function clientFor(t: TestServer, userId: number, options: Partial<ChatClientOptions> = {}) {
    const stats = { tokens: 0, authenticated: 0 };
    const client: ChatClient = new sdk.ChatClient({
      url: t.wsUrl,
      getToken: () => (stats.tokens++, t.token(userId)),
      reconnectBaseMs: 50,
      reconnectCapMs: 200,
      pingIntervalMs: 0,
      ...options,
    });
    client.on("authenticated", () => stats.authenticated++);
    return { client, stats };
  }

  /** Runs `body` with users 1..4 (1–2 friends); `restart()` replaces the server on its port. */
  function clientTest(
    name: string,
    body: (
      t: TestServer,
      restart: (between?: () => Promise<void>) => Promise<TestServer>,
    ) => Promise<void>,
  ) {
    Deno.test(`${name} (${variant})`, async () => {
      const db = await createTestDatabase();
      let t = await startTestServer({ db, users: [1, 2, 3, 4], friends: [[1, 2]] });
      try {
        await body(t, async (between) => {
          await t.close();
          await between?.();
          t = await startTestServer({ db, env: { PORT: String(t.server.publicPort) } });
          return t;
        });
      } finally {
        await t.close();
        await db.drop();
      }
    });
  }

  clientTest("send() resolves with the stored message from message_sent", async (t) => {
    const bob = await t.connectAs(2);
    const { client } = clientFor(t, 1);
    client.connect();
    const auth = await client.once("authenticated");
    assert.deepEqual(auth.online_friends, [2]);
    const sent = await client.send(2, "  hello bob ");
    assert.equal(sent.message_text, "hello bob");
    assert.equal(sent.sender_user_id, 1);
    assert.match(sent.client_message_id ?? "", /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-/);
    // The same message, with bob's update number (v1.2).
    assert.deepEqual(await bob.next("chat_message"), { type: "chat_message", ...sent, seq: 1 });
    assert.equal(
      (await client.send(2, "again", { clientMessageId: "c-2" })).client_message_id,
      "c-2",
    );
    assert.equal(client.pending, 0);
    await client.close();
  });

  clientTest("send() rejects with the server's error frame for a non-friend", async (t) => {
    const { client } = clientFor(t, 1);
    const errors: string[] = [];
    client.on("error", (frame) => errors.push(frame.code));
    client.connect();
    await client.once("authenticated");
    const failure = await client.send(4, "hi", { clientMessageId: "nf-1" }).catch((e) => e);
    assert.ok(failure instanceof sdk.ChatSendError);
    assert.equal(failure.code, "not_friends");
    assert.equal(failure.message, "You can only message friends");
    assert.equal(failure.clientMessageId, "nf-1");
    assert.deepEqual(errors, ["not_friends"]);
    assert.equal(await countMessages(t.db.sql), 0);
    await client.close();
  });

  clientTest(
    "after a server restart the client reconnects and authenticates again",
    async (t, restart) => {
      const { client, stats } = clientFor(t, 1);
      const states: string[] = [];
      client.on("state", (change) => states.push(change.state));
      client.connect();
      await client.once("authenticated");
      const t2 = await restart(() => eventually("client waits", () => client.state === "waiting"));
      await eventually("second authentication", () => stats.authenticated === 2);
      assert.equal(stats.tokens, 2, "a fresh token is fetched for the new connection");
      assert.deepEqual(states.slice(0, 4), ["connecting", "authenticating", "open", "waiting"]);
      assert.equal(states.at(-1), "open");
      const bob = await t2.connectAs(2);
      const sent = await client.send(2, "after restart");
      assert.equal((await bob.next("chat_message")).message_id, sent.message_id);
      await client.close();
    },
  );

  clientTest(
    "a message sent while offline is queued and stored once after reconnect",
    async (t, restart) => {
      const { client } = clientFor(t, 1);
      client.connect();
      await client.once("authenticated");
      let queued: Promise<typedSdk.ChatMessage> | undefined;
      const t2 = await restart(async () => {
        await eventually("client waits to reconnect", () => client.state === "waiting");
        queued = client.send(2, "written offline", { clientMessageId: "offline-1" });
        assert.equal(client.pending, 1);
      });
      const sent = await queued!;
      assert.equal(sent.client_message_id, "offline-1");
      const rows = await t2.db.sql`select message_id, message_text from messages`;
      assert.equal(rows.length, 1);
      assert.equal(Number(rows[0]!.message_id), sent.message_id);
      assert.equal(t.db, t2.db);
      await client.close();
    },
  );

  clientTest("a message whose acknowledgement was lost is re-sent and stored once", async (t) => {
    const bob = await t.connectAs(2);
    const { client, stats } = clientFor(t, 1, {
      WebSocket: tamperingWebSocket((f, n) =>
        f.type === "message_sent" && n === 0 ? "cut" : "pass"
      ),
    });
    client.connect();
    await client.once("authenticated");
    const sent = await client.send(2, "lost ack", { clientMessageId: "lost-1" });
    assert.equal(stats.authenticated, 2, "the ack arrived on the second connection");
    assert.equal(await countMessages(t.db.sql), 1);
    assert.equal((await bob.next("chat_message")).message_id, sent.message_id);
    assert.deepEqual(await bob.drainFor(100, "chat_message"), [], "delivered once");
    await client.close();
  });

  clientTest("a connection whose pong does not come is treated as dead", async (t) => {
    const { client, stats } = clientFor(t, 1, {
      pingIntervalMs: 50,
      pongTimeoutMs: 300,
      WebSocket: tamperingWebSocket((f, n) => f.type === "pong" && n === 0 ? "drop" : "pass"),
    });
    const reasons: string[] = [];
    client.on("state", (change) => change.reason && reasons.push(change.reason));
    const lost: string[] = [];
    client.on("error", (e) => e.code === "connection_lost" && lost.push(e.message));
    const pongs: unknown[] = [];
    client.on("pong", (frame) => pongs.push(frame));
    client.connect();
    await eventually("reconnect, then pongs", () => stats.authenticated === 2 && pongs.length > 0);
    assert.equal(
      reasons[0],
      `connection to 127.0.0.1:${t.server.publicPort} lost: no pong within 300 ms`,
    );
    assert.deepEqual(lost, [reasons[0]], "an error event says so too");
    await client.close();
  });

  /** Runs `body` on a server with a small chat burst (users 1 and 2 friends). */
  function pacedTest(
    name: string,
    env: Record<string, string>,
    body: (t: TestServer) => Promise<void>,
  ) {
    Deno.test(`${name} (${variant})`, async () => {
      const t = await startTestServer({ env });
      try {
        for (const id of [1, 2]) await t.db.addUser(id);
        await t.db.befriend(1, 2);
        await body(t);
      } finally {
        await t.close();
      }
    });
  }

  /** The texts stored, in message_id order. */
  async function storedTexts(t: TestServer): Promise<string[]> {
    const rows = await t.db.sql`select message_text from messages order by message_id`;
    return rows.map((row) => row.message_text);
  }

  pacedTest(
    "a burst of 50 sends is paced to authenticated.limits: every one stored, in order, none refused",
    { CHAT_RATE_BURST: "5", CHAT_RATE_PER_S: "20" },
    async (t) => {
      const bob = await t.connectAs(2);
      const { client } = clientFor(t, 1);
      const refusals: unknown[] = [];
      client.on("frame", (frame) => frame.type === "error" && refusals.push(frame));
      client.connect();
      await client.once("authenticated");
      const texts = Array.from({ length: 50 }, (_, i) => `burst ${i + 1}`);
      const stored = await Promise.all(texts.map((text) => client.send(2, text)));
      assert.deepEqual(stored.map((m) => m.message_text), texts);
      assert.deepEqual(refusals, [], "the server refused nothing");
      assert.deepEqual(await storedTexts(t), texts);
      const received = [];
      for (let i = 0; i < texts.length; i++) {
        received.push((await bob.next("chat_message")).message_text);
      }
      assert.deepEqual(received, texts, "bob gets them in the order they were sent");
      await client.close();
    },
  );

  pacedTest(
    "a message refused rate_limited is sent again after retry_after_ms by itself, and later ones wait behind it",
    { CHAT_RATE_BURST: "2", CHAT_RATE_PER_S: "5" },
    async (t) => {
      // The client is told limits far above the server's, so the server refuses some.
      const sent: Record<string, unknown>[] = [];
      const lying = (frame: Record<string, unknown>) =>
        frame.type === "authenticated"
          ? {
            ...frame,
            limits: {
              chat_per_s: 1000,
              chat_burst: 1000,
              frames_per_s: 1000,
              max_message_chars: 1000,
            },
          }
          : frame;
      const { client } = clientFor(t, 1, { WebSocket: rewritingWebSocket(lying, sent) });
      const refused: { client_message_id: string; retry_after_ms: number }[] = [];
      client.on("frame", (frame) => {
        if (frame.type === "error") refused.push(frame as unknown as (typeof refused)[number]);
      });
      const errors: unknown[] = [];
      client.on("error", (e) => errors.push(e));
      client.connect();
      await client.once("authenticated");
      const texts = Array.from({ length: 6 }, (_, i) => `m${i + 1}`);
      const ids = texts.map((text) => `id-${text}`);
      const stored = await Promise.all(
        texts.map((text, i) => client.send(2, text, { clientMessageId: ids[i] })),
      );
      assert.deepEqual(stored.map((m) => m.message_text), texts);
      assert.deepEqual(await storedTexts(t), texts, "stored in the order sent");
      assert.ok(refused.length > 0, "the server refused some for its rate");
      assert.ok(refused.every((r) => r.retry_after_ms > 0));
      assert.deepEqual(errors, [], "a paced retry is no error event");
      // On the wire: each refused message is the next one written again, never a later one.
      const written = sent.filter((f) => f.type === "chat_message").map((f) => f.client_message_id);
      let expected = 0;
      for (const id of written) {
        assert.ok(
          id === ids[expected] || id === ids[expected + 1],
          `${id} out of turn: ${written}`,
        );
        if (id === ids[expected + 1]) expected++;
      }
      assert.equal(written.length, texts.length + refused.length);
      await client.close();
    },
  );

  Deno.test(`with limits of burst 3 and 2 per s the client writes 2 messages at once, then one every 500 ms (${variant})`, async () => {
    let now = 1_000_000;
    const timers: { at: number; run: () => void }[] = [];
    const written: string[] = [];
    let socket: WebSocketLike | undefined;
    const client = new sdk.ChatClient({
      url: "ws://fake/ws",
      getToken: () => Promise.resolve("1:0:sig"),
      pingIntervalMs: 0,
      now: () => now,
      timers: {
        setTimeout: (run, ms) => timers.push({ at: now + ms, run }),
        clearTimeout: () => {},
      },
      WebSocket: fakeWebSocket((made, sent) => {
        socket = made;
        made.send = (data: string) => {
          sent.push(data);
          const frame = JSON.parse(data);
          if (frame.type === "chat_message") written.push(frame.client_message_id);
        };
      }),
    });
    client.connect();
    socket!.onopen!({});
    await new Promise((resolve) => setTimeout(resolve, 0)); // getToken
    const limits = { chat_per_s: 2, chat_burst: 3, frames_per_s: 50, max_message_chars: 1000 };
    socket!.onmessage!({
      data: JSON.stringify({ type: "authenticated", user_id: 1, online_friends: [], limits }),
    });
    const ids = ["a", "b", "c", "d"];
    for (const id of ids) client.send(2, id, { clientMessageId: id }).catch(() => {});
    /** The server acknowledges what was written last. */
    const ack = (id: string) =>
      socket!.onmessage!({
        data: JSON.stringify({
          type: "message_sent",
          data: {
            message_id: ids.indexOf(id) + 1,
            sender_user_id: 1,
            recipient_user_id: 2,
            message_text: id,
            sent_at: new Date(now).toISOString(),
            client_message_id: id,
          },
        }),
      });
    const runDue = () => {
      for (const timer of timers.splice(0).sort((x, y) => x.at - y.at)) {
        if (timer.at <= now) timer.run();
        else timers.push(timer);
      }
    };
    assert.deepEqual(written, ["a"], "one at a time");
    ack("a");
    assert.deepEqual(written, ["a", "b"], "the second token of the burst (one is kept in hand)");
    ack("b");
    assert.deepEqual(written, ["a", "b"], "no token left");
    now += 499;
    runDue();
    assert.deepEqual(written, ["a", "b"]);
    now += 1;
    runDue();
    assert.deepEqual(written, ["a", "b", "c"], "500 ms later");
    ack("c");
    now += 500;
    runDue();
    assert.deepEqual(written, ["a", "b", "c", "d"]);
    const closing = client.close();
    socket!.onclose!({ code: 1000, reason: "" });
    await closing;
  });

  /** A client of `url` that records its `error` events and `state` reasons. */
  function failingClient(url: string, options: Partial<ChatClientOptions> = {}) {
    const errors: ClientErrorEvent[] = [];
    const reasons: string[] = [];
    const client: ChatClient = new sdk.ChatClient({
      url,
      getToken: () => Promise.resolve("1:0:unused"),
      reconnectBaseMs: 50,
      reconnectCapMs: 100,
      pingIntervalMs: 0,
      ...options,
    });
    client.on("error", (e) => "failure" in e || "close_code" in e ? errors.push(e) : undefined);
    client.on("state", (change) => change.reason && reasons.push(change.reason));
    return { client, errors, reasons };
  }

  Deno.test(`with nothing listening, an error event connect_failed says the connection was refused and names the host (${variant})`, async () => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    listener.close(); // nothing listens on this port now
    const host = `127.0.0.1:${listener.addr.port}`;
    const { client, errors, reasons } = failingClient(`ws://${host}/ws`);
    client.connect();
    await eventually("an error event per attempt", () => errors.length >= 2);
    await client.close();
    assert.equal(errors[0]!.code, "connect_failed");
    assert.equal(errors[0]!.failure, "refused");
    assert.equal(
      errors[0]!.message,
      `cannot connect to ${host}: connection refused or unreachable: is the server running and listening there?`,
    );
    assert.equal(reasons[0], errors[0]!.message, "the state event says the same");
  });

  Deno.test(`a name that does not resolve, wss:// to a server without TLS, and an upgrade answered 404 are each told apart (${variant})`, async () => {
    const t = await startTestServer();
    try {
      const cases = [
        ["ws://no-such-host.invalid/ws", "dns", /the host name did not resolve/],
        [`wss://127.0.0.1:${t.server.publicPort}/ws`, "tls", /TLS failed/],
        [
          `ws://127.0.0.1:${t.server.publicPort}/nowhere`,
          "upgrade_refused",
          /HTTP 404 \(404: wrong path/,
        ],
      ] as const;
      for (const [url, failure, message] of cases) {
        const { client, errors } = failingClient(url);
        client.connect();
        await eventually(`an error event for ${url}`, () => errors.length >= 1);
        await client.close();
        assert.equal(errors[0]!.code, "connect_failed", url);
        assert.equal(errors[0]!.failure, failure, `${url}: ${errors[0]!.message}`);
        assert.match(errors[0]!.message, message);
        assert.equal(errors[0]!.url, url);
        if (failure === "upgrade_refused") assert.equal(errors[0]!.http_status, 404);
      }
    } finally {
      await t.close();
    }
  });

  Deno.test(`a browser's bare error event still gives connect_failed, saying what it may have been (${variant})`, async () => {
    let socket: WebSocketLike | undefined;
    const { client, errors, reasons } = failingClient("wss://chat.example.com/ws", {
      reconnectBaseMs: 60_000,
      WebSocket: fakeWebSocket((made) => socket = made),
    });
    client.connect();
    socket!.onerror!(new Event("error")); // what a browser gives: no message
    socket!.onclose!({ code: 1006, reason: "" });
    assert.equal(errors[0]!.code, "connect_failed");
    assert.equal(errors[0]!.failure, "unknown");
    assert.match(
      errors[0]!.message,
      /^cannot connect to chat\.example\.com: closed before the WebSocket upgrade/,
    );
    assert.match(errors[0]!.message, /refused|down/);
    assert.equal(reasons[0], errors[0]!.message);
    await client.close();
  });

  clientTest(
    "a server restart is connection_lost with its close code and reason, then connect_failed while it is down",
    async (t, restart) => {
      const { client, stats } = clientFor(t, 1);
      const errors: ClientErrorEvent[] = [];
      client.on("error", (e) => ("failure" in e || "close_code" in e) && errors.push(e));
      client.connect();
      await client.once("authenticated");
      const host = `127.0.0.1:${t.server.publicPort}`;
      await restart(() => eventually("connection_lost, connect_failed", () => errors.length >= 2));
      await eventually("back once the server is", () => stats.authenticated === 2);
      await client.close();
      assert.equal(errors[0]!.code, "connection_lost");
      assert.equal(errors[0]!.close_code, 1001);
      assert.equal(errors[0]!.close_reason, "server shutting down");
      assert.equal(
        errors[0]!.message,
        `connection to ${host} closed by the server with 1001 (the server is shutting down or restarting): server shutting down`,
      );
      assert.equal(errors[1]!.code, "connect_failed");
      assert.equal(errors[1]!.failure, "refused");
    },
  );

  Deno.test(`a full offline queue rejects with queue_full; close() rejects the rest (${variant})`, async () => {
    const client = new sdk.ChatClient({
      url: "ws://127.0.0.1:9/ws",
      getToken: () => Promise.resolve(""),
      maxQueue: 2,
    });
    const first = client.send(2, "one").catch((e) => e);
    const second = client.send(2, "two").catch((e) => e);
    const third = await client.send(2, "three", { clientMessageId: "q3" }).catch((e) => e);
    assert.ok(third instanceof sdk.ChatSendError);
    assert.equal(third.code, "queue_full");
    assert.match(third.message, /Offline queue is full \(2 messages/);
    await client.close();
    assert.deepEqual([(await first).code, (await second).code], ["closed", "closed"]);
    await assert.rejects(client.send(2, "late"), /closed/);
  });

  Deno.test(`close() leaves no timers or sockets, connected or waiting (${variant})`, async () => {
    const t = await startTestServer({ users: [1] });
    try {
      const { client } = clientFor(t, 1, { pingIntervalMs: 1000 });
      client.connect();
      await client.once("authenticated");
      await client.close();
      assert.equal(client.state, "closed");
    } finally {
      await t.close();
    }
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    listener.close(); // nothing listens on this port now
    const waiting = new sdk.ChatClient({
      url: `ws://127.0.0.1:${listener.addr.port}/ws`,
      getToken: () => Promise.resolve("unused"),
      reconnectBaseMs: 60_000,
      random: () => 0.5,
    });
    waiting.connect();
    await eventually("waiting state", () => waiting.state === "waiting");
    await waiting.close();
  });

  Deno.test(`backoff is full jitter, capped, and resets after authentication (${variant})`, async () => {
    const sockets: { sent: string[]; socket: WebSocketLike }[] = [];
    const timers: (() => void)[] = [];
    const delays: number[] = [];
    const client = new sdk.ChatClient({
      url: "ws://fake/ws",
      getToken: () => Promise.resolve("1:0:sig"),
      pingIntervalMs: 0,
      random: () => 0.5,
      timers: { setTimeout: (run) => timers.push(run), clearTimeout: () => {} },
      WebSocket: fakeWebSocket((socket, sent) => sockets.push({ sent, socket })),
    });
    client.on("state", (change) => change.delayMs !== undefined && delays.push(change.delayMs));
    const last = () => sockets.at(-1)!.socket;
    client.connect();
    for (let i = 0; i < 8; i++) (last().onclose!({ code: 1006, reason: "" }), timers.shift()!());
    assert.deepEqual(delays, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
    const queued = client.send(2, "queued", { clientMessageId: "fake-1" });
    last().onopen!({});
    await eventually("authenticate frame", () => sockets.at(-1)!.sent.length === 1);
    last().onmessage!({
      data: JSON.stringify({ type: "authenticated", user_id: 1, online_friends: [] }),
    });
    assert.equal(JSON.parse(sockets.at(-1)!.sent[1]!).client_message_id, "fake-1");
    last().onclose!({ code: 1006, reason: "" });
    assert.equal(delays.at(-1), 250, "attempts reset after authentication");
    timers.shift()!();
    last().onopen!({});
    await eventually("authenticate frame", () => sockets.at(-1)!.sent.length === 1);
    last().onmessage!({
      data: JSON.stringify({ type: "authenticated", user_id: 1, online_friends: [] }),
    });
    const resent = JSON.parse(sockets.at(-1)!.sent[1]!);
    assert.deepEqual(resent, {
      type: "chat_message",
      recipient_user_id: 2,
      message_text: "queued",
      client_message_id: "fake-1",
    });
    const closing = client.close();
    assert.equal((await queued.catch((e) => e)).code, "closed");
    last().onclose!({ code: 1000, reason: "" });
    await closing;
  });

  Deno.test(`a sign-in refused rate_limited with retry_after_ms reconnects after that wait plus jitter, not the backoff (${variant})`, async () => {
    const sockets: { sent: string[]; socket: WebSocketLike }[] = [];
    const timers: (() => void)[] = [];
    const delays: number[] = [];
    const errors: string[] = [];
    const client = new sdk.ChatClient({
      url: "ws://fake/ws",
      getToken: () => Promise.resolve("1:0:sig"),
      pingIntervalMs: 0,
      random: () => 0.5,
      timers: { setTimeout: (run) => timers.push(run), clearTimeout: () => {} },
      WebSocket: fakeWebSocket((socket, sent) => sockets.push({ sent, socket })),
    });
    client.on("state", (change) => change.delayMs !== undefined && delays.push(change.delayMs));
    client.on("error", (error) => errors.push(error.code));
    const last = () => sockets.at(-1)!.socket;
    client.connect();
    last().onopen!({});
    await eventually("authenticate frame", () => sockets.at(-1)!.sent.length === 1);
    last().onmessage!({
      data: JSON.stringify({
        type: "error",
        code: "rate_limited",
        message: "Too many sign-ins on this server, try again in retry_after_ms",
        retry_after_ms: 3200,
      }),
    });
    last().onclose!({ code: 1013, reason: "too many sign-ins" });
    assert.deepEqual(delays, [3200 + 125], "the server's time, plus up to 250 ms");
    // The next failure without a time is the backoff again, counting this attempt.
    timers.shift()!();
    last().onclose!({ code: 1006, reason: "" });
    assert.deepEqual(delays, [3325, 500]);
    assert.ok(errors.includes("rate_limited"), `errors ${errors.join(", ")}`);
    await client.close();
  });
}

sdkSuite("TypeScript", typedSdk);
sdkSuite("embedded JS", embeddedSdk);
