/**
 * @module protocol/client_frames
 * The wire format (docs/protocol.md, "Frames"): the only place incoming JSON is
 * parsed and validated (the typed builders of server frames are in
 * `server_frames.ts`).
 *
 * `parseClientFrame` never throws: any text yields a typed frame or a typed
 * `FrameError`. Checks that need state (authentication, friendship, rate)
 * belong to the session; this module does the shape checks 2–4.
 */

import type { ErrorCode } from "./codes.ts";
import { REPORT_REASONS, type ReportReason } from "../store/mod.ts";
import { parseSettings, type SettingsFrame } from "./settings_frame.ts";

export type { SettingsFrame } from "./settings_frame.ts";

export interface AuthenticateFrame {
  type: "authenticate";
  /** `undefined` when absent or not a string (answered `Auth token required`). */
  authToken: string | undefined;
}

export interface ChatMessageFrame {
  type: "chat_message";
  recipientUserId: number;
  /** Trimmed, 1..maxMessageChars code points, storable as UTF-8 text. */
  messageText: string;
  clientMessageId: string | undefined;
}

export interface TypingFrame {
  type: "typing";
  recipientUserId: number;
  isTyping: boolean;
}

export interface PingFrame {
  type: "ping";
}

/**
 * `sync`: v1.2 `after_seq` (the user's updates above it), or the v1.1 form
 * `after_message_id` (messages only); `after_seq` wins when both are given.
 */
export type SyncFrame =
  | { type: "sync"; afterSeq: number; afterMessageId?: undefined; limit: number }
  | { type: "sync"; afterSeq?: undefined; afterMessageId: number; limit: number };

/** `edit_message` (v1.2): new text, checked as a chat message's is. */
export interface EditMessageFrame {
  type: "edit_message";
  messageId: number;
  messageText: string;
}

/** `delete_message` (v1.2). */
export interface DeleteMessageFrame {
  type: "delete_message";
  messageId: number;
  scope: "everyone" | "me";
}

/** `history` (v1.1): one conversation, newest first, below `beforeMessageId`. */
export interface HistoryFrame {
  type: "history";
  friendUserId: number;
  beforeMessageId: number | undefined;
  /** 1..100, default 50. */
  limit: number;
}

/** `read` (v1.1): everything from `friendUserId` up to `upToMessageId` has been read. */
export interface ReadFrame {
  type: "read";
  friendUserId: number;
  upToMessageId: number;
}

/** `delivered` (v1.1): a device of the recipient has shown `messageId`. */
export interface DeliveredFrame {
  type: "delivered";
  messageId: number;
}

/** `reauthenticate` (v1.1): a fresh token for the same user extends the session. */
export interface ReauthenticateFrame {
  type: "reauthenticate";
  /** `undefined` when absent or not a string. */
  authToken: string | undefined;
}

/** `report` (v1.2): a player reports a message they sent or received. */
export interface ReportFrame {
  type: "report";
  messageId: number;
  reason: ReportReason;
  /** At most `MAX_REPORT_NOTE_CHARS` code points; absent when not sent. */
  note: string | undefined;
}

export type ClientFrame =
  | AuthenticateFrame
  | ChatMessageFrame
  | TypingFrame
  | PingFrame
  | SyncFrame
  | HistoryFrame
  | ReadFrame
  | DeliveredFrame
  | ReauthenticateFrame
  | ReportFrame
  | SettingsFrame
  | EditMessageFrame
  | DeleteMessageFrame;

/** A frame that could not be accepted, with what the answer needs. */
export interface FrameError {
  type: "error";
  code: ErrorCode;
  message: string;
  /** The frame's `type` when it had a known one (decides whether auth is checked first). */
  frameType: ClientFrame["type"] | undefined;
  /** Echoed in the answer when the frame carried one as a string. */
  clientMessageId: string | undefined;
}

export interface ParseLimits {
  maxMessageChars: number;
}

const MAX_CLIENT_MESSAGE_ID_CHARS = 64;
/** The longest `note` of a `report`, in code points. */
export const MAX_REPORT_NOTE_CHARS = 500;
const LONE_SURROGATE = /\p{Surrogate}/u;

/** Parses one text frame into a client frame or the error that answers it. */
export function parseClientFrame(text: string, limits: ParseLimits): ClientFrame | FrameError {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return frameError("invalid_json", "Invalid message format");
  }
  if (!isRecord(value) || typeof value.type !== "string") {
    return frameError("invalid_frame", "Invalid message format");
  }
  switch (value.type) {
    case "authenticate":
      return {
        type: "authenticate",
        authToken: typeof value.auth_token === "string" ? value.auth_token : undefined,
      };
    case "chat_message":
      return parseChatMessage(value, limits);
    case "typing":
      return parseTyping(value);
    case "ping":
      return { type: "ping" };
    case "sync":
      return parseSync(value);
    case "history":
      return parseHistory(value);
    case "read":
      return parseRead(value);
    case "delivered":
      return parseDelivered(value);
    case "edit_message":
      return parseEditMessage(value, limits);
    case "delete_message":
      return parseDeleteMessage(value);
    case "reauthenticate":
      return {
        type: "reauthenticate",
        authToken: typeof value.auth_token === "string" ? value.auth_token : undefined,
      };
    case "report":
      return parseReport(value);
    case "settings": {
      const parsed = parseSettings(value);
      return "code" in parsed ? frameError(parsed.code, parsed.message, "settings") : parsed;
    }
    default:
      return frameError("unknown_type", "Unknown message type");
  }
}

function parseChatMessage(
  value: Record<string, unknown>,
  limits: ParseLimits,
): ChatMessageFrame | FrameError {
  const cmid = typeof value.client_message_id === "string" ? value.client_message_id : undefined;
  const fail = (code: ErrorCode, message: string) =>
    frameError(code, message, "chat_message", cmid);
  if (isAbsent(value.recipient_user_id) || isAbsent(value.message_text)) {
    return fail("missing_fields", "Missing required fields");
  }
  const recipientUserId = parseUserId(value.recipient_user_id);
  if (recipientUserId === undefined) {
    return fail("invalid_field", "recipient_user_id must be a positive integer");
  }
  if (typeof value.message_text !== "string") {
    return fail("invalid_field", "message_text must be a string");
  }
  if (!isAbsent(value.client_message_id)) {
    const length = cmid === undefined ? 0 : codePoints(cmid);
    if (length < 1 || length > MAX_CLIENT_MESSAGE_ID_CHARS) {
      return fail("invalid_field", "client_message_id must be a string of 1-64 characters");
    }
    // Stored beside the text: the same characters Postgres cannot hold are refused.
    if (!storable(cmid!)) {
      return fail("invalid_field", "client_message_id contains characters that cannot be stored");
    }
  }
  const checked = checkText(value.message_text, limits);
  if (typeof checked !== "string") return fail(checked.code, checked.message);
  return { type: "chat_message", recipientUserId, messageText: checked, clientMessageId: cmid };
}

/**
 * Check 4 and storability of a message text: the trimmed text, or the
 * refusal. The moderation hook's replacements follow the same rules.
 */
export function checkText(
  text: string,
  limits: ParseLimits,
): string | { code: ErrorCode; message: string } {
  const trimmed = text.trim();
  if (!storable(trimmed)) {
    return {
      code: "invalid_field",
      message: "message_text contains characters that cannot be stored",
    };
  }
  const length = codePoints(trimmed);
  if (length === 0) return { code: "message_empty", message: "Message cannot be empty" };
  if (length > limits.maxMessageChars) {
    return {
      code: "message_too_long",
      message: `Message too long (max ${limits.maxMessageChars} characters)`,
    };
  }
  return trimmed;
}

function parseEditMessage(
  value: Record<string, unknown>,
  limits: ParseLimits,
): EditMessageFrame | FrameError {
  const fail = (code: ErrorCode, message: string) => frameError(code, message, "edit_message");
  if (isAbsent(value.message_id) || isAbsent(value.message_text)) {
    return fail("missing_fields", "Missing required fields");
  }
  const messageId = parseId(value.message_id, 1);
  if (messageId === undefined) {
    return fail("invalid_field", "message_id must be a positive integer");
  }
  if (typeof value.message_text !== "string") {
    return fail("invalid_field", "message_text must be a string");
  }
  const checked = checkText(value.message_text, limits);
  if (typeof checked !== "string") return fail(checked.code, checked.message);
  return { type: "edit_message", messageId, messageText: checked };
}

function parseDeleteMessage(value: Record<string, unknown>): DeleteMessageFrame | FrameError {
  const fail = (code: ErrorCode, message: string) => frameError(code, message, "delete_message");
  if (isAbsent(value.message_id) || isAbsent(value.for)) {
    return fail("missing_fields", "Missing required fields");
  }
  const messageId = parseId(value.message_id, 1);
  if (messageId === undefined) {
    return fail("invalid_field", "message_id must be a positive integer");
  }
  if (value.for !== "everyone" && value.for !== "me") {
    return fail("invalid_field", 'for must be "everyone" or "me"');
  }
  return { type: "delete_message", messageId, scope: value.for };
}

function parseTyping(value: Record<string, unknown>): TypingFrame | FrameError {
  if (isAbsent(value.recipient_user_id)) {
    return frameError("missing_fields", "Missing required fields", "typing");
  }
  const recipientUserId = parseUserId(value.recipient_user_id);
  if (recipientUserId === undefined) {
    return frameError("invalid_field", "recipient_user_id must be a positive integer", "typing");
  }
  const isTyping = isAbsent(value.is_typing) ? true : value.is_typing;
  if (typeof isTyping !== "boolean") {
    return frameError("invalid_field", "is_typing must be a boolean", "typing");
  }
  return { type: "typing", recipientUserId, isTyping };
}

/** Limits of the paged frames (docs/protocol.md, "Catch-up, history, unread, receipts"). */
export const PAGE_LIMITS = {
  sync: { min: 1, max: 500, fallback: 100 },
  history: { min: 1, max: 100, fallback: 50 },
} as const;

function parseSync(value: Record<string, unknown>): SyncFrame | FrameError {
  if (isAbsent(value.after_seq) && isAbsent(value.after_message_id)) {
    return frameError("missing_fields", "Missing required fields", "sync");
  }
  const limit = parseLimit(value.limit, PAGE_LIMITS.sync);
  if (typeof limit === "string") return frameError("invalid_field", limit, "sync");
  if (!isAbsent(value.after_seq)) {
    const afterSeq = parseId(value.after_seq, 0);
    if (afterSeq === undefined) {
      return frameError("invalid_field", "after_seq must be a non-negative integer", "sync");
    }
    return { type: "sync", afterSeq, limit };
  }
  const afterMessageId = parseId(value.after_message_id, 0);
  if (afterMessageId === undefined) {
    return frameError("invalid_field", "after_message_id must be a non-negative integer", "sync");
  }
  return { type: "sync", afterMessageId, limit };
}

function parseHistory(value: Record<string, unknown>): HistoryFrame | FrameError {
  if (isAbsent(value.friend_user_id)) {
    return frameError("missing_fields", "Missing required fields", "history");
  }
  const friendUserId = parseUserId(value.friend_user_id);
  if (friendUserId === undefined) {
    return frameError("invalid_field", "friend_user_id must be a positive integer", "history");
  }
  let beforeMessageId: number | undefined;
  if (!isAbsent(value.before_message_id)) {
    beforeMessageId = parseId(value.before_message_id, 1);
    if (beforeMessageId === undefined) {
      return frameError("invalid_field", "before_message_id must be a positive integer", "history");
    }
  }
  const limit = parseLimit(value.limit, PAGE_LIMITS.history);
  if (typeof limit === "string") return frameError("invalid_field", limit, "history");
  return { type: "history", friendUserId, beforeMessageId, limit };
}

function parseRead(value: Record<string, unknown>): ReadFrame | FrameError {
  if (isAbsent(value.friend_user_id) || isAbsent(value.up_to_message_id)) {
    return frameError("missing_fields", "Missing required fields", "read");
  }
  const friendUserId = parseUserId(value.friend_user_id);
  if (friendUserId === undefined) {
    return frameError("invalid_field", "friend_user_id must be a positive integer", "read");
  }
  const upToMessageId = parseId(value.up_to_message_id, 0);
  if (upToMessageId === undefined) {
    return frameError("invalid_field", "up_to_message_id must be a non-negative integer", "read");
  }
  return { type: "read", friendUserId, upToMessageId };
}

function parseDelivered(value: Record<string, unknown>): DeliveredFrame | FrameError {
  if (isAbsent(value.message_id)) {
    return frameError("missing_fields", "Missing required fields", "delivered");
  }
  const messageId = parseId(value.message_id, 1);
  if (messageId === undefined) {
    return frameError("invalid_field", "message_id must be a positive integer", "delivered");
  }
  return { type: "delivered", messageId };
}

function parseReport(value: Record<string, unknown>): ReportFrame | FrameError {
  if (isAbsent(value.message_id) || isAbsent(value.reason)) {
    return frameError("missing_fields", "Missing required fields", "report");
  }
  const messageId = parseId(value.message_id, 1);
  if (messageId === undefined) {
    return frameError("invalid_field", "message_id must be a positive integer", "report");
  }
  const reason = REPORT_REASONS.find((r) => r === value.reason);
  if (reason === undefined) {
    return frameError(
      "invalid_field",
      `reason must be one of ${REPORT_REASONS.join(", ")}`,
      "report",
    );
  }
  let note: string | undefined;
  if (!isAbsent(value.note)) {
    if (typeof value.note !== "string" || codePoints(value.note) > MAX_REPORT_NOTE_CHARS) {
      return frameError(
        "invalid_field",
        `note must be a string of at most ${MAX_REPORT_NOTE_CHARS} characters`,
        "report",
      );
    }
    if (!storable(value.note)) {
      return frameError(
        "invalid_field",
        "note contains characters that cannot be stored",
        "report",
      );
    }
    note = value.note.trim() === "" ? undefined : value.note.trim();
  }
  return { type: "report", messageId, reason, note };
}

/** `limit` absent → the default; else a whole number in range, or the message saying so. */
function parseLimit(
  value: unknown,
  range: { min: number; max: number; fallback: number },
): number | string {
  if (isAbsent(value)) return range.fallback;
  const limit = parseId(value, range.min);
  return limit === undefined || limit > range.max
    ? `limit must be an integer from ${range.min} to ${range.max}`
    : limit;
}

/** A safe integer ≥ `min`, given as a JSON number or a canonical decimal string. */
function parseId(value: unknown, min: number): number | undefined {
  if (typeof value === "string" && /^(0|[1-9][0-9]{0,15})$/.test(value)) value = Number(value);
  return typeof value === "number" && Number.isSafeInteger(value) && value >= min
    ? value
    : undefined;
}

/** A positive safe integer, given as a JSON number or a canonical decimal string. */
export function parseUserId(value: unknown): number | undefined {
  if (typeof value === "string" && /^[1-9][0-9]{0,15}$/.test(value)) value = Number(value);
  return typeof value === "number" && Number.isSafeInteger(value) && value > 0 ? value : undefined;
}

function frameError(
  code: ErrorCode,
  message: string,
  frameType?: ClientFrame["type"],
  clientMessageId?: string,
): FrameError {
  return { type: "error", code, message, frameType, clientMessageId };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Whether Postgres `text` can hold `text` as sent: no NUL, no lone surrogate. */
function storable(text: string): boolean {
  return !text.includes("\u0000") && !LONE_SURROGATE.test(text);
}

function isAbsent(value: unknown): boolean {
  return value === undefined || value === null;
}

function codePoints(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}
