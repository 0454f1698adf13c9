/**
 * Authentication over a real connection: token checks, the active-user
 * check, the attempt limit, the timeout and a second `authenticate`.
 */

import assert from "node:assert/strict";
import { importTokenKey, signToken } from "../src/token.ts";
import { type TestServer, withTestServer } from "./support/server.ts";

function authTest(
  name: string,
  body: (t: TestServer) => Promise<void>,
  env?: Record<string, string>,
) {
  Deno.test(
    name,
    () => withTestServer({ env: env ?? {}, users: [1, { id: 2, active: false }] }, body),
  );
}

const now = () => Math.floor(Date.now() / 1000);

authTest("a valid token for an active user authenticates", async (t) => {
  const client = await t.connect();
  const timestamp = now();
  client.send({ type: "authenticate", auth_token: await t.token(1, timestamp) });
  assert.deepEqual(await client.next(), {
    type: "authenticated",
    user_id: 1,
    online_friends: [],
    unread_count: 0,
    unread_by_friend: {},
    last_message_id: 0,
    seq: 0,
    session_expires_at: new Date((timestamp + 86400) * 1000).toISOString(),
    limits: { chat_per_s: 5, chat_burst: 20, frames_per_s: 50, max_message_chars: 1000 },
    settings: { muted: {}, dnd_until: null, appear_offline: false },
    last_seen: {},
  });
});

authTest("every bad token gets the same auth_error, never saying which check failed", async (t) => {
  const client = await t.connect();
  const good = await t.token(1);
  const [user, time, sig] = good.split(":") as [string, string, string];
  const otherKey = await importTokenKey("default_secret");
  const bad = [
    "",
    "garbage",
    `${user}:${time}`,
    `${user}:${time}:${sig}:extra`,
    `${user}:${time}:${sig.toUpperCase()}`,
    `${user}:${time}:${sig.slice(0, 63)}`,
    `00${user}:${time}:${sig}`,
    `+${user}:${time}:${sig}`,
    `${user}:${time}:${sig.replace(/.$/, sig.endsWith("0") ? "1" : "0")}`,
    await t.token(1, now() - 86401), // expired
    await t.token(1, now() + 301), // from the future beyond the skew
    await signToken(otherKey, 1, now()), // signed with the old default secret
    await t.token(2), // inactive user
    await t.token(999), // unknown user
  ];
  for (const token of bad.slice(0, 4)) {
    client.send({ type: "authenticate", auth_token: token });
    assert.deepEqual(
      await client.next(),
      { type: "auth_error", message: "Invalid auth token" },
      token,
    );
  }
  // Five failures close a connection; continue on fresh ones.
  for (let i = 4; i < bad.length; i += 4) {
    const next = await t.connect();
    for (const token of bad.slice(i, i + 4)) {
      next.send({ type: "authenticate", auth_token: token });
      assert.deepEqual(
        await next.next(),
        { type: "auth_error", message: "Invalid auth token" },
        token,
      );
    }
    await next.close();
  }
});

authTest("a token within the clock skew and the TTL is accepted", async (t) => {
  for (const timestamp of [now() + 250, now() - 86000]) {
    const client = await t.connect();
    client.send({ type: "authenticate", auth_token: await t.token(1, timestamp) });
    assert.equal((await client.next()).type, "authenticated");
    await client.close();
  }
});

authTest("a missing or non-string token gets 'Auth token required'", async (t) => {
  const client = await t.connect();
  for (const frame of [{ type: "authenticate" }, { type: "authenticate", auth_token: 12 }]) {
    client.send(frame);
    assert.deepEqual(await client.next(), { type: "auth_error", message: "Auth token required" });
  }
});

authTest("a public check code in place of a token is refused", async (t) => {
  const client = await t.connect();
  client.send({ type: "authenticate", auth_token: "ABC123" });
  assert.deepEqual(await client.next(), { type: "auth_error", message: "Invalid auth token" });
});

authTest("the fifth failed attempt closes the connection with 1008", async (t) => {
  const client = await t.connect();
  for (let i = 0; i < 5; i++) client.send({ type: "authenticate", auth_token: "bad" });
  assert.equal(await client.closedWith(), 1008);
  assert.equal(client.frames.filter((f) => f.type === "auth_error").length, 5);
});

authTest("a connection that does not authenticate in time is closed with 1008", async (t) => {
  const client = await t.connect();
  client.send({ type: "ping" });
  assert.equal((await client.next()).type, "pong");
  assert.equal(await client.closedWith(3000), 1008);
}, { AUTH_TIMEOUT_MS: "300" });

authTest("authenticating twice gets already_authenticated and keeps the session", async (t) => {
  const client = await t.connectAs(1);
  client.send({ type: "authenticate", auth_token: await t.token(1) });
  assert.equal((await client.next("error")).code, "already_authenticated");
  client.send({ type: "ping" });
  assert.equal((await client.next()).type, "pong");
});
