/**
 * @module server_frames
 * Typed builders of every server → client frame (PROTOCOL.md, "Server →
 * client" and v1.1). Each returns the serialized text, built once per
 * fan-out; times are ISO 8601 in UTC.
 */

import type { ErrorCode } from "./client_frames.ts";
import type { MailboxSummary, MessageRecord, StoredMessage } from "../store/repository.ts";

/** A stored message as it travels in `chat_message` and `message_sent`. */
export interface MessageData {
  message_id: number;
  sender_user_id: number;
  recipient_user_id: number;
  message_text: string;
  sent_at: string;
  client_message_id?: string;
}

/** A message inside `sync_result` / `history_result`: `MessageData` plus its receipts. */
export interface MessageRecordData extends MessageData {
  is_read: boolean;
  delivered_at?: string;
  read_at?: string;
}

/** What `authenticated` says beyond the user id (v1.1). */
export interface AuthenticatedInfo {
  onlineFriends: readonly number[];
  mailbox: MailboxSummary;
  sessionExpiresAt: Date;
}

export const serverFrames = {
  authenticated: (userId: number, info: AuthenticatedInfo) =>
    JSON.stringify({
      type: "authenticated",
      user_id: userId,
      online_friends: info.onlineFriends,
      unread_count: info.mailbox.unreadCount,
      unread_by_friend: Object.fromEntries(
        [...info.mailbox.unreadBySender].filter(([, n]) => n > 0).map(([id, n]) => [
          String(id),
          n,
        ]),
      ),
      last_message_id: info.mailbox.lastMessageId,
      session_expires_at: info.sessionExpiresAt.toISOString(),
    }),
  authError: (message: "Auth token required" | "Invalid auth token") =>
    JSON.stringify({ type: "auth_error", message }),
  reauthenticated: (sessionExpiresAt: Date) =>
    JSON.stringify({
      type: "reauthenticated",
      session_expires_at: sessionExpiresAt.toISOString(),
    }),
  /** `reason` absent for a token that aged out; set for deactivation and `POST /disconnect`. */
  sessionExpired: (reason?: string) =>
    JSON.stringify(
      reason === undefined ? { type: "session_expired" } : { type: "session_expired", reason },
    ),
  /** `chat_message` and `message_sent` of one stored message, its fields serialized once. */
  messageFrames,
  typing: (userId: number, isTyping: boolean) =>
    JSON.stringify({ type: "typing", user_id: userId, is_typing: isTyping }),
  presence: (userId: number, status: "online" | "offline") =>
    JSON.stringify({ type: "presence", user_id: userId, status }),
  syncResult: (messages: readonly MessageRecord[], hasMore: boolean) =>
    JSON.stringify({ type: "sync_result", messages: messages.map(recordData), has_more: hasMore }),
  historyResult: (friendUserId: number, messages: readonly MessageRecord[], hasMore: boolean) =>
    JSON.stringify({
      type: "history_result",
      friend_user_id: friendUserId,
      messages: messages.map(recordData),
      has_more: hasMore,
    }),
  read: (readerUserId: number, friendUserId: number, upToMessageId: number, readAt: Date) =>
    JSON.stringify({
      type: "read",
      user_id: readerUserId,
      friend_user_id: friendUserId,
      up_to_message_id: upToMessageId,
      read_at: readAt.toISOString(),
    }),
  delivered: (messageId: number, recipientUserId: number) =>
    JSON.stringify({ type: "delivered", message_id: messageId, user_id: recipientUserId }),
  pong: () => PONG,
  error: (code: ErrorCode, message: string, clientMessageId?: string) =>
    JSON.stringify(
      clientMessageId === undefined
        ? { type: "error", code, message }
        : { type: "error", code, message, client_message_id: clientMessageId },
    ),
};

const PONG = JSON.stringify({ type: "pong" });

/**
 * `chat_message` (`{type, ...data}`) and `message_sent` (`{type, data}`) of one message, from one
 * `JSON.stringify` of its fields: the same text as serializing each frame on its own.
 */
function messageFrames(data: MessageData): { chatMessage: string; messageSent: string } {
  const fields = JSON.stringify(data);
  return {
    chatMessage: `{"type":"chat_message",${fields.slice(1)}`,
    messageSent: `{"type":"message_sent","data":${fields}}`,
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
  return data;
}

function recordData(record: MessageRecord): MessageRecordData {
  const data: MessageRecordData = { ...messageData(record), is_read: record.isRead };
  if (record.deliveredAt !== undefined) data.delivered_at = record.deliveredAt.toISOString();
  if (record.readAt !== undefined) data.read_at = record.readAt.toISOString();
  return data;
}
