/**
 * @module errors
 * The SDK's one error class (all runtime code inside it: the demo page embeds its source).
 */

/**
 * Why a `send()`, `history()` or `report()` was refused. From the server (its `error` code):
 * `moderated` (v1.2: the game's moderation hook rejected the text; `message` is its reason, to
 * show the player, and nothing was stored), `unavailable` (retriable: storage, or the moderation
 * hook with `MODERATION_FAIL=closed`), `not_found` (`report()` of a message that is not the
 * user's), `not_friends`, `forbidden`, `invalid_field`, `message_empty`, `message_too_long`, …;
 * from the client: `queue_full`, `closed`, `timeout`, `session_expired`.
 */
export type ChatSendCode =
  | "moderated"
  | "unavailable"
  | "not_found"
  | "not_friends"
  | "forbidden"
  | "invalid_field"
  | "message_empty"
  | "message_too_long"
  | "rate_limited"
  | "queue_full"
  | "closed"
  | "timeout"
  | "session_expired"
  | (string & Record<never, never>);

/**
 * Why `send()`, `history()` or `report()` failed: see `ChatSendCode` (`clientMessageId` is ""
 * for `history()` and `report()`).
 */
export class ChatSendError extends Error {
  override name = "ChatSendError";
  constructor(
    readonly code: ChatSendCode,
    message: string,
    readonly clientMessageId: string,
  ) {
    super(message);
  }

  /** The moderation hook rejected the message: `message` is the reason to show the player. */
  get moderated(): boolean {
    return this.code === "moderated";
  }
}
