/**
 * @module store/repository
 * What the server needs from storage, with its guarantees. Two
 * implementations: `postgres/repository.ts` (production) and
 * `memory.ts` (unit tests); one contract suite runs against both.
 */

import type {
  SeenState,
  SettingsBody,
  SettingsChange,
  SettingsUpdate,
  UserSettings,
} from "./settings.ts";

/** A message to store: the sender's checked, trimmed frame. */
export interface NewMessage {
  senderUserId: number;
  recipientUserId: number;
  messageText: string;
  clientMessageId: string | undefined;
  /** What the moderation hook decided, when it changed or could not check the text (v1.2). */
  moderation?: "replaced" | "unchecked" | undefined;
}

/**
 * Each user's number for one update (docs/protocol.md, "Updates"): user id →
 * `seq` in that user's own sequence.
 */
export type Seqs = ReadonlyMap<number, number>;

/** A message as stored. */
export interface StoredMessage {
  messageId: number;
  senderUserId: number;
  recipientUserId: number;
  messageText: string;
  sentAt: Date;
  clientMessageId: string | undefined;
  /** Set once edited (v1.2). */
  editedAt?: Date | undefined;
  /** Set once deleted for everyone; the text is then "" (v1.2). */
  deletedAt?: Date | undefined;
  /** Deleted by the user it was read for (text ""), v1.2. */
  deletedForMe?: boolean | undefined;
  /** What the moderation hook decided, when it changed or could not check the text (v1.2). */
  moderation?: "replaced" | "unchecked" | undefined;
}

/** The outcome of `storeMessage`. */
export interface StoreResult {
  message: StoredMessage;
  /** True when `(sender, client_message_id)` was stored before: `message` is that row. */
  duplicate: boolean;
  /**
   * The message's update in the sender's and the recipient's sequences (for a
   * duplicate: the original's, when it has one: rows from before v1.2 have none).
   */
  seqs: Seqs;
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

/** A `read` receipt as an update: the reader read the friend's messages up to an id. */
export interface ReadReceipt {
  readerUserId: number;
  friendUserId: number;
  upToMessageId: number;
  readAt: Date;
}

/**
 * One update of a user's sequence as `sync` returns it (docs/protocol.md,
 * "Updates"); messages in their latest state for that user.
 */
export type Update =
  | { seq: number; kind: "message"; message: MessageRecord }
  | { seq: number; kind: "message_updated"; message: MessageRecord }
  | { seq: number; kind: "read"; read: ReadReceipt }
  | { seq: number; kind: "delivered"; messageId: number; recipientUserId: number }
  | { seq: number; kind: "settings_updated"; settings: unknown };

/** One page of a user's updates, oldest first. */
export interface UpdatePage {
  updates: Update[];
  hasMore: boolean;
  /** The user's latest seq when the page was read. */
  seq: number;
}

/** The outcome of `markRead` when it changed something. */
export interface ReadResult {
  readAt: Date;
  /** The receipt's update in the reader's and the friend's sequences. */
  seqs: Seqs;
}

/** The outcome of `editMessage` and `deleteMessage` (v1.2, "Editing and deleting"). */
export type ChangeResult =
  /** Changed: `seqs` numbers the update of each user who gets it. */
  | { status: "changed"; message: MessageRecord; seqs: Seqs }
  /** Nothing to change (the same text, deleted already): the message as it is. */
  | { status: "unchanged"; message: MessageRecord }
  /** No such message, or not one this user may act on. */
  | { status: "not_found" }
  /** An edit after `EDIT_WINDOW_S`. */
  | { status: "edit_window_passed" }
  /** An edit of a message deleted for everyone. */
  | { status: "message_deleted" };

/** A message a moderator deleted (`POST /messages/delete`) and its update in both sequences. */
export interface ModeratorDeletion {
  message: MessageRecord;
  seqs: Seqs;
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
  /** The user's latest update number; 0 when none (v1.2). */
  seq: number;
}

/** The outcome of `markDelivered`. */
export type DeliveredResult =
  /** This call set `delivered_at`: the sender is to be told (`seqs`: its update of both users). */
  | { status: "first"; senderUserId: number; seqs: Seqs }
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
 * The outcome of `signIn`: the token's access and, only when it is `ok`, what
 * `authenticated` reads of the user (as `friendIds`, `mailboxSummary`, `settings`
 * and `seenStates` of the friends would answer).
 */
export type SignIn =
  | { access: "inactive" | "revoked" }
  | {
    access: "ok";
    friends: readonly number[];
    mailbox: MailboxSummary;
    settings: UserSettings;
    /** Of `friends`, those with a seen state. */
    seen: Map<number, SeenState>;
  };

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
   * A login's storage work at once: `tokenAccess`, then (only when `ok`) the
   * friends, the mailbox summary, the settings and the friends' seen states.
   * Postgres answers it in one statement (`chat_sign_in`, migration 10);
   * rejects with `UnavailableError` like each of them.
   */
  signIn(userId: number, issuedAt: number): Promise<SignIn>;
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
   * The committed message `senderUserId` sent with `clientMessageId` (with
   * `moderation`, what the hook did to it), or undefined when there is none (a retry is answered from it before the
   * moderation hook is asked again).
   */
  messageByClientId(
    senderUserId: number,
    clientMessageId: string,
  ): Promise<StoredMessage | undefined>;
  /**
   * `report`: stores a report of a message its reporter sent or received,
   * with a snapshot of the conversation around it as it is now (the message
   * and up to `SNAPSHOT_AROUND` messages of the conversation before and after
   * it, oldest first), once per (reporter, message): a repeated report
   * stores nothing and answers the first one's id.
   */
  reportMessage(report: NewReport): Promise<ReportResult>;
  /**
   * Unread counts, the last message id and the latest seq of `userId`, for
   * `authenticated`; read from counters, whatever the mailbox holds.
   */
  mailboxSummary(userId: number): Promise<MailboxSummary>;
  /**
   * `sync {after_seq}` (v1.2): the user's updates with a seq above `afterSeq`,
   * oldest first, at most `limit`, messages in their latest state.
   */
  updatesAfter(userId: number, afterSeq: number, limit: number): Promise<UpdatePage>;
  /**
   * The v1.1 `sync {after_message_id}`: the messages to or from `userId` a
   * client that last saw `afterMessageId` can have missed (every one with a
   * larger id, and every one whose update follows that message's in the
   * user's sequence), in the order of the sequence, deleted-for-me ones left
   * out, at most `limit`.
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
   * when it covered none. A change is an update of both users (`seqs`).
   */
  markRead(readerUserId: number, friendUserId: number, upToMessageId: number): Promise<
    ReadResult | undefined
  >;
  /** `delivered`: sets `delivered_at` of a message to `recipientUserId` the first time only. */
  markDelivered(recipientUserId: number, messageId: number): Promise<DeliveredResult>;
  /**
   * `edit_message` (v1.2): only the sender, within `windowS` of `sent_at`
   * (0: never), not deleted; the same text again changes nothing. A change is
   * an update of both users.
   */
  editMessage(
    userId: number,
    messageId: number,
    text: string,
    windowS: number,
    moderation?: "replaced" | "unchecked",
  ): Promise<ChangeResult>;
  /**
   * `delete_message` (v1.2): `everyone` (the sender only; the text is erased
   * from the row; an update of both users) or `me` (sender or recipient; hidden
   * from that user's history and unread counts; an update of that user only).
   */
  deleteMessage(userId: number, messageId: number, scope: "everyone" | "me"): Promise<ChangeResult>;
  /**
   * A message the user may see (sender or recipient, not deleted for them), as
   * it is now; `undefined` for any other id.
   */
  messageFor(userId: number, messageId: number): Promise<MessageRecord | undefined>;
  /**
   * `POST /messages/delete`: deletes these messages for everyone as their
   * senders would; ids that do not exist or are deleted already are left out.
   */
  deleteAsModerator(messageIds: readonly number[]): Promise<ModeratorDeletion[]>;
  /** Of `userIds`, those that are unknown or have `active = false` now (no cache). */
  inactiveUsers(userIds: readonly number[]): Promise<number[]>;
  /** The user's settings now (v1.2), expired mutes and do-not-disturb left out. */
  settings(userId: number): Promise<UserSettings>;
  /**
   * Applies a `settings` frame's change and resolves once committed, with the
   * settings after it; `body` gives the stored update's body from them.
   */
  updateSettings(
    userId: number,
    change: SettingsChange,
    body: SettingsBody,
  ): Promise<SettingsUpdate>;
  /**
   * Of `userIds`, those that ever changed a setting or were seen going
   * offline: whether they appear offline and when they were last seen. Fresh.
   */
  seenStates(userIds: readonly number[]): Promise<Map<number, SeenState>>;
  /** Whether the user appears offline now (fresh: presence frames depend on it). */
  appearsOffline(userId: number): Promise<boolean>;
  /**
   * Records when the user was last seen (their offline was decided), behind
   * the caller: queued and written in batches, bounded; never throws. A
   * later time never goes back. `close` writes what is queued.
   */
  recordLastSeen(userId: number, at: Date): void;
  /** Whether storage answers now (readiness). */
  isReady(): Promise<boolean>;
  /** Messages accepted and waiting to be written (a queue that grows means storage lags). */
  queuedMessages?(): number;
  /** Commits what is queued, then releases the connections. */
  close(): Promise<void>;
}
