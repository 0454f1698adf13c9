/**
 * @module protocol/server_frames
 * Typed builders of every server → client frame (docs/protocol.md, "Server →
 * client" and v1.1). Each returns the serialized text, built once per
 * fan-out; times are ISO 8601 in UTC.
 *
 * The shapes are the SDK's (`client/frames.ts`): every builder's object
 * `satisfies` the frame type the SDK exports, so the server and the client
 * cannot drift apart without a compile error.
 */

import { Buffer } from "node:buffer";
import type * as Wire from "../../client/frames.ts";
import type { ErrorCode } from "./codes.ts";
import type {
  MailboxSummary,
  MessageRecord,
  StoredMessage,
  Update,
  UserSettings,
} from "../store/mod.ts";

/** A stored message as it travels in `chat_message` and `message_sent`. */
export type MessageData = Wire.ChatMessage;

/** A message inside `sync_result` / `history_result`: `MessageData` plus its receipts. */
export type MessageRecordData = Wire.StoredMessage;

/** What `authenticated` says beyond the user id (v1.1, and `limits` of v1.2). */
export interface AuthenticatedInfo {
  onlineFriends: readonly number[];
  mailbox: MailboxSummary;
  sessionExpiresAt: Date;
  /** The connection's limits as configured, so that a client can pace itself. */
  limits: ClientLimits;
  /** v1.2: the user's settings. */
  settings: UserSettings;
  /** v1.2: friend id → when last seen, for friends offline (as they show) and seen since v1.2. */
  lastSeen: ReadonlyMap<number, Date>;
}

/** The settings `authenticated.limits` reports (see `Config` for their meaning). */
export interface ClientLimits {
  chatRatePerS: number;
  chatBurst: number;
  frameRatePerS: number;
  maxMessageChars: number;
}

export const serverFrames = {
  authenticated: (userId: number, info: AuthenticatedInfo) =>
    JSON.stringify(
      {
        type: "authenticated",
        user_id: userId,
        online_friends: [...info.onlineFriends],
        unread_count: info.mailbox.unreadCount,
        unread_by_friend: Object.fromEntries(
          [...info.mailbox.unreadBySender].filter(([, n]) => n > 0).map(([id, n]) => [
            String(id),
            n,
          ]),
        ),
        last_message_id: info.mailbox.lastMessageId,
        seq: info.mailbox.seq,
        session_expires_at: info.sessionExpiresAt.toISOString(),
        limits: {
          chat_per_s: info.limits.chatRatePerS,
          chat_burst: info.limits.chatBurst,
          frames_per_s: info.limits.frameRatePerS,
          max_message_chars: info.limits.maxMessageChars,
        },
        settings: settingsData(info.settings),
        last_seen: isoById(info.lastSeen),
      } satisfies Wire.AuthenticatedFrame,
    ),
  authError: (message: "Auth token required" | "Invalid auth token") =>
    JSON.stringify({ type: "auth_error", message } satisfies Wire.AuthErrorFrame),
  reauthenticated: (sessionExpiresAt: Date) =>
    JSON.stringify(
      {
        type: "reauthenticated",
        session_expires_at: sessionExpiresAt.toISOString(),
      } satisfies Wire.ReauthenticatedFrame,
    ),
  /** `reason` absent for a token that aged out; set for deactivation and `POST /disconnect`. */
  sessionExpired: (reason?: string) =>
    JSON.stringify(
      (reason === undefined
        ? { type: "session_expired" }
        : { type: "session_expired", reason }) satisfies Wire.SessionExpiredFrame,
    ),
  /** `chat_message` and `message_sent` of one stored message, its fields serialized once. */
  messageFrames,
  typing: (userId: number, isTyping: boolean) =>
    JSON.stringify(
      { type: "typing", user_id: userId, is_typing: isTyping } satisfies Wire.TypingFrame,
    ),
  /** `lastSeenAt` (v1.2) with `offline`, when known. */
  presence: (userId: number, status: "online" | "offline", lastSeenAt?: Date) =>
    JSON.stringify(
      (lastSeenAt === undefined ? { type: "presence", user_id: userId, status } : {
        type: "presence",
        user_id: userId,
        status,
        last_seen_at: lastSeenAt.toISOString(),
      }) satisfies Wire.PresenceFrame,
    ),
  /** v1.2: the user's settings after a change; `seq` its number in the user's updates. */
  settingsUpdated: (settings: UserSettings, seq: number | undefined) =>
    JSON.stringify(
      (seq === undefined ? { type: "settings_updated", settings: settingsData(settings) } : {
        type: "settings_updated",
        settings: settingsData(settings),
        seq,
      }) satisfies Wire.SettingsUpdatedFrame,
    ),
  /**
   * One `sync` page: the leading `messages` whose frame stays within
   * `maxBytes` (the first always goes), `has_more` true when any was left out
   * or `hasMore` says more match. Each message is serialized once.
   */
  syncResult: (messages: readonly MessageRecord[], hasMore: boolean, maxBytes: number) =>
    pageFrame(
      (more) =>
        ({ type: "sync_result", messages: [], has_more: more }) satisfies Wire.SyncResultFrame,
      messages,
      hasMore,
      maxBytes,
    ),
  /** One `history` page, cut to `maxBytes` as `syncResult` is. */
  historyResult: (
    friendUserId: number,
    messages: readonly MessageRecord[],
    hasMore: boolean,
    maxBytes: number,
  ) =>
    pageFrame(
      (more) =>
        ({
          type: "history_result",
          friend_user_id: friendUserId,
          messages: [],
          has_more: more,
        }) satisfies Wire.HistoryResultFrame,
      messages,
      hasMore,
      maxBytes,
    ),
  /** `seq`: the update's number in the receiving user's sequence (v1.2). */
  read: (
    readerUserId: number,
    friendUserId: number,
    upToMessageId: number,
    readAt: Date,
    seq?: number,
  ) => JSON.stringify(readFrame(readerUserId, friendUserId, upToMessageId, readAt, seq)),
  delivered: (messageId: number, recipientUserId: number, seq?: number) =>
    JSON.stringify(deliveredFrame(messageId, recipientUserId, seq)),
  /** v1.2: an edit or a deletion; without `seq` when it changed nothing. */
  messageUpdated: (message: MessageRecord, seq?: number) =>
    JSON.stringify(messageUpdatedFrame(message, seq)),
  /**
   * One `sync {after_seq}` page (v1.2): the leading updates whose frame stays
   * within `maxBytes` (the first always goes), each the live frame it was.
   */
  syncUpdates: (updates: readonly Update[], hasMore: boolean, seq: number, maxBytes: number) => {
    const envelope = (more: boolean): Wire.SyncUpdatesResultFrame => ({
      type: "sync_result",
      updates: [],
      has_more: more,
      seq,
    });
    let bytes = utf8Length(JSON.stringify(envelope(false)));
    const parts: string[] = [];
    for (const update of updates) {
      const part = JSON.stringify(updateFrame(update));
      const added = utf8Length(part) + (parts.length > 0 ? 1 : 0);
      if (parts.length > 0 && bytes + added > maxBytes) break;
      parts.push(part);
      bytes += added;
    }
    const text = JSON.stringify(envelope(hasMore || parts.length < updates.length));
    const at = text.indexOf(UPDATES_FIELD) + UPDATES_FIELD.length;
    return text.slice(0, at) + parts.join(",") + text.slice(at);
  },
  /** The answer to `report` (v1.2): the report's id, the first one's for a repeat. */
  reportReceived: (reportId: number) =>
    JSON.stringify(
      { type: "report_received", report_id: reportId } satisfies Wire.ReportReceivedFrame,
    ),
  pong: () => PONG,
  /** `retryAfterMs`: with `rate_limited`, when the next frame of that kind would be accepted. */
  error: (code: ErrorCode, message: string, clientMessageId?: string, retryAfterMs?: number) => {
    const frame: Wire.ErrorFrame = { type: "error", code, message };
    if (clientMessageId !== undefined) frame.client_message_id = clientMessageId;
    if (retryAfterMs !== undefined) frame.retry_after_ms = retryAfterMs;
    return JSON.stringify(frame);
  },
};

/** The wire form of a user's settings (`settings_updated`, `authenticated`, the stored update). */
export function settingsData(settings: UserSettings): Wire.ChatSettings {
  return {
    muted: isoById(settings.muted),
    dnd_until: settings.dndUntil?.toISOString() ?? null,
    appear_offline: settings.appearOffline,
  };
}

function isoById(times: ReadonlyMap<number, Date>): Record<string, string> {
  return Object.fromEntries([...times].map(([id, at]) => [String(id), at.toISOString()]));
}

/** The UTF-8 size of a frame: what it adds to the socket's send buffer. */
export function utf8Length(text: string): number {
  return Buffer.byteLength(text, "utf8");
}

const MESSAGES_FIELD = '"messages":[';
const UPDATES_FIELD = '"updates":[';

function readFrame(
  readerUserId: number,
  friendUserId: number,
  upToMessageId: number,
  readAt: Date,
  seq?: number,
): Wire.ReadFrame {
  const frame: Wire.ReadFrame = {
    type: "read",
    user_id: readerUserId,
    friend_user_id: friendUserId,
    up_to_message_id: upToMessageId,
    read_at: readAt.toISOString(),
  };
  if (seq !== undefined) frame.seq = seq;
  return frame;
}

function deliveredFrame(messageId: number, recipientUserId: number, seq?: number) {
  const frame: Wire.DeliveredFrame = {
    type: "delivered",
    message_id: messageId,
    user_id: recipientUserId,
  };
  if (seq !== undefined) frame.seq = seq;
  return frame;
}

function messageUpdatedFrame(message: MessageRecord, seq?: number): Wire.MessageUpdatedFrame {
  const frame: Wire.MessageUpdatedFrame = {
    type: "message_updated",
    message: messageData(message),
  };
  if (seq !== undefined) frame.seq = seq;
  return frame;
}

/** An update as the live frame it was (a new message is a `chat_message` for both users). */
function updateFrame(update: Update): Wire.UpdateFrame {
  switch (update.kind) {
    case "message":
      return { type: "chat_message", ...messageData(update.message), seq: update.seq };
    case "message_updated":
      return messageUpdatedFrame(update.message, update.seq);
    case "read": {
      const r = update.read;
      return readFrame(r.readerUserId, r.friendUserId, r.upToMessageId, r.readAt, update.seq);
    }
    case "delivered":
      return deliveredFrame(update.messageId, update.recipientUserId, update.seq);
    case "settings_updated":
      return {
        type: "settings_updated",
        settings: update.settings as Wire.ChatSettings,
        seq: update.seq,
      };
  }
}

/**
 * A page frame (docs/protocol.md "Catch-up"): `envelope(hasMore)` is the frame
 * with no messages; the records are serialized one by one, in order, until
 * the next would take the frame past `maxBytes`, and spliced into its
 * `messages` array. A single message always goes (its size is bounded by
 * `MAX_MESSAGE_CHARS`), so paging always moves on.
 */
function pageFrame(
  envelope: (hasMore: boolean) => { messages: readonly MessageRecordData[] },
  records: readonly MessageRecord[],
  hasMore: boolean,
  maxBytes: number,
): string {
  // `false` is the longer of the two values, so the frame never ends up larger than counted.
  let bytes = utf8Length(JSON.stringify(envelope(false)));
  const parts: string[] = [];
  for (const record of records) {
    const part = JSON.stringify(recordData(record));
    const added = utf8Length(part) + (parts.length > 0 ? 1 : 0);
    if (parts.length > 0 && bytes + added > maxBytes) break;
    parts.push(part);
    bytes += added;
  }
  const text = JSON.stringify(envelope(hasMore || parts.length < records.length));
  const at = text.indexOf(MESSAGES_FIELD) + MESSAGES_FIELD.length;
  return text.slice(0, at) + parts.join(",") + text.slice(at);
}

const PONG = JSON.stringify({ type: "pong" } satisfies Wire.PongFrame);

/**
 * `chat_message` (`{type, ...data, seq}`) and `message_sent` (`{type, data, seq}`) of one
 * message, from one `JSON.stringify` of its fields: the same text as serializing each frame on
 * its own. `seq` is the receiving user's number for the update (left out when there is none:
 * a repeat of a message stored before v1.2).
 */
function messageFrames(data: MessageData): {
  chatMessage: (seq: number | undefined) => string;
  messageSent: (seq: number | undefined) => string;
} {
  const fields = JSON.stringify(data);
  const tail = (seq: number | undefined) => seq === undefined ? "}" : `,"seq":${seq}}`;
  return {
    chatMessage: (seq) => `{"type":"chat_message",${fields.slice(1, -1)}${tail(seq)}`,
    messageSent: (seq) => `{"type":"message_sent","data":${fields}${tail(seq)}`,
  };
}

/** The wire form of a stored message. */
export function messageData(message: StoredMessage): MessageData {
  const data: MessageData = {
    message_id: message.messageId,
    sender_user_id: message.senderUserId,
    recipient_user_id: message.recipientUserId,
    message_text: message.messageText,
    sent_at: message.sentAt.toISOString(),
  };
  if (message.clientMessageId !== undefined) data.client_message_id = message.clientMessageId;
  if (message.editedAt !== undefined) data.edited_at = message.editedAt.toISOString();
  if (message.deletedAt !== undefined) data.deleted_at = message.deletedAt.toISOString();
  if (message.deletedForMe === true) data.deleted_for_me = true;
  return data;
}

function recordData(record: MessageRecord): MessageRecordData {
  const data: MessageRecordData = { ...messageData(record), is_read: record.isRead };
  if (record.deliveredAt !== undefined) data.delivered_at = record.deliveredAt.toISOString();
  if (record.readAt !== undefined) data.read_at = record.readAt.toISOString();
  return data;
}
