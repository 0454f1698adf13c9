/**
 * @module chat_client
 * A typed, dependency-free client for the GeoBeasts chat server that runs in browsers, Deno and
 * Node. `ChatClient` is the public face: it checks arguments, and wires together the parts that
 * do the work (the connection, signing in, the outbox, the catch-up, the frame handlers); this
 * module re-exports every type and class of the SDK.
 *
 * Runtime code lives only inside the SDK's classes (everything else is types), so that their
 * `toString()` is the complete JavaScript of the SDK: that is how the demo page embeds it without
 * a build step (see README.md, "Using it without a build step"; `SDK_CLASSES` lists them, and
 * each must be exported here under its own name, which the page binds it to).
 */

import type {
  ChatClientEvents,
  ChatMessage,
  ChatSettings,
  ConnectionState,
  HistoryResultFrame,
  UnknownFrame,
  UnreadEvent,
} from "./frames.ts";
import { ChatAuth } from "./auth.ts";
import { ChatCatchUp } from "./catch_up.ts";
import { ChatConnection } from "./connection.ts";
import { ChatFailures } from "./failures.ts";
import { ChatDispatcher, type ChatParts } from "./dispatch.ts";
import { ChatEmitter, type ChatHandler } from "./emitter.ts";
import { ChatSendError } from "./errors.ts";
import { ChatMailbox } from "./mailbox.ts";
import { ChatKeepAlive } from "./keep_alive.ts";
import { ChatOutbox } from "./outbox.ts";
import { ChatPacer } from "./pacer.ts";
import { ChatReceipts } from "./receipts.ts";
import { ChatRefreshTimer } from "./refresh.ts";
import { ChatRequests } from "./requests.ts";
import { ChatSequence } from "./sequence.ts";
import { ChatSettingsRequests, type SettingsRequest } from "./settings.ts";
import type { ChatClientOptions, SendOptions } from "./options.ts";
export type * from "./frames.ts";
export type * from "./options.ts";
export {
  ChatAuth,
  ChatCatchUp,
  ChatConnection,
  ChatDispatcher,
  ChatEmitter,
  ChatFailures,
  ChatKeepAlive,
  ChatMailbox,
  ChatOutbox,
  ChatPacer,
  ChatReceipts,
  ChatRefreshTimer,
  ChatRequests,
  ChatSendError,
  ChatSequence,
  ChatSettingsRequests,
};

/** A chat connection that re-authenticates, reconnects, catches up and re-sends on its own. */
export class ChatClient {
  readonly #newId: () => string;
  readonly #emitter = new ChatEmitter();
  readonly #connection: ChatConnection;
  readonly #auth: ChatAuth;
  /** Unacknowledged messages in send order, sent or not: all are (re)sent after authentication. */
  readonly #outbox: ChatOutbox;
  readonly #mailbox: ChatMailbox;
  /** Unanswered `history` requests, oldest first: all are (re)sent after authentication. */
  readonly #requests: ChatRequests;
  /** Settings and last seen as known, and unanswered settings changes (re-sent after auth). */
  readonly #settings: ChatSettingsRequests;
  readonly #receipts: ChatReceipts;
  readonly #catchUp: ChatCatchUp;
  readonly #dispatcher: ChatDispatcher;

  constructor(options: ChatClientOptions) {
    const timers = options.timers ?? {
      setTimeout: (callback, ms) => setTimeout(callback, ms),
      clearTimeout: (handle) => clearTimeout(handle as number),
    };
    this.#newId = options.newId ?? ChatClient.#uuid;
    this.#connection = new ChatConnection(options, timers, this.#emitter, {
      opened: (ws) => void this.#auth.signIn(ws),
      receive: (data) => this.#dispatcher.receive(data),
      lost: () => {
        this.#outbox.lost();
        this.#catchUp.abort();
        this.#auth.stop();
        this.#receipts.pause();
      },
    });
    this.#outbox = new ChatOutbox(
      this.#connection,
      options.maxQueue ?? 100,
      timers,
      options.now ?? Date.now,
    );
    const pageSize = options.syncPageSize ?? 100;
    if (!ChatClient.#isCount(pageSize, 500)) {
      throw new RangeError("syncPageSize must be an integer from 1 to 500");
    }
    this.#auth = new ChatAuth(options, timers, this.#emitter, this.#connection);
    this.#requests = new ChatRequests(timers, options.requestTimeoutMs ?? 15_000);
    this.#settings = new ChatSettingsRequests(
      timers,
      options.requestTimeoutMs ?? 15_000,
      options.now ?? Date.now,
    );
    this.#receipts = new ChatReceipts(timers);
    const last = options.lastMessageId;
    if (last !== undefined && !(Number.isSafeInteger(last) && last >= 0)) {
      throw new RangeError("lastMessageId must be a non-negative integer");
    }
    this.#mailbox = new ChatMailbox(last);
    const lastSeq = options.lastSeq;
    if (lastSeq !== undefined && !(Number.isSafeInteger(lastSeq) && lastSeq >= 0)) {
      throw new RangeError("lastSeq must be a non-negative integer");
    }
    const parts: ChatParts = {
      emitter: this.#emitter,
      connection: this.#connection,
      auth: this.#auth,
      mailbox: this.#mailbox,
      outbox: this.#outbox,
      requests: this.#requests,
      settings: this.#settings,
      markDelivered: (messageId) => this.markDelivered(messageId),
      flushReceipts: () => this.#flushReceipts(),
    };
    this.#catchUp = new ChatCatchUp(parts, pageSize, options.autoDelivered ?? true, lastSeq);
    this.#dispatcher = new ChatDispatcher(parts, this.#catchUp);
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
  /**
   * v1.2: the largest update number applied (every update up to it was emitted, in order): save it
   * and pass it as `lastSeq` to resume a later page without a gap. Undefined against a v1.1 server.
   */
  get lastSeq(): number | undefined {
    return this.#catchUp.lastSeq;
  }
  /** Unread counts as known now (the same as the last `unread` event). */
  get unread(): UnreadEvent {
    return this.#mailbox.unread();
  }

  /** The user's settings as last reported by the server (v1.2); undefined before it said. */
  get settings(): ChatSettings | undefined {
    return this.#settings.settings;
  }
  /** Friend id → when last seen (ISO 8601 UTC), for friends offline now, as far as known (v1.2). */
  get lastSeen(): ReadonlyMap<number, string> {
    return this.#settings.lastSeen;
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
    const frame = JSON.stringify({
      type: "history",
      friend_user_id: friendId,
      ...(beforeMessageId === undefined ? {} : { before_message_id: beforeMessageId }),
      limit,
    });
    return this.#request<HistoryResultFrame>("history", friendId, frame);
  }

  /**
   * v1.2: replaces the text of one of this user's messages (within the server's edit window).
   * Resolves with the message as edited (`edited_at` set); both users' devices get a
   * `message_updated` event. Waits for the connection; rejects with a `ChatSendError` whose
   * `code` is a `ChatUpdateErrorCode` (`not_found`, `edit_window_passed`, `message_deleted`,
   * `moderated`, ..., `timeout`, `closed`).
   */
  editMessage(messageId: number, text: string): Promise<ChatMessage> {
    if (!ChatClient.#isId(messageId)) {
      return Promise.reject(new RangeError("messageId must be a positive integer"));
    }
    if (typeof text !== "string") return Promise.reject(new TypeError("text must be a string"));
    const frame = JSON.stringify({
      type: "edit_message",
      message_id: messageId,
      message_text: text,
    });
    return this.#request<ChatMessage>("update", messageId, frame);
  }

  /**
   * v1.2: deletes a message for `"everyone"` (only the sender's own; the text is erased, both
   * users' devices get `message_updated` with `deleted_at`) or for `"me"` (sender or recipient:
   * this user's devices get it with `deleted_for_me`). Resolves with the message as deleted;
   * rejects as `editMessage()` does.
   */
  deleteMessage(messageId: number, scope: "everyone" | "me"): Promise<ChatMessage> {
    if (!ChatClient.#isId(messageId)) {
      return Promise.reject(new RangeError("messageId must be a positive integer"));
    }
    if (scope !== "everyone" && scope !== "me") {
      return Promise.reject(new RangeError('scope must be "everyone" or "me"'));
    }
    const frame = JSON.stringify({ type: "delete_message", message_id: messageId, for: scope });
    return this.#request<ChatMessage>("update", messageId, frame);
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

  /**
   * Mutes a friend until `until` (the events webhook sends no push for them meanwhile), or
   * unmutes with `null`. Resolves with the settings once the server applied it; rejects with a
   * `ChatSendError` (`not_friends`, `timeout`, `closed`, …). Sent after the next authentication
   * when offline.
   */
  mute(friendId: number, until: Date | null): Promise<ChatSettings> {
    if (!ChatClient.#isId(friendId)) {
      return Promise.reject(new RangeError("friendId must be a positive integer"));
    }
    const at = ChatClient.#time(until);
    if (at === undefined) return Promise.reject(new RangeError("until must be a valid Date"));
    return this.#changeSettings({ mute: { friend_user_id: friendId, until: at } });
  }

  /** Do-not-disturb until `until`, or off with `null`; resolves like `mute`. */
  setDoNotDisturb(until: Date | null): Promise<ChatSettings> {
    const at = ChatClient.#time(until);
    if (at === undefined) return Promise.reject(new RangeError("until must be a valid Date"));
    return this.#changeSettings({ dnd_until: at });
  }

  /** While on, friends see this user as offline (presence, online lists, typing); like `mute`. */
  setAppearOffline(on: boolean): Promise<ChatSettings> {
    if (typeof on !== "boolean") return Promise.reject(new TypeError("on must be a boolean"));
    return this.#changeSettings({ appear_offline: on });
  }

  /** Closes for good: stops every timer, rejects unacknowledged sends, resolves once closed. */
  close(): Promise<void> {
    return this.#connection.close(() => {
      this.#auth.stop();
      this.#receipts.pause();
      this.#outbox.failAll();
      this.#requests.failAll("closed", "The chat client was closed before the answer came");
      this.#settings.failAll("closed", "The chat client was closed before the answer came");
    });
  }

  /** Sends a request now when open, else after the next authentication; rejects once closed. */
  #request<T>(kind: "history" | "update", key: number, frame: string): Promise<T> {
    if (this.#connection.state === "closed") {
      return Promise.reject(new ChatSendError("closed", "The chat client is closed", ""));
    }
    const answer = this.#requests.add<T>(kind, key, frame);
    if (this.#connection.state === "open") this.#write(frame);
    return answer;
  }

  #changeSettings(request: SettingsRequest): Promise<ChatSettings> {
    if (this.#connection.state === "closed") {
      return Promise.reject(new ChatSendError("closed", "The chat client is closed", ""));
    }
    const { frame, answer } = this.#settings.add(request);
    if (this.#connection.state === "open") this.#write(frame);
    return answer;
  }

  #flushReceipts(): void {
    this.#receipts.flush((frame) => this.#write(frame), () => this.#connection.state === "open");
  }

  #write(frame: string): void {
    this.#connection.write(frame);
  }

  static #isId(value: number): boolean {
    return Number.isSafeInteger(value) && value > 0;
  }

  /** A time as the wire carries it (null stays null); undefined for an invalid Date. */
  static #time(at: Date | null): string | null | undefined {
    if (at === null) return null;
    return at instanceof Date && !Number.isNaN(at.getTime()) ? at.toISOString() : undefined;
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
  ChatPacer,
  ChatOutbox,
  ChatRequests,
  ChatReceipts,
  ChatRefreshTimer,
  ChatKeepAlive,
  ChatFailures,
  ChatConnection,
  ChatAuth,
  ChatSequence,
  ChatCatchUp,
  ChatSettingsRequests,
  ChatDispatcher,
  ChatClient,
];
