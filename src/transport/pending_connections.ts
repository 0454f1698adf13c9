/**
 * @module transport/pending_connections
 * The TCP connections of a `node:http(s)` server that are not (yet) upgraded
 * to WebSocket: each one holds an admission slot for its peer's address and
 * has a deadline for complete request headers, so a peer cannot hold sockets
 * open by never finishing a request (slowloris) or by opening many of them.
 *
 * Node's own `headersTimeout` (honoured by Deno's `node:http`) is checked only
 * every 30 s and answers without a body; this timer is exact per connection
 * and answers like the rest of the server.
 */

import type http from "node:http";
import type https from "node:https";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";

export interface PendingConnectionsOptions {
  /** Deadline for the first request's headers, and idle time allowed between requests. */
  headersTimeoutMs?: number | undefined;
  /** See `ListenOptions.admitConnection`. */
  admitConnection?: ((remoteAddress: string) => (() => void) | null) | undefined;
  /** The address the admission counts, from the TCP peer's. */
  addressOf(remoteAddress: string | undefined): string;
  /** Writes a complete HTTP response on a not-upgraded socket, then drops it. */
  refuse(socket: Duplex, response: Response): void;
}

/** One connection that has not been upgraded. */
interface Pending {
  /** Where HTTP is spoken: the TCP socket, or its TLS socket once the handshake is done. */
  http: Duplex;
  /** Whether `http` speaks HTTP yet (false until a TLS handshake completes). */
  ready: boolean;
  /** Frees the admission slot; idempotent. */
  release: () => void;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** Requests received whose responses have not ended. */
  inFlight: number;
  /** Whether any request has been received on it. */
  served: boolean;
  /** Removes the TCP socket's `close` listener (once the entry is done). */
  onClose?: (() => void) | undefined;
}

/** The JSON error of a connection refused because its address is at its limit (as at the upgrade). */
export const OVER_LIMIT_ERROR = "Too many unauthenticated connections from this address";

/** The JSON error a peer too slow with its headers receives. */
export const HEADERS_TIMEOUT_ERROR = "Request headers not complete in time";

/** A socket's identity shared by its TCP and TLS sockets (both report the same peer and port). */
function keyOf(socket: Socket): string {
  return `${socket.localAddress}|${socket.remoteAddress}|${socket.remotePort}`;
}

/**
 * Tracks every connection `server` accepts until it is upgraded or closes.
 * The caller's `upgrade` handler calls `upgraded(req.socket)` first thing.
 */
export class PendingConnections {
  readonly #pending = new Map<string, Pending>();
  readonly #options: PendingConnectionsOptions;

  constructor(
    server: http.Server | https.Server,
    tls: boolean,
    options: PendingConnectionsOptions,
  ) {
    this.#options = options;
    server.on("connection", (socket: Socket) => this.#connected(socket, tls));
    server.on("secureConnection", (socket: Socket) => {
      const entry = this.#pending.get(keyOf(socket));
      if (entry === undefined) return;
      entry.http = socket;
      entry.ready = true;
    });
    server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
      const key = keyOf(req.socket);
      const entry = this.#pending.get(key);
      if (entry === undefined) return;
      entry.served = true;
      entry.inFlight++;
      clearTimeout(entry.timer);
      // `close` follows both a finished response and an aborted one.
      res.once("close", () => {
        entry.inFlight--;
        if (entry.inFlight === 0 && this.#pending.get(key) === entry) this.#arm(key, entry);
      });
    });
  }

  /** Connections currently tracked (accepted, neither upgraded nor closed). */
  get size(): number {
    return this.#pending.size;
  }

  /** The connection behind `socket` is being upgraded: its slot is freed, its deadline cleared. */
  upgraded(socket: Socket): void {
    this.#done(keyOf(socket));
  }

  #connected(socket: Socket, tls: boolean): void {
    const key = keyOf(socket);
    const admit = this.#options.admitConnection;
    const release = admit ? admit(this.#options.addressOf(socket.remoteAddress)) : () => {};
    if (release === null) {
      // Answered without waiting for the request (clients read it as the
      // answer to theirs), nothing read, and dropped once it is written.
      socket.pause();
      this.#options.refuse(socket, Response.json({ error: OVER_LIMIT_ERROR }, { status: 429 }));
      return;
    }
    let released = false;
    const entry: Pending = {
      http: socket,
      ready: !tls,
      release: () => {
        if (released) return;
        released = true;
        release();
      },
      timer: undefined,
      inFlight: 0,
      served: false,
    };
    this.#pending.set(key, entry);
    const onClose = () => {
      if (this.#pending.get(key) === entry) this.#done(key);
    };
    entry.onClose = () => socket.off("close", onClose);
    socket.once("close", onClose);
    this.#arm(key, entry);
  }

  #arm(key: string, entry: Pending): void {
    const ms = this.#options.headersTimeoutMs;
    if (ms === undefined) return;
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => {
      if (this.#pending.get(key) !== entry || entry.inFlight > 0) return;
      if (entry.served || !entry.ready) {
        // An idle keep-alive connection, or a TLS handshake that never ended:
        // there is no request to answer.
        entry.http.destroy();
        return;
      }
      this.#options.refuse(
        entry.http,
        Response.json({ error: HEADERS_TIMEOUT_ERROR }, { status: 408 }),
      );
    }, ms);
  }

  #done(key: string): void {
    const entry = this.#pending.get(key);
    if (entry === undefined) return;
    this.#pending.delete(key);
    clearTimeout(entry.timer);
    entry.release();
    // An upgraded socket lives on; nothing of its pending entry should live with it.
    entry.timer = undefined;
    entry.onClose?.();
    entry.onClose = undefined;
  }
}
