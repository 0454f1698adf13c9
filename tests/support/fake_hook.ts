/**
 * @module fake_hook
 * A moderation hook for tests: an HTTP endpoint on port 0 (`Deno.serve`)
 * that keeps every call it gets (headers and raw body) and answers each as
 * the test says, verifying the signature as a studio's hook would.
 */

/** One call the hook got. */
export interface HookCall {
  timestamp: string | null;
  signature: string | null;
  /** The raw body, as signed. */
  raw: string;
  body: {
    kind: string;
    message_id?: number;
    sender_user_id: number;
    recipient_user_id: number;
    message_text: string;
    client_message_id?: string;
  };
  /** Whether `X-Chat-Signature` is the HMAC of `"<timestamp>.<raw body>"` with the secret. */
  signed: boolean;
}

/** What the hook does with a call: the `Response` to give (it may wait first). */
export type HookAnswer = (call: HookCall) => Response | Promise<Response>;

export interface FakeHook {
  url: string;
  calls: HookCall[];
  /** Calls being answered now, and the most at once so far. */
  readonly inFlight: number;
  readonly maxInFlight: number;
  answer: HookAnswer;
  close(): Promise<void>;
}

/** `{"action":"allow"}` and friends, as JSON responses. */
export const answers = {
  allow: () => Response.json({ action: "allow" }),
  replace: (text: string) => Response.json({ action: "replace", message_text: text }),
  reject: (reason?: string) =>
    Response.json(reason === undefined ? { action: "reject" } : { action: "reject", reason }),
};

/** Verifies `X-Chat-Signature` the way a studio's hook would (Web Crypto's constant-time verify). */
export async function verifySignature(
  secret: string,
  timestamp: string | null,
  signature: string | null,
  raw: string,
): Promise<boolean> {
  if (timestamp === null || signature === null || !/^sha256=[0-9a-f]{64}$/.test(signature)) {
    return false;
  }
  const encoder = new TextEncoder();
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["verify"],
  );
  const mac = new Uint8Array(
    signature.slice(7).match(/../g)!.map((byte) => parseInt(byte, 16)),
  );
  return crypto.subtle.verify("HMAC", key, mac, encoder.encode(`${timestamp}.${raw}`));
}

/** Starts a hook that checks signatures with `secret` and answers `allow` until told otherwise. */
export function startFakeHook(secret: string): FakeHook {
  const abort = new AbortController();
  let inFlight = 0;
  let maxInFlight = 0;
  const hook: FakeHook = {
    url: "",
    calls: [],
    get inFlight() {
      return inFlight;
    },
    get maxInFlight() {
      return maxInFlight;
    },
    answer: answers.allow,
    async close() {
      abort.abort();
      await server.finished;
    },
  };
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: abort.signal,
    onListen: () => {},
  }, async (request) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    try {
      const raw = await request.text();
      const timestamp = request.headers.get("x-chat-timestamp");
      const signature = request.headers.get("x-chat-signature");
      const call: HookCall = {
        timestamp,
        signature,
        raw,
        body: JSON.parse(raw),
        signed: await verifySignature(secret, timestamp, signature, raw),
      };
      hook.calls.push(call);
      return await hook.answer(call);
    } finally {
      inFlight--;
    }
  });
  hook.url = `http://127.0.0.1:${server.addr.port}/moderate`;
  return hook;
}
