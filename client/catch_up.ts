/**
 * @module catch_up
 * Incoming messages and the catch-up after every authentication (docs/protocol.md, `sync` /
 * `sync_result`): pages of `syncPageSize` after the last id seen until `has_more` is false, then
 * `synced {count, last_message_id}`. Every message, live or caught up, is emitted once as
 * `chat_message`; live ones that come during a catch-up are held and emitted after it in id
 * order. An own message still waiting for its `message_sent` resolves its `send()` from the
 * catch-up instead of being emitted. All runtime code lives inside the class (the demo page
 * embeds its source; see README.md, "Using it without a build step").
 */

import type { ChatAuth } from "./auth.ts";
import type { ChatConnection } from "./connection.ts";
import type { ChatEmitter } from "./emitter.ts";
import type { ChatMessage, ErrorFrame, StoredMessage, SyncResultFrame } from "./frames.ts";
import type { ChatMailbox } from "./mailbox.ts";
import type { ChatOutbox } from "./outbox.ts";

/** The parts of the client that incoming messages reach. */
export interface ChatCatchUpParts {
  readonly emitter: ChatEmitter;
  readonly connection: ChatConnection;
  readonly auth: ChatAuth;
  readonly mailbox: ChatMailbox;
  readonly outbox: ChatOutbox;
  /** Reports a message shown on this device, as `ChatClient.markDelivered` does. */
  markDelivered(messageId: number): void;
}

/** The catch-up of the current session, and what becomes of every incoming message. */
export class ChatCatchUp {
  readonly #parts: ChatCatchUpParts;
  readonly #pageSize: number;
  readonly #autoDelivered: boolean;
  /** Live messages that came during a catch-up, emitted after it in id order. */
  #held: ChatMessage[] = [];
  /** Messages emitted by the current catch-up, for `synced`. */
  #count = 0;

  constructor(parts: ChatCatchUpParts, pageSize: number, autoDelivered: boolean) {
    this.#parts = parts;
    this.#pageSize = pageSize;
    this.#autoDelivered = autoDelivered;
  }

  /**
   * A new session: catches up after `after`, or, with nothing to fetch, is done at once (then
   * `synced` only when `announce`: a v1.0 server knows no catch-up).
   */
  start(after: number | undefined, announce: boolean): void {
    this.#count = 0;
    if (after !== undefined) this.#request(after);
    else this.#synced(announce);
  }

  /** A live `chat_message`: held during a catch-up, else emitted unless seen before. */
  live(message: ChatMessage): void {
    const me = this.#parts.auth.userId;
    if (this.#parts.mailbox.syncing) this.#held.push(message);
    else if (me !== undefined && this.#parts.mailbox.accept(message, me, true)) {
      this.#incoming(message);
    }
  }

  /** One `sync_result` page; ignored outside a catch-up. */
  page(page: SyncResultFrame): void {
    const { mailbox, outbox } = this.#parts;
    const me = this.#parts.auth.userId;
    if (!mailbox.syncing || me === undefined) return;
    const messages = Array.isArray(page.messages) ? page.messages : [];
    for (const message of messages) {
      const fresh = mailbox.accept(message, me, false);
      const own = message.sender_user_id === me && message.client_message_id !== undefined &&
        outbox.has(message.client_message_id);
      if (own) outbox.acknowledge(message);
      else if (fresh) this.#incoming(message), this.#count++;
    }
    if (page.has_more === true && messages.length > 0) {
      this.#request(messages[messages.length - 1]!.message_id);
    } else {
      mailbox.endSync();
      const held = this.#held.sort((a, b) => a.message_id - b.message_id);
      this.#held = [];
      for (const message of held) {
        if (mailbox.accept(message, me, true)) this.#incoming(message), this.#count++;
      }
      this.#synced(true);
    }
  }

  /**
   * A refusal without a `client_message_id` while a catch-up runs answers the catch-up: an
   * `error` event `sync_failed`, and a new connection catches up again. False when no catch-up
   * runs (the refusal is then another request's).
   */
  refused(error: ErrorFrame): boolean {
    const ws = this.#parts.connection.socket;
    if (!this.#parts.mailbox.syncing || ws === undefined) return false;
    this.#parts.emitter.emit("error", {
      type: "error",
      code: "sync_failed",
      message: `Catch-up refused (${error.code}: ${error.message}); reconnecting`,
    });
    this.#parts.connection.abandon(ws, `sync failed: ${error.code}`);
    return true;
  }

  /** The connection is gone: the next one catches up from where the last complete one ended. */
  abort(): void {
    this.#parts.mailbox.abortSync();
    this.#held = []; // their ids are above the cursor: the next catch-up returns them
  }

  #request(after: number): void {
    this.#parts.connection.write(
      JSON.stringify({ type: "sync", after_message_id: after, limit: this.#pageSize }),
    );
  }

  /** Catch-up is over: reconnect backoff starts again from its base. */
  #synced(announce: boolean): void {
    this.#parts.connection.caughtUp();
    if (!announce) return;
    this.#parts.emitter.emit("synced", {
      type: "synced",
      count: this.#count,
      last_message_id: this.#parts.mailbox.cursor ?? 0,
    });
  }

  /** Emits a message received for the first time, counts it unread, reports it delivered. */
  #incoming(message: ChatMessage & Partial<StoredMessage>): void {
    const { emitter, mailbox } = this.#parts;
    emitter.emit("chat_message", { ...message, type: "chat_message" });
    const me = this.#parts.auth.userId;
    if (message.recipient_user_id === me && message.sender_user_id !== me) {
      if (message.is_read !== true) emitter.emit("unread", mailbox.unread());
      if (this.#autoDelivered && message.delivered_at === undefined) {
        this.#parts.markDelivered(message.message_id);
      }
    }
  }
}
