/**
 * @module node_relay
 * The second bare baseline: Node 20 with the `ws` package (installed into
 * `bench/node/` by `npm ci`), used as plainly as its README shows, doing what
 * `relay.ts` does and nothing more: it trusts the user id in front of
 * `auth_token`, relays `chat_message` to the recipient (and the sender's
 * other connections), answers `message_sent`, and announces presence to
 * online friends of the benchmark graph. The graph rules are those of
 * `lib/layout.ts`, repeated here because Node runs this file without Deno's
 * TypeScript.
 *
 * Run: `node bench/node_relay.mjs` (env `PORT`, default 0); prints one JSON
 * line `{"event":"listening","port":N}` on stdout, exits on SIGTERM.
 */

import { createRequire } from "node:module";

const require = createRequire(new URL("./node/package.json", import.meta.url));
const { WebSocketServer } = require("ws");

const PAIR_USERS = 10_000;
const HUB_BASE = 1_000_000;
const FRIEND_BASE = 2_000_000;
const HUBS = 40;
const FRIENDS_PER_HUB = 50;

/** Every friend of `userId` in the benchmark graph (`lib/layout.ts`). */
function friendsOf(userId) {
  if (userId >= 1 && userId <= PAIR_USERS) return [userId % 2 === 1 ? userId + 1 : userId - 1];
  if (userId > HUB_BASE && userId <= HUB_BASE + HUBS) {
    const first = FRIEND_BASE + (userId - HUB_BASE - 1) * FRIENDS_PER_HUB + 1;
    return Array.from({ length: FRIENDS_PER_HUB }, (_, k) => first + k);
  }
  if (userId > FRIEND_BASE && userId <= FRIEND_BASE + HUBS * FRIENDS_PER_HUB) {
    return [HUB_BASE + Math.floor((userId - FRIEND_BASE - 1) / FRIENDS_PER_HUB) + 1];
  }
  return [];
}

/** Open connections by user id. */
const byUser = new Map();
let nextMessageId = 1;

function sendToUser(userId, frame, except) {
  const set = byUser.get(userId);
  if (set === undefined) return;
  for (const ws of set) if (ws !== except) ws.send(frame);
}

function announce(userId, status) {
  const frame = JSON.stringify({ type: "presence", user_id: userId, status });
  for (const friend of friendsOf(userId)) sendToUser(friend, frame);
}

const wss = new WebSocketServer({
  host: "127.0.0.1",
  port: Number(process.env.PORT ?? "0"),
  maxPayload: 16384,
});

wss.on("connection", (ws) => {
  let userId = 0;
  ws.on("message", (data, isBinary) => {
    if (isBinary) return;
    let frame;
    try {
      frame = JSON.parse(String(data));
    } catch {
      return;
    }
    switch (frame.type) {
      case "authenticate": {
        userId = Number(String(frame.auth_token).split(":", 1)[0]);
        const set = byUser.get(userId) ?? new Set();
        set.add(ws);
        byUser.set(userId, set);
        const online = friendsOf(userId).filter((id) => byUser.has(id));
        ws.send(JSON.stringify({ type: "authenticated", user_id: userId, online_friends: online }));
        if (set.size === 1) announce(userId, "online");
        return;
      }
      case "chat_message": {
        const data = {
          message_id: nextMessageId++,
          sender_user_id: userId,
          recipient_user_id: Number(frame.recipient_user_id),
          message_text: frame.message_text,
          sent_at: new Date().toISOString(),
        };
        if (frame.client_message_id !== undefined) data.client_message_id = frame.client_message_id;
        const delivered = JSON.stringify({ type: "chat_message", ...data });
        sendToUser(data.recipient_user_id, delivered);
        sendToUser(userId, delivered, ws);
        ws.send(JSON.stringify({ type: "message_sent", data }));
        return;
      }
      case "ping":
        ws.send('{"type":"pong"}');
        return;
    }
  });
  ws.on("error", () => {});
  ws.on("close", () => {
    const set = byUser.get(userId);
    if (set === undefined || !set.delete(ws)) return;
    if (set.size > 0) return;
    byUser.delete(userId);
    announce(userId, "offline");
  });
});

wss.on("listening", () => {
  console.log(JSON.stringify({ event: "listening", port: wss.address().port }));
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    for (const ws of wss.clients) ws.terminate();
    wss.close(() => process.exit(0));
  });
}
