/**
 * The SDK against a real server with a moderation hook (docs/protocol.md, "Moderation hook",
 * "Reports"): a rejected message is a typed refusal of that `send()`, a replaced one resolves
 * with the stored text, and `report()` resolves with the report's id.
 */

import assert from "node:assert/strict";
import { ChatClient, ChatSendError } from "../client/chat_client.ts";
import { answers, startFakeHook } from "./support/fake_hook.ts";
import { type TestServer, withTestServer } from "./support/server.ts";

const HOOK_SECRET = "sdk-moderation-hook-secret-0123456789";

function clientFor(t: TestServer, userId: number): ChatClient {
  return new ChatClient({
    url: t.wsUrl,
    getToken: () => t.token(userId),
    reconnectBaseMs: 50,
    reconnectCapMs: 200,
    pingIntervalMs: 0,
  });
}

Deno.test("SDK: a moderated send rejects with a typed refusal carrying the hook's reason; a replaced one resolves with the stored text; report() answers the report's id", async () => {
  const hook = startFakeHook(HOOK_SECRET);
  try {
    await withTestServer({
      users: [1, 2, 3],
      friends: [[1, 2]],
      env: { MODERATION_URL: hook.url, MODERATION_SECRET: HOOK_SECRET },
    }, async (t) => {
      const alice = clientFor(t, 1);
      const bob = clientFor(t, 2);
      const carol = clientFor(t, 3);
      try {
        alice.connect();
        bob.connect();
        carol.connect();
        hook.answer = () => answers.reject("Be nice");
        const refused = await alice.send(2, "you are awful").then(
          () => assert.fail("a rejected message resolved"),
          (err) => err,
        );
        assert.ok(refused instanceof ChatSendError);
        assert.equal(refused.code, "moderated");
        assert.ok(refused.moderated);
        assert.equal(refused.message, "Be nice");

        hook.answer = () => answers.replace("good game");
        const sent = await alice.send(2, "gg noob");
        assert.equal(sent.message_text, "good game");

        const reportId = await bob.report(sent.message_id, "harassment", "rude");
        assert.equal(typeof reportId, "number");
        assert.equal(await bob.report(sent.message_id, "spam"), reportId, "the same report");
        const outsider = await carol.report(sent.message_id, "spam").then(
          () => assert.fail("an outsider's report resolved"),
          (err) => err,
        );
        assert.ok(outsider instanceof ChatSendError);
        assert.equal(outsider.code, "not_found");
        await assert.rejects(
          // deno-lint-ignore no-explicit-any
          () => bob.report(sent.message_id, "rude" as any),
          RangeError,
        );
        await assert.rejects(() => bob.report(0, "spam"), RangeError);
        await assert.rejects(() => bob.report(1, "spam", "x".repeat(501)), RangeError);
      } finally {
        await Promise.all([alice.close(), bob.close(), carol.close()]);
      }
    });
  } finally {
    await hook.close();
  }
});
