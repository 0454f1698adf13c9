/**
 * @module keep_alive
 * Keep-alive (docs/protocol.md, `ping` / `pong`): a `ping` every `pingIntervalMs` from socket
 * open, and a connection whose `pong` is more than `pongTimeoutMs` late is dropped as dead
 * without waiting for a closing handshake that may never come. All runtime code lives inside the
 * class (the demo page embeds its source; see README.md, "Using it without a build step").
 */

import type { ChatLink } from "./link.ts";
import type { Timers } from "./options.ts";

/** The ping timer and the pong deadline of the current socket. */
export class ChatKeepAlive {
  readonly #timers: Timers;
  readonly #pingMs: number;
  readonly #pongMs: number;
  readonly #link: ChatLink;
  #pingTimer: unknown;
  #pongTimer: unknown;

  /** `pingMs` 0 (or less) turns keep-alive off. */
  constructor(timers: Timers, pingMs: number, pongMs: number, link: ChatLink) {
    this.#timers = timers;
    this.#pingMs = pingMs;
    this.#pongMs = pongMs;
    this.#link = link;
  }

  /** (Re)starts the wait for the next `ping`. */
  schedule(): void {
    if (this.#pingMs <= 0) return;
    if (this.#pingTimer !== undefined) this.#timers.clearTimeout(this.#pingTimer);
    this.#pingTimer = this.#timers.setTimeout(() => {
      this.#pingTimer = undefined;
      const ws = this.#link.socket;
      if (ws === undefined) return;
      this.#link.write(JSON.stringify({ type: "ping" }));
      this.#pongTimer = this.#timers.setTimeout(() => {
        this.#pongTimer = undefined;
        if (ws === this.#link.socket) {
          this.#link.abandon(ws, `no pong within ${this.#pongMs} ms`, true);
        }
      }, this.#pongMs);
    }, this.#pingMs);
  }

  /** A `pong` came: the awaited one ends the wait and the next `ping` is planned. */
  pong(): void {
    if (this.#pongTimer === undefined) return;
    this.#timers.clearTimeout(this.#pongTimer);
    this.#pongTimer = undefined;
    this.schedule();
  }

  /** The socket is gone or the client stopped: no `ping`, no deadline. */
  stop(): void {
    if (this.#pingTimer !== undefined) this.#timers.clearTimeout(this.#pingTimer);
    if (this.#pongTimer !== undefined) this.#timers.clearTimeout(this.#pongTimer);
    this.#pingTimer = this.#pongTimer = undefined;
  }
}
