/**
 * @module store/repository
 * What the server needs from storage, with its guarantees. Two
 * implementations: `postgres/repository.ts` (production) and
 * `memory.ts` (unit tests); one contract suite runs against both.
 */

/** A message to store: the sender's checked, trimmed frame. */
export interface NewMessage {
  senderUserId: number;
  recipientUserId: number;
  messageText: string;
  clientMessageId: string | undefined;
  /** What the moderation hook did (docs/protocol.md, "Moderation hook"); absent: allowed, or no hook. */
  moderation?: "replaced" | "unchecked";
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

/** A sender's message found by its `client_message_id`, with what the moderation hook did to it. */
export interface ClientMessageRow {
  message: StoredMessage;
  moderation: "replaced" | "unchecked" | undefined;
}

/** The reasons a report may give (docs/protocol.md, "Reports"). */
export const REPORT_REASONS = [
  "spam",
  "harassment",
  "hate",
  "sexual",
  "self_harm",
  "cheating",
  "other",
] as const;

export type ReportReason = typeof REPORT_REASONS[number];

/** A report of one message by one of its two users. */
export interface NewReport {
  reporterUserId: number;
  messageId: number;
  reason: ReportReason;
  note: string | undefined;
}

/**
 * One message of a report's snapshot, as it was when reported (the wire
 * form of a message, docs/protocol.md "Frames").
 */
export interface SnapshotMessage {
  message_id: number;
  sender_user_id: number;
  recipient_user_id: number;
  message_text: string;
  sent_at: string;
  client_message_id?: string;
}

/** How many messages before and after the reported one a snapshot holds, at most. */
export const SNAPSHOT_AROUND = 10;

/**
 * The outcome of `reportMessage`: the report's id (`created` false when the
 * reporter had reported the message before and nothing was stored), or
 * `not_found` when no such message has the reporter as sender or recipient.
 */
export type ReportResult =
  | { status: "reported"; reportId: number; created: boolean }
  | { status: "not_found" };

/** A message as read back (`sync`, `history`): the stored row with its receipts. */
export interface MessageRecord extends StoredMessage {
  isRead: boolean;
  readAt: Date | undefined;
  deliveredAt: Date | undefined;
}

/** One page of messages, in the order the query defines. */
export interface MessagePage {
  messages: MessageRecord[];
  /** More messages match beyond this page. */
  hasMore: boolean;
}

/** What `authenticated` reports of a user's mailbox (docs/protocol.md, "Unread counts"). */
export interface MailboxSummary {
  /** Messages to the user with `is_read = false`. */
  unreadCount: number;
  /** Sender id → unread messages from that sender; non-zero counts only. */
  unreadBySender: Map<number, number>;
  /** Largest `message_id` to or from the user; 0 when there is none. */
  lastMessageId: number;
}

/** The outcome of `markDelivered`. */
export type DeliveredResult =
  /** This call set `delivered_at`: the sender is to be told. */
  | { status: "first"; senderUserId: number }
  /** The message is the recipient's, and was marked delivered before: nothing to tell. */
  | { status: "already" }
  /** No message with that id is addressed to this user. */
  | { status: "not_recipient" };

/**
 * Whether a token of a user may sign in: `ok`; `inactive` (the user is unknown
 * or has `active = false`); `revoked` (issued at or before the user's last
 * `POST /disconnect`).
 */
export type TokenAccess = "ok" | "inactive" | "revoked";

/**
 * Whether a sender may message (or type to) a recipient: an approved friendship in either
 * direction, and neither blocked the other (checks 6 and 7 in docs/protocol.md, "Chat messages").
 */
export type Relation = "ok" | "not_friends" | "blocked";

/**
 * Thrown when storage cannot answer in time (database down, unreachable or
 * past the statement deadline). Callers answer `unavailable`; nothing that
 * raised it was acknowledged.
 */
export class UnavailableError extends Error {
  override name = "UnavailableError";
}

/**
 * Thrown by `storeMessage` when the sender's `client_message_id` names a stored
 * message with another recipient or another text: nothing was stored; the
 * answer is `invalid_field` (docs/protocol.md, "Chat messages").
 */
export class ClientMessageIdReusedError extends Error {
  override name = "ClientMessageIdReusedError";
}

export interface ChatRepository {
  /**
   * Whether a token of `userId` issued at `issuedAt` (Unix seconds) signs in:
   * the user exists with `active = true` and has no revocation at or after
   * `issuedAt`. Asked fresh every time (no cache): a revocation or a
   * deactivation holds for the next sign-in.
   */
  tokenAccess(userId: number, issuedAt: number): Promise<TokenAccess>;
  /**
   * `POST /disconnect`: from now on every token of these users issued at or
   * before `at` is refused, on every node and after restarts. A later call
   * never moves a user's revocation back.
   */
  revokeTokens(userIds: readonly number[], at: Date): Promise<void>;
  /**
   * Checks 6 (an approved friendship, either direction) then 7 (neither user
   * has blocked the other, v1.1). The answer may be up to the repository's
   * cache age stale, never more than 5 seconds.
   */
  relation(senderUserId: number, recipientUserId: number): Promise<Relation>;
  /**
   * The user's approved friends, except those either of the two blocked (so
   * neither sees the other's presence), as stale as `relation` at most.
   */
  friendIds(userId: number): Promise<readonly number[]>;
  /**
   * Stores a message and resolves once its row is committed; rejects with
   * `UnavailableError` when it cannot be, and then no row was acknowledged.
   * A repeated `(sender, clientMessageId)` stores nothing and resolves with
   * the original row and `duplicate: true`.
   */
  storeMessage(message: NewMessage): Promise<StoreResult>;
  /**
   * The committed message `senderUserId` sent with `clientMessageId`, or
   * undefined when there is none (a retry is answered from it before the
   * moderation hook is asked again).
   */
  messageByClientId(
    senderUserId: number,
    clientMessageId: string,
  ): Promise<ClientMessageRow | undefined>;
  /**
   * `report`: stores a report of a message its reporter sent or received,
   * with a snapshot of the conversation around it as it is now (the message
   * and up to `SNAPSHOT_AROUND` messages of the conversation before and after
   * it, oldest first), once per (reporter, message): a repeated report
   * stores nothing and answers the first one's id.
   */
  reportMessage(report: NewReport): Promise<ReportResult>;
  /** Unread counts and the last message id of `userId`, for `authenticated`. */
  mailboxSummary(userId: number): Promise<MailboxSummary>;
  /**
   * `sync`: messages to or from `userId` with an id above `afterMessageId`,
   * oldest first, at most `limit`.
   */
  messagesAfter(userId: number, afterMessageId: number, limit: number): Promise<MessagePage>;
  /**
   * `history`: messages between `userId` and `friendUserId` (both directions)
   * with an id below `beforeMessageId` (the latest when undefined), newest
   * first, at most `limit`.
   */
  conversationBefore(
    userId: number,
    friendUserId: number,
    beforeMessageId: number | undefined,
    limit: number,
  ): Promise<MessagePage>;
  /**
   * `read`: marks the messages from `friendUserId` to `readerUserId` with an id
   * up to `upToMessageId` and `is_read = false` as read now, in one small
   * write whatever their number: from its answer on, `mailboxSummary`,
   * `messagesAfter` and `conversationBefore` report them read (with this
   * `read_at`); their stored `is_read`/`read_at` may follow later (Postgres
   * sets them behind a per-conversation mark, `read_flags.ts`). Messages
   * stored after it stay unread. Resolves with the `read_at` it set when it
   * covered at least one unread message an earlier `read` had not, `undefined`
   * when it covered none.
   */
  markRead(readerUserId: number, friendUserId: number, upToMessageId: number): Promise<
    Date | undefined
  >;
  /** `delivered`: sets `delivered_at` of a message to `recipientUserId` the first time only. */
  markDelivered(recipientUserId: number, messageId: number): Promise<DeliveredResult>;
  /** Of `userIds`, those that are unknown or have `active = false` now (no cache). */
  inactiveUsers(userIds: readonly number[]): Promise<number[]>;
  /** Whether storage answers now (readiness). */
  isReady(): Promise<boolean>;
  /** Messages accepted and waiting to be written (a queue that grows means storage lags). */
  queuedMessages?(): number;
  /** Commits what is queued, then releases the connections. */
  close(): Promise<void>;
}
