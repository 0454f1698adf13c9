/**
 * @module examples/events_receiver
 * A reference receiver of the chat server's events webhook (docs/deploy.md,
 * "Events webhook"), dependency-free: it checks each batch's signature and
 * timestamp, hands every event it has not seen before to `onEvent`, and
 * answers 200 only once all of them are handled, so a batch that failed
 * half-way comes again and its handled events are skipped.
 *
 * Run it: `EVENTS_SECRET=... PORT=8090 deno run --allow-net --allow-env examples/events_receiver.ts`
 * (it logs each event; replace `onEvent` with the call to your push service).
 */

export interface ReceiverOptions {
  /** `EVENTS_SECRET` of the chat server. */
  secret: string;
  /** What to do with one event; a throw answers 500 and the batch is sent again. */
  onEvent(event: Record<string, unknown>): void | Promise<void>;
  /** Batches signed further than this from now are refused (default 300 s). */
  maxSkewS?: number;
  /** How many ids are remembered for deduplication (default 100 000). */
  rememberIds?: number;
  now?: () => number;
}

const encoder = new TextEncoder();

/** A `fetch` handler for the webhook's POSTs. */
export function eventsReceiver(options: ReceiverOptions): (request: Request) => Promise<Response> {
  const maxSkewS = options.maxSkewS ?? 300;
  const rememberIds = options.rememberIds ?? 100_000;
  const now = options.now ?? Date.now;
  /** Ids handled, oldest first (a Map keeps insertion order). */
  const seen = new Map<string, true>();
  const key = crypto.subtle.importKey(
    "raw",
    encoder.encode(options.secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["verify"],
  );
  const refuse = (status: number, error: string) => Response.json({ error }, { status });

  return async (request) => {
    if (request.method !== "POST") return refuse(405, "POST only");
    const timestamp = request.headers.get("x-chat-timestamp") ?? "";
    if (!/^\d{1,12}$/.test(timestamp)) return refuse(401, "missing or bad X-Chat-Timestamp");
    if (Math.abs(now() / 1000 - Number(timestamp)) > maxSkewS) {
      return refuse(401, "stale X-Chat-Timestamp");
    }
    const raw = await request.text();
    const hex = /^sha256=([0-9a-f]{64})$/.exec(request.headers.get("x-chat-signature") ?? "")?.[1];
    if (hex === undefined) return refuse(401, "missing or bad X-Chat-Signature");
    const mac = new Uint8Array(hex.match(/../g)!.map((byte) => parseInt(byte, 16)));
    // crypto.subtle.verify compares in constant time.
    const valid = await crypto.subtle.verify(
      "HMAC",
      await key,
      mac,
      encoder.encode(`${timestamp}.${raw}`),
    );
    if (!valid) return refuse(401, "signature does not match");
    let events: unknown;
    try {
      events = (JSON.parse(raw) as { events?: unknown }).events;
    } catch {
      return refuse(400, "body is not JSON");
    }
    if (!Array.isArray(events)) return refuse(400, "body has no events array");
    for (const event of events as Record<string, unknown>[]) {
      const id = String(event.id);
      if (seen.has(id)) continue;
      try {
        await options.onEvent(event);
      } catch (err) {
        console.error(`event ${id} failed: ${err instanceof Error ? err.message : err}`);
        return refuse(500, "an event could not be handled; send the batch again");
      }
      seen.set(id, true);
      if (seen.size > rememberIds) seen.delete(seen.keys().next().value!);
    }
    return Response.json({ ok: true });
  };
}

if (import.meta.main) {
  const secret = Deno.env.get("EVENTS_SECRET");
  if (!secret) {
    console.error("EVENTS_SECRET must be set (the chat server's EVENTS_SECRET)");
    Deno.exit(78);
  }
  Deno.serve(
    { port: Number(Deno.env.get("PORT") ?? 8090) },
    eventsReceiver({
      secret,
      onEvent(event) {
        // Here: look up the recipient's devices and call the push service (APNs, FCM, ...).
        console.log(JSON.stringify(event));
      },
    }),
  );
}
