/**
 * The node's sign-in admission rate (`LOGIN_RATE_PER_S`) on a real server: a burst of sign-ins
 * past it is refused `rate_limited` with `retry_after_ms` and close 1013 before any database work,
 * each refused client gets its own time, one that comes back at its time signs in, and the users
 * already signed in go on chatting as before.
 */

import assert from "node:assert/strict";
import { withTestServer } from "./support/server.ts";
import { type Frame, TestClient } from "./support/client.ts";
import { sleep } from "./support/wait.ts";

Deno.test(
  "a burst of sign-ins past LOGIN_RATE_PER_S is refused rate_limited with retry_after_ms, each its own time; back at that time it signs in, and signed-in users chat on",
  () =>
    withTestServer({
      env: { LOGIN_RATE_PER_S: "1" }, // one sign-in a second on this node, one at once
      users: [1, 2, 3, 4, 5, 6],
      friends: [[1, 2]],
    }, async (t) => {
      const alice = await t.connectAs(1);
      const clients: TestClient[] = [];
      try {
        const attempt = async (userId: number) => {
          const client = await t.connect();
          clients.push(client);
          client.send({ type: "authenticate", auth_token: await t.token(userId) });
          return { client, answer: await client.next(["authenticated", "error", "auth_error"]) };
        };
        const burst = await Promise.all([2, 3, 4, 5, 6].map(attempt));
        const waits: number[] = [];
        for (const { client, answer } of burst) {
          assert.equal(answer.type, "error");
          assert.equal(answer.code, "rate_limited");
          assert.equal(typeof answer.retry_after_ms, "number");
          waits.push(answer.retry_after_ms as number);
          assert.equal(await client.closedWith(), 1013);
        }
        // Places one second apart: no two refused clients are told to come back together.
        waits.sort((a, b) => a - b);
        for (let i = 1; i < waits.length; i++) {
          assert.ok(waits[i]! - waits[i - 1]! >= 500, `waits ${waits.join(", ")}`);
        }
        assert.ok(waits[0]! > 0 && waits[waits.length - 1]! <= 5000, `waits ${waits.join(", ")}`);

        // Alice, signed in before the burst, is not affected: her message is stored and sent.
        alice.send({
          type: "chat_message",
          recipient_user_id: 2,
          message_text: "still here",
          client_message_id: "during-burst",
        });
        const sent = await alice.next("message_sent") as Frame & { data: { message_id: number } };
        alice.send({ type: "ping" });
        await alice.next("pong");

        // Bob (user 2) comes back: too early, he is told again, with no more than he was told
        // (his place is kept); at his time he signs in and his message is there.
        const bobsWait = burst[0]!.answer.retry_after_ms as number;
        const early = await attempt(2);
        if (early.answer.type === "error") {
          assert.equal(early.answer.code, "rate_limited");
          assert.ok((early.answer.retry_after_ms as number) <= bobsWait);
          await sleep(early.answer.retry_after_ms as number);
          const back = await attempt(2);
          assert.equal(back.answer.type, "authenticated");
          assert.equal(back.answer.last_message_id, sent.data.message_id);
        } else {
          // This machine took longer than his wait to get here: his place had come.
          assert.equal(early.answer.type, "authenticated");
        }
      } finally {
        await Promise.all([alice, ...clients].map((c) => c.close()));
      }
    }),
);

Deno.test("LOGIN_RATE_PER_S=0 admits a burst of sign-ins at once", () =>
  withTestServer({
    env: { LOGIN_RATE_PER_S: "0" },
    users: [1, 2, 3, 4, 5, 6, 7, 8],
  }, async (t) => {
    const clients = await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map((id) => t.connectAs(id)));
    await Promise.all(clients.map((c) => c.close()));
  }));
