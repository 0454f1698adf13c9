/**
 * @module transport/pending_connections
 * The TCP connections of a `node:http(s)` server that are not (yet) upgraded
 * to WebSocket: each one holds an admission slot for its peer's address and
 * has a deadline for complete request headers, so a peer cannot hold sockets
 * open by never finishing a request (slowloris) or by opening many of them.
 *
 * An address at its limit loses its oldest unfinished connection to a new
 * one (`evictOldest`) rather than refusing the new one: a real handshake takes
 * milliseconds, so the oldest unfinished one is the slow one, and many users
 * behind one address (a school, a carrier's NAT) are not locked out by
 * someone dripping headers from the same address.
 *
 * Node's own `headersTimeout` (honoured by Deno's `node:http`) is checked only
 * every 30 s and answers without a body; this timer is exact per connection
 * and answers like the rest of the server.
 */

import type http from "node:http";
import type https from "node:https";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { ListenOptions } from "./transport.ts";

export interface PendingConnectionsOptions {
  /** Deadline for the first request's headers, and idle time allowed between requests. */
  headersTimeoutMs?: number | undefined;
  /** See `ListenOptions.admitConnection`. */
  admitConnection?: ListenOptions["admitConnection"];
  /** The address the admission counts, from the TCP peer's. */
  addressOf(remoteAddress: string | undefined): string;
  /** Writes a complete HTTP response on a not-upgraded socket, then drops it. */
  refuse(socket: Duplex, response: Response): void;
}

/** One connection that has not been upgraded. */
interface Pending {
  /** Its admission address (`addressOf` of the TCP peer). */
  address: string;
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

/**
 * The JSON error of a connection refused because its address is at its limit
 * (as at the upgrade), and of the oldest unfinished one dropped for a newer one.
 */
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
  /** The keys of each address's pending connections, oldest first. */
  readonly #byAddress = new Map<string, Set<string>>();
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
    const address = this.#options.addressOf(socket.remoteAddress);
    const release = admit ? admit(address, () => this.#evictOldest(address)) : () => {};
    if (release === null) {
      // Answered without waiting for the request (clients read it as the
      // answer to theirs), nothing read, and dropped once it is written.
      socket.pause();
      this.#options.refuse(socket, Response.json({ error: OVER_LIMIT_ERROR }, { status: 429 }));
      return;
    }
    let released = false;
    const entry: Pending = {
      address,
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
    const keys = this.#byAddress.get(address) ?? new Set();
    this.#byAddress.set(address, keys.add(key));
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
      this.#cut(entry, Response.json({ error: HEADERS_TIMEOUT_ERROR }, { status: 408 }));
    }, ms);
  }

  /**
   * Drops `address`'s oldest connection with no request in progress (headers
   * not complete, a TLS handshake not done, or an idle keep-alive), answering
   * it 429 when it has a request to answer; its slot is free on return. False
   * when every pending connection of the address has a request in progress.
   */
  #evictOldest(address: string): boolean {
    for (const key of this.#byAddress.get(address) ?? []) {
      const entry = this.#pending.get(key);
      if (entry === undefined || entry.inFlight > 0) continue;
      this.#done(key);
      // Nothing more is read from it: the answer goes out and the socket is dropped.
      entry.http.pause();
      this.#cut(entry, Response.json({ error: OVER_LIMIT_ERROR }, { status: 429 }));
      return true;
    }
    return false;
  }

  /** Ends a connection with `response`, or drops it when it has no request to answer. */
  #cut(entry: Pending, response: Response): void {
    if (entry.served || !entry.ready) {
      // An idle keep-alive connection, or a TLS handshake that never ended.
      entry.http.destroy();
      return;
    }
    this.#options.refuse(entry.http, response);
  }

  #done(key: string): void {
    const entry = this.#pending.get(key);
    if (entry === undefined) return;
    this.#pending.delete(key);
    const keys = this.#byAddress.get(entry.address);
    keys?.delete(key);
    if (keys?.size === 0) this.#byAddress.delete(entry.address);
    clearTimeout(entry.timer);
    entry.release();
    // An upgraded socket lives on; nothing of its pending entry should live with it.
    entry.timer = undefined;
    entry.onClose?.();
    entry.onClose = undefined;
  }
}
