/**
 * Session lifetime on real nodes: what `authenticated` reports, `reauthenticate`, expiry at the
 * token's age, deactivation closing a user on every node, `GET /presence`, and the token
 * revocation of `POST /disconnect` (202 once stored, 503 when the database fails). (Its closing
 * of connections on every node and the connection limit over the cluster are in
 * `cluster_test.ts`, which runs them on a Redis Cluster too.)
 */

import assert from "node:assert/strict";
import { CLUSTER_KINDS, nodesTest } from "./support/cluster.ts";
import { startTestServer, withDatabaseProxy } from "./support/server.ts";
import { eventually, sleep } from "./support/wait.ts";

const NOTIFY_SECRET = "lifetime-notify-secret";
const nowS = () => Math.floor(Date.now() / 1000);
const iso = (unixS: number) => new Date(unixS * 1000).toISOString();

const [memory] = CLUSTER_KINDS;

nodesTest(
  memory!,
  "authenticated reports unread counts by friend, the last message id and when the session expires",
  { nodes: 1, env: { TOKEN_TTL_SECONDS: "3600" } },
  async ([t], db) => {
    await db.sql`insert into messages (sender_user_id, recipient_user_id, message_text, is_read)
                 values (2, 1, 'a', false), (2, 1, 'b', false), (3, 1, 'c', false),
                        (1, 2, 'd', false), (2, 1, 'e', true)`;
    const [last] = await db.sql`select max(message_id)::int as id from messages`;
    const client = await t!.connect();
    const ts = nowS() - 100;
    client.send({ type: "authenticate", auth_token: await t!.token(1, ts) });
    assert.deepEqual(await client.next(), {
      type: "authenticated",
      user_id: 1,
      online_friends: [],
      unread_count: 3,
      unread_by_friend: { "2": 2, "3": 1 },
      last_message_id: last!.id,
      seq: 5, // the game's five rows, each an update of user 1
      session_expires_at: iso(ts + 3600),
      limits: { chat_per_s: 5, chat_burst: 20, frames_per_s: 50, max_message_chars: 1000 },
      settings: { muted: {}, dnd_until: null, appear_offline: false },
      last_seen: {},
    });
    const fresh = await t!.connect();
    fresh.send({ type: "authenticate", auth_token: await t!.token(4) });
    const empty = await fresh.next("authenticated");
    assert.equal(empty.unread_count, 0);
    assert.deepEqual(empty.unread_by_friend, {});
    assert.equal(empty.last_message_id, 0);
    assert.equal(empty.seq, 0);
  },
);

nodesTest(
  memory!,
  "a reauthenticate with a fresh token extends the session past the first token's expiry",
  { nodes: 1, env: { TOKEN_TTL_SECONDS: "6" } },
  async ([t]) => {
    const client = await t!.connect();
    client.send({ type: "authenticate", auth_token: await t!.token(1, nowS() - 4) });
    await client.next("authenticated");
    const ts = nowS();
    client.send({ type: "reauthenticate", auth_token: await t!.token(1, ts) });
    assert.deepEqual(await client.next(), {
      type: "reauthenticated",
      session_expires_at: iso(ts + 6),
    });
    await sleep(3500); // past the first token's expiry (≤ 2 s after it was sent)
    client.send({ type: "ping" });
    assert.deepEqual(await client.next(), { type: "pong" }, "still open after the old expiry");
    assert.deepEqual(await client.next("session_expired", 8000), { type: "session_expired" });
    assert.equal(await client.closedWith(), 1008);
  },
);

nodesTest(
  memory!,
  "at the token's age the session gets session_expired and 1008; other users' or bad tokens do not extend it",
  { nodes: 1, env: { TOKEN_TTL_SECONDS: "3" } },
  async ([t]) => {
    const client = await t!.connect();
    const ts = nowS() - 1;
    client.send({ type: "authenticate", auth_token: await t!.token(1, ts) });
    assert.equal((await client.next("authenticated")).session_expires_at, iso(ts + 3));
    for (const token of [await t!.token(2), "garbage", await t!.token(1, nowS() - 10)]) {
      client.send({ type: "reauthenticate", auth_token: token });
      assert.deepEqual(await client.next(), { type: "auth_error", message: "Invalid auth token" });
    }
    client.send({ type: "reauthenticate" });
    assert.deepEqual(await client.next(), { type: "auth_error", message: "Auth token required" });
    assert.deepEqual(await client.next("session_expired", 8000), { type: "session_expired" });
    assert.ok(Date.now() >= (ts + 3) * 1000, "expired before the token's age");
    assert.equal(await client.closedWith(), 1008);
  },
);

nodesTest(
  memory!,
  "reauthenticate before authenticate is not_authenticated",
  { nodes: 1 },
  async ([t]) => {
    const client = await t!.connect();
    client.send({ type: "reauthenticate", auth_token: await t!.token(1) });
    assert.equal((await client.next("error")).code, "not_authenticated");
  },
);

for (const kind of CLUSTER_KINDS) {
  nodesTest(
    kind,
    "a user set inactive is sent session_expired and closed with 1008 on both nodes",
    { env: { ACTIVE_CHECK_INTERVAL_S: "0.5" } },
    async ([a, b], db) => {
      const onA = await a!.connectAs(1);
      const onB = await b!.connectAs(1);
      const bob = await b!.connectAs(2);
      await db.sql`update users set active = false where user_id = 1`;
      for (const client of [onA, onB]) {
        assert.deepEqual(await client.next("session_expired", 10_000), {
          type: "session_expired",
          reason: "deactivated",
        });
        assert.equal(await client.closedWith(), 1008);
      }
      bob.send({ type: "ping" });
      assert.deepEqual(await bob.next("pong"), { type: "pong" }, "others stay connected");
    },
  );

  nodesTest(
    kind,
    "GET /presence answers which users are online on any node",
    { env: { NOTIFY_SECRET } },
    async ([a, b]) => {
      await a!.connectAs(1);
      await b!.connectAs(3);
      await a!.server.hub.settled();
      await b!.server.hub.settled();
      const res = await fetch(`${b!.internalUrl}/presence?user_ids=1,2,3`, {
        headers: { authorization: `Bearer ${NOTIFY_SECRET}` },
      });
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { online: [1, 3] });
    },
  );
}

nodesTest(
  memory!,
  "after POST /disconnect the old token is refused on both nodes and after a restart; a token issued a second later signs in",
  { env: { NOTIFY_SECRET } },
  async ([a, b], db) => {
    const oldToken = await a!.token(2);
    const first = await a!.connect();
    first.send({ type: "authenticate", auth_token: oldToken });
    await first.next("authenticated");
    const res = await fetch(`${a!.internalUrl}/disconnect`, {
      method: "POST",
      headers: { authorization: `Bearer ${NOTIFY_SECRET}` },
      body: JSON.stringify({ user_ids: [2], reason: "banned" }),
    });
    assert.equal(res.status, 202);
    await res.body?.cancel();
    assert.deepEqual(await first.next("session_expired"), {
      type: "session_expired",
      reason: "banned",
    });
    // The 202 comes once the revocation is stored: the row is there, no waiting.
    const [row] = await db.sql`select (extract(epoch from revoked_at) * 1000)::float8 as ms
                               from chat_token_revocations where user_id = 2`;
    assert.ok(row !== undefined, "no revocation stored when 202 arrived");
    const revokedMs = Number(row.ms);
    const right = await b!.connect();
    right.send({ type: "authenticate", auth_token: oldToken });
    assert.deepEqual(await right.next(), { type: "auth_error", message: "Invalid auth token" });
    const restarted = await startTestServer({ db }); // a fresh process on the same database
    try {
      const later = await a!.token(2, Math.floor(revokedMs / 1000) + 1);
      for (const node of [a!, b!, restarted]) {
        const client = await node.connect();
        client.send({ type: "authenticate", auth_token: oldToken });
        assert.deepEqual(await client.next(), {
          type: "auth_error",
          message: "Invalid auth token",
        });
        client.send({ type: "authenticate", auth_token: later });
        assert.equal((await client.next()).type, "authenticated");
        client.send({ type: "reauthenticate", auth_token: oldToken });
        assert.deepEqual(await client.next(), {
          type: "auth_error",
          message: "Invalid auth token",
        });
      }
    } finally {
      await restarted.close();
    }
  },
);

for (const failure of ["cut", "frozen"] as const) {
  Deno.test(`POST /disconnect with the database ${failure} closes the connections and answers 503 with a JSON error; a retry once it is back answers 202 and stores the revocation`, async () => {
    const deadlineMs = 1000; // as outage_test's: a new connection's type query runs under it too
    await withDatabaseProxy(
      deadlineMs,
      { users: [1, 2], env: { NOTIFY_SECRET } },
      async (t, proxy) => {
        const user = await t.connectAs(2);
        const disconnect = () =>
          fetch(`${t.internalUrl}/disconnect`, {
            method: "POST",
            headers: { authorization: `Bearer ${NOTIFY_SECRET}` },
            body: JSON.stringify({ user_ids: [2], reason: "banned" }),
          });
        if (failure === "cut") proxy.cut();
        else proxy.freeze();
        const res = await disconnect();
        assert.equal(res.status, 503);
        assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
        const body = await res.json();
        assert.equal(typeof body.error, "string");
        assert.deepEqual(await user.next("session_expired"), {
          type: "session_expired",
          reason: "banned",
        });
        assert.equal(await user.closedWith(), 1008);

        proxy.restore();
        // The answer is 503 until the pool has reconnected; retrying is what the docs ask.
        let retried: unknown;
        await eventually("a retried POST /disconnect answered 202", async () => {
          const retry = await disconnect();
          retried = await retry.json();
          return retry.status === 202;
        }, 10_000);
        assert.deepEqual(retried, { users: 1 });
        const rows = await t.db.sql`select user_id from chat_token_revocations`;
        assert.deepEqual(rows.map((r) => Number(r.user_id)), [2]);
      },
    );
  });
}

nodesTest(
  memory!,
  "the control routes answer 404 without NOTIFY_SECRET, 401 for a wrong one, 400 for bad input",
  { nodes: 1, env: { NOTIFY_SECRET } },
  async ([t]) => {
    const call = (path: string, init: RequestInit = {}, secret = NOTIFY_SECRET) =>
      fetch(`${t!.internalUrl}${path}`, {
        ...init,
        headers: { authorization: `Bearer ${secret}` },
      });
    const cases: [string, RequestInit, number, string?][] = [
      ["/disconnect", { method: "POST", body: "{" }, 400],
      ["/disconnect", { method: "POST", body: "[]" }, 400],
      ["/disconnect", { method: "POST", body: '{"user_ids":[]}' }, 400],
      ["/disconnect", { method: "POST", body: '{"user_ids":[0]}' }, 400],
      ["/disconnect", { method: "POST", body: '{"user_ids":[1],"reason":5}' }, 400],
      ["/disconnect", { method: "POST", body: '{"user_ids":[1]}' }, 401, "wrong"],
      ["/presence", {}, 400],
      ["/presence?user_ids=", {}, 400],
      ["/presence?user_ids=1,x", {}, 400],
      ["/presence?user_ids=0", {}, 400],
      [`/presence?user_ids=${Array.from({ length: 1001 }, (_, i) => i + 1).join(",")}`, {}, 400],
      ["/presence?user_ids=1", {}, 401, "wrong"],
    ];
    for (const [path, init, status, secret] of cases) {
      const res = await call(path, init, secret);
      assert.equal(res.status, status, `${path} ${init.body ?? ""}`);
      assert.equal(typeof (await res.json()).error, "string");
    }
  },
);

nodesTest(
  memory!,
  "the control routes are 404 when NOTIFY_SECRET is unset",
  { nodes: 1 },
  async ([t]) => {
    const routes: [string, string][] = [["/disconnect", "POST"], ["/presence?user_ids=1", "GET"]];
    for (const [path, method] of routes) {
      const res = await fetch(`${t!.internalUrl}${path}`, {
        method,
        headers: { authorization: "Bearer x" },
        ...(method === "POST" ? { body: '{"user_ids":[1]}' } : {}),
      });
      assert.equal(res.status, 404);
      await res.body?.cancel();
    }
  },
);
