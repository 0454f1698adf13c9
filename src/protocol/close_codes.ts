/**
 * @module close_codes
 * The WebSocket close codes the server sends, by meaning.
 */

export const CloseCode = {
  goingAway: 1001,
  /** Policy: authentication failures and timeout, rate abuse, session expired. */
  policy: 1008,
  tryAgainLater: 1013,
} as const;
