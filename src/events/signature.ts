/**
 * @module events/signature
 * The webhook's signature, as the moderation hook signs (docs/protocol.md):
 * `X-Chat-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">`
 * keyed with `EVENTS_SECRET`, `X-Chat-Timestamp` in Unix seconds.
 */

const encoder = new TextEncoder();

/** The HMAC key of `secret` (import once, sign many). */
export function importSigningKey(secret: string): Promise<CryptoKey> {
  return crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
}

/** The `X-Chat-Signature` value of `body` sent at `timestampS`. */
export async function signature(key: CryptoKey, timestampS: number, body: string): Promise<string> {
  const mac = await crypto.subtle.sign("HMAC", key, encoder.encode(`${timestampS}.${body}`));
  return "sha256=" +
    Array.from(new Uint8Array(mac), (b) => b.toString(16).padStart(2, "0")).join("");
}
