/**
 * @module chat_client
 * A typed, dependency-free client for the GeoBeasts chat server that runs in browsers, Deno and
 * Node.
 *
 * Runtime code lives only inside the SDK's classes (`ChatSendError`, `ChatMailbox`,
 * `ChatRequests`, `ChatReceipts`, `ChatRefreshTimer`, `ChatClient`; everything else is types), so that their
 * `toString()` is the complete JavaScript of the SDK: that is how the demo page embeds it without
 * a build step (see README.md, "Using it without a build step"; `SDK_CLASSES` lists them).
 */

import type {
  AuthenticatedFrame,
  ChatClientEvents,
  ChatMessage,
  ConnectionState,
  ErrorFrame,
  HistoryResultFrame,
  MessageSentFrame,
  ReadFrame,
  ReauthenticatedFrame,
  StoredMessage,
  SyncResultFrame,
  UnknownFrame,
  UnreadEvent,
} from "./frames.ts";
import { ChatAuth } from "./auth.ts";
import { ChatConnection } from "./connection.ts";
import { ChatEmitter, type ChatHandler } from "./emitter.ts";
import { ChatSendError } from "./errors.ts";
import { ChatMailbox } from "./mailbox.ts";
import { ChatKeepAlive } from "./keep_alive.ts";
import { ChatOutbox } from "./outbox.ts";
import { ChatReceipts } from "./receipts.ts";
import { ChatRefreshTimer } from "./refresh.ts";
import { ChatRequests } from "./requests.ts";
import type { ChatClientOptions, SendOptions } from "./options.ts";
export type * from "./frames.ts";
export type * from "./options.ts";
export {
  ChatAuth,
  ChatConnection,
  ChatEmitter,
  ChatKeepAlive,
  ChatMailbox,
  ChatOutbox,
  ChatReceipts,
  ChatRefreshTimer,
  ChatRequests,
  ChatSendError,
};

/** A chat connection that re-authenticates, reconnects, catches up and re-sends on its own. */
export class ChatClient {
  readonly #newId: () => string;
  readonly #pageSize: number;
  readonly #autoDelivered: boolean;
  readonly #emitter = new ChatEmitter();
  readonly #connection: ChatConnection;
  readonly #auth: ChatAuth;
  /** Unacknowledged messages in send order, sent or not: all are (re)sent after authentication. */
  readonly #outbox: ChatOutbox;
  readonly #mailbox: ChatMailbox;
  /** Unanswered `history` requests, oldest first: all are (re)sent after authentication. */
  readonly #requests: ChatRequests;
  readonly #receipts: ChatReceipts;
  /** Live messages that came during a catch-up, emitted after it in id order. */
  #held: ChatMessage[] = [];
  #syncCount = 0;

  constructor(options: ChatClientOptions) {
    const timers = options.timers ?? {
      setTimeout: (callback, ms) => setTimeout(callback, ms),
      clearTimeout: (handle) => clearTimeout(handle as number),
    };
    this.#newId = options.newId ?? ChatClient.#uuid;
    this.#connection = new ChatConnection(options, timers, this.#emitter, {
      opened: (ws) => void this.#auth.signIn(ws),
      receive: (data) => this.#receive(data),
      lost: () => this.#lost(),
    });
    this.#outbox = new ChatOutbox(this.#connection, options.maxQueue ?? 100);
    this.#pageSize = options.syncPageSize ?? 100;
    if (!ChatClient.#isCount(this.#pageSize, 500)) {
      throw new RangeError("syncPageSize must be an integer from 1 to 500");
    }
    this.#autoDelivered = options.autoDelivered ?? true;
    this.#auth = new ChatAuth(options, timers, this.#emitter, this.#connection);
    this.#requests = new ChatRequests(timers, options.requestTimeoutMs ?? 15_000);
    this.#receipts = new ChatReceipts(timers);
    const last = options.lastMessageId;
    if (last !== undefined && !(Number.isSafeInteger(last) && last >= 0)) {
      throw new RangeError("lastMessageId must be a non-negative integer");
    }
    this.#mailbox = new ChatMailbox(last);
  }

  get state(): ConnectionState {
    return this.#connection.state;
  }
  /** The authenticated user, once known. */
  get userId(): number | undefined {
    return this.#auth.userId;
  }
  /** Messages not yet acknowledged by `message_sent` or `error`. */
  get pending(): number {
    return this.#outbox.size;
  }
  /** The id the next catch-up starts after: save it to resume a later page without a gap. */
  get lastMessageId(): number | undefined {
    return this.#mailbox.cursor;
  }
  /** Unread counts as known now (the same as the last `unread` event). */
  get unread(): UnreadEvent {
    return this.#mailbox.unread();
  }

  /** Subscribes to an event; returns the function that unsubscribes. */
  on<K extends keyof ChatClientEvents>(
    type: K,
    handler: (event: ChatClientEvents[K]) => void,
  ): () => void;
  on(type: string, handler: (event: UnknownFrame) => void): () => void;
  on(type: string, handler: ChatHandler): () => void {
    return this.#emitter.on(type, handler);
  }

  /** Resolves with the next event of `type`. */
  once<K extends keyof ChatClientEvents>(type: K): Promise<ChatClientEvents[K]>;
  once(type: string): Promise<UnknownFrame>;
  once(type: string): Promise<unknown> {
    return this.#emitter.once(type);
  }

  /**
   * Starts connecting. Does nothing unless `idle`, or `expired` (after `session_expired`: call
   * it again once `getToken()` can return a new token).
   */
  connect(): void {
    this.#connection.connect();
  }

  /**
   * Sends a message; resolves with the stored message (`message_sent`), rejects with a
   * `ChatSendError` (the server's `error`, or `queue_full` / `closed`).
   */
  send(recipientId: number, text: string, options: SendOptions = {}): Promise<ChatMessage> {
    const id = options.clientMessageId ?? this.#newId();
    if (id.length < 1 || id.length > 64) {
      return Promise.reject(new RangeError("clientMessageId must be 1 to 64 characters"));
    }
    return this.#outbox.add(recipientId, text, id);
  }

  /** Tells a friend whether this user is typing; returns false (dropped) when not connected. */
  typing(recipientId: number, isTyping = true): boolean {
    if (this.#connection.state !== "open") return false;
    this.#write(
      JSON.stringify({ type: "typing", recipient_user_id: recipientId, is_typing: isTyping }),
    );
    return true;
  }

  /**
   * One page of the conversation with `friendId`, newest first: the latest messages, or those
   * below `beforeMessageId` (pass the smallest id you have to scroll back). Waits for the
   * connection; rejects with a `ChatSendError` (`timeout`, `closed`, or the server's code).
   */
  history(friendId: number, beforeMessageId?: number, limit = 50): Promise<HistoryResultFrame> {
    if (!ChatClient.#isId(friendId)) {
      return Promise.reject(new RangeError("friendId must be a positive integer"));
    }
    if (beforeMessageId !== undefined && !ChatClient.#isId(beforeMessageId)) {
      return Promise.reject(new RangeError("beforeMessageId must be a positive integer"));
    }
    if (!ChatClient.#isCount(limit, 100)) {
      return Promise.reject(new RangeError("limit must be an integer from 1 to 100"));
    }
    if (this.#connection.state === "closed") {
      return Promise.reject(new ChatSendError("closed", "The chat client is closed", ""));
    }
    const frame = JSON.stringify({
      type: "history",
      friend_user_id: friendId,
      ...(beforeMessageId === undefined ? {} : { before_message_id: beforeMessageId }),
      limit,
    });
    const answer = this.#requests.add(friendId, frame);
    if (this.#connection.state === "open") this.#write(frame);
    return answer;
  }

  /**
   * Marks the messages from `friendId` up to `upToMessageId` read (cumulative). Sent now, or
   * after the next authentication when offline; the friend's devices get a `read` event.
   */
  markRead(friendId: number, upToMessageId: number): void {
    if (!ChatClient.#isId(friendId) || !ChatClient.#isId(upToMessageId)) {
      throw new RangeError("friendId and upToMessageId must be positive integers");
    }
    if (this.#connection.state === "closed") return;
    this.#receipts.read(friendId, upToMessageId);
    if (this.#mailbox.read(friendId, upToMessageId)) {
      this.#emitter.emit("unread", this.#mailbox.unread());
    }
    this.#flushReceipts();
  }

  /**
   * Reports that this device has shown message `messageId` (addressed to this user); the sender
   * gets `delivered` once. Automatic unless `autoDelivered: false`.
   */
  markDelivered(messageId: number): void {
    if (!ChatClient.#isId(messageId)) throw new RangeError("messageId must be a positive integer");
    if (this.#connection.state === "closed") return;
    this.#receipts.delivered(messageId);
    this.#flushReceipts();
  }

  /** Closes for good: stops every timer, rejects unacknowledged sends, resolves once closed. */
  close(): Promise<void> {
    return this.#connection.close(() => {
      this.#auth.stop();
      this.#receipts.pause();
      this.#outbox.failAll();
      this.#requests.failAll("closed", "The chat client was closed before the answer came");
    });
  }

  #receive(data: unknown): void {
    let frame: UnknownFrame;
    try {
      frame = JSON.parse(String(data));
    } catch {
      return;
    }
    if (typeof frame !== "object" || frame === null || typeof frame.type !== "string") return;
    const me = this.#auth.userId;
    switch (frame.type) {
      case "authenticated":
        return this.#onAuthenticated(frame as unknown as AuthenticatedFrame);
      case "auth_error":
        this.#auth.refused();
        break;
      case "chat_message": {
        if (typeof frame.message_id !== "number") {
          // Not a stored socket message: the game backend's `{type, message}` push (its ids are
          // another database's), passed on as it came.
          if (typeof frame.message === "object") this.#emitter.emit("backend_chat_message", frame);
          return this.#emitter.emit("frame", frame);
        }
        const message = frame as unknown as ChatMessage;
        if (this.#mailbox.syncing) this.#held.push(message);
        else if (me !== undefined && this.#mailbox.accept(message, me, true)) {
          this.#afterIncoming(message);
        }
        return this.#emitter.emit("frame", frame);
      }
      case "message_sent": {
        const message = (frame as unknown as MessageSentFrame).data;
        if (me !== undefined && message !== undefined) this.#mailbox.accept(message, me, true);
        this.#outbox.acknowledge(message);
        break;
      }
      case "error": {
        this.#emitter.emitFrame(frame);
        const error = frame as unknown as ErrorFrame;
        if (this.#outbox.refuse(error)) return;
        if (["unavailable", "invalid_field", "rate_limited"].includes(error.code)) {
          this.#requestFailed(error);
        }
        return;
      }
      case "sync_result":
        this.#emitter.emitFrame(frame);
        return this.#onSyncPage(frame as unknown as SyncResultFrame);
      case "history_result": {
        this.#requests.answer(frame as unknown as HistoryResultFrame);
        break;
      }
      case "read": {
        const read = frame as unknown as ReadFrame;
        if (read.user_id === me && this.#mailbox.read(read.friend_user_id, read.up_to_message_id)) {
          this.#emitter.emitFrame(frame);
          return this.#emitter.emit("unread", this.#mailbox.unread());
        }
        break;
      }
      case "reauthenticated":
        this.#auth.expiresAt((frame as unknown as ReauthenticatedFrame).session_expires_at);
        break;
      case "session_expired":
        return this.#onExpired(frame);
      case "pong":
        this.#connection.pong();
        break;
    }
    this.#emitter.emitFrame(frame);
  }

  #onAuthenticated(frame: AuthenticatedFrame): void {
    this.#auth.signedIn(frame.user_id);
    for (const outgoing of this.#outbox.frames) this.#write(outgoing);
    for (const request of this.#requests.frames) this.#write(request);
    const after = this.#mailbox.authenticated(frame);
    this.#connection.signedIn();
    this.#auth.expiresAt(frame.session_expires_at);
    this.#emitter.emitFrame(frame as unknown as UnknownFrame);
    if (frame.last_message_id !== undefined) this.#emitter.emit("unread", this.#mailbox.unread());
    this.#flushReceipts();
    this.#syncCount = 0;
    if (after !== undefined) this.#requestSync(after);
    else this.#synced(frame.last_message_id !== undefined);
  }

  #requestSync(after: number): void {
    this.#write(JSON.stringify({ type: "sync", after_message_id: after, limit: this.#pageSize }));
  }

  #onSyncPage(page: SyncResultFrame): void {
    const me = this.#auth.userId;
    if (!this.#mailbox.syncing || me === undefined) return;
    const messages = Array.isArray(page.messages) ? page.messages : [];
    for (const message of messages) {
      const fresh = this.#mailbox.accept(message, me, false);
      const own = message.sender_user_id === me && message.client_message_id !== undefined &&
        this.#outbox.has(message.client_message_id);
      if (own) this.#outbox.acknowledge(message);
      else if (fresh) this.#afterIncoming(message), this.#syncCount++;
    }
    if (page.has_more === true && messages.length > 0) {
      this.#requestSync(messages[messages.length - 1]!.message_id);
    } else {
      this.#mailbox.endSync();
      const held = this.#held.sort((a, b) => a.message_id - b.message_id);
      this.#held = [];
      for (const message of held) {
        if (this.#mailbox.accept(message, me, true)) {
          this.#afterIncoming(message), this.#syncCount++;
        }
      }
      this.#synced(true);
    }
  }

  /** Catch-up is over: reconnect backoff starts again from its base. */
  #synced(announce: boolean): void {
    this.#connection.caughtUp();
    if (!announce) return;
    this.#emitter.emit("synced", {
      type: "synced",
      count: this.#syncCount,
      last_message_id: this.#mailbox.cursor ?? 0,
    });
  }

  /** Emits a message received for the first time, counts it unread, reports it delivered. */
  #afterIncoming(message: ChatMessage & Partial<StoredMessage>): void {
    this.#emitter.emit("chat_message", { ...message, type: "chat_message" });
    const me = this.#auth.userId;
    if (message.recipient_user_id === me && message.sender_user_id !== me) {
      if (message.is_read !== true) this.#emitter.emit("unread", this.#mailbox.unread());
      if (this.#autoDelivered && message.delivered_at === undefined) {
        this.markDelivered(message.message_id);
      }
    }
  }

  /** A refusal without a `client_message_id` answers the catch-up first, else the oldest request. */
  #requestFailed(error: ErrorFrame): void {
    const ws = this.#connection.socket;
    if (this.#mailbox.syncing && ws !== undefined) {
      this.#emitter.emit("error", {
        type: "error",
        code: "sync_failed",
        message: `Catch-up refused (${error.code}: ${error.message}); reconnecting`,
      });
      return this.#connection.abandon(ws, `sync failed: ${error.code}`);
    }
    this.#requests.failOldest(error.code, error.message);
  }

  #onExpired(frame: UnknownFrame): void {
    this.#connection.expire(`session expired${frame.reason ? `: ${frame.reason}` : ""}`, () => {
      this.#requests.failAll("session_expired", "The session expired before the answer came");
      this.#emitter.emitFrame(frame);
    });
  }

  #flushReceipts(): void {
    this.#receipts.flush((frame) => this.#write(frame), () => this.#connection.state === "open");
  }

  /** The socket is gone: an unfinished catch-up is dropped, receipts wait for the next one. */
  #lost(): void {
    this.#mailbox.abortSync();
    this.#held = []; // their ids are above the cursor: the next catch-up returns them
    this.#auth.stop();
    this.#receipts.pause();
  }

  #write(frame: string): void {
    this.#connection.write(frame);
  }

  static #isId(value: number): boolean {
    return Number.isSafeInteger(value) && value > 0;
  }

  static #isCount(value: number, max: number): boolean {
    return Number.isInteger(value) && value >= 1 && value <= max;
  }

  /** RFC 4122 v4; `crypto.randomUUID` exists only in secure contexts (https, localhost). */
  static #uuid(): string {
    if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6]! & 0x0f) | 0x40;
    b[8] = (b[8]! & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${
      h.slice(20)
    }`;
  }
}

/** The SDK's classes in dependency order: their sources, joined, are the whole SDK's JavaScript. */
export const SDK_CLASSES: readonly (abstract new (...args: never[]) => unknown)[] = [
  ChatSendError,
  ChatEmitter,
  ChatMailbox,
  ChatOutbox,
  ChatRequests,
  ChatReceipts,
  ChatRefreshTimer,
  ChatKeepAlive,
  ChatConnection,
  ChatAuth,
  ChatClient,
];
