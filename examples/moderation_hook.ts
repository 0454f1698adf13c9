/**
 * @module examples/moderation_hook
 * A moderation hook a studio can start from (docs/protocol.md, "Moderation hook"): a
 * dependency-free Deno script that checks the chat server's signature, refuses stale or replayed
 * timestamps, rejects messages with links and masks the words of a list.
 *
 *     MODERATION_SECRET=... MODERATION_WORDS="darn,heck" PORT=8787 \
 *       deno run --allow-net --allow-env examples/moderation_hook.ts
 *
 * then start the chat server with `MODERATION_URL=http://127.0.0.1:8787/` and the same
 * `MODERATION_SECRET`. It prints one JSON line when it listens (`{"listening": url}`).
 *
 * Settings: `MODERATION_SECRET` (required), `MODERATION_WORDS` (comma-separated, matched as whole
 * words without case), `MODERATION_MAX_SKEW_S` (how far the signed timestamp may be from this
 * machine's clock, default 300), `HOST` (default 127.0.0.1), `PORT` (default 8787; 0 picks one).
 */

export interface HookOptions {
  secret: string;
  /** Words masked with `*`, whole words, any case. */
  words: readonly string[];
  /** Oldest (or most future) signed timestamp accepted, in seconds from now. */
  maxSkewS: number;
  /** Unix seconds (tests may pin it). */
  now?: () => number;
}

/** The largest body read: a chat text is a few KiB at most. */
const MAX_BODY_BYTES = 64 * 1024;

/** A link: a scheme, `www.`, or a bare domain with a common top-level name. */
const LINK =
  /(?:[a-z][a-z0-9+.-]*:\/\/|www\.)\S|\b[\p{L}\p{N}-]+\.(?:com|net|org|io|gg|ru|xyz|info|co|me|tv|app|link|ly)\b/iu;

/** The hook's request handler: `Deno.serve(moderationHook(options))`. */
export async function moderationHook(
  options: HookOptions,
): Promise<(request: Request) => Promise<Response>> {
  const encoder = new TextEncoder();
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(options.secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["verify"],
  );
  const masks = options.words.filter((w) => w.trim() !== "").map((word) =>
    new RegExp(`(?<![\\p{L}\\p{N}])${escape(word.trim())}(?![\\p{L}\\p{N}])`, "giu")
  );
  const now = options.now ?? (() => Date.now() / 1000);

  return async (request) => {
    if (request.method !== "POST") return new Response("POST only", { status: 405 });
    const raw = await request.text();
    if (encoder.encode(raw).length > MAX_BODY_BYTES) {
      return new Response("body too large", { status: 413 });
    }
    // The signature first: nothing unsigned is looked at.
    const timestamp = request.headers.get("x-chat-timestamp") ?? "";
    const signature = request.headers.get("x-chat-signature") ?? "";
    const mac = /^sha256=([0-9a-f]{64})$/.exec(signature)?.[1];
    if (!/^\d{1,12}$/.test(timestamp) || mac === undefined) {
      return new Response("missing or malformed signature", { status: 401 });
    }
    const signed = await crypto.subtle.verify(
      "HMAC",
      key,
      hexBytes(mac),
      encoder.encode(`${timestamp}.${raw}`),
    );
    if (!signed) return new Response("bad signature", { status: 401 });
    if (Math.abs(now() - Number(timestamp)) > options.maxSkewS) {
      return new Response("stale timestamp", { status: 401 });
    }
    let body: { message_text?: unknown };
    try {
      body = JSON.parse(raw);
    } catch {
      return new Response("not JSON", { status: 400 });
    }
    if (typeof body.message_text !== "string") {
      return new Response("no message_text", { status: 400 });
    }
    const text = body.message_text;
    if (LINK.test(text)) {
      return Response.json({ action: "reject", reason: "Links are not allowed" });
    }
    let masked = text;
    for (const mask of masks) masked = masked.replace(mask, (word) => "*".repeat([...word].length));
    return Response.json(
      masked === text ? { action: "allow" } : { action: "replace", message_text: masked },
    );
  };
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function hexBytes(hex: string): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return bytes;
}

if (import.meta.main) {
  const secret = Deno.env.get("MODERATION_SECRET") ?? "";
  if (secret === "") {
    console.error("MODERATION_SECRET must be set (the chat server's MODERATION_SECRET)");
    Deno.exit(1);
  }
  const handler = await moderationHook({
    secret,
    words: (Deno.env.get("MODERATION_WORDS") ?? "").split(","),
    maxSkewS: Number(Deno.env.get("MODERATION_MAX_SKEW_S") ?? 300),
  });
  Deno.serve({
    hostname: Deno.env.get("HOST") ?? "127.0.0.1",
    port: Number(Deno.env.get("PORT") ?? 8787),
    onListen: ({ hostname, port }) =>
      console.log(JSON.stringify({ listening: `http://${hostname}:${port}/` })),
  }, handler);
}
