/**
 * Faults: a database that goes away or freezes mid-conversation, a handler
 * that throws, a client that vanishes without a close.
 */

import assert from "node:assert/strict";
import { MemoryCluster } from "../src/bus/memory.ts";
import { loadConfig } from "../src/config.ts";
import { silentLogger } from "../src/log.ts";
import { MemoryRepository } from "../src/store/memory.ts";
import type { StoreResult } from "../src/store/repository.ts";
import { startChatServer } from "../src/server/server.ts";
import { wsTransport } from "../src/transport/ws.ts";
import { connectAs, TEST_SECRET, type TestClient, withoutLastSeen } from "./support/client.ts";
import { startTestServer, type TestServerOptions, withDatabaseProxy } from "./support/server.ts";
import { sleep } from "./support/wait.ts";

const DEADLINE_MS = 1000;

for (const failure of ["cut", "freeze"] as const) {
  Deno.test(`a database that is ${failure === "cut" ? "stopped" : "frozen"} mid-conversation answers unavailable, acknowledges nothing unstored, and recovers`, async () => {
    const seed = { users: [1, 2], friends: [[1, 2]] } satisfies TestServerOptions;
    await withDatabaseProxy(DEADLINE_MS, seed, async (t, proxy) => {
      const alice = await t.connectAs(1);
      const bob = await t.connectAs(2);
      alice.send({
        type: "chat_message",
        recipient_user_id: 2,
        message_text: "before",
        client_message_id: "a",
      });
      await alice.next("message_sent");
      await bob.next("chat_message");

      if (failure === "cut") proxy.cut();
      else proxy.freeze();
      const started = Date.now();
      alice.send({
        type: "chat_message",
        recipient_user_id: 2,
        message_text: "during",
        client_message_id: "b",
      });
      const error = await alice.next(["error", "message_sent"], DEADLINE_MS * 4);
      assert.deepEqual(
        { type: error.type, code: error.code, cmid: error.client_message_id },
        { type: "error", code: "unavailable", cmid: "b" },
      );
      assert.ok(
        Date.now() - started < DEADLINE_MS * 3,
        "unavailable took longer than the deadline",
      );
      const ready = await fetch(`${t.internalUrl}/readyz`);
      assert.equal(ready.status, 503);
      await ready.body?.cancel();
      const stranger = await t.connect();
      stranger.send({ type: "authenticate", auth_token: await t.token(1) });
      assert.notEqual((await stranger.next(undefined, DEADLINE_MS * 4)).type, "authenticated");

      proxy.restore();
      let answer;
      const until = Date.now() + 10_000;
      do {
        await sleep(200);
        alice.send({
          type: "chat_message",
          recipient_user_id: 2,
          message_text: "after",
          client_message_id: "c",
        });
        answer = await alice.next(["error", "message_sent"], DEADLINE_MS * 4);
      } while (answer.type !== "message_sent" && Date.now() < until);
      assert.equal(answer.type, "message_sent", "no recovery within 10 s");
      assert.equal((await bob.next("chat_message")).message_text, "after");
      const rows = await t.db.sql`select client_message_id from messages order by message_id`;
      const stored = rows.map((r) => r.client_message_id);
      // "b" was answered unavailable, so it must not have been stored, even late.
      assert.deepEqual(stored, ["a", "c"]);
      const readyAgain = await fetch(`${t.internalUrl}/readyz`);
      assert.equal(readyAgain.status, 200);
      await readyAgain.body?.cancel();
    });
  });
}

Deno.test("an exception inside a frame handler becomes error internal and other connections keep working", async () => {
  const repository = new MemoryRepository();
  for (const id of [1, 2, 3]) repository.addUser(id);
  repository.befriend(1, 2);
  repository.befriend(3, 2);
  const store = repository.storeMessage.bind(repository);
  repository.storeMessage = (message): Promise<StoreResult> => {
    if (message.messageText === "boom") throw new TypeError("a bug in storage");
    return store(message);
  };
  const bus = new MemoryCluster().node();
  const server = await startChatServer({
    config: loadConfig({
      AUTH_SECRET: TEST_SECRET,
      HOST: "127.0.0.1",
      PORT: "0",
      INTERNAL_PORT: "0",
    }),
    repository,
    bus,
    transport: wsTransport,
    logger: silentLogger,
  });
  const clients: TestClient[] = [];
  const as = async (id: number) => {
    const client = await connectAs(`ws://127.0.0.1:${server.publicPort}/ws`, id);
    clients.push(client);
    return client;
  };
  try {
    const alice = await as(1);
    const bob = await as(2);
    const carol = await as(3);
    alice.send({
      type: "chat_message",
      recipient_user_id: 2,
      message_text: "boom",
      client_message_id: "x",
    });
    const error = await alice.next("error");
    assert.equal(error.code, "internal");
    carol.send({ type: "chat_message", recipient_user_id: 2, message_text: "still here" });
    assert.equal((await bob.next("chat_message")).message_text, "still here");
    alice.send({ type: "chat_message", recipient_user_id: 2, message_text: "and me" });
    assert.equal((await alice.next("message_sent")).type, "message_sent");
    assert.deepEqual(repository.messages.map((m) => m.messageText), ["still here", "and me"]);
  } finally {
    await server.shutdown();
    await Promise.all(clients.map((c) => c.closed));
    await bus.close();
  }
});

Deno.test("a client that vanishes without a close handshake is cleaned up and its friends see it go offline", async () => {
  const t = await startTestServer({ users: [1, 2], friends: [[1, 2]] });
  try {
    const bob = await t.connectAs(2);
    const raw = await t.rawAs(1);
    assert.deepEqual(await bob.next("presence"), {
      type: "presence",
      user_id: 1,
      status: "online",
    });
    raw.close(); // TCP FIN without a WebSocket close frame
    assert.deepEqual(withoutLastSeen(await bob.next("presence")), {
      type: "presence",
      user_id: 1,
      status: "offline",
    });
    assert.equal(t.server.hub.connectionCount, 1);
  } finally {
    await t.close();
  }
});
