/**
 * @module relay
 * The bare baseline: the same transport as the real server (`wsTransport`,
 * the `ws` package on Deno's `node:http`) and the same frame shapes, with no
 * checks, no rate limits and no storage. It trusts the user id at the front
 * of `auth_token` without verifying the signature, relays `chat_message` to
 * the recipient (and the sender's other connections) and answers the sender
 * with `message_sent`, and announces presence to online friends of the
 * benchmark graph (`lib/layout.ts`). Whatever the real server costs beyond
 * this is the price of its checks, storage and bookkeeping.
 *
 * Run: `deno run --allow-all bench/relay.ts` (env `PORT`, default 0); prints
 * one JSON line `{"event":"listening","port":N}` on stdout, exits on SIGTERM.
 */

import { wsTransport } from "../src/transport/ws.ts";
import type { WsConnection, WsHandlers } from "../src/transport/transport.ts";
import { friendsOf } from "./lib/layout.ts";

interface Client {
  userId: number;
  conn: WsConnection;
}

/** Starts the relay on `port` (0: any free port); resolves with the bound port and a stop function. */
export async function startRelay(
  port: number,
): Promise<{ port: number; close: () => Promise<void> }> {
  const byUser = new Map<number, Set<Client>>();
  let nextMessageId = 1;

  const sendToUser = (userId: number, frame: string, except?: Client) => {
    const set = byUser.get(userId);
    if (set === undefined) return;
    for (const client of set) if (client !== except) client.conn.send(frame);
  };
  const announce = (userId: number, status: "online" | "offline") => {
    const frame = JSON.stringify({ type: "presence", user_id: userId, status });
    for (const friend of friendsOf(userId)) sendToUser(friend, frame);
  };

  const listener = await wsTransport({
    hostname: "127.0.0.1",
    port,
    maxPayload: 16384,
    idleTimeoutMs: 60_000,
    wsPaths: ["/", "/ws"],
    fetch: () => new Response("Not found", { status: 404 }),
    checkUpgrade: () => null,
    onOpen(conn): WsHandlers {
      const client: Client = { userId: 0, conn };
      return {
        onText(text) {
          let frame: Record<string, unknown>;
          try {
            frame = JSON.parse(text);
          } catch {
            return;
          }
          switch (frame.type) {
            case "authenticate": {
              const userId = Number(String(frame.auth_token).split(":", 1)[0]);
              client.userId = userId;
              const set = byUser.get(userId) ?? new Set();
              set.add(client);
              byUser.set(userId, set);
              const online = friendsOf(userId).filter((id) => byUser.has(id));
              conn.send(
                JSON.stringify({ type: "authenticated", user_id: userId, online_friends: online }),
              );
              if (set.size === 1) announce(userId, "online");
              return;
            }
            case "chat_message": {
              const data: Record<string, unknown> = {
                message_id: nextMessageId++,
                sender_user_id: client.userId,
                recipient_user_id: Number(frame.recipient_user_id),
                message_text: frame.message_text,
                sent_at: new Date().toISOString(),
              };
              if (frame.client_message_id !== undefined) {
                data.client_message_id = frame.client_message_id;
              }
              const delivered = JSON.stringify({ type: "chat_message", ...data });
              sendToUser(Number(frame.recipient_user_id), delivered);
              sendToUser(client.userId, delivered, client);
              conn.send(JSON.stringify({ type: "message_sent", data }));
              return;
            }
            case "ping":
              conn.send('{"type":"pong"}');
              return;
          }
        },
        onBinary() {},
        onClose() {
          const set = byUser.get(client.userId);
          if (set === undefined || !set.delete(client)) return;
          if (set.size > 0) return;
          byUser.delete(client.userId);
          announce(client.userId, "offline");
        },
      };
    },
  });
  return { port: listener.port, close: () => listener.close() };
}

if (import.meta.main) {
  const relay = await startRelay(Number(Deno.env.get("PORT") ?? "0"));
  console.log(JSON.stringify({ event: "listening", port: relay.port }));
  const stop = Promise.withResolvers<void>();
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => stop.resolve());
  }
  await stop.promise;
  await relay.close();
  Deno.exit(0);
}
