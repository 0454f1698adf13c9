/**
 * @module protocol/codes
 * The stable codes of the wire format (docs/protocol.md, "Frames"): every `code`
 * an `error` frame can carry, and the WebSocket close codes the server sends.
 */

/** Every `code` an `error` frame can carry. */
export const ERROR_CODES = [
  "invalid_frame",
  "invalid_json",
  "unknown_type",
  "not_authenticated",
  "already_authenticated",
  "missing_fields",
  "invalid_field",
  "message_empty",
  "message_too_long",
  "invalid_recipient",
  "not_friends",
  "forbidden",
  "rate_limited",
  "too_many_connections",
  "unavailable",
  "internal",
  // v1.2
  "not_found",
  "edit_window_passed",
  "message_deleted",
  "moderated",
] as const;

export type ErrorCode = typeof ERROR_CODES[number];

/** The WebSocket close codes the server sends, by meaning. */
export const CloseCode = {
  goingAway: 1001,
  /** Policy: authentication failures and timeout, rate abuse, session expired. */
  policy: 1008,
  tryAgainLater: 1013,
} as const;
