/**
 * @module transport/transport
 * The seam between a WebSocket implementation and the rest of the server.
 *
 * A transport serves one listener: it answers plain HTTP requests with
 * `fetch`, and upgrades `GET` requests on the WebSocket paths that carry
 * `Upgrade: websocket`. Everything above this interface (sessions, hub,
 * repository) is the same code for every transport.
 *
 * Guarantees every transport gives:
 * - a message (all fragments together) larger than `maxPayload` bytes closes
 *   the connection with 1009 before it is buffered whole (the `ws` transport;
 *   the native one cannot promise this, see `native.ts` and docs/protocol.md,
 *   "Connecting");
 * - invalid UTF-8 in a text message closes with 1007, any other protocol
 *   violation with 1002; once a message is refused nothing more is read from
 *   the peer, and its socket is dropped shortly after (the `ws` transport);
 * - a peer that has not answered a ping within `idleTimeoutMs` is dropped;
 * - `onClose` is called exactly once per accepted connection, whatever ended it.
 */

/** One accepted WebSocket, as a session sees it. */
export interface WsConnection {
  /** Queues one text frame. A no-op once the connection is closing. */
  send(text: string): void;
  /** Starts the closing handshake with `code` and a short `reason`. */
  close(code: number, reason?: string): void;
  /** Drops the TCP connection at once, without a closing handshake. */
  terminate(): void;
  /** Bytes queued for this peer and not yet handed to the kernel. */
  readonly bufferedAmount: number;
}

/** What a session does with the events of its connection. */
export interface WsHandlers {
  onText(text: string): void;
  onBinary(): void;
  /** Called exactly once, with the close code seen (1006 when the peer vanished). */
  onClose(code: number): void;
}

/** What is known of an upgrade request before it is accepted. */
export interface UpgradeInfo {
  readonly url: URL;
  readonly headers: Headers;
  /** The TCP peer's address (not `X-Forwarded-For`). */
  readonly remoteAddress: string;
}

export interface ListenOptions {
  hostname: string;
  port: number;
  /** PEM text of the certificate chain and key; the listener serves TLS when set. */
  tls?: { cert: string; key: string } | undefined;
  /** Largest inbound message in bytes, all fragments together. */
  maxPayload: number;
  /** A connection that has not answered a ping for this long is dropped. */
  idleTimeoutMs: number;
  /**
   * A connection whose first request headers are not complete this long
   * after it opened is answered 408 and closed; one kept alive with no new
   * request this long after its last response is closed. Unset: no limit of
   * ours. (The `ws` transport only; `Deno.serve` has no such control.)
   */
  headersTimeoutMs?: number | undefined;
  /**
   * Called once per accepted TCP connection, with the peer's address, before
   * anything is read from it. `null` refuses it: it is answered HTTP 429 at
   * once, without reading the request, and closed. Otherwise the returned
   * function is called exactly once, when the connection is upgraded (before
   * `checkUpgrade`) or closes, or is evicted, whichever comes first.
   *
   * `evictOldest` drops the oldest connection from the same address that is
   * not upgraded and has no request in progress (headers not complete, TLS
   * handshake not done, idle keep-alive): it is answered HTTP 429 when it has
   * a request to answer, else just closed, and its release function has run
   * when `evictOldest` returns true. False: there is none to drop.
   *
   * (The `ws` transport only; `Deno.serve` shows no connection before its
   * first request.)
   */
  admitConnection?:
    | ((remoteAddress: string, evictOldest: () => boolean) => (() => void) | null)
    | undefined;
  /** Paths on which an upgrade request is accepted, e.g. `["/", "/ws"]`. */
  wsPaths: readonly string[];
  /** Answers every request that is not a WebSocket upgrade. */
  fetch(request: Request): Response | Promise<Response>;
  /** Runs before an upgrade: a `Response` refuses it with that status; `null` accepts. */
  checkUpgrade(info: UpgradeInfo): Response | null;
  /** Called once the handshake is complete; returns the connection's handlers. */
  onOpen(conn: WsConnection, info: UpgradeInfo): WsHandlers;
}

/** A running listener. */
export interface Listener {
  /** The bound port (useful with `port: 0`). */
  readonly port: number;
  /** Stops accepting new connections; open connections are untouched. */
  stopAccepting(): Promise<void>;
  /** Stops accepting and ends every connection still open, then resolves. */
  close(): Promise<void>;
}

/** Starts a listener; rejects when the address cannot be bound. */
export type Transport = (options: ListenOptions) => Promise<Listener>;
