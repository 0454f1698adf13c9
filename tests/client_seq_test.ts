/**
 * @module client_seq_test
 * The SDK on a v1.2 server's per-user update sequence (docs/protocol.md, "Updates" and "Editing
 * and deleting"), with the test playing the server frame by frame: updates applied once and in
 * `seq` order whether live or synced, a gap answered by `sync {after_seq}`, the catch-up after a
 * reconnect, edits and deletions, and the v1.1 behaviour kept for frames without `seq`. Run twice:
 * as client/chat_client.ts and as the JavaScript the demo page embeds.
 */

import assert from "node:assert/strict";
import * as typedSdk from "../client/chat_client.ts";
import type { ChatClientOptions, WebSocketLike } from "../client/chat_client.ts";
import { CLIENT_JS } from "../src/demo_page/page.ts";
import { fakeWebSocket } from "./support/sdk_socket.ts";
import { eventually } from "./support/wait.ts";

type Sdk = typeof typedSdk;
const embeddedSdk: Sdk = await import(`data:text/javascript,${encodeURIComponent(CLIENT_JS)}`);

type Frame = Record<string, unknown>;

const SENT_AT = "2026-11-25T10:00:00.000Z";

/** A message between users 1 and 2 as the server sends it. */
function message(id: number, from: number, text: string): Frame {
  return {
    message_id: id,
    sender_user_id: from,
    recipient_user_id: from === 1 ? 2 : 1,
    message_text: text,
    sent_at: SENT_AT,
  };
}
const chat = (id: number, from: number, text: string, seq?: number): Frame => ({
  type: "chat_message",
  ...message(id, from, text),
  ...(seq === undefined ? {} : { seq }),
});
const updated = (m: Frame, seq?: number): Frame => ({
  type: "message_updated",
  message: { is_read: false, ...m },
  ...(seq === undefined ? {} : { seq }),
});
const read = (upTo: number, seq: number): Frame => ({
  type: "read",
  user_id: 2,
  friend_user_id: 1,
  up_to_message_id: upTo,
  read_at: SENT_AT,
  seq,
});

function sdkSuite(variant: string, sdk: Sdk): void {
  /**
   * User 1's client on sockets the test answers by hand; `log` records what an app would render,
   * in the order the events came.
   */
  function handClient(options: Partial<ChatClientOptions> = {}) {
    const sockets: { socket: WebSocketLike; sent: string[] }[] = [];
    const client = new sdk.ChatClient({
      url: "ws://fake/ws",
      getToken: () => Promise.resolve("1:0:sig"),
      pingIntervalMs: 0,
      autoDelivered: false,
      reconnectBaseMs: 1,
      random: () => 0,
      WebSocket: fakeWebSocket((socket, sent) => sockets.push({ socket, sent })),
      ...options,
    });
    const log: string[] = [];
    client.on("chat_message", (m) => log.push(`chat ${m.message_id} ${m.message_text}`));
    client.on(
      "message_updated",
      (u) => log.push(`updated ${u.message.message_id} "${u.message.message_text}"`),
    );
    client.on("read", (r) => log.push(`read ${r.up_to_message_id}`));
    client.on("delivered", (d) => log.push(`delivered ${d.message_id}`));
    client.on(
      "synced",
      (s) =>
        log.push(`synced ${s.count}${s.seq === undefined ? "" : `/${s.updates} seq ${s.seq}`}`),
    );
    const receive = (frame: Frame) =>
      sockets.at(-1)!.socket.onmessage!({ data: JSON.stringify(frame) });
    /** The frames of `type` the client sent, on every socket, oldest first. */
    const sent = (type: string): Frame[] =>
      sockets.flatMap((s) => s.sent).map((d) => JSON.parse(d)).filter((f) => f.type === type);
    /** Opens the newest socket and answers its `authenticate` with `authenticated` + `fields`. */
    const signIn = async (fields: Frame) => {
      const current = sockets.at(-1)!;
      current.socket.onopen!({});
      await eventually("authenticate", () => current.sent.length > 0);
      receive({ type: "authenticated", user_id: 1, online_friends: [], ...fields });
    };
    /** Drops the connection; resolves once the client opened its next socket. */
    const drop = async () => {
      const count = sockets.length;
      sockets.at(-1)!.socket.onclose!({ code: 1006, reason: "" });
      await eventually("reconnect", () => sockets.length === count + 1);
    };
    /** `close()`, with the close event the fake socket does not fire by itself. */
    const close = async () => {
      const closing = client.close();
      sockets.at(-1)?.socket.onclose?.({ code: 1000, reason: "" });
      await closing;
    };
    client.connect();
    return { client, log, receive, sent, signIn, drop, close };
  }

  Deno.test(`live updates are applied in seq order once each; a seq already applied is skipped (${variant})`, async () => {
    const t = handClient();
    await t.signIn({ seq: 0, last_message_id: 0 });
    t.receive(chat(1, 2, "one", 1));
    t.receive(chat(2, 2, "two", 2));
    t.receive(chat(2, 2, "two", 2));
    t.receive(chat(1, 2, "one", 1));
    t.receive(updated({ ...message(1, 2, "one, edited"), edited_at: SENT_AT }, 3));
    t.receive(read(5, 3));
    assert.deepEqual(t.log, [
      "synced 0/0 seq 0",
      "chat 1 one",
      "chat 2 two",
      'updated 1 "one, edited"',
    ]);
    assert.equal(t.client.lastSeq, 3);
    assert.deepEqual(t.sent("sync"), [], "no gap, no sync");
    await t.close();
  });

  Deno.test(`a gap in the live seq holds what follows it, syncs from the last applied until has_more is false, then applies it all in order (${variant})`, async () => {
    const t = handClient({ syncPageSize: 2 });
    await t.signIn({ seq: 0, last_message_id: 0 });
    t.receive(chat(1, 2, "one", 1));
    t.receive(chat(5, 2, "five", 5)); // 2, 3 and 4 were lost on the way
    assert.deepEqual(t.log, ["synced 0/0 seq 0", "chat 1 one"], "seq 5 waits for the gap");
    assert.deepEqual(t.sent("sync"), [{ type: "sync", after_seq: 1, limit: 2 }]);
    t.receive(chat(6, 2, "six", 6)); // also held: one sync is enough
    assert.equal(t.sent("sync").length, 1);
    t.receive({
      type: "sync_result",
      updates: [chat(2, 2, "two", 2), read(2, 3)],
      has_more: true,
      seq: 6,
    });
    assert.deepEqual(t.sent("sync").at(-1), { type: "sync", after_seq: 3, limit: 2 });
    t.receive({
      type: "sync_result",
      updates: [updated({ ...message(2, 2, ""), deleted_at: SENT_AT }, 4), chat(5, 2, "five", 5)],
      has_more: true,
      seq: 6,
    });
    assert.deepEqual(t.sent("sync").at(-1), { type: "sync", after_seq: 5, limit: 2 });
    t.receive({ type: "sync_result", updates: [chat(6, 2, "six", 6)], has_more: false, seq: 6 });
    assert.deepEqual(t.log, [
      "synced 0/0 seq 0",
      "chat 1 one",
      "chat 2 two",
      "read 2",
      'updated 2 ""',
      "chat 5 five",
      "chat 6 six",
      "synced 3/5 seq 6",
    ]);
    assert.equal(t.client.lastSeq, 6);
    t.receive(chat(7, 2, "seven", 7));
    assert.equal(t.log.at(-1), "chat 7 seven");
    await t.close();
  });

  Deno.test(`a live update during the catch-up goes the same way as the synced ones: the next is applied, a later one waits (${variant})`, async () => {
    const t = handClient({ lastSeq: 5 });
    await t.signIn({ seq: 8, last_message_id: 8 });
    assert.deepEqual(t.sent("sync"), [{ type: "sync", after_seq: 5, limit: 100 }]);
    t.receive(chat(8, 2, "eight", 8)); // live, after the gap: held
    t.receive(chat(6, 2, "six", 6)); // live, the next one: applied at once
    assert.deepEqual(t.log, ["chat 6 six"]);
    t.receive({
      type: "sync_result",
      updates: [chat(6, 2, "six", 6), chat(7, 1, "seven", 7), chat(8, 2, "eight", 8)],
      has_more: false,
      seq: 8,
    });
    assert.deepEqual(t.log, ["chat 6 six", "chat 7 seven", "chat 8 eight", "synced 2/2 seq 8"]);
    await t.close();
  });

  Deno.test(`after a reconnect the client syncs from the last seq it applied; a device with no state starts from authenticated.seq (${variant})`, async () => {
    const t = handClient();
    await t.signIn({ seq: 10, last_message_id: 40 });
    assert.deepEqual(t.sent("sync"), [], "no state: no sync, history loads the conversations");
    assert.equal(t.client.lastSeq, 10);
    t.receive(chat(41, 2, "live", 11));
    await t.drop();
    await t.signIn({ seq: 13, last_message_id: 43 });
    assert.deepEqual(t.sent("sync"), [{ type: "sync", after_seq: 11, limit: 100 }]);
    t.receive({
      type: "sync_result",
      updates: [chat(42, 2, "missed", 12), read(42, 13)],
      has_more: false,
      seq: 13,
    });
    assert.deepEqual(t.log, [
      "synced 0/0 seq 10",
      "chat 41 live",
      "chat 42 missed",
      "read 42",
      "synced 1/2 seq 13",
    ]);
    await t.drop();
    await t.signIn({ seq: 13, last_message_id: 43 });
    assert.equal(t.sent("sync").length, 1, "nothing new: no sync");
    await t.close();
  });

  Deno.test(`a connection lost mid-catch-up resumes from the last seq applied, and the held updates come again (${variant})`, async () => {
    const t = handClient({ lastSeq: 2 });
    await t.signIn({ seq: 6, last_message_id: 6 });
    t.receive(chat(6, 2, "six", 6)); // held
    t.receive({ type: "sync_result", updates: [chat(3, 2, "three", 3)], has_more: true, seq: 6 });
    await t.drop();
    await t.signIn({ seq: 6, last_message_id: 6 });
    assert.deepEqual(t.sent("sync").map((f) => f.after_seq), [2, 3, 3]);
    t.receive({
      type: "sync_result",
      updates: [chat(4, 2, "four", 4), chat(5, 2, "five", 5), chat(6, 2, "six", 6)],
      has_more: false,
      seq: 6,
    });
    assert.deepEqual(t.log, [
      "chat 3 three",
      "chat 4 four",
      "chat 5 five",
      "chat 6 six",
      "synced 3/3 seq 6",
    ]);
    await t.close();
  });

  Deno.test(`an update newer than the sync's answer is asked for again; a gap the server's complete answer covers is passed over (${variant})`, async () => {
    const t = handClient();
    await t.signIn({ seq: 1, last_message_id: 1 });
    t.receive(chat(4, 2, "four", 4));
    t.receive({ type: "sync_result", updates: [chat(2, 2, "two", 2)], has_more: false, seq: 2 });
    assert.deepEqual(t.sent("sync").map((f) => f.after_seq), [1, 2], "seq 4 is newer: again");
    t.receive({ type: "sync_result", updates: [], has_more: false, seq: 4 });
    assert.deepEqual(t.log, ["synced 0/0 seq 1", "chat 2 two", "chat 4 four", "synced 2/2 seq 4"]);
    assert.equal(t.client.lastSeq, 4);
    await t.close();
  });

  Deno.test(`message_sent resolves send() at once even after a gap; the same message from the sync is not emitted (${variant})`, async () => {
    const t = handClient();
    await t.signIn({ seq: 0, last_message_id: 0 });
    const sending = t.client.send(2, "mine", { clientMessageId: "c1" });
    const { type: _t, seq: _s, ...data } = chat(3, 1, "mine", 2);
    t.receive({ type: "message_sent", data: { ...data, client_message_id: "c1" }, seq: 2 });
    assert.equal((await sending).message_id, 3);
    assert.deepEqual(t.sent("sync"), [{ type: "sync", after_seq: 0, limit: 100 }]);
    t.receive({
      type: "sync_result",
      updates: [chat(2, 2, "theirs", 1), { ...chat(3, 1, "mine", 2), client_message_id: "c1" }],
      has_more: false,
      seq: 2,
    });
    assert.deepEqual(t.log, ["synced 0/0 seq 0", "chat 2 theirs", "synced 1/2 seq 2"]);
    assert.equal(t.client.lastSeq, 2);
    await t.close();
  });

  Deno.test(`a v1.1 server (no seq): live messages are applied by id and catch-up syncs after_message_id (${variant})`, async () => {
    const t = handClient({ lastMessageId: 1, lastSeq: 4 });
    await t.signIn({ last_message_id: 2 });
    assert.deepEqual(t.sent("sync"), [{ type: "sync", after_message_id: 1, limit: 100 }]);
    t.receive({
      type: "sync_result",
      messages: [{ ...message(2, 2, "two"), is_read: false }],
      has_more: false,
    });
    t.receive(chat(3, 2, "three"));
    t.receive(chat(3, 2, "three"));
    t.receive({ type: "delivered", message_id: 9, user_id: 2 });
    const editing = t.client.editMessage(3, "cannot");
    t.receive({ type: "error", code: "unknown_type", message: "Unknown message type" });
    assert.equal((await editing.catch((e) => e)).code, "unknown_type", "a v1.1 server cannot edit");
    assert.deepEqual(t.log, ["chat 2 two", "synced 1", "chat 3 three", "delivered 9"]);
    assert.equal(t.client.lastMessageId, 3);
    assert.equal(t.sent("sync").length, 1);
    await t.close();
  });

  Deno.test(`editMessage and deleteMessage resolve with the message_updated that answers them and reject with the server's code (${variant})`, async () => {
    const t = handClient();
    await t.signIn({ seq: 0, last_message_id: 0 });
    const editing = t.client.editMessage(5, "better");
    assert.deepEqual(t.sent("edit_message"), [
      { type: "edit_message", message_id: 5, message_text: "better" },
    ]);
    const edited = { ...message(5, 1, "better"), edited_at: SENT_AT };
    t.receive(updated(edited, 1));
    assert.equal((await editing).message_text, "better");
    assert.equal((await editing).edited_at, SENT_AT);

    const again = t.client.editMessage(5, "better");
    t.receive(updated(edited)); // the same text: no change, no seq
    assert.equal((await again).message_text, "better");

    const tooLate = t.client.editMessage(5, "later");
    t.receive({ type: "error", code: "edit_window_passed", message: "Edit window passed" });
    const refused = await tooLate.catch((e) => e);
    assert.ok(refused instanceof sdk.ChatSendError);
    assert.equal(refused.code, "edit_window_passed");

    const missing = t.client.deleteMessage(6, "everyone");
    t.receive({ type: "error", code: "not_found", message: "Message not found" });
    assert.equal((await missing.catch((e) => e)).code, "not_found");

    const forMe = t.client.deleteMessage(7, "me");
    assert.deepEqual(t.sent("delete_message").at(-1), {
      type: "delete_message",
      message_id: 7,
      for: "me",
    });
    t.receive(updated({ ...message(7, 2, ""), deleted_for_me: true }, 2));
    assert.equal((await forMe).deleted_for_me, true);
    assert.deepEqual(t.log, [
      "synced 0/0 seq 0",
      'updated 5 "better"',
      'updated 5 "better"',
      'updated 7 ""',
    ]);
    await assert.rejects(t.client.deleteMessage(7, "all" as "me"), RangeError);
    await assert.rejects(t.client.editMessage(0, "x"), RangeError);
    await t.close();
  });

  Deno.test(`an edit asked for offline is sent after authentication; close() rejects what waits (${variant})`, async () => {
    const t = handClient();
    const offline = t.client.editMessage(5, "queued");
    await t.signIn({ seq: 0, last_message_id: 0 });
    assert.deepEqual(t.sent("edit_message").map((f) => f.message_text), ["queued"]);
    const waiting = t.client.deleteMessage(5, "everyone").catch((e) => e);
    const first = offline.catch((e) => e);
    await t.close();
    assert.equal((await first).code, "closed");
    assert.equal((await waiting).code, "closed");
  });

  Deno.test(`a deletion takes an unread message off the unread counts (${variant})`, async () => {
    const t = handClient();
    await t.signIn({ seq: 0, last_message_id: 0, unread_count: 0, unread_by_friend: {} });
    t.receive(chat(1, 2, "one", 1));
    t.receive(chat(2, 2, "two", 2));
    assert.equal(t.client.unread.total, 2);
    t.receive(updated({ ...message(2, 2, ""), deleted_at: SENT_AT }, 3));
    assert.deepEqual(t.client.unread.by_friend, { "2": 1 });
    await t.close();
  });
}

sdkSuite("TypeScript", typedSdk);
sdkSuite("embedded JS", embeddedSdk);
