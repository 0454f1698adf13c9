/** @module transport/ws The `Transport` on the `ws` package over Deno's `node:http`: bounded message size, RFC 6455 checks. */

import { Buffer } from "node:buffer";
import http from "node:http";
import https from "node:https";
import type { Socket } from "node:net";
import type { Duplex, Writable } from "node:stream";
import process from "node:process";
// @ts-types="npm:@types/ws@^8.18.1"
import { type RawData, type WebSocket, WebSocketServer } from "ws";
import { requestUrl, serveFetch, toHeaders } from "./node_fetch.ts";
import { PendingConnections } from "./pending_connections.ts";
import type { Listener, Transport, UpgradeInfo, WsConnection, WsHandlers } from "./transport.ts";

/**
 * The close code behind a `ws` receiver error (ws sends it to the peer, but
 * its own `close` event then reports 1006 because no close frame came back).
 * Codes are ws's documented `WS_ERR_*` values.
 */
function errorCloseCode(err: Error & { code?: string }): number | undefined {
  switch (err.code) {
    case "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH":
    case "WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH":
      return 1009;
    case "WS_ERR_INVALID_UTF8":
      return 1007;
    case "WS_ERR_TOO_MANY_BUFFERED_PARTS":
      return 1008;
    default:
      return err.code?.startsWith("WS_ERR_") ? 1002 : undefined;
  }
}

/**
 * ws ends a connection's frame receiver (a `Writable`) when the close frame arrives, and again
 * when the socket ends and when it closes. Each later `end()` builds an
 * `ERR_STREAM_ALREADY_FINISHED` that nobody sees, and Deno's node layer makes building one cost
 * a stack trace: two per closed connection, a quarter of the server's time while sockets
 * open and close in a loop (bench/README.md, "Attacks and an unrelated pair"). Those later
 * calls are made to do nothing, as they do anyway. (ws 8's receiver is its `_receiver`; without
 * one this does nothing.)
 */
function endReceiverOnce(ws: WebSocket): void {
  const receiver = (ws as unknown as { _receiver?: Writable })._receiver;
  if (receiver === undefined || typeof receiver.end !== "function") return;
  // One wrapper for every receiver (they share their class's `end`), not a closure each.
  if (receiver.end !== wrappedEnd.original) {
    const end = receiver.end;
    wrappedEnd.original = end;
    wrappedEnd.once = function (this: Writable, ...args: unknown[]) {
      if (args.length === 0 && this.writableEnded) return this;
      return (end as (...a: unknown[]) => Writable).apply(this, args);
    } as Writable["end"];
  }
  receiver.end = wrappedEnd.once!;
}

const wrappedEnd: { original?: Writable["end"]; once?: Writable["end"] } = {};

/** `::ffff:127.0.0.1` → `127.0.0.1`; IPv4 peers of a dual-stack socket look like plain IPv4. */
export function normaliseAddress(address: string | undefined): string {
  if (!address) return "";
  return /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(address) ? address.slice(7) : address;
}

/** Writes a complete HTTP/1.1 response on a not-upgraded socket, then drops it. */
async function refuse(socket: Duplex, response: Response): Promise<void> {
  const body = Buffer.from(await response.arrayBuffer().catch(() => new ArrayBuffer(0)));
  const lines = [`HTTP/1.1 ${response.status} ${http.STATUS_CODES[response.status] ?? ""}`];
  response.headers.forEach((value, name) => {
    if (!["connection", "content-length", "transfer-encoding"].includes(name)) {
      lines.push(`${name}: ${value}`);
    }
  });
  lines.push("Connection: close", `Content-Length: ${body.length}`, "", "");
  if (socket.destroyed) return;
  socket.once("finish", () => socket.destroy());
  socket.end(Buffer.concat([Buffer.from(lines.join("\r\n"), "latin1"), body]));
}

function rawText(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString("utf8");
  return (Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data)).toString("utf8");
}

/**
 * How long a peer whose message was refused has to read our close frame
 * before the socket is destroyed. Nothing is read from it meanwhile, so the
 * wait costs no memory in the process, only what the kernel buffers.
 */
const PROTOCOL_ERROR_GRACE_MS = 1000;

/** How long a peer we close (policy, expiry, shutdown) has to answer our close frame. */
const CLOSE_HANDSHAKE_MS = 2000;

/**
 * What happens once `ws` has refused a message (1009, 1002, 1007, 1008): no
 * further byte is read, the close frame goes out, the write side is ended
 * (by `ws`, once the frame is written), and the socket is destroyed after
 * `PROTOCOL_ERROR_GRACE_MS`.
 *
 * `ws` itself removes its `data` listener and, on the next tick, resumes the
 * socket so that it reads and discards whatever the peer still sends until
 * the handshake ends. Through Deno's node layer every chunk read is a fresh
 * allocation, so a peer streaming on loopback could push hundreds of MiB
 * through the process before the cut. Pausing after that resume stops the
 * reads: the kernel's receive buffer fills, TCP flow control stalls the
 * peer, and the server holds no more than the kernels' buffers.
 */
function stopReading(ws: WebSocket, socket: Duplex): void {
  process.nextTick(() => socket.pause());
  const cut = setTimeout(() => ws.terminate(), PROTOCOL_ERROR_GRACE_MS);
  ws.once("close", () => clearTimeout(cut));
}

function destroySocket(this: Duplex): void {
  this.destroy();
}

/**
 * Connections the kernel completes and queues for us to accept (capped by `net.core.somaxconn`).
 * A node coming back in a reconnect storm gets thousands of connects in a second while its one
 * thread is busy signing users in; with Node's default of 511 the queue overflowed, the kernel
 * dropped the handshakes, and their clients' TCP retried only after 1, 3, 7, then 15 s: the
 * last few percent of a 10,000-user storm came back 15 s after the node.
 */
const LISTEN_BACKLOG = 4096;

/**
 * One accepted WebSocket, as the session sees it (`WsConnection`) and as the
 * listener tracks it. Its methods live on the prototype and its `ws` events go
 * to module-level listeners that find it through the `LINK` slot on the
 * socket: an idle connection holds this one object, not a dozen closures and
 * their context (bench/README.md, "The hot path after v1.2").
 */
class Link implements WsConnection {
  /** `performance.now()` of the last frame (data, ping or pong) from the peer. */
  lastSeen = performance.now();
  /** The close code of a receiver error (ws reports 1006 for it itself). */
  errorCode: number | undefined = undefined;
  handlers: WsHandlers | undefined = undefined;
  /** Called once `onClose` has run; only set while the listener closes. */
  onClosed: (() => void) | undefined = undefined;
  /** Texts sent in this turn, not yet written (`flush`). */
  pending: string[] | undefined = undefined;
  /** Their UTF-8 lengths, in the same order. */
  pendingSizes: number[] | undefined = undefined;
  /** Their bytes on the wire, headers included. */
  pendingBytes = 0;

  constructor(
    readonly ws: WebSocket,
    readonly socket: Duplex,
    readonly peers: Set<Link>,
  ) {}

  send(text: string): void {
    const ws = this.ws;
    if (ws.readyState !== ws.OPEN) return;
    const bytes = Buffer.byteLength(text, "utf8");
    this.pendingBytes += headerLength(bytes) + bytes;
    if (this.pending !== undefined) {
      this.pending.push(text);
      this.pendingSizes!.push(bytes);
      return;
    }
    this.pending = [text];
    this.pendingSizes = [bytes];
    if (pendingLinks.push(this) === 1) queueMicrotask(flushAll);
  }

  /**
   * Writes the texts sent in this turn as text frames, all in one buffer and
   * one socket write (ws would write a header and a payload per frame).
   * Server frames are not masked (RFC 6455 §5.1); lengths use the fewest
   * bytes (§5.2).
   */
  flush(): void {
    const texts = this.pending;
    if (texts === undefined) return;
    const sizes = this.pendingSizes!;
    const total = this.pendingBytes;
    this.pending = undefined;
    this.pendingSizes = undefined;
    this.pendingBytes = 0;
    const ws = this.ws;
    if (ws.readyState !== ws.OPEN) return;
    // Sized exactly: `send` measured every text.
    const out = Buffer.allocUnsafe(total);
    let at = 0;
    for (let i = 0; i < texts.length; i++) {
      const bytes = sizes[i]!;
      out[at] = 0x81; // FIN, text
      if (bytes < 126) {
        out[at + 1] = bytes;
        at += 2;
      } else if (bytes < 65536) {
        out[at + 1] = 126;
        out.writeUInt16BE(bytes, at + 2);
        at += 4;
      } else {
        out[at + 1] = 127;
        out.writeUInt32BE(Math.floor(bytes / 2 ** 32), at + 2);
        out.writeUInt32BE(bytes >>> 0, at + 6);
        at += 10;
      }
      at += out.write(texts[i]!, at, "utf8");
    }
    this.socket.write(out);
  }

  close(code: number, reason?: string): void {
    const ws = this.ws;
    if (ws.readyState !== ws.OPEN) return;
    this.flush(); // what was sent before goes before the close frame
    ws.close(code, reason);
    // ws would wait 30 s for the peer's close frame, reading (and handing us)
    // whatever it keeps sending meanwhile; a peer we closed gets a short grace.
    const cut = setTimeout(() => ws.terminate(), CLOSE_HANDSHAKE_MS);
    ws.once("close", () => clearTimeout(cut));
  }

  terminate(): void {
    this.pending = undefined;
    this.pendingSizes = undefined;
    this.pendingBytes = 0;
    this.ws.terminate();
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount + this.pendingBytes;
  }
}

/** Bytes of an unmasked frame header for a payload of `bytes`. */
function headerLength(bytes: number): number {
  return bytes < 126 ? 2 : bytes < 65536 ? 4 : 10;
}

/** Where a `ws` WebSocket keeps its `Link`. */
const LINK = Symbol("link");
type LinkedWebSocket = WebSocket & { [LINK]: Link };

/**
 * Through Deno's node layer every socket write is an op and every chunk a
 * stream entry. Frames sent in one turn (a fan-out, a batch's answers) leave
 * in one write per socket when the turn's microtasks run: one microtask for
 * every socket written in that turn.
 */
const pendingLinks: Link[] = [];

function flushAll(): void {
  // A flush may run code that sends (a write error's listeners): those go in the next turn.
  const links = pendingLinks.splice(0);
  for (let i = 0; i < links.length; i++) links[i]!.flush();
}

function linkOf(ws: WebSocket): Link {
  return (ws as LinkedWebSocket)[LINK];
}

// Without an `error` listener a bad frame would crash the process.
function onWsError(this: WebSocket, err: Error): void {
  const link = linkOf(this);
  link.errorCode ??= errorCloseCode(err);
  stopReading(this, link.socket);
}

function onWsSeen(this: WebSocket): void {
  linkOf(this).lastSeen = performance.now();
}

function onWsMessage(this: WebSocket, data: RawData, isBinary: boolean): void {
  const link = linkOf(this);
  link.lastSeen = performance.now();
  if (isBinary) link.handlers?.onBinary();
  else link.handlers?.onText(rawText(data));
}

// ws emits `close` once per socket; the code is the peer's, or 1006.
function onWsClose(this: WebSocket, code: number): void {
  const link = linkOf(this);
  link.peers.delete(link);
  try {
    link.handlers?.onClose(link.errorCode ?? code);
  } finally {
    link.onClosed?.();
  }
}

/**
 * Serves one listener with `ws` in `noServer` mode on a `node:http(s)` server.
 * `ws` enforces `maxPayload` while a message arrives (close 1009 once the
 * fragments so far exceed it), refuses unmasked frames (1002) and invalid
 * UTF-8 (1007); this module adds routing, the idle check and shutdown.
 */
export const wsTransport: Transport = async (options) => {
  const scheme = options.tls ? "https" : "http";
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: options.maxPayload,
    perMessageDeflate: false,
    clientTracking: false,
  });
  const peers = new Set<Link>();
  /** Every TCP connection the server accepted and that is still open, upgraded or not. */
  const sockets = new Set<Socket>();
  let accepting = true;

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
    void serveFetch(req, res, scheme, options.fetch);
  };
  const server = options.tls
    ? https.createServer({ cert: options.tls.cert, key: options.tls.key }, onRequest)
    : http.createServer(onRequest);
  // One listener function for every socket (`close` comes once): not a closure and a `once`
  // wrapper per socket, which an idle connection would hold as long as it lives.
  function forgetSocket(this: Socket): void {
    sockets.delete(this);
  }
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", forgetSocket);
  });
  const pending = new PendingConnections(server, options.tls !== undefined, {
    headersTimeoutMs: options.headersTimeoutMs,
    admitConnection: options.admitConnection,
    addressOf: normaliseAddress,
    refuse: (socket, response) => void refuse(socket, response),
  });

  server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    // Its admission slot is handed on to `checkUpgrade` (and the session after it).
    pending.upgraded(req.socket);
    // A reset before ws takes the socket over must not become an uncaught error.
    // (A module-level listener: a closure here would share this handler's
    // context, and keep the request's headers alive as long as the socket.)
    socket.on("error", destroySocket);
    const url = requestUrl(scheme, req.headers.host, req.url);
    if (!options.wsPaths.includes(url.pathname)) {
      void refuse(socket, new Response("Not Found", { status: 404 }));
      return;
    }
    if (req.method !== "GET" || req.headers.upgrade?.toLowerCase() !== "websocket") {
      void refuse(socket, new Response("Bad Request", { status: 400 }));
      return;
    }
    if (!accepting) {
      void refuse(socket, new Response("Service Unavailable", { status: 503 }));
      return;
    }
    const info: UpgradeInfo = {
      url,
      headers: toHeaders(req.rawHeaders, req.headers),
      remoteAddress: normaliseAddress(req.socket.remoteAddress),
    };
    let refusal: Response | null;
    try {
      refusal = options.checkUpgrade(info);
    } catch {
      refusal = new Response("Internal Server Error", { status: 500 });
    }
    if (refusal) {
      void refuse(socket, refusal);
      return;
    }
    // ws validates the key and version itself and answers 400 when they are wrong.
    wss.handleUpgrade(req, socket, head, (ws) => accept(ws, info, socket));
  });

  function accept(ws: WebSocket, info: UpgradeInfo, socket: Duplex): void {
    endReceiverOnce(ws);
    const link = new Link(ws, socket, peers);
    (ws as LinkedWebSocket)[LINK] = link;
    peers.add(link);
    ws.on("error", onWsError);
    try {
      link.handlers = options.onOpen(link, info);
    } catch {
      ws.terminate();
    }
    ws.on("ping", onWsSeen).on("pong", onWsSeen);
    ws.on("message", onWsMessage);
    ws.on("close", onWsClose);
  }

  // One timer per listener: ping everyone, drop whoever stayed silent too long.
  const idle = setInterval(() => {
    const now = performance.now();
    for (const { ws, lastSeen } of peers) {
      if (now - lastSeen > options.idleTimeoutMs) ws.terminate();
      else if (ws.readyState === ws.OPEN) ws.ping();
    }
  }, Math.max(10, Math.floor(options.idleTimeoutMs / 2)));
  Deno.unrefTimer(idle);

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port: options.port, host: options.hostname, backlog: LISTEN_BACKLOG }, () => {
      server.off("error", reject);
      resolve();
    });
  }).catch((err) => {
    clearInterval(idle);
    throw err;
  });
  // Accept errors (e.g. EMFILE) must not crash the process; node keeps listening.
  server.on("error", () => {});
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : options.port;
  const serverClosed = new Promise<void>((resolve) => server.once("close", () => resolve()));

  const stopAccepting = (): Promise<void> => {
    if (accepting) {
      accepting = false;
      // Stops listening at once; the callback (all connections gone) is `serverClosed`.
      server.close();
      server.closeIdleConnections();
    }
    return Promise.resolve();
  };

  let closing: Promise<void> | undefined;
  const close = async () => {
    await stopAccepting();
    clearInterval(idle);
    const ended = [...peers].map((link) => new Promise<void>((resolve) => link.onClosed = resolve));
    for (const { ws } of [...peers]) ws.terminate();
    for (const socket of sockets) socket.destroy();
    await Promise.all([...ended, serverClosed]);
  };
  const listener: Listener = { port, stopAccepting, close: () => closing ??= close() };
  return listener;
};
