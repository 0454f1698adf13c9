/**
 * @module webhook_signature
 * The signature of the server's outgoing webhook calls, the moderation hook's
 * and the events webhook's alike (docs/protocol.md, "Moderation hook", "Events
 * webhook"): `X-Chat-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw
 * body>">`, the key a shared secret, with `X-Chat-Timestamp` in Unix seconds.
 */

const encoder = new TextEncoder();

/** The HMAC-SHA256 key of `secret` (its UTF-8 bytes), for signing only. */
export function importSigningKey(secret: string): Promise<CryptoKey> {
  return crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
}

/** The `X-Chat-Signature` value of `body` sent at `timestamp` (Unix seconds). */
export async function signBody(key: CryptoKey, timestamp: number, body: string): Promise<string> {
  const mac = await crypto.subtle.sign("HMAC", key, encoder.encode(`${timestamp}.${body}`));
  return `sha256=${toHex(new Uint8Array(mac))}`;
}

function toHex(bytes: Uint8Array): string {
  let hex = "";
  for (const byte of bytes) hex += byte.toString(16).padStart(2, "0");
  return hex;
}
