/**
 * The frame parser and the token verifier as pure functions: fixed cases
 * for the edges, and properties over arbitrary input (any input yields a
 * typed frame or a typed error, never an exception).
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { type ErrorCode, parseClientFrame, serverFrames } from "../src/protocol/mod.ts";
import { messageData } from "../src/protocol/mod.ts";
import type { MessageRecord } from "../src/store/mod.ts";
import { importTokenKey, signToken, verifyToken } from "../src/token.ts";

const limits = { maxMessageChars: 1000 };
const CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "invalid_frame",
  "invalid_json",
  "unknown_type",
  "missing_fields",
  "invalid_field",
  "message_empty",
  "message_too_long",
]);

const KNOWN = [
  "authenticate",
  "chat_message",
  "typing",
  "ping",
  "sync",
  "history",
  "read",
  "delivered",
  "reauthenticate",
];

Deno.test("any text parses into a typed frame or a typed error, never an exception", () => {
  const json = fc.jsonValue().map((v) => JSON.stringify(v));
  const framey = fc.record({
    type: fc.constantFrom(...KNOWN, "__proto__", "x"),
    recipient_user_id: fc.oneof(fc.integer(), fc.double(), fc.string(), fc.constant(null)),
    message_text: fc.oneof(fc.string({ unit: "binary" }), fc.integer()),
    client_message_id: fc.oneof(fc.string(), fc.integer()),
    is_typing: fc.oneof(fc.boolean(), fc.string()),
    auth_token: fc.oneof(fc.string(), fc.integer()),
    after_message_id: fc.oneof(fc.integer(), fc.double(), fc.string()),
    before_message_id: fc.oneof(fc.integer(), fc.string(), fc.constant(null)),
    up_to_message_id: fc.oneof(fc.integer(), fc.double()),
    friend_user_id: fc.oneof(fc.integer(), fc.string()),
    message_id: fc.oneof(fc.integer(), fc.boolean()),
    limit: fc.oneof(fc.integer({ min: -5, max: 600 }), fc.double(), fc.string()),
  }, { requiredKeys: ["type"] }).map((v) => JSON.stringify(v));
  fc.assert(
    fc.property(fc.oneof(fc.string({ unit: "binary" }), json, framey), (text) => {
      const frame = parseClientFrame(text, limits);
      if (frame.type === "error") {
        assert.ok(CODES.has(frame.code), frame.code);
        assert.equal(typeof frame.message, "string");
      } else {
        assert.ok(KNOWN.includes(frame.type));
        if (frame.type === "sync") assert.ok(frame.limit >= 1 && frame.limit <= 500);
        if (frame.type === "history") assert.ok(frame.limit >= 1 && frame.limit <= 100);
        if (frame.type === "sync") assert.ok(Number.isSafeInteger(frame.afterMessageId));
        if (frame.type === "read") assert.ok(frame.upToMessageId >= 0);
        if (frame.type === "delivered") assert.ok(frame.messageId >= 1);
      }
    }),
    { numRuns: 3000 },
  );
});

/**
 * What the protocol says of a `chat_message` with these two fields: the frame it is accepted as
 * (a positive safe integer recipient, given as a JSON number or a decimal string without a sign
 * or leading zeros; the text trimmed, 1 to 1000 code points, without NUL or lone surrogates), or
 * the code it is refused with.
 */
function expectedChat(recipient: unknown, text: string) {
  const id = typeof recipient === "string" && /^[1-9][0-9]*$/.test(recipient)
    ? Number(recipient)
    : recipient;
  if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 1) return "invalid_field";
  const messageText = text.trim();
  if (!messageText.isWellFormed() || messageText.includes("\u0000")) return "invalid_field";
  const length = [...messageText].length;
  if (length === 0) return "message_empty";
  if (length > 1000) return "message_too_long";
  return { type: "chat_message", recipientUserId: id, messageText, clientMessageId: undefined };
}

Deno.test("a chat message is accepted exactly when its recipient and text are valid: trimmed, storable text of 1 to 1000 code points to a positive safe integer", () => {
  const outcomes = { accepted: 0, refused: 0 };
  fc.assert(
    fc.property(
      fc.oneof(fc.integer(), fc.string(), fc.maxSafeNat(), fc.maxSafeNat().map(String)),
      fc.string({ unit: "binary", maxLength: 1100 }),
      (recipient, text) => {
        const frame = parseClientFrame(
          JSON.stringify({
            type: "chat_message",
            recipient_user_id: recipient,
            message_text: text,
          }),
          limits,
        );
        const expected = expectedChat(recipient, text);
        if (typeof expected === "string") {
          outcomes.refused++;
          assert.equal(frame.type === "error" && frame.code, expected, JSON.stringify(frame));
        } else {
          outcomes.accepted++;
          assert.deepEqual(frame, expected);
        }
      },
    ),
    { numRuns: 3000 },
  );
  // Both outcomes were generated often enough to mean something.
  assert.ok(outcomes.accepted > 300 && outcomes.refused > 300, JSON.stringify(outcomes));
});

Deno.test("edge values of fields are refused with the documented codes", () => {
  const chat = (fields: Record<string, unknown>) =>
    parseClientFrame(JSON.stringify({ type: "chat_message", ...fields }), limits);
  const code = (f: ReturnType<typeof parseClientFrame>) => (f.type === "error" ? f.code : f.type);
  assert.equal(code(chat({ recipient_user_id: 2, message_text: "a\u0000b" })), "invalid_field");
  assert.equal(code(chat({ recipient_user_id: 2, message_text: "lone \ud800" })), "invalid_field");
  assert.equal(
    code(chat({ recipient_user_id: 2, message_text: "pair \ud83d\udc09" })),
    "chat_message",
  );
  assert.equal(code(chat({ recipient_user_id: "007", message_text: "x" })), "invalid_field");
  assert.equal(code(chat({ recipient_user_id: "+7", message_text: "x" })), "invalid_field");
  assert.equal(code(chat({ recipient_user_id: "1e9", message_text: "x" })), "invalid_field");
  assert.equal(code(chat({ recipient_user_id: 1e9, message_text: "x" })), "chat_message");
  assert.equal(code(chat({ recipient_user_id: true, message_text: "x" })), "invalid_field");
  assert.equal(code(chat({ recipient_user_id: null, message_text: "x" })), "missing_fields");
  assert.equal(code(parseClientFrame("[".repeat(16 * 1024), limits)), "invalid_json");
  assert.equal(code(parseClientFrame('{"type":"ping","__proto__":{"type":"x"}}', limits)), "ping");
  // A client_message_id is stored beside the text: what Postgres cannot hold is refused here,
  // before it can fail the batch it would share with other users' messages.
  const cmid = (id: unknown) =>
    chat({ recipient_user_id: 2, message_text: "x", client_message_id: id });
  assert.equal(code(cmid("a\u0000b")), "invalid_field");
  assert.equal(code(cmid("x\ud800")), "invalid_field");
  assert.equal(code(cmid("pair \ud83d\udc09")), "chat_message");
  const absent = cmid(null);
  assert.ok(absent.type === "chat_message" && absent.clientMessageId === undefined);
  const typing = parseClientFrame(
    JSON.stringify({ type: "typing", recipient_user_id: 2, is_typing: null }),
    limits,
  );
  assert.ok(typing.type === "typing" && typing.isTyping === true, "null is_typing is absent");
  const withCmid = chat({ recipient_user_id: 2, client_message_id: "c9" });
  assert.ok(withCmid.type === "error" && withCmid.clientMessageId === "c9");
});

Deno.test("token verification never throws and accepts exactly the tokens it signed, within TTL and skew", async () => {
  const key = await importTokenKey("property-secret");
  const other = await importTokenKey("default_secret");
  const now = 1_800_000_000;
  await fc.assert(
    fc.asyncProperty(fc.string({ unit: "binary", maxLength: 120 }), async (token) => {
      const result = await verifyToken(token, key, now, 86400);
      assert.equal(typeof result.ok, "boolean");
    }),
    { numRuns: 2000 },
  );
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
      fc.integer({ min: now - 200_000, max: now + 1000 }),
      async (userId, timestamp) => {
        const token = await signToken(key, userId, timestamp);
        const result = await verifyToken(token, key, now, 86400);
        const valid = now - timestamp <= 86400 && timestamp <= now + 300;
        assert.equal(result.ok, valid);
        if (result.ok) assert.equal(result.userId, userId);
        const forged = await verifyToken(
          await signToken(other, userId, timestamp),
          key,
          now,
          86400,
        );
        assert.equal(forged.ok, false);
        assert.equal((await verifyToken(token.toUpperCase(), key, now, 86400)).ok, false);
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("a token's signature is the hex HMAC-SHA256 of user_id:timestamp, as Web Crypto computes it", async () => {
  const secret = "a secret the game backend shares ✓";
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const ours = await importTokenKey(secret);
  const now = 1_796_160_000;
  for (const userId of [1, 42, 9_007_199_254_740_991]) {
    const mac = new Uint8Array(
      await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(`${userId}:${now}`)),
    );
    const hex = Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join("");
    assert.equal(await signToken(ours, userId, now), `${userId}:${now}:${hex}`);
    assert.deepEqual(await verifyToken(`${userId}:${now}:${hex}`, ours, now, 86_400), {
      ok: true,
      userId,
      timestamp: now,
    });
  }
});

Deno.test("a message's chat_message and message_sent frames are its fields serialized as JSON, whatever the text", () => {
  fc.assert(
    fc.property(
      fc.string({ unit: "grapheme", minLength: 1 }),
      fc.option(fc.string({ minLength: 1, maxLength: 64 }), { nil: undefined }),
      fc.integer({ min: 1 }),
      (text, cmid, id) => {
        const data = messageData({
          messageId: id,
          senderUserId: 1,
          recipientUserId: 2,
          messageText: text,
          sentAt: new Date(1_700_000_000_000 + id),
          clientMessageId: cmid,
        });
        const frames = serverFrames.messageFrames(data);
        const seq = id % 3 === 0 ? undefined : id;
        const withSeq = seq === undefined ? {} : { seq };
        assert.deepEqual(JSON.parse(frames.chatMessage(seq)), {
          type: "chat_message",
          ...data,
          ...withSeq,
        });
        assert.deepEqual(JSON.parse(frames.messageSent(seq)), {
          type: "message_sent",
          data,
          ...withSeq,
        });
        assert.equal(
          frames.chatMessage(seq),
          JSON.stringify({ type: "chat_message", ...data, ...withSeq }),
        );
        assert.equal(
          frames.messageSent(seq),
          JSON.stringify({ type: "message_sent", data, ...withSeq }),
        );
      },
    ),
  );
});

Deno.test("a sync_result or history_result page holds the leading messages that fit in its byte budget, and has_more when any was left out", () => {
  const encoder = new TextEncoder();
  const record = (id: number, text: string): MessageRecord => ({
    messageId: id,
    senderUserId: 1,
    recipientUserId: 2,
    messageText: text,
    sentAt: new Date(1_700_000_000_000 + id),
    clientMessageId: id % 2 === 0 ? `c${id}\u0001` : undefined,
    isRead: id % 3 === 0,
    readAt: id % 3 === 0 ? new Date(1_700_000_100_000) : undefined,
    deliveredAt: undefined,
  });
  fc.assert(
    fc.property(
      fc.array(fc.string({ unit: "binary", maxLength: 300 }), { maxLength: 20 }),
      fc.boolean(),
      fc.integer({ min: 100, max: 6000 }),
      fc.boolean(),
      (texts, hasMore, maxBytes, history) => {
        const records = texts.map((text, i) => record(i + 1, text));
        const text = history
          ? serverFrames.historyResult(2, records, hasMore, maxBytes)
          : serverFrames.syncResult(records, hasMore, maxBytes);
        const frame = JSON.parse(text);
        const held = frame.messages.length;
        const whole = (more: boolean, messages: unknown[]) =>
          JSON.stringify(
            history
              ? { type: "history_result", friend_user_id: 2, messages, has_more: more }
              : { type: "sync_result", messages, has_more: more },
          );
        const wire = records.map((r) => ({
          ...messageData(r),
          is_read: r.isRead,
          ...(r.readAt === undefined ? {} : { read_at: r.readAt.toISOString() }),
        }));
        assert.equal(text, whole(frame.has_more, wire.slice(0, held)), "one JSON text");
        assert.ok(records.length === 0 || held > 0, "the first always goes");
        if (held > 1) assert.ok(encoder.encode(text).length <= maxBytes, "within the budget");
        if (held < records.length) {
          assert.equal(frame.has_more, true);
          const withNext = whole(false, wire.slice(0, held + 1));
          assert.ok(encoder.encode(withNext).length > maxBytes, "the next did not fit");
        } else {
          assert.equal(frame.has_more, hasMore);
        }
      },
    ),
  );
});
