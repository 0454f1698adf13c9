/**
 * @module transport/native
 * The `Transport` on `Deno.serve` + `Deno.upgradeWebSocket`; unsafe for untrusted clients (it
 * cannot bound a message's size, see `nativeTransport` below and docs/protocol.md, "Connecting").
 */

import type { Listener, Transport, UpgradeInfo, WsConnection, WsHandlers } from "./transport.ts";

const encoder = new TextEncoder();

/** How long `close()` waits for `HttpServer.shutdown()` before giving up on stuck peers. */
export const CLOSE_GRACE_MS = 3000;

/** `::ffff:127.0.0.1` → `127.0.0.1`, as the `ws` transport reports it. */
function normaliseAddress(address: string): string {
  return /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(address) ? address.slice(7) : address;
}

/** Whether `text` is over `limit` UTF-8 bytes; encodes only when the UTF-16 length cannot tell. */
function exceeds(text: string, limit: number): boolean {
  // Every UTF-16 unit is 1 to 3 UTF-8 bytes (a surrogate pair is 4 for 2 units).
  if (text.length > limit) return true;
  if (text.length * 3 <= limit) return false;
  return encoder.encode(text).length > limit;
}

/**
 * Serves one listener with Deno's own HTTP server and WebSocket.
 *
 * What Deno does not let this transport promise, measured on Deno 2.9.6:
 * - `maxPayload` is checked only after Deno has received and reassembled the
 *   whole message (it accepts frames up to 64 MiB and fragmented messages of
 *   any size), then the connection is closed with 1009;
 * - unmasked client frames are accepted; invalid UTF-8 or a bad opcode drops
 *   the TCP connection without a close frame (`onClose(1006)`);
 * - there is no way to drop a WebSocket without a handshake, so `terminate()`
 *   is `close(1001)`;
 * - a peer that stops reading while data is queued is never dropped by the
 *   idle timeout (no close within 7 s at `idleTimeout: 2`) and keeps
 *   `shutdown()` pending, so `close()` gives up on it after `CLOSE_GRACE_MS`;
 * - `HttpServer.shutdown()` also closes every upgraded WebSocket (1001
 *   "Server shutting down"), so `stopAccepting()` keeps the port open and
 *   refuses new upgrades with 503 instead; `close()` shuts the port;
 * - a connection is not seen before its first complete request, and there is
 *   no header deadline or keep-alive timeout to set: `headersTimeoutMs` and
 *   `admitConnection` are not honoured (silent, half-sent, one-byte-a-second
 *   and idle keep-alive connections were all still open after 70 s).
 *   Sessions are still counted per address at the upgrade (`checkUpgrade`).
 */
export const nativeTransport: Transport = (options) => {
  /** Open sockets → ends the connection for the session (runs `onClose` once). */
  const peers = new Map<WebSocket, (code: number) => void>();
  let accepting = true;

  function handler(
    req: Request,
    info: Deno.ServeHandlerInfo<Deno.NetAddr>,
  ): Response | Promise<Response> {
    if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") return options.fetch(req);
    const url = new URL(req.url);
    if (!options.wsPaths.includes(url.pathname)) return new Response("Not Found", { status: 404 });
    if (req.method !== "GET") return new Response("Bad Request", { status: 400 });
    if (!accepting) return new Response("Service Unavailable", { status: 503 });
    const upgradeInfo: UpgradeInfo = {
      url,
      headers: req.headers,
      remoteAddress: normaliseAddress(info.remoteAddr.hostname),
    };
    let refusal: Response | null;
    try {
      refusal = options.checkUpgrade(upgradeInfo);
    } catch {
      refusal = new Response("Internal Server Error", { status: 500 });
    }
    if (refusal) return refusal;
    let upgraded: ReturnType<typeof Deno.upgradeWebSocket>;
    try {
      upgraded = Deno.upgradeWebSocket(req, {
        idleTimeout: Math.max(1, Math.ceil(options.idleTimeoutMs / 1000)),
      });
    } catch {
      // A missing or bad Sec-WebSocket-Key / Version / Connection header.
      return new Response("Bad Request", { status: 400 });
    }
    accept(upgraded.socket, upgradeInfo);
    return upgraded.response;
  }

  function accept(socket: WebSocket, info: UpgradeInfo): void {
    socket.binaryType = "arraybuffer";
    let handlers: WsHandlers | undefined;
    let tooLarge = false;
    let closed = false;
    const finish = (code: number) => {
      if (closed) return;
      closed = true;
      peers.delete(socket);
      handlers?.onClose(code);
    };
    peers.set(socket, finish);
    const conn: WsConnection = {
      send: (text) => {
        if (socket.readyState === WebSocket.OPEN) socket.send(text);
      },
      close: (code, reason) => {
        if (socket.readyState <= WebSocket.OPEN) socket.close(code, reason);
      },
      // Deno has no abortive close; this is the hardest drop available.
      terminate: () => conn.close(1001, "terminated"),
      get bufferedAmount() {
        return socket.bufferedAmount;
      },
    };
    socket.onopen = () => {
      try {
        handlers = options.onOpen(conn, info);
      } catch {
        conn.terminate();
      }
    };
    socket.onmessage = (event: MessageEvent<string | ArrayBuffer>) => {
      if (tooLarge) return;
      const data = event.data;
      const size = typeof data === "string" ? undefined : data.byteLength;
      if (
        size === undefined ? exceeds(data as string, options.maxPayload) : size > options.maxPayload
      ) {
        // Too late to save memory (Deno buffered it all), but the contract's code holds.
        tooLarge = true;
        conn.close(1009, "Message too big");
        return;
      }
      if (typeof data === "string") handlers?.onText(data);
      else handlers?.onBinary();
    };
    // Deno may fire `close` twice (measured on 2.9.6 after an idle timeout: 1001
    // then 1005), and reports code 0 when the TCP connection just ended.
    socket.onclose = (event) => finish(tooLarge ? 1009 : event.code || 1006);
    socket.onerror = () => {}; // `close` follows every error.
  }

  try {
    const server = Deno.serve({
      hostname: options.hostname,
      port: options.port,
      onListen() {},
      // Like the ws transport: a throwing handler is a 500, not a log line with request data.
      onError: () => new Response("Internal Server Error", { status: 500 }),
      ...(options.tls ? { cert: options.tls.cert, key: options.tls.key } : {}),
    }, handler);
    let closing: Promise<void> | undefined;
    const close = async () => {
      accepting = false;
      // shutdown() sends 1001 to every WebSocket and ends HTTP connections, but
      // it does not resolve while a peer that stopped reading holds its socket.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stuck = await Promise.race([
        server.shutdown().then(() => false),
        new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(true), CLOSE_GRACE_MS)),
      ]);
      clearTimeout(timer);
      // Those peers are given up on: sessions see 1006 now, Deno frees the
      // socket when the peer goes away.
      if (stuck) { for (const finish of [...peers.values()]) finish(1006); }
    };
    const listener: Listener = {
      port: server.addr.port,
      stopAccepting() {
        accepting = false;
        return Promise.resolve();
      },
      close: () => closing ??= close(),
    };
    return Promise.resolve(listener);
  } catch (err) {
    return Promise.reject(err);
  }
};
