/**
 * @module client_updates_test
 * The SDK on a real v1.2 server's update sequence (docs/protocol.md, "Updates" and "Editing and
 * deleting"): a device that was away gets what happened meanwhile from `sync {after_seq}`, in
 * order and in its latest state; a live frame lost on the way is noticed by the next one's `seq`
 * and fetched; edits and deletions resolve and reach the friend. Run twice: as
 * client/chat_client.ts and as the JavaScript the demo page embeds.
 */

import assert from "node:assert/strict";
import * as typedSdk from "../client/chat_client.ts";
import type { ChatClient, ChatClientOptions } from "../client/chat_client.ts";
import { CLIENT_JS } from "../src/demo_page/page.ts";
import { startTestServer, type TestServer } from "./support/server.ts";
import { steeredWebSocket } from "./support/sdk_socket.ts";
import { eventually } from "./support/wait.ts";

type Sdk = typeof typedSdk;
const embeddedSdk: Sdk = await import(`data:text/javascript,${encodeURIComponent(CLIENT_JS)}`);

function sdkSuite(variant: string, sdk: Sdk): void {
  /** A connected client for `userId` whose `log` records what an app would render, in order. */
  async function connected(
    t: TestServer,
    userId: number,
    options: Partial<ChatClientOptions> = {},
  ) {
    const client: ChatClient = new sdk.ChatClient({
      url: t.wsUrl,
      getToken: () => t.token(userId),
      reconnectBaseMs: 50,
      reconnectCapMs: 200,
      pingIntervalMs: 0,
      autoDelivered: false,
      ...options,
    });
    const log: string[] = [];
    client.on("chat_message", (m) => log.push(`chat ${m.message_text}`));
    client.on("message_updated", ({ message: m }) =>
      log.push(
        `updated ${m.message_id} "${m.message_text}"${m.deleted_at ? " deleted" : ""}${
          m.deleted_for_me ? " deleted for me" : ""
        }${m.edited_at ? " edited" : ""}`,
      ));
    client.on("read", (r) => log.push(`read ${r.user_id} up to ${r.up_to_message_id}`));
    const synced = client.once("synced");
    client.connect();
    await synced;
    return { client, log };
  }

  function updatesTest(name: string, body: (t: TestServer) => Promise<void>) {
    Deno.test(`${name} (${variant})`, async () => {
      const t = await startTestServer({ users: [1, 2, 3], friends: [[1, 2], [2, 3]] });
      try {
        await body(t);
      } finally {
        await t.close();
      }
    });
  }

  updatesTest(
    "a device away while a new message, an edit, a deletion and a read receipt happen gets all four from sync, in order, once",
    async (t) => {
      const alice = await connected(t, 1);
      const bob = await connected(t, 2);
      const mine = await alice.client.send(2, "from alice");
      const first = await bob.client.send(1, "first");
      const second = await bob.client.send(1, "second");
      await eventually("alice has both", () => alice.log.length === 2);
      const lastSeq = alice.client.lastSeq;
      assert.ok(lastSeq !== undefined && lastSeq > 0, `a seq once signed in: ${lastSeq}`);
      await alice.client.close();

      await bob.client.send(1, "while you were away");
      await bob.client.editMessage(first.message_id, "first, edited");
      await bob.client.deleteMessage(second.message_id, "everyone");
      bob.client.markRead(1, mine.message_id);
      await eventually("the read receipt is stored", async () => {
        const [row] = await t.db.sql`select is_read from messages
                                     where message_id = ${mine.message_id}`;
        return row?.is_read === true;
      });

      const back = await connected(t, 1, { lastSeq });
      assert.deepEqual(back.log, [
        "chat while you were away",
        `updated ${first.message_id} "first, edited" edited`,
        `updated ${second.message_id} "" deleted`,
        `read 2 up to ${mine.message_id}`,
      ]);
      assert.equal(back.client.lastSeq, lastSeq + 4);
      await back.client.close();
      await bob.client.close();
    },
  );

  updatesTest(
    "a live message lost on the way is noticed by the next one's seq and fetched by sync, both shown in order",
    async (t) => {
      const sent: Record<string, unknown>[] = [];
      const alice = await connected(t, 1, {
        WebSocket: steeredWebSocket({
          // The first message is lost while the socket stays up (a pub/sub or node failure).
          deliver: (data) => {
            const frame = JSON.parse(data);
            return !(frame.type === "chat_message" && frame.message_text === "lost on the way");
          },
          sent: (data) => sent.push(JSON.parse(data)),
        }),
      });
      const bob = await connected(t, 2);
      const before = alice.client.lastSeq!;
      await bob.client.send(1, "lost on the way");
      await bob.client.send(1, "the next one");
      await eventually("both shown", () => alice.log.length === 2);
      assert.deepEqual(alice.log, ["chat lost on the way", "chat the next one"]);
      assert.deepEqual(
        sent.filter((f) => f.type === "sync"),
        [{ type: "sync", after_seq: before, limit: 100 }],
      );
      assert.equal(alice.client.lastSeq, before + 2);
      await alice.client.close();
      await bob.client.close();
    },
  );

  updatesTest(
    "editMessage and deleteMessage resolve with the changed message, reach the friend, and are refused by the rules",
    async (t) => {
      const alice = await connected(t, 1);
      const bob = await connected(t, 2);
      const message = await bob.client.send(1, "typo");
      await eventually("alice has it", () => alice.log.length === 1);

      const notHers = await alice.client.editMessage(message.message_id, "mine now").catch((e) =>
        e
      );
      assert.ok(notHers instanceof sdk.ChatSendError);
      assert.equal(notHers.code, "not_found");
      const missing = await bob.client.deleteMessage(999_999, "everyone").catch((e) => e);
      assert.equal(missing.code, "not_found");

      const edited = await bob.client.editMessage(message.message_id, "fixed");
      assert.equal(edited.message_text, "fixed");
      assert.ok(edited.edited_at !== undefined);
      await eventually("alice sees the edit", () => alice.log.length === 2);
      assert.equal(alice.log[1], `updated ${message.message_id} "fixed" edited`);

      const hidden = await alice.client.deleteMessage(message.message_id, "me");
      assert.equal(hidden.deleted_for_me, true);
      assert.equal(hidden.message_text, "");
      const [row] = await t.db.sql`select message_text from messages
                                   where message_id = ${message.message_id}`;
      assert.equal(row!.message_text, "fixed", "deleted for alice only: the text stays");

      const gone = await bob.client.deleteMessage(message.message_id, "everyone");
      assert.ok(gone.deleted_at !== undefined);
      assert.equal(gone.message_text, "");
      // Bob's updates: his edit, then his deletion; alice's deletion for herself is not his.
      assert.deepEqual(bob.log.filter((l) => l.startsWith("updated")), [
        `updated ${message.message_id} "fixed" edited`,
        `updated ${message.message_id} "" deleted edited`,
      ]);
      const late = await bob.client.editMessage(message.message_id, "again").catch((e) => e);
      assert.equal(late.code, "message_deleted");
      const [erased] = await t.db.sql`select message_text from messages
                                      where message_id = ${message.message_id}`;
      assert.equal(erased!.message_text, "", "the text is erased in the database");
      await alice.client.close();
      await bob.client.close();
    },
  );
}

sdkSuite("TypeScript", typedSdk);
sdkSuite("embedded JS", embeddedSdk);
