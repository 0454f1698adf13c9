/**
 * @module catch_up
 * Incoming messages and updates, and the catch-up after every authentication (docs/protocol.md,
 * `sync` / `sync_result`).
 *
 * v1.2 server (`authenticated.seq`): every frame with a `seq`, live or from a `sync` page, goes
 * through one path, `update()`: `ChatSequence` skips what was applied, applies the next, and holds
 * what follows a gap; a gap (live frames can be lost while the socket stays up) starts `sync
 * {after_seq}` from the last applied, paged until `has_more` is false, after which the held ones
 * follow in order. After a (re)connect it syncs from the last `seq` applied; a device with no state
 * starts from `authenticated.seq`.
 *
 * v1.1 server (no `seq`): pages of `syncPageSize` after the last id seen until `has_more` is
 * false; live messages that come during a catch-up are held and emitted after it in id order.
 *
 * Either way every message is emitted once as `chat_message`, and each catch-up ends with `synced`.
 * An own message still waiting for its `message_sent` resolves its `send()` from the catch-up
 * instead of being emitted. All runtime code lives inside the class (the demo page embeds its
 * source; see README.md, "Using it without a build step").
 */

import type { ChatAuth } from "./auth.ts";
import type { ChatConnection } from "./connection.ts";
import type { ChatEmitter } from "./emitter.ts";
import type {
  ChatMessage,
  ErrorFrame,
  MessageUpdatedFrame,
  ReadFrame,
  StoredMessage,
  SyncResultFrame,
  SyncUpdatesResultFrame,
  UpdateFrame,
} from "./frames.ts";
import type { ChatMailbox } from "./mailbox.ts";
import type { ChatOutbox } from "./outbox.ts";
import { ChatSequence } from "./sequence.ts";

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
  /** v1.2: updates applied by the current catch-up, for `synced`. */
  #updates = 0;
  /** v1.2: the updates applied, held and synced. */
  readonly #sequence: ChatSequence;
  /** v1.2: the server of this session numbers updates (it sent `authenticated.seq`). */
  #sequenced = false;
  /** v1.2: the `after_seq` of the `sync` page asked last. */
  #askedAfter = 0;

  constructor(
    parts: ChatCatchUpParts,
    pageSize: number,
    autoDelivered: boolean,
    lastSeq?: number,
  ) {
    this.#parts = parts;
    this.#pageSize = pageSize;
    this.#autoDelivered = autoDelivered;
    this.#sequence = new ChatSequence(lastSeq);
  }

  /** v1.2: the largest `seq` applied, once known. */
  get lastSeq(): number | undefined {
    return this.#sequence.last;
  }

  /** v1.2: this session's updates are numbered (`authenticated.seq`): `update()` takes them. */
  get sequenced(): boolean {
    return this.#sequenced;
  }

  /**
   * A new session: catches up after `after`, or, with nothing to fetch, is done at once (then
   * `synced` only when `announce`: a v1.0 server knows no catch-up). With `seq` (a v1.2 server)
   * it catches up by update number instead.
   */
  start(after: number | undefined, announce: boolean, seq?: number): void {
    this.#count = 0;
    this.#updates = 0;
    this.#sequenced = seq !== undefined;
    if (seq !== undefined) {
      const from = this.#sequence.authenticated(seq);
      if (from !== undefined) this.#syncSeq(from);
      else this.#synced(true);
    } else if (after !== undefined) this.#request(after);
    else this.#synced(announce);
  }

  /**
   * v1.2: one update with a `seq`, live or from a `sync` page: applied once, in `seq` order; a gap
   * before it starts a `sync` (unless one runs).
   */
  update(update: UpdateFrame & { seq: number }): void {
    this.#sequence.offer(update, (u) => this.#apply(u));
    if (this.#sequence.gap && !this.#sequence.syncing) this.#syncSeq(this.#sequence.last!);
  }

  /** A live `chat_message`: held during a catch-up, else emitted unless seen before. */
  live(message: ChatMessage): boolean {
    const me = this.#parts.auth.userId;
    if (this.#parts.mailbox.syncing) this.#held.push(message);
    else if (me !== undefined && this.#parts.mailbox.accept(message, me, true)) {
      this.#incoming(message);
      return true;
    }
    return false;
  }

  /** One `sync_result` page; ignored outside a catch-up. */
  page(page: SyncResultFrame | SyncUpdatesResultFrame): void {
    if ("updates" in page && Array.isArray(page.updates)) return this.#seqPage(page, page.updates);
    if (!("messages" in page)) return;
    const { mailbox } = this.#parts;
    const me = this.#parts.auth.userId;
    if (!mailbox.syncing || me === undefined) return;
    const messages = Array.isArray(page.messages) ? page.messages : [];
    for (const message of messages) {
      const fresh = mailbox.accept(message, me, false);
      if (this.#ownPending(message, me)) this.#parts.outbox.acknowledge(message);
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
    const syncing = this.#parts.mailbox.syncing || this.#sequence.syncing;
    if (!syncing || ws === undefined) return false;
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
    this.#sequence.abort(); // the held updates are above the last applied: a sync returns them
    this.#held = []; // their ids are above the cursor: the next catch-up returns them
  }

  #request(after: number): void {
    this.#parts.connection.write(
      JSON.stringify({ type: "sync", after_message_id: after, limit: this.#pageSize }),
    );
  }

  #syncSeq(after: number): void {
    this.#askedAfter = after;
    this.#sequence.beginSync();
    this.#parts.connection.write(
      JSON.stringify({ type: "sync", after_seq: after, limit: this.#pageSize }),
    );
  }

  /**
   * One page of a v1.2 catch-up: its updates go through `update()`'s path; then the next page, or,
   * on the last, the held updates (a gap still open below them is asked for again, unless the
   * server's answer already covered them: then it cannot be filled and they are applied).
   */
  #seqPage(page: SyncUpdatesResultFrame, updates: unknown[]): void {
    const sequence = this.#sequence;
    if (!sequence.syncing) return;
    const apply = (u: UpdateFrame) => {
      this.#updates++;
      if (this.#apply(u)) this.#count++;
    };
    let after = sequence.last!;
    for (const update of updates as UpdateFrame[]) {
      if (!ChatCatchUp.#hasSeq(update)) continue;
      sequence.offer(update, apply);
      after = Math.max(after, update.seq);
    }
    // The next page starts after the largest seq returned (so a page that fills nothing still
    // moves on); a page that did not move on ends the catch-up.
    if (page.has_more === true && after > this.#askedAfter) return this.#syncSeq(after);
    sequence.endSync();
    const held = sequence.firstHeld;
    if (held !== undefined) {
      const latest = typeof page.seq === "number" ? page.seq : after;
      if (held > latest) return this.#syncSeq(sequence.last!); // newer than the answer: ask again
      sequence.skipGap(apply);
    }
    this.#synced(true);
  }

  /**
   * Applies one update of the sequence (its `seq` is `lastSeq` now): what it changes is emitted.
   * True when it was a message emitted as `chat_message`.
   */
  #apply(update: UpdateFrame): boolean {
    const { emitter, mailbox, auth } = this.#parts;
    switch (update.type) {
      case "chat_message": {
        const me = auth.userId;
        if (me === undefined || !this.#ownPending(update, me)) return this.live(update);
        mailbox.accept(update, me, true);
        this.#parts.outbox.acknowledge(update);
        return false;
      }
      case "message_sent": // acknowledged when it came: nothing more to show
        return false;
      case "message_updated": {
        const { message } = update as MessageUpdatedFrame;
        const changed = message !== undefined && mailbox.deleted(message);
        emitter.emit("message_updated", update);
        if (changed) emitter.emit("unread", mailbox.unread());
        return false;
      }
      case "read":
        this.read(update);
        return false;
      default:
        emitter.emit(update.type, update);
        return false;
    }
  }

  /** A read receipt; the user's own (from another device) lowers the unread counts. */
  read(read: ReadFrame): void {
    const { auth, mailbox, emitter } = this.#parts;
    const changed = read.user_id === auth.userId &&
      mailbox.read(read.friend_user_id, read.up_to_message_id);
    emitter.emit("read", read);
    if (changed) emitter.emit("unread", mailbox.unread());
  }

  /** Catch-up is over: reconnect backoff starts again from its base. */
  #synced(announce: boolean): void {
    this.#parts.connection.caughtUp();
    if (!announce) return;
    const seq = this.#sequenced ? this.#sequence.last : undefined;
    this.#parts.emitter.emit("synced", {
      type: "synced",
      count: this.#count,
      last_message_id: this.#parts.mailbox.cursor ?? 0,
      ...(seq === undefined ? {} : { seq, updates: this.#updates }),
    });
    this.#count = 0;
    this.#updates = 0;
  }

  /** An own message whose `send()` still waits: the catch-up acknowledges it. */
  #ownPending(message: ChatMessage, me: number): boolean {
    return message.sender_user_id === me && message.client_message_id !== undefined &&
      this.#parts.outbox.has(message.client_message_id);
  }

  static #hasSeq(update: unknown): update is UpdateFrame & { seq: number } {
    const u = update as { type?: unknown; seq?: unknown } | null;
    return typeof u === "object" && u !== null && typeof u.type === "string" &&
      Number.isSafeInteger(u.seq) && (u.seq as number) > 0;
  }

  /** Emits a message received for the first time, counts it unread, reports it delivered. */
  #incoming(message: ChatMessage & Partial<StoredMessage>): void {
    const { emitter, mailbox } = this.#parts;
    emitter.emit("chat_message", { ...message, type: "chat_message" });
    const me = this.#parts.auth.userId;
    const deleted = message.deleted_at !== undefined || message.deleted_for_me === true;
    if (message.recipient_user_id === me && message.sender_user_id !== me && !deleted) {
      if (message.is_read !== true) emitter.emit("unread", mailbox.unread());
      if (this.#autoDelivered && message.delivered_at === undefined) {
        this.#parts.markDelivered(message.message_id);
      }
    }
  }
}
