/**
 * @module repository
 * What the server needs from storage, with its guarantees. Two
 * implementations: `repository_postgres.ts` (production) and
 * `repository_memory.ts` (unit tests); one contract suite runs against both.
 */

/** A message to store: the sender's checked, trimmed frame. */
export interface NewMessage {
  senderUserId: number;
  recipientUserId: number;
  messageText: string;
  clientMessageId: string | undefined;
}

/** A message as stored. */
export interface StoredMessage {
  messageId: number;
  senderUserId: number;
  recipientUserId: number;
  messageText: string;
  sentAt: Date;
  clientMessageId: string | undefined;
}

/** The outcome of `storeMessage`. */
export interface StoreResult {
  message: StoredMessage;
  /** True when `(sender, client_message_id)` was stored before: `message` is that row. */
  duplicate: boolean;
}

/** Whether a sender may message (or type to) a recipient: checks 6 and 7 of PROTOCOL.md. */
export type Relation = "ok" | "not_friends" | "blocked";

/**
 * Thrown when storage cannot answer in time (database down, unreachable or
 * past the statement deadline). Callers answer `unavailable`; nothing that
 * raised it was acknowledged.
 */
export class UnavailableError extends Error {
  override name = "UnavailableError";
}

export interface ChatRepository {
  /** Whether the user exists with `active = true`. */
  isActiveUser(userId: number): Promise<boolean>;
  /**
   * Checks 6 (an approved friendship, either direction) then 7 (the recipient
   * has not blocked the sender). The answer may be up to the repository's
   * cache age stale, never more than 5 seconds.
   */
  relation(senderUserId: number, recipientUserId: number): Promise<Relation>;
  /** The user's approved friends, as stale as `relation` at most. */
  friendIds(userId: number): Promise<readonly number[]>;
  /**
   * Stores a message and resolves once its row is committed; rejects with
   * `UnavailableError` when it cannot be, and then no row was acknowledged.
   * A repeated `(sender, clientMessageId)` stores nothing and resolves with
   * the original row and `duplicate: true`.
   */
  storeMessage(message: NewMessage): Promise<StoreResult>;
  /** Whether storage answers now (readiness). */
  isReady(): Promise<boolean>;
  /** Commits what is queued, then releases the connections. */
  close(): Promise<void>;
}
