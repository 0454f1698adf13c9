/**
 * @module errors
 * The SDK's one error class (all runtime code inside it: the demo page embeds its source).
 */

/**
 * Why `send()` or `history()` failed: a server `error` code, or `queue_full` / `closed` /
 * `timeout` / `session_expired` from the client (`clientMessageId` is "" for `history()`).
 */
export class ChatSendError extends Error {
  override name = "ChatSendError";
  constructor(
    readonly code: string,
    message: string,
    readonly clientMessageId: string,
  ) {
    super(message);
  }
}
