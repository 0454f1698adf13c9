/**
 * examples/moderation_hook.ts, run as a studio would run it (its own `deno run` process), in
 * front of a real chat server: words of its list are masked, links are rejected, other text is
 * allowed; calls that are unsigned, wrongly signed or stale are refused.
 */

import assert from "node:assert/strict";
import { importSigningKey, signBody } from "../src/moderation/mod.ts";
import { collectLines } from "./support/process.ts";
import { withTestServer } from "./support/server.ts";
import { within } from "./support/wait.ts";

const SECRET = "example-hook-secret-0123456789abcdef";
const SCRIPT = new URL("../examples/moderation_hook.ts", import.meta.url);

async function withExampleHook(body: (url: string) => Promise<void>): Promise<void> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-env", SCRIPT.pathname],
    env: {
      MODERATION_SECRET: SECRET,
      MODERATION_WORDS: "darn, heck,Noob",
      PORT: "0",
      NO_COLOR: "1",
    },
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const out = collectLines(child.stdout);
  try {
    const [first] = await within(
      20_000,
      out.until((lines) => lines.length > 0),
      "the hook listening",
    );
    const url = JSON.parse(first!).listening as string;
    await body(url);
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await out.done;
  }
}

Deno.test("the example hook masks listed words, rejects links and allows the rest, in front of a real server", async () => {
  await withExampleHook(async (url) => {
    await withTestServer({
      users: [1, 2],
      friends: [[1, 2]],
      env: { MODERATION_URL: url, MODERATION_SECRET: SECRET, MODERATION_FAIL: "closed" },
    }, async (t) => {
      const a = await t.connectAs(1);
      const b = await t.connectAs(2);
      const send = (text: string) =>
        a.send({ type: "chat_message", recipient_user_id: 2, message_text: text });
      send("Oh DARN, what the heck, noobs");
      const sent = await a.next("message_sent");
      assert.equal(
        (sent.data as { message_text: string }).message_text,
        "Oh ****, what the ****, noobs",
      );
      assert.equal((await b.next("chat_message")).message_text, "Oh ****, what the ****, noobs");
      for (
        const link of [
          "free gems at https://x.example/gems",
          "www.cheats.example",
          "visit cheat.gg now",
        ]
      ) {
        send(link);
        assert.deepEqual([(await a.next("error")).code, link], ["moderated", link]);
      }
      send("good game, well played");
      assert.equal(
        ((await a.next("message_sent")).data as { message_text: string }).message_text,
        "good game, well played",
      );
    });
  });
});

Deno.test("the example hook refuses a call that is unsigned, wrongly signed or stale", async () => {
  await withExampleHook(async (url) => {
    const body = JSON.stringify({
      kind: "new",
      sender_user_id: 1,
      recipient_user_id: 2,
      message_text: "hi",
    });
    const post = (headers: Record<string, string>) =>
      fetch(url, { method: "POST", headers, body }).then(async (res) => {
        await res.body?.cancel();
        return res.status;
      });
    const now = Math.floor(Date.now() / 1000);
    const key = await importSigningKey(SECRET);
    const wrong = await importSigningKey(SECRET + "x");
    assert.equal(await post({}), 401);
    assert.equal(
      await post({
        "x-chat-timestamp": String(now),
        "x-chat-signature": await signBody(wrong, now, body),
      }),
      401,
    );
    const old = now - 600;
    assert.equal(
      await post({
        "x-chat-timestamp": String(old),
        "x-chat-signature": await signBody(key, old, body),
      }),
      401,
    );
    assert.equal(
      await post({
        "x-chat-timestamp": String(now),
        "x-chat-signature": await signBody(key, now, body),
      }),
      200,
    );
  });
});
