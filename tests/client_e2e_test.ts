/**
 * @module client_e2e_test
 * The SDK's v1.1 behaviour against the real server (PostgreSQL, hub, handlers): catch-up after
 * a drop, history pages, unread counts and receipts, token refresh, and `session_expired` from
 * `POST /disconnect`, and client/README.md's Deno example as written there.
 * tests/client_sync_test.ts covers the faults only a fake server can stage.
 */

import assert from "node:assert/strict";
import { ChatClient, type ChatClientEvents } from "../client/chat_client.ts";
import { countMessages } from "./support/db.ts";
import { type TestServer, withTestServer } from "./support/server.ts";
import { steeredWebSocket } from "./support/sdk_socket.ts";
import { eventually, sleep } from "./support/wait.ts";

const NOTIFY_SECRET = "e2e-notify-secret";

/** A WebSocket the test can cut, and keep from reconnecting while `offline` is set. */
function switchableWebSocket() {
  const control = { offline: false, current: undefined as WebSocket | undefined };
  const WebSocket = steeredWebSocket({
    // Port 9 (discard) refuses the connection: the client sees a failed attempt and waits.
    route: (url) => control.offline ? "ws://127.0.0.1:9/ws" : url,
    opened: (ws) => void (control.current = ws),
  });
  return { control, WebSocket };
}

function clientFor(
  t: TestServer,
  userId: number,
  extra: Partial<ConstructorParameters<typeof ChatClient>[0]> = {},
) {
  const seen = { texts: [] as string[], synced: [] as ChatClientEvents["synced"][] };
  const client = new ChatClient({
    url: t.wsUrl,
    getToken: () => t.token(userId),
    reconnectBaseMs: 50,
    reconnectCapMs: 200,
    pingIntervalMs: 0,
    ...extra,
  });
  client.on("chat_message", (m) => seen.texts.push(m.message_text));
  client.on("synced", (s) => seen.synced.push(s));
  return { client, seen };
}

function e2eTest(
  name: string,
  fn: (t: TestServer) => Promise<void>,
  env: Record<string, string> = {},
) {
  Deno.test(
    name,
    () =>
      withTestServer({ env: { NOTIFY_SECRET, ...env }, users: [1, 2, 3], friends: [[1, 2]] }, fn),
  );
}

e2eTest(
  "the SDK offline while three messages arrive shows exactly those three after reconnecting",
  async (t) => {
    const socket = switchableWebSocket();
    const alice = clientFor(t, 1, { WebSocket: socket.WebSocket });
    const bob = clientFor(t, 2);
    alice.client.connect();
    bob.client.connect();
    await Promise.all([alice.client.once("synced"), bob.client.once("synced")]);
    await bob.client.send(1, "before");
    await eventually("live message", () => alice.seen.texts.length === 1, 10_000);
    socket.control.offline = true;
    socket.control.current!.close();
    await eventually("alice waits to reconnect", () => alice.client.state === "waiting", 10_000);
    for (const text of ["one", "two", "three"]) await bob.client.send(1, text);
    socket.control.offline = false;
    await eventually("catch-up after the reconnect", () => alice.seen.synced.length === 2, 10_000);
    assert.deepEqual(alice.seen.texts, ["before", "one", "two", "three"]);
    assert.equal(alice.seen.synced[1]!.count, 3);
    await Promise.all([alice.client.close(), bob.client.close()]);
  },
);

e2eTest("history pages, unread counts, read and delivered receipts through the SDK", async (t) => {
  const alice = clientFor(t, 1, { autoDelivered: false });
  const bob = clientFor(t, 2);
  const receipts: string[] = [];
  bob.client.on("delivered", (d) => receipts.push(`delivered ${d.message_id}`));
  bob.client.on("read", (r) => receipts.push(`read ${r.up_to_message_id}`));
  bob.client.connect();
  await bob.client.once("synced");
  const sent = [];
  for (let i = 1; i <= 5; i++) sent.push(await bob.client.send(1, `m${i}`));
  alice.client.connect();
  const auth = await alice.client.once("authenticated");
  assert.equal(auth.unread_count, 5);
  assert.deepEqual(alice.client.unread, { type: "unread", total: 5, by_friend: { "2": 5 } });
  const page = await alice.client.history(2, undefined, 3);
  assert.deepEqual(page.messages.map((m) => m.message_text), ["m5", "m4", "m3"]);
  assert.equal(page.has_more, true);
  const older = await alice.client.history(2, page.messages.at(-1)!.message_id, 3);
  assert.deepEqual(older.messages.map((m) => m.message_text), ["m2", "m1"]);
  assert.equal(older.has_more, false);

  alice.client.markDelivered(sent[4]!.message_id);
  alice.client.markDelivered(sent[4]!.message_id);
  alice.client.markRead(2, sent[4]!.message_id);
  assert.equal(alice.client.unread.total, 0);
  await eventually("both receipts", () => receipts.length === 2, 10_000);
  await sleep(200);
  assert.deepEqual(receipts, [`delivered ${sent[4]!.message_id}`, `read ${sent[4]!.message_id}`]);
  assert.equal(await countMessages(t.db.sql, { isRead: false }), 0);
  await Promise.all([alice.client.close(), bob.client.close()]);
});

e2eTest(
  "the SDK refreshes its token before session_expires_at and keeps its connection",
  async (t) => {
    let tokens = 0;
    const { client } = clientFor(t, 1, {
      getToken: () => (tokens++, t.token(1)),
      refreshBeforeMs: 6000,
    });
    const expired: unknown[] = [];
    client.on("session_expired", (f) => expired.push(f));
    client.connect();
    const auth = await client.once("authenticated");
    const renewed = await client.once("reauthenticated");
    assert.ok(Date.parse(renewed.session_expires_at) >= Date.parse(auth.session_expires_at!));
    await eventually("a second refresh", () => tokens >= 3, 15_000);
    assert.deepEqual(expired, []);
    assert.equal(client.state, "open");
    await client.close();
  },
  { TOKEN_TTL_SECONDS: "8" },
);

e2eTest("POST /disconnect ends the SDK's session: no reconnect until connect()", async (t) => {
  const { client, seen } = clientFor(t, 1);
  let authenticated = 0;
  client.on("authenticated", () => authenticated++);
  client.connect();
  await client.once("synced");
  const ended = client.once("session_expired");
  const res = await fetch(`${t.internalUrl}/disconnect`, {
    method: "POST",
    headers: { authorization: `Bearer ${NOTIFY_SECRET}` },
    body: JSON.stringify({ user_ids: [1], reason: "banned" }),
  });
  assert.equal(res.status, 202);
  await res.body?.cancel();
  assert.equal((await ended).reason, "banned");
  assert.equal(client.state, "expired");
  await sleep(500);
  assert.equal(authenticated, 1, "no reconnect after session_expired");
  client.connect();
  await eventually("signed in again after connect()", () => authenticated === 2, 10_000);
  assert.equal(seen.synced.length, 2);
  await client.close();
});

/** The README's Deno example, as written there, run from the repository root on stdin. */
async function readmeExample(): Promise<string> {
  const readme = await Deno.readTextFile(new URL("../client/README.md", import.meta.url));
  const block = readme.match(/```ts\n(\/\/ sdk_example\.ts[\s\S]*?)```/);
  assert.ok(block, "client/README.md has the sdk_example.ts block");
  return block[1]!;
}

function runExample(script: string, env: Record<string, string>) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-env", "-"],
    cwd: new URL("..", import.meta.url).pathname,
    env: { NO_COLOR: "1", ...env },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  void writer.write(new TextEncoder().encode(script)).then(() => writer.close());
  return child;
}

e2eTest(
  "the client README's Deno example chats as written, and says why without a token",
  async (t) => {
    const script = await readmeExample();
    const bob = await t.connectAs(2);
    const ok = await runExample(script, { CHAT_URL: t.wsUrl, CHAT_TOKEN: await t.token(1) })
      .output();
    const stdout = new TextDecoder().decode(ok.stdout);
    assert.equal(ok.code, 0, new TextDecoder().decode(ok.stderr));
    assert.match(stdout, /signed in as 1 with friends online: \[ 2 \]/);
    assert.match(stdout, /stored as message \d+/);
    assert.equal((await bob.next("chat_message")).message_text, "hello from Deno");

    const child = runExample(script, { CHAT_URL: t.wsUrl, CHAT_TOKEN: "" });
    const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    while (!seen.includes("get_token_failed")) {
      const { value, done } = await lines.read();
      if (done) break;
      seen += value;
    }
    child.kill("SIGTERM");
    await lines.cancel();
    await child.status;
    await child.stdout.cancel();
    assert.match(seen, /error: get_token_failed getToken failed: it returned no token string/);
  },
);

e2eTest("chat.php's push through /notify reaches the SDK as backend_chat_message", async (t) => {
  const { client, seen } = clientFor(t, 2);
  client.connect();
  await client.once("synced");
  const push = {
    type: "chat_message",
    message: { message_id: 41, sender_user_id: 1, recipient_user_id: 2, message_text: "a &amp; b" },
  };
  const received = client.once("backend_chat_message");
  const res = await fetch(`${t.internalUrl}/notify`, {
    method: "POST",
    headers: { authorization: `Bearer ${NOTIFY_SECRET}` },
    body: JSON.stringify(push),
  });
  assert.equal(res.status, 202);
  await res.body?.cancel();
  assert.deepEqual(await received, push);
  assert.deepEqual(seen.texts, []);
  assert.equal(client.lastMessageId, 0, "the backend's ids do not move the catch-up cursor");
  await client.close();
});
