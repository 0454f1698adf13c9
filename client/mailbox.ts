/**
 * @module mailbox
 * What the client knows of the user's messages: the id catch-up starts after, which ids were
 * already emitted (so a message is emitted once, whether it came live, by `sync`, or both), and
 * the unread counts. Pure state, no I/O; `ChatClient` drives it.
 *
 * Like `ChatClient`, all runtime code lives inside the class (see README.md, "Using it without a
 * build step"): the demo page embeds `ChatMailbox.toString()`.
 */

import type { AuthenticatedFrame, ChatMessage, StoredMessage, UnreadEvent } from "./frames.ts";

/** Catch-up cursor, duplicate filter and unread counts of one user. */
export class ChatMailbox {
  /** `sync` asks for messages after this id; undefined until known. */
  #cursor: number | undefined;
  /** While a catch-up runs, the largest id it returned (live frames do not move the cursor). */
  #syncMax: number | undefined;
  /** Ids already emitted, oldest first, at most `#maxSeen`. */
  readonly #seen = new Set<number>();
  readonly #maxSeen: number;
  /** Unread counts by sender from `authenticated`; they cover ids up to `#baseLast`. */
  #base = new Map<number, number>();
  #baseLast = 0;
  /** Unread ids above `#baseLast` received since, by sender. */
  readonly #fresh = new Map<number, Set<number>>();

  constructor(lastMessageId?: number, maxSeen = 10_000) {
    this.#cursor = lastMessageId;
    this.#maxSeen = maxSeen;
  }

  /** The id the next catch-up starts after. */
  get cursor(): number | undefined {
    return this.#cursor;
  }

  get syncing(): boolean {
    return this.#syncMax !== undefined;
  }

  /**
   * Takes in a new session's `authenticated`; returns the id to `sync` after, or undefined when
   * there is nothing to catch up (a v1.0 server, a first connection without a remembered id, or
   * nothing newer than the cursor).
   */
  authenticated(frame: AuthenticatedFrame): number | undefined {
    this.#base = new Map();
    for (const [sender, count] of Object.entries(frame.unread_by_friend ?? {})) {
      if (count > 0) this.#base.set(Number(sender), count);
    }
    this.#baseLast = frame.last_message_id ?? 0;
    this.#fresh.clear();
    const last = frame.last_message_id;
    if (last === undefined) return undefined;
    if (this.#cursor === undefined) this.#cursor = last;
    // v1.2 (`seq`): catch-up runs on the update sequence, not on message ids.
    if (last <= this.#cursor || frame.seq !== undefined) return undefined;
    this.#syncMax = this.#cursor;
    return this.#cursor;
  }

  /**
   * Registers a message for user `me`; true when it was not seen before. A live message moves
   * the cursor only outside a catch-up, so a connection lost mid-catch-up resumes before any gap.
   */
  accept(message: ChatMessage & Partial<StoredMessage>, me: number, live: boolean): boolean {
    const id = message.message_id;
    if (!Number.isSafeInteger(id) || id <= 0) return false;
    if (!live && this.#syncMax !== undefined) this.#syncMax = Math.max(this.#syncMax, id);
    if (live && this.#syncMax === undefined) this.#cursor = Math.max(this.#cursor ?? 0, id);
    if (this.#seen.has(id)) return false;
    this.#seen.add(id);
    if (this.#seen.size > this.#maxSeen) {
      this.#seen.delete(this.#seen.values().next().value!);
    }
    const sender = message.sender_user_id;
    const deleted = message.deleted_at !== undefined || message.deleted_for_me === true;
    if (
      message.recipient_user_id === me && sender !== me && message.is_read !== true &&
      id > this.#baseLast && !deleted
    ) {
      let ids = this.#fresh.get(sender);
      if (ids === undefined) this.#fresh.set(sender, ids = new Set());
      ids.add(id);
      return true;
    }
    return true;
  }

  /** The last catch-up page arrived: the cursor moves to the largest id it returned. */
  endSync(): void {
    if (this.#syncMax !== undefined) this.#cursor = Math.max(this.#cursor ?? 0, this.#syncMax);
    this.#syncMax = undefined;
  }

  /** A catch-up was cut short (connection lost): the cursor stays where it was. */
  abortSync(): void {
    this.#syncMax = undefined;
  }

  /**
   * The user read `friendId`'s messages up to `upTo` (on this device or another). Exact for the
   * messages received in this session; the count from `authenticated` is cleared when `upTo`
   * covers every message that existed then.
   */
  read(friendId: number, upTo: number): boolean {
    const before = this.count(friendId);
    if (upTo >= this.#baseLast) this.#base.delete(friendId);
    const ids = this.#fresh.get(friendId);
    for (const id of ids ?? []) if (id <= upTo) ids!.delete(id);
    return this.count(friendId) !== before;
  }

  /**
   * v1.2: a message was deleted (for everyone, or for this user): it no longer counts as unread.
   * True when the counts changed.
   */
  deleted(message: ChatMessage & Partial<StoredMessage>): boolean {
    if (message.deleted_at === undefined && message.deleted_for_me !== true) return false;
    return this.#fresh.get(message.sender_user_id)?.delete(message.message_id) ?? false;
  }

  /** Unread messages from `friendId`. */
  count(friendId: number): number {
    return (this.#base.get(friendId) ?? 0) + (this.#fresh.get(friendId)?.size ?? 0);
  }

  unread(): UnreadEvent {
    const byFriend: Record<string, number> = {};
    let total = 0;
    for (const friend of new Set([...this.#base.keys(), ...this.#fresh.keys()])) {
      const n = this.count(friend);
      if (n > 0) (byFriend[String(friend)] = n, total += n);
    }
    return { type: "unread", total, by_friend: byFriend };
  }
}
