/**
 * @module php_interop_test
 * The game's PHP side against a real server, with the real `php` CLI running the code of
 * docs/migrating.md as written there (read from the file): the token function signs a client
 * in, and `chat.php`'s push with the added header reaches both users unchanged. Skipped, saying
 * so in the name, where `php` or its curl module is missing (`.ci/run` installs them); failed
 * instead under CI=true.
 */

import assert from "node:assert/strict";
import { TEST_SECRET } from "./support/client.ts";
import { docBlock, runPhp } from "./support/migrating_doc.ts";
import { type TestServer, withTestServer } from "./support/server.ts";
import { needing, PHP } from "./support/tools.ts";

const NOTIFY_SECRET = "notify-secret-for-php-tests";

function phpTest(name: string, fn: (t: TestServer) => Promise<void>) {
  Deno.test(needing(PHP, {
    name,
    fn: () => withTestServer({ env: { NOTIFY_SECRET }, users: [1, 2, 3], friends: [[1, 2]] }, fn),
  }));
}

/** A token from the guide's `geobeasts_chat_token()`, run by PHP. */
async function phpToken(userId: number, secret: string, timestamp?: number): Promise<string> {
  const fn = await docBlock("php", "function geobeasts_chat_token(");
  const script = `${fn}\necho geobeasts_chat_token((int) $argv[1], $argv[2], ` +
    `isset($argv[3]) ? (int) $argv[3] : null);\n`;
  const args = [String(userId), secret, ...(timestamp === undefined ? [] : [String(timestamp)])];
  const out = await runPhp(script, args);
  if (out.code !== 0) throw new Error(`php exited with ${out.code}: ${out.stderr}`);
  return out.stdout;
}

phpTest(
  "a token minted by the guide's PHP function signs a real client in, and it chats",
  async (t) => {
    const token = await phpToken(1, TEST_SECRET);
    assert.match(token, /^1:\d+:[0-9a-f]{64}$/);
    const bob = await t.connectAs(2);
    const alice = await t.connect();
    alice.send({ type: "authenticate", auth_token: token });
    const auth = await alice.next("authenticated");
    assert.equal(auth.user_id, 1);
    assert.deepEqual(auth.online_friends, [2]);
    alice.send({ type: "chat_message", recipient_user_id: 2, message_text: "signed by PHP" });
    const sent = await alice.next("message_sent");
    const received = await bob.next("chat_message");
    assert.equal(received.message_text, "signed by PHP");
    assert.equal(received.message_id, (sent.data as { message_id: number }).message_id);
  },
);

phpTest(
  "a PHP token with a wrong secret, an expired timestamp, or a user code is refused",
  async (t) => {
    const now = Math.floor(Date.now() / 1000);
    const checkCode = (await runPhp(`<?php echo substr(hash('sha256', 'alice1' . 'x'), 0, 20);`))
      .stdout;
    const refused = [
      await phpToken(1, "not-the-server-secret"),
      await phpToken(1, TEST_SECRET, now - 86_400 - 60),
      await phpToken(1, TEST_SECRET, now + 3600),
      checkCode,
    ];
    const client = await t.connect();
    for (const token of refused) {
      client.send({ type: "authenticate", auth_token: token });
      assert.deepEqual(await client.next("auth_error"), {
        type: "auth_error",
        message: "Invalid auth token",
      }, token);
    }
    await assert.rejects(phpToken(1, "default_secret"), /AUTH_SECRET is not set/);
  },
);

phpTest(
  "chat.php's push, sent by PHP with the guide's header, reaches both users unchanged",
  async (t) => {
    const header = await docBlock("php", "CURLOPT_HTTPHEADER");
    const alice1 = await t.connectAs(1);
    const alice2 = await t.connectAs(1);
    const bob = await t.connectAs(2);
    const carol = await t.connectAs(3);
    const push = await postLikeChatPhp(t, header);
    assert.equal(push.status, 202, push.body);
    const sent = JSON.parse(push.payload);
    assert.equal(
      sent.message.message_text,
      "&lt;b&gt;Tom&lt;/b&gt; &amp; &quot;Jerry&quot; it&#039;s café 😀",
    );
    for (const client of [alice1, alice2, bob]) {
      assert.deepEqual(
        await client.next("chat_message"),
        sent,
      );
    }
    assert.deepEqual(await carol.drainFor(100), []);

    const withoutHeader = await postLikeChatPhp(t, header.replace(/^.*Authorization.*\n/m, ""));
    assert.equal(withoutHeader.status, 401, "the added header is what lets the push in");
    assert.deepEqual(await bob.drainFor(100), []);
  },
);

/**
 * Builds the body as `chat.php`'s `broadcastMessage()` does (`json_encode` of type and the row
 * its SELECT returns, text escaped by `Security::sanitizeInput`'s steps) and posts it with curl,
 * the headers being the guide's `curl_setopt(... CURLOPT_HTTPHEADER ...)` as written.
 */
async function postLikeChatPhp(t: TestServer, headerCode: string) {
  const script = `<?php
class Config {
    public static function get($key, $default = null) {
        $value = getenv($key);
        return $value === false ? $default : $value;
    }
}
$text = htmlspecialchars(stripslashes(trim('  <b>Tom</b> & "Jerry" it\\'s café 😀 ')), ENT_QUOTES, 'UTF-8');
$message = [
    'message_id' => 7,
    'sender_user_id' => 1,
    'recipient_user_id' => 2,
    'sender_user_code' => substr(hash('sha256', 'alice'), 0, 20),
    'recipient_user_code' => substr(hash('sha256', 'bob'), 0, 20),
    'receiver_user_code' => substr(hash('sha256', 'bob'), 0, 20),
    'message_text' => $text,
    'message_content' => $text,
    'is_read' => 0,
    'sent_at' => '2026-12-01 18:00:00',
    'sender_username' => 'alice1',
    'sender_avatar_url' => null,
];
$payload = json_encode(['type' => 'chat_message', 'message' => $message]);
$ch = curl_init(getenv('NOTIFY_URL'));
curl_setopt($ch, CURLOPT_RETURNTRANSFER, true);
curl_setopt($ch, CURLOPT_POST, true);
curl_setopt($ch, CURLOPT_POSTFIELDS, $payload);
${headerCode}
curl_setopt($ch, CURLOPT_TIMEOUT_MS, 5000);
$body = curl_exec($ch);
echo json_encode([
    'status' => curl_getinfo($ch, CURLINFO_HTTP_CODE),
    'body' => (string) $body,
    'payload' => $payload,
]);
`;
  const out = await runPhp(script, [], {
    NOTIFY_URL: `${t.internalUrl}/notify`,
    NOTIFY_SECRET,
  });
  assert.equal(out.code, 0, out.stderr);
  return JSON.parse(out.stdout) as { status: number; body: string; payload: string };
}
