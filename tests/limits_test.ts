/**
 * Per-connection and per-node limits: each enforced, each answered the way
 * the README's "Security and limits" table says, and none of them slowing
 * down the other clients.
 */

import assert from "node:assert/strict";
// @ts-types="npm:@types/ws@^8.18.1"
import { WebSocket as NodeWebSocket } from "ws";
import { countMessages } from "./support/db.ts";
import { type TestServer, withTestServer } from "./support/server.ts";
import { eventually, sleep } from "./support/wait.ts";
import { RawWs } from "./raw_ws.ts";
import { TestClient, withoutLastSeen } from "./support/client.ts";

function limitTest(
  name: string,
  env: Record<string, string>,
  body: (t: TestServer) => Promise<void>,
) {
  Deno.test(
    name,
    () => withTestServer({ env, users: [1, 2, 3, 4], friends: [[1, 2], [3, 4]] }, body),
  );
}

/** Opens a connection with extra headers; resolves with the HTTP status of a refused upgrade, or 101. */
function upgradeStatus(
  url: string,
  headers: Record<string, string>,
): Promise<{ status: number; ws?: NodeWebSocket }> {
  return new Promise((resolve) => {
    const ws = new NodeWebSocket(url, { headers });
    ws.on("open", () => resolve({ status: 101, ws }));
    ws.on("unexpected-response", (_req, res) => {
      resolve({ status: res.statusCode ?? 0 });
      res.resume();
      ws.terminate();
    });
    ws.on("error", () => {});
  });
}

const closeNode = (ws: NodeWebSocket | undefined) =>
  new Promise<void>((resolve) => {
    if (ws === undefined || ws.readyState === NodeWebSocket.CLOSED) return resolve();
    ws.on("close", () => resolve());
    ws.close();
  });

limitTest(
  "the 21st message of a burst is rate_limited while another user's messages still flow",
  // The default burst of 20, with a refill too slow to matter during the test.
  { CHAT_RATE_PER_S: "0.01" },
  async (t) => {
    const alice = await t.connectAs(1);
    const bob = await t.connectAs(2);
    const carol = await t.connectAs(3);
    const dave = await t.connectAs(4);
    for (let i = 0; i < 30; i++) {
      alice.send({
        type: "chat_message",
        recipient_user_id: 2,
        message_text: `m${i}`,
        client_message_id: `m${i}`,
      });
    }
    carol.send({ type: "chat_message", recipient_user_id: 4, message_text: "unaffected" });
    assert.equal((await dave.next("chat_message")).message_text, "unaffected");
    const answers = [];
    for (let i = 0; i < 30; i++) answers.push(await alice.next(["message_sent", "error"]));
    const acked = answers.filter((a) => a.type === "message_sent").length;
    const limited = answers.filter((a) => a.code === "rate_limited");
    assert.equal(acked, 20);
    assert.equal(acked + limited.length, 30);
    assert.equal(limited[0]!.client_message_id, `m${acked}`);
    assert.equal(await countMessages(t.db.sql, { senderUserId: 1 }), acked);
    assert.equal((await bob.drainFor(100, "chat_message")).length, acked);
  },
);

limitTest("sustained flooding past three times the chat rate closes the connection with 1008", {
  CHAT_RATE_BURST: "2",
  CHAT_RATE_PER_S: "2",
  FRAME_RATE_PER_S: "100000",
}, async (t) => {
  const alice = await t.connectAs(1);
  for (let i = 0; i < 200; i++) {
    alice.send({ type: "chat_message", recipient_user_id: 2, message_text: "spam" });
  }
  assert.equal(await alice.closedWith(), 1008);
});

limitTest("typing frames over 5 per second are dropped without an answer", {}, async (t) => {
  const alice = await t.connectAs(1);
  const bob = await t.connectAs(2);
  for (let i = 0; i < 20; i++) alice.send({ type: "typing", recipient_user_id: 2 });
  alice.send({ type: "ping" });
  await alice.next("pong");
  const typing = await bob.drainFor(200, "typing");
  // A burst of 5, plus what refills (5/s) while the 20 frames are handled.
  assert.ok(typing.length >= 5 && typing.length <= 8, `bob saw ${typing.length}`);
  assert.deepEqual(alice.frames.filter((f) => f.type === "error"), []);
});

limitTest(
  "more than 50 frames a second are rate_limited and a sustained flood closes with 1008",
  {},
  async (t) => {
    const client = await t.connect();
    for (let i = 0; i < 60; i++) client.send({ type: "ping" });
    const answers = [];
    for (let i = 0; i < 60; i++) answers.push(await client.next());
    const pongs = answers.filter((a) => a.type === "pong").length;
    // A burst of 50, plus what refills (50/s) while the 60 frames are handled.
    assert.ok(pongs >= 50 && pongs <= 56, `pongs ${pongs}`);
    assert.equal(answers.filter((a) => a.code === "rate_limited").length, 60 - pongs);
    for (let i = 0; i < 1000; i++) client.send({ type: "ping" });
    assert.equal(await client.closedWith(), 1008);
  },
);

limitTest("a connection past MAX_CONNECTIONS_PER_USER gets too_many_connections and close 1013", {
  MAX_CONNECTIONS_PER_USER: "2",
}, async (t) => {
  await t.connectAs(1);
  await t.connectAs(1);
  const third = await t.connect();
  third.send({ type: "authenticate", auth_token: await t.token(1) });
  assert.equal((await third.next("error")).code, "too_many_connections");
  assert.equal(await third.closedWith(), 1013);
  await t.connectAs(2); // another user is not affected
});

limitTest(
  "sign-ins from one forwarded address past LOGIN_RATE_PER_IP_PER_MIN are refused rate_limited with 1013; another address signs in",
  { LOGIN_RATE_PER_IP_PER_MIN: "2", TRUSTED_PROXIES: "127.0.0.1" },
  async (t) => {
    const clients: TestClient[] = [];
    const signIn = async (userId: number, address: string) => {
      const client = await TestClient.open(t.wsUrl, undefined, { "x-forwarded-for": address });
      clients.push(client);
      client.send({ type: "authenticate", auth_token: await t.token(userId) });
      return { client, answer: await client.next(["authenticated", "error", "auth_error"]) };
    };
    try {
      for (const id of [1, 2]) {
        assert.equal((await signIn(id, "203.0.113.7")).answer.type, "authenticated");
      }
      const refused = await signIn(3, "203.0.113.7");
      assert.equal(refused.answer.code, "rate_limited");
      assert.equal(await refused.client.closedWith(), 1013);
      assert.equal((await signIn(3, "198.51.100.1")).answer.type, "authenticated");
      assert.equal((await signIn(4, "198.51.100.1")).answer.type, "authenticated");
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  },
);

limitTest(
  "unauthenticated sessions per address are capped with 429, counted per forwarded address behind a trusted proxy",
  {
    MAX_UNAUTH_PER_IP: "2",
    TRUSTED_PROXIES: "127.0.0.1",
  },
  async (t) => {
    const open: NodeWebSocket[] = [];
    try {
      for (const ip of ["203.0.113.7", "203.0.113.7"]) {
        const r = await upgradeStatus(t.wsUrl, { "x-forwarded-for": ip });
        assert.equal(r.status, 101);
        open.push(r.ws!);
      }
      assert.equal(
        (await upgradeStatus(t.wsUrl, { "x-forwarded-for": "203.0.113.7" })).status,
        429,
      );
      const other = await upgradeStatus(t.wsUrl, {
        "x-forwarded-for": "198.51.100.1, 203.0.113.9",
      });
      assert.equal(other.status, 101);
      open.push(other.ws!);
      // Authenticating frees the slot.
      const first = open[0]!;
      const authenticated = new Promise((resolve) => first.once("message", resolve));
      first.send(JSON.stringify({ type: "authenticate", auth_token: await t.token(1) }));
      await authenticated;
      const again = await upgradeStatus(t.wsUrl, { "x-forwarded-for": "203.0.113.7" });
      assert.equal(again.status, 101);
      open.push(again.ws!);
    } finally {
      await Promise.all(open.map(closeNode));
    }
  },
);

limitTest("a client address that is not a trusted proxy cannot spoof X-Forwarded-For", {
  MAX_UNAUTH_PER_IP: "1",
}, async (t) => {
  const first = await upgradeStatus(t.wsUrl, { "x-forwarded-for": "198.51.100.1" });
  assert.equal(first.status, 101);
  assert.equal((await upgradeStatus(t.wsUrl, { "x-forwarded-for": "198.51.100.2" })).status, 429);
  await closeNode(first.ws);
});

limitTest(
  "connections past MAX_CONNECTIONS are refused with 503",
  { MAX_CONNECTIONS: "2" },
  async (t) => {
    await t.connectAs(1);
    await t.connect();
    assert.equal((await upgradeStatus(t.wsUrl, {})).status, 503);
  },
);

limitTest(
  "origins not in ALLOWED_ORIGINS, look-alikes included, are refused with 403; no Origin is allowed",
  {
    ALLOWED_ORIGINS: "https://game.example.com, https://beta.example.com/",
  },
  async (t) => {
    for (
      const origin of [
        "https://game.example.com.evil.test",
        "http://game.example.com",
        "https://evil.test",
        "null",
      ]
    ) {
      assert.equal((await upgradeStatus(t.wsUrl, { origin })).status, 403, origin);
    }
    for (
      const headers of [{ origin: "https://game.example.com" }, {
        origin: "https://BETA.example.com",
      }, {}]
    ) {
      const r = await upgradeStatus(t.wsUrl, headers);
      assert.equal(r.status, 101, JSON.stringify(headers));
      await closeNode(r.ws);
    }
  },
);

limitTest("a frame over MAX_FRAME_BYTES closes the connection with 1009", {}, async (t) => {
  const client = await t.connectAs(1);
  client.send({ type: "chat_message", recipient_user_id: 2, message_text: "x".repeat(17 * 1024) });
  assert.equal(await client.closedWith(), 1009);
  assert.equal(await countMessages(t.db.sql), 0);
});

limitTest("a peer that stops answering pings is dropped after IDLE_TIMEOUT_S and goes offline", {
  IDLE_TIMEOUT_S: "1",
}, async (t) => {
  const bob = await t.connectAs(2);
  const raw = await t.rawAs(1);
  try {
    assert.deepEqual(await bob.next("presence"), {
      type: "presence",
      user_id: 1,
      status: "online",
    });
    assert.deepEqual(withoutLastSeen(await bob.next("presence", 5000)), {
      type: "presence",
      user_id: 1,
      status: "offline",
    });
    assert.equal(t.server.hub.connectionCount, 1);
  } finally {
    raw.close();
  }
});

limitTest("a reader that stops reading is closed as a slow consumer while others keep chatting", {
  NOTIFY_SECRET: "n",
  SEND_BUFFER_MAX_BYTES: "262144",
  SEND_BUFFER_SHED_BYTES: "65536",
}, async (t) => {
  const raw = await t.rawAs(1);
  try {
    const carol = await t.connectAs(3);
    const dave = await t.connectAs(4);
    const event = JSON.stringify({
      user_ids: [1],
      event: { type: "bulk", pad: "z".repeat(15000) },
    });
    const slowClosed = async () =>
      /chat_slow_consumer_closes_total 1/.test(await t.server.metrics.render());
    for (let i = 0; i < 3000 && !(await slowClosed()); i++) {
      const res = await fetch(`${t.internalUrl}/notify`, {
        method: "POST",
        headers: { authorization: "Bearer n" },
        body: event,
      });
      assert.equal(res.status, 202, await res.text());
    }
    assert.ok(await slowClosed(), "the stalled reader was never closed as a slow consumer");
    await eventually(
      "the slow consumer's connection released",
      () => t.server.hub.connectionCount === 2,
    );
    carol.send({ type: "chat_message", recipient_user_id: 4, message_text: "still fast" });
    assert.equal((await dave.next("chat_message")).message_text, "still fast");
  } finally {
    raw.close();
  }
});

limitTest(
  "a peer that keeps sending after the server closed it is answered nothing more and dropped within seconds",
  {},
  async (t) => {
    const raw = await RawWs.connect(t.server.publicPort, "/ws");
    const text = (value: unknown) => ({
      opcode: 1,
      payload: new TextEncoder().encode(JSON.stringify(value)),
    });
    try {
      for (let i = 0; i < 5; i++) {
        await raw.send(text({ type: "authenticate", auth_token: `1:${i}:bad` }));
      }
      assert.equal(await raw.readClose(), 1008);
      // It never answers our close frame and goes on sending: the server must
      // not wait the 30 s ws would, nor read and answer the frames meanwhile.
      const started = Date.now();
      let ended = false;
      const end = (async () => {
        const buf = new Uint8Array(4096);
        try {
          while ((await raw.conn.read(buf)) !== null) { /* nothing is expected */ }
        } catch { /* reset: ended as well */ }
        ended = true;
      })();
      while (!ended && Date.now() - started < 20_000) {
        await raw.send(text({ type: "ping" })).catch(() => {});
        await sleep(100);
      }
      await end;
      const seconds = (Date.now() - started) / 1000;
      assert.ok(seconds < 12, `still connected ${seconds.toFixed(1)} s after the close frame`);
    } finally {
      raw.close();
    }
  },
);
