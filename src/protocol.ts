/**
 * @module protocol
 * The wire format (PROTOCOL.md, "Frames"): the only place incoming JSON is
 * parsed and validated, and the typed builders of every server frame.
 *
 * `parseClientFrame` never throws: any text yields a typed frame or a typed
 * `FrameError`. Checks that need state (authentication, friendship, rate)
 * belong to the session; this module does the shape checks 2–4.
 */

/** Every `code` an `error` frame can carry. */
export type ErrorCode =
  | "invalid_frame"
  | "invalid_json"
  | "unknown_type"
  | "not_authenticated"
  | "already_authenticated"
  | "missing_fields"
  | "invalid_field"
  | "message_empty"
  | "message_too_long"
  | "invalid_recipient"
  | "not_friends"
  | "forbidden"
  | "rate_limited"
  | "too_many_connections"
  | "unavailable"
  | "internal";

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

export type ClientFrame = AuthenticateFrame | ChatMessageFrame | TypingFrame | PingFrame;

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
  if (value.client_message_id !== undefined) {
    const length = cmid === undefined ? 0 : codePoints(cmid);
    if (length < 1 || length > MAX_CLIENT_MESSAGE_ID_CHARS) {
      return fail("invalid_field", "client_message_id must be a string of 1-64 characters");
    }
  }
  const messageText = value.message_text.trim();
  if (messageText.includes("\u0000") || LONE_SURROGATE.test(messageText)) {
    return fail("invalid_field", "message_text contains characters that cannot be stored");
  }
  const length = codePoints(messageText);
  if (length === 0) return fail("message_empty", "Message cannot be empty");
  if (length > limits.maxMessageChars) {
    return fail("message_too_long", `Message too long (max ${limits.maxMessageChars} characters)`);
  }
  return { type: "chat_message", recipientUserId, messageText, clientMessageId: cmid };
}

function parseTyping(value: Record<string, unknown>): TypingFrame | FrameError {
  if (isAbsent(value.recipient_user_id)) {
    return frameError("missing_fields", "Missing required fields", "typing");
  }
  const recipientUserId = parseUserId(value.recipient_user_id);
  if (recipientUserId === undefined) {
    return frameError("invalid_field", "recipient_user_id must be a positive integer", "typing");
  }
  if (value.is_typing !== undefined && typeof value.is_typing !== "boolean") {
    return frameError("invalid_field", "is_typing must be a boolean", "typing");
  }
  return { type: "typing", recipientUserId, isTyping: value.is_typing ?? true };
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

function isAbsent(value: unknown): boolean {
  return value === undefined || value === null;
}

function codePoints(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}

// ---- server frames: each builder returns the serialized text, built once per fan-out ----

/** A stored message as it travels in `chat_message` and `message_sent`. */
export interface MessageData {
  message_id: number;
  sender_user_id: number;
  recipient_user_id: number;
  message_text: string;
  sent_at: string;
  client_message_id?: string;
}

export const serverFrames = {
  authenticated: (userId: number, onlineFriends: readonly number[]) =>
    JSON.stringify({ type: "authenticated", user_id: userId, online_friends: onlineFriends }),
  authError: (message: "Auth token required" | "Invalid auth token") =>
    JSON.stringify({ type: "auth_error", message }),
  chatMessage: (data: MessageData) => JSON.stringify({ type: "chat_message", ...data }),
  messageSent: (data: MessageData) => JSON.stringify({ type: "message_sent", data }),
  typing: (userId: number, isTyping: boolean) =>
    JSON.stringify({ type: "typing", user_id: userId, is_typing: isTyping }),
  presence: (userId: number, status: "online" | "offline") =>
    JSON.stringify({ type: "presence", user_id: userId, status }),
  pong: () => PONG,
  error: (code: ErrorCode, message: string, clientMessageId?: string) =>
    JSON.stringify(
      clientMessageId === undefined
        ? { type: "error", code, message }
        : { type: "error", code, message, client_message_id: clientMessageId },
    ),
};

const PONG = JSON.stringify({ type: "pong" });
