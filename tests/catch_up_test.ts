/**
 * Catch-up and history on a real server (docs/protocol.md, v1.1): `sync` by id, `history` by
 * conversation, unread counts around `read`, and the answers to bad or early frames.
 * Users 1..4; 1–2 and 3–1 are friends.
 */

import assert from "node:assert/strict";
import type { Frame, TestClient } from "./support/client.ts";
import { CLUSTER_KINDS, nodesTest } from "./support/cluster.ts";
import type { TestDatabase } from "./support/db.ts";

const [memory] = CLUSTER_KINDS;

/** Sends `text` from `from` to `to` and returns the stored row as `message_sent` gave it. */
async function say(from: TestClient, to: number, text: string): Promise<Record<string, unknown>> {
  from.send({ type: "chat_message", recipient_user_id: to, message_text: text });
  return (await from.next("message_sent")).data as Record<string, unknown>;
}

const texts = (frame: Frame) =>
  (frame.messages as Record<string, unknown>[]).map((m) => m.message_text);

nodesTest(
  memory!,
  "a client offline while three messages arrive syncs exactly those three, oldest first",
  { nodes: 1 },
  async ([t]) => {
    const alice = await t!.connectAs(1);
    const bob = await t!.connectAs(2);
    const seen = await say(alice, 2, "before");
    await bob.next("chat_message");
    await bob.close();
    const sent = [await say(alice, 2, "one"), await say(alice, 2, "two")];
    const carol = await t!.connectAs(3);
    carol.send({ type: "chat_message", recipient_user_id: 1, message_text: "not bob's" });
    await carol.next("message_sent");
    sent.push(await say(alice, 2, "three"));
    const bobAgain = await t!.connectAs(2);
    bobAgain.send({ type: "sync", after_message_id: seen.message_id });
    const result = await bobAgain.next("sync_result");
    assert.equal(result.has_more, false);
    assert.deepEqual(
      result.messages,
      sent.map((data) => ({ ...data, is_read: false })),
      "exactly the three, with is_read and no receipts set",
    );
  },
);

nodesTest(
  memory!,
  "sync pages with has_more until the last page, and limit defaults and bounds hold",
  { nodes: 1 },
  async ([t]) => {
    const alice = await t!.connectAs(1);
    for (let i = 0; i < 7; i++) await say(alice, 2, `m${i}`);
    const pages: unknown[][] = [];
    let after = 0;
    while (true) {
      alice.send({ type: "sync", after_message_id: after, limit: 3 });
      const page = await alice.next("sync_result");
      pages.push(texts(page));
      const messages = page.messages as { message_id: number }[];
      if (!page.has_more) break;
      after = messages[messages.length - 1]!.message_id;
    }
    assert.deepEqual(pages, [["m0", "m1", "m2"], ["m3", "m4", "m5"], ["m6"]]);
    alice.send({ type: "sync", after_message_id: 0 });
    assert.equal((await alice.next("sync_result")).messages instanceof Array, true);
  },
);

nodesTest(
  memory!,
  "history scrolls one conversation back, newest first, across pages",
  { nodes: 1 },
  async ([t]) => {
    const alice = await t!.connectAs(1);
    const carol = await t!.connectAs(3);
    for (let i = 0; i < 5; i++) await say(alice, 2, `to bob ${i}`);
    await say(carol, 1, "from carol");
    alice.send({ type: "history", friend_user_id: 2, limit: 2 });
    const first = await alice.next("history_result");
    assert.equal(first.friend_user_id, 2);
    assert.deepEqual(texts(first), ["to bob 4", "to bob 3"]);
    assert.equal(first.has_more, true);
    const oldest = (first.messages as { message_id: number }[])[1]!.message_id;
    alice.send({ type: "history", friend_user_id: "2", before_message_id: oldest, limit: 10 });
    const rest = await alice.next("history_result");
    assert.deepEqual(texts(rest), ["to bob 2", "to bob 1", "to bob 0"]);
    assert.equal(rest.has_more, false);
  },
);

nodesTest(
  memory!,
  "unread counts drop after read, and a repeated read changes and sends nothing",
  { nodes: 1 },
  async ([t]) => {
    const bob = await t!.connectAs(2);
    const carol = await t!.connectAs(3);
    const ids = [];
    for (const text of ["a", "b", "c"]) ids.push((await say(bob, 1, text)).message_id as number);
    await say(carol, 1, "d");
    const alice = await t!.connect();
    alice.send({ type: "authenticate", auth_token: await t!.token(1) });
    const before = await alice.next("authenticated");
    assert.equal(before.unread_count, 4);
    assert.deepEqual(before.unread_by_friend, { "2": 3, "3": 1 });
    alice.send({ type: "read", friend_user_id: 2, up_to_message_id: ids[1] });
    const receipt = await bob.next("read");
    alice.send({ type: "read", friend_user_id: 2, up_to_message_id: ids[1] });
    assert.deepEqual(await bob.drainFor(300, "read"), [], "nothing changed the second time");
    const later = await t!.connect();
    later.send({ type: "authenticate", auth_token: await t!.token(1) });
    const after = await later.next("authenticated");
    assert.equal(after.unread_count, 2);
    assert.deepEqual(after.unread_by_friend, { "2": 1, "3": 1 });
    later.send({ type: "sync", after_message_id: 0 });
    const rows = (await later.next("sync_result")).messages as Record<string, unknown>[];
    assert.deepEqual(rows.map((m) => m.is_read), [true, true, false, false]);
    assert.equal(rows[0]!.read_at, receipt.read_at);
  },
);

nodesTest(
  memory!,
  "every new frame is not_authenticated before authenticate and invalid_field with a bad field",
  { nodes: 1 },
  async ([t]) => {
    const anon = await t!.connect();
    const frames = [
      { type: "sync", after_message_id: 0 },
      { type: "history", friend_user_id: 2 },
      { type: "read", friend_user_id: 2, up_to_message_id: 1 },
      { type: "delivered", message_id: 1 },
      { type: "reauthenticate", auth_token: "x" },
      { type: "sync", after_message_id: -1 }, // the auth check comes first
    ];
    for (const frame of frames) {
      anon.send(frame);
      assert.equal((await anon.next("error")).code, "not_authenticated", JSON.stringify(frame));
    }
    const alice = await t!.connectAs(1);
    const cases: [Record<string, unknown>, string, string][] = [
      [{ type: "sync" }, "missing_fields", ""],
      [{ type: "sync", after_message_id: -1 }, "invalid_field", "after_message_id"],
      [{ type: "sync", after_message_id: 1.5 }, "invalid_field", "after_message_id"],
      [{ type: "sync", after_message_id: "x" }, "invalid_field", "after_message_id"],
      [{ type: "sync", after_message_id: 0, limit: 0 }, "invalid_field", "limit"],
      [{ type: "sync", after_message_id: 0, limit: 501 }, "invalid_field", "limit"],
      [{ type: "sync", after_message_id: 0, limit: "ten" }, "invalid_field", "limit"],
      [{ type: "history" }, "missing_fields", ""],
      [{ type: "history", friend_user_id: 0 }, "invalid_field", "friend_user_id"],
      [{ type: "history", friend_user_id: 2, before_message_id: 0 }, "invalid_field", "before"],
      [{ type: "history", friend_user_id: 2, limit: 101 }, "invalid_field", "limit"],
      [{ type: "read", friend_user_id: 2 }, "missing_fields", ""],
      [{ type: "read", friend_user_id: -2, up_to_message_id: 1 }, "invalid_field", "friend"],
      [{ type: "read", friend_user_id: 2, up_to_message_id: -1 }, "invalid_field", "up_to"],
      [{ type: "read", friend_user_id: 1, up_to_message_id: 1 }, "invalid_field", "friend"],
      [{ type: "delivered" }, "missing_fields", ""],
      [{ type: "delivered", message_id: 0 }, "invalid_field", "message_id"],
      [{ type: "delivered", message_id: true }, "invalid_field", "message_id"],
    ];
    for (const [frame, code, field] of cases) {
      alice.send(frame);
      const error = await alice.next("error");
      assert.equal(error.code, code, JSON.stringify(frame));
      assert.ok(String(error.message).includes(field), `${error.message} names ${field}`);
    }
    for (
      const frame of [{ type: "sync", after_message_id: 0, limit: 500 }, {
        type: "history",
        friend_user_id: 2,
        limit: 100,
      }]
    ) {
      alice.send(frame);
      assert.equal((await alice.next()).type, `${frame.type}_result`);
    }
  },
);

/** 260 messages between users 1 and 2, each 1000 U+0001 (6 bytes each once JSON-escaped). */
async function escapeHeavyConversation(db: TestDatabase): Promise<number[]> {
  const rows = await db.sql<{ message_id: string }[]>`
    insert into messages (sender_user_id, recipient_user_id, message_text, client_message_id)
    select 1 + g % 2, 2 - g % 2, repeat(chr(1), 1000), 'c' || g || repeat(chr(1), 60)
    from generate_series(1, 260) g
    returning message_id`;
  return rows.map((row) => Number(row.message_id)).sort((a, b) => a - b);
}

/** One page as the client received it. */
interface Page {
  ids: number[];
  texts: string[];
  hasMore: boolean;
  /** The frame's UTF-8 size as received. */
  bytes: number;
}

/** Asks for pages of `type` (`ask(last id of the previous page)`) until `has_more` is false. */
async function readPages(
  client: TestClient,
  type: string,
  ask: (lastId: number | undefined) => Record<string, unknown>,
): Promise<Page[]> {
  const sizes: number[] = [];
  client.ws.addEventListener("message", (event) => {
    const text = String(event.data);
    if (text.startsWith(`{"type":"${type}"`)) sizes.push(new TextEncoder().encode(text).length);
  });
  const pages: Page[] = [];
  let last: number | undefined;
  while (pages.length < 50) {
    client.send(ask(last));
    const result = await client.next(type);
    const messages = result.messages as { message_id: number; message_text: string }[];
    pages.push({
      ids: messages.map((m) => m.message_id),
      texts: messages.map((m) => m.message_text),
      hasMore: result.has_more as boolean,
      bytes: sizes[pages.length]!,
    });
    if (!result.has_more || messages.length === 0) break;
    last = messages.at(-1)!.message_id;
  }
  return pages;
}

const PAGE_MAX_BYTES = 256 * 1024;

const BY_BYTES: {
  name: string;
  type: string;
  limit: number;
  ask: (last: number | undefined) => Record<string, unknown>;
  order: (ids: number[]) => number[];
}[] = [{
  name: "sync over escape-heavy messages answers pages within PAGE_MAX_BYTES with has_more, " +
    "and paging to the end returns every message once, oldest first",
  type: "sync_result",
  limit: 500,
  ask: (last) => ({ type: "sync", after_message_id: last ?? 0, limit: 500 }),
  order: (ids) => ids,
}, {
  name: "history over escape-heavy messages answers pages within PAGE_MAX_BYTES with has_more, " +
    "and scrolling back returns every message once, newest first",
  type: "history_result",
  limit: 100,
  ask: (last) => ({ type: "history", friend_user_id: 2, limit: 100, before_message_id: last }),
  order: (ids) => ids.toReversed(),
}];

for (const { name, type, limit, ask, order } of BY_BYTES) {
  nodesTest(memory!, name, { nodes: 1 }, async ([t], db) => {
    const ids = await escapeHeavyConversation(db);
    const pages = await readPages(await t!.connectAs(1), type, ask);
    for (const page of pages) {
      assert.ok(page.bytes <= PAGE_MAX_BYTES, `a page of ${page.bytes} bytes`);
    }
    assert.ok(pages.length > 1, "260 messages of about 6 KiB each in more than one page");
    assert.deepEqual(pages.map((page) => page.hasMore), pages.map((_, i) => i < pages.length - 1));
    for (const page of pages.slice(0, -1)) {
      assert.ok(page.ids.length > 0 && page.ids.length < limit, "cut by bytes, not by limit");
      // Filled, not cut short: the next message would not have fitted.
      assert.ok(page.bytes > PAGE_MAX_BYTES - 8 * 1024, `${page.bytes}`);
    }
    assert.deepEqual(pages.flatMap((page) => page.ids), order(ids), "every message once");
    assert.ok(pages.every((page) => page.texts.every((text) => text === "\u0001".repeat(1000))));
  });
}
