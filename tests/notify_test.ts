/** The internal notify API, health and readiness over real HTTP. */

import assert from "node:assert/strict";
import { startTestServer } from "./support/server.ts";

const SECRET = "notify-secret-for-tests";

Deno.test("notify delivers the event to every connection of the listed users", async () => {
  const t = await startTestServer({ env: { NOTIFY_SECRET: SECRET }, users: [1, 2, 3] });
  try {
    const a1 = await t.connectAs(1);
    const a2 = await t.connectAs(1);
    const b = await t.connectAs(2);
    const c = await t.connectAs(3);
    const event = { type: "battle_invitation", from_user_id: 3, battle_id: 77 };
    const res = await fetch(`${t.internalUrl}/notify`, {
      method: "POST",
      headers: { authorization: `Bearer ${SECRET}`, "content-type": "application/json" },
      body: JSON.stringify({ user_ids: [1, 2, 2], event }),
    });
    assert.equal(res.status, 202);
    assert.deepEqual(await res.json(), { users: 2 });
    for (const client of [a1, a2, b]) {
      assert.deepEqual(await client.next("battle_invitation"), event);
    }
    assert.deepEqual(await c.drainFor(100), []);
  } finally {
    await t.close();
  }
});

Deno.test("notify answers 401 for a wrong secret and 400 with a reason for a bad body", async () => {
  const t = await startTestServer({ env: { NOTIFY_SECRET: SECRET, MAX_FRAME_BYTES: "1024" } });
  try {
    const post = (body: string, secret = SECRET) =>
      fetch(`${t.internalUrl}/notify`, {
        method: "POST",
        headers: { authorization: `Bearer ${secret}` },
        body,
      });
    for (const secret of ["wrong", "", SECRET + "x"]) {
      const res = await post('{"user_ids":[1],"event":{"type":"x"}}', secret);
      assert.equal(res.status, 401);
      assert.equal(typeof (await res.json()).error, "string");
    }
    const bad = [
      "not json",
      "[]",
      '{"event":{"type":"x"}}',
      '{"user_ids":[],"event":{"type":"x"}}',
      `{"user_ids":[${Array.from({ length: 1001 }, (_, i) => i + 1)}],"event":{"type":"x"}}`,
      '{"user_ids":[0],"event":{"type":"x"}}',
      '{"user_ids":["1"],"event":{"type":"x"}}',
      '{"user_ids":[1.5],"event":{"type":"x"}}',
      '{"user_ids":[1]}',
      '{"user_ids":[1],"event":{"kind":"x"}}',
      '{"user_ids":[1],"event":[1]}',
      `{"user_ids":[1],"event":{"type":"x","pad":"${"y".repeat(1100)}"}}`,
    ];
    for (const body of bad) {
      const res = await post(body);
      assert.equal(res.status, 400, body.slice(0, 60));
      assert.equal(typeof (await res.json()).error, "string");
    }
  } finally {
    await t.close();
  }
});

Deno.test("notify sends the PHP backend's chat_message push as sent to both users' connections", async () => {
  const t = await startTestServer({ env: { NOTIFY_SECRET: SECRET }, users: [1, 2, 3] });
  try {
    const sender1 = await t.connectAs(1);
    const sender2 = await t.connectAs(1);
    const recipient = await t.connectAs(2);
    const other = await t.connectAs(3);
    // The shape chat.php pushes: the stored row plus user codes, escaped text, MySQL time.
    const push = {
      type: "chat_message",
      message: {
        message_id: 41,
        sender_user_id: 1,
        recipient_user_id: "2",
        sender_user_code: "a1b2c3d4e5f6a7b8c9d0",
        recipient_user_code: "0f9e8d7c6b5a4f3e2d1c",
        message_text: "caf\u00e9 &amp; \ud83d\ude00",
        message_content: "caf\u00e9 &amp; \ud83d\ude00",
        is_read: 0,
        sent_at: "2026-12-01 18:00:00",
        sender_username: "alice1",
        sender_avatar_url: null,
      },
    };
    const res = await fetch(`${t.internalUrl}/notify`, {
      method: "POST",
      headers: { authorization: `Bearer ${SECRET}`, "content-type": "application/json" },
      body: JSON.stringify(push),
    });
    assert.equal(res.status, 202);
    assert.deepEqual(await res.json(), { users: 2 });
    for (const client of [sender1, sender2, recipient]) {
      assert.deepEqual(await client.next("chat_message"), push);
    }
    assert.deepEqual(await other.drainFor(100), []);
  } finally {
    await t.close();
  }
});

Deno.test("notify answers 400 with a reason for a PHP push without valid user ids", async () => {
  const t = await startTestServer({ env: { NOTIFY_SECRET: SECRET, MAX_FRAME_BYTES: "1024" } });
  try {
    const bad = [
      '{"type":"chat_message"}',
      '{"type":"chat_message","message":"hi"}',
      '{"type":"chat_message","message":{"recipient_user_id":2}}',
      '{"type":"chat_message","message":{"sender_user_id":1}}',
      '{"type":"chat_message","message":{"sender_user_id":"abc","recipient_user_id":2}}',
      '{"type":"chat_message","message":{"sender_user_id":0,"recipient_user_id":2}}',
      `{"type":"chat_message","message":{"sender_user_id":1,"recipient_user_id":2,"t":"${
        "y".repeat(1100)
      }"}}`,
      '{"type":"battle_invitation","message":{"sender_user_id":1,"recipient_user_id":2}}',
    ];
    for (const body of bad) {
      const res = await fetch(`${t.internalUrl}/notify`, {
        method: "POST",
        headers: { authorization: `Bearer ${SECRET}` },
        body,
      });
      assert.equal(res.status, 400, body.slice(0, 80));
      assert.equal(typeof (await res.json()).error, "string");
    }
    const unauthorized = await fetch(`${t.internalUrl}/notify`, {
      method: "POST",
      body: '{"type":"chat_message","message":{"sender_user_id":1,"recipient_user_id":2}}',
    });
    assert.equal(unauthorized.status, 401, "the push needs the bearer secret too");
    await unauthorized.body?.cancel();
  } finally {
    await t.close();
  }
});

Deno.test("notify is 404 when NOTIFY_SECRET is unset", async () => {
  const t = await startTestServer();
  try {
    const res = await fetch(`${t.internalUrl}/notify`, {
      method: "POST",
      headers: { authorization: "Bearer anything" },
      body: '{"user_ids":[1],"event":{"type":"x"}}',
    });
    assert.equal(res.status, 404);
    await res.body?.cancel();
  } finally {
    await t.close();
  }
});

Deno.test("healthz and readyz answer 200 on both listeners, an unknown path 404 with JSON, metrics are exposed", async () => {
  const t = await startTestServer();
  try {
    for (const base of [t.httpUrl, t.internalUrl]) {
      for (const path of ["/healthz", "/readyz"]) {
        const res = await fetch(base + path);
        assert.equal(res.status, 200, base + path);
        await res.body?.cancel();
      }
    }
    const unknown = await fetch(`${t.httpUrl}/nope`);
    assert.equal(unknown.status, 404);
    assert.deepEqual(await unknown.json(), { error: "Not found" });
    const metrics = await fetch(`${t.internalUrl}/metrics`);
    assert.match(await metrics.text(), /chat_connections\{state="authenticated"\} 0/);
  } finally {
    await t.close();
  }
});
