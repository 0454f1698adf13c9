/**
 * The v1.1 frames during a database outage (docs/protocol.md: `unavailable`, never a receipt the
 * client was told failed): the database behind a TCP proxy is stopped or frozen.
 */

import assert from "node:assert/strict";
import { type TestServerOptions, withDatabaseProxy } from "./support/server.ts";
import { sleep } from "./support/wait.ts";

const DEADLINE_MS = 1000;

for (const failure of ["cut", "freeze"] as const) {
  Deno.test(`sync, history, read and delivered answer unavailable while the database is ${failure === "cut" ? "stopped" : "frozen"}, and mark nothing`, async () => {
    const seed = { users: [1, 2], friends: [[1, 2]] } satisfies TestServerOptions;
    await withDatabaseProxy(DEADLINE_MS, seed, async (t, proxy) => {
      const alice = await t.connectAs(1);
      const bob = await t.connectAs(2);
      alice.send({ type: "chat_message", recipient_user_id: 2, message_text: "hi" });
      const id = ((await alice.next("message_sent")).data as { message_id: number }).message_id;
      await bob.next("chat_message");

      if (failure === "cut") proxy.cut();
      else proxy.freeze();
      const frames = [
        { type: "sync", after_message_id: 0 },
        { type: "history", friend_user_id: 1 },
        { type: "read", friend_user_id: 1, up_to_message_id: id },
        { type: "delivered", message_id: id },
      ];
      for (const frame of frames) {
        bob.send(frame);
        const answer = await bob.next(undefined, DEADLINE_MS * 5);
        assert.deepEqual(
          { type: answer.type, code: answer.code },
          { type: "error", code: "unavailable" },
          JSON.stringify(frame),
        );
      }
      proxy.restore();
      await sleep(DEADLINE_MS * 2);
      const [row] = await t.db.sql`select is_read, read_at, delivered_at from messages`;
      assert.deepEqual(
        { ...row },
        { is_read: false, read_at: null, delivered_at: null },
        "nothing the client was told failed is stored",
      );
      const receipts = [
        ...await alice.drainFor(0, "read"),
        ...await alice.drainFor(0, "delivered"),
      ];
      assert.deepEqual(receipts, [], "no receipt announced for a failed frame");
      bob.send({ type: "delivered", message_id: id });
      assert.equal((await alice.next("delivered", 10_000)).message_id, id, "works again after");
    });
  });
}
