/**
 * @module token
 * Signed auth tokens `user_id:timestamp:signature`, where the signature is the
 * lowercase hex HMAC-SHA256 of `user_id:timestamp` under `AUTH_SECRET`.
 *
 * Verification is a pure function of (token, key, now): it parses strictly
 * (canonical decimals, exactly 64 lowercase hex digits), checks the age and
 * the clock skew, and compares the signature in constant time
 * (`timingSafeEqual`). Whether the user exists and is active is the caller's
 * check.
 *
 * The HMAC is `node:crypto`'s: on Deno it costs a fraction of Web Crypto's
 * per verification (measured in bench/README.md), and a login verifies one
 * token.
 */

import { Buffer } from "node:buffer";
import { createHmac, timingSafeEqual } from "node:crypto";

/** How far in the future a token's timestamp may be (clock skew between hosts). */
export const MAX_CLOCK_SKEW_S = 300;

/** Why a token was refused; never shown to the client, which sees one message for all. */
export type TokenFailure = "format" | "signature" | "expired" | "future";

export type TokenResult =
  | { ok: true; userId: number; timestamp: number }
  | { ok: false; reason: TokenFailure };

const encoder = new TextEncoder();
const TOKEN_SHAPE = /^([1-9][0-9]{0,15}):(0|[1-9][0-9]{0,15}):([0-9a-f]{64})$/;

/** The HMAC-SHA256 key tokens are signed and verified with. */
export interface TokenKey {
  readonly bytes: Uint8Array;
}

/** Makes `secret` the HMAC-SHA256 key for signing and verifying tokens. */
export function importTokenKey(secret: string): Promise<TokenKey> {
  return Promise.resolve({ bytes: encoder.encode(secret) });
}

function mac(key: TokenKey, payload: string): Buffer {
  return createHmac("sha256", key.bytes).update(payload).digest();
}

/** Verifies `token` at `nowSeconds` for tokens at most `ttlSeconds` old. */
export function verifyToken(
  token: string,
  key: TokenKey,
  nowSeconds: number,
  ttlSeconds: number,
): Promise<TokenResult> {
  return Promise.resolve(verify(token, key, nowSeconds, ttlSeconds));
}

function verify(token: string, key: TokenKey, nowSeconds: number, ttlSeconds: number): TokenResult {
  const match = TOKEN_SHAPE.exec(token);
  if (match === null) return { ok: false, reason: "format" };
  const [, userPart = "", timePart = "", signature = ""] = match;
  const userId = Number(userPart);
  const timestamp = Number(timePart);
  if (!Number.isSafeInteger(userId) || !Number.isSafeInteger(timestamp)) {
    return { ok: false, reason: "format" };
  }
  // Both 32 bytes (the shape above), as timingSafeEqual requires.
  const valid = timingSafeEqual(mac(key, `${userPart}:${timePart}`), Buffer.from(signature, "hex"));
  if (!valid) return { ok: false, reason: "signature" };
  if (nowSeconds - timestamp > ttlSeconds) return { ok: false, reason: "expired" };
  if (timestamp > nowSeconds + MAX_CLOCK_SKEW_S) return { ok: false, reason: "future" };
  return { ok: true, userId, timestamp };
}

/** Signs a token for `userId` at `timestamp` (Unix seconds), as the game backend does. */
export function signToken(key: TokenKey, userId: number, timestamp: number): Promise<string> {
  const payload = `${userId}:${timestamp}`;
  return Promise.resolve(`${payload}:${mac(key, payload).toString("hex")}`);
}
