/**
 * @module connection
 * The client's socket and its lifecycle: `idle → connecting → authenticating → open`, `waiting`
 * between attempts, `expired`, `closed` (each change is a `state` event). A lost socket is
 * replaced after a "full jitter" backoff, `random() * min(cap, base * 2^attempt)` ms, where
 * `attempt` counts the failures since the last completed catch-up: a crowd that lost one server
 * at once comes back spread over the window, not all in its first millisecond, and the cap
 * (10 s) keeps the window short enough that a server back after an outage is found soon. A
 * sign-in the server refused with `retry_after_ms` (its admission rate, or the user's sign-in
 * rate) waits that long instead, plus up to `HINT_JITTER_MS`: the server hands out those times
 * one by one, so obeying them spreads the crowd exactly as fast as it can take it. Signing in and what the frames
 * mean are the business of the parts the hooks lead to. All runtime code lives inside the class
 * (the demo page embeds its source; see README.md, "Using it without a build step").
 */

import type { ChatEmitter } from "./emitter.ts";
import { ChatFailures } from "./failures.ts";
import type { ClientErrorEvent, ConnectionState } from "./frames.ts";
import { ChatKeepAlive } from "./keep_alive.ts";
import type { ChatLink } from "./link.ts";
import type { ChatClientOptions, Timers, WebSocketConstructor, WebSocketLike } from "./options.ts";

/** What the connection hands on to the rest of the client; only events of the socket in use. */
export interface ChatConnectionHooks {
  /** The socket opened (the state is `authenticating` now): sign in on it. */
  opened(ws: WebSocketLike): void;
  /** A message came on the socket, as received (not parsed yet). */
  receive(data: unknown): void;
  /** The socket is gone: per-connection work stops, an unfinished catch-up is dropped. */
  lost(): void;
}

/** One socket at a time, replaced until `close()` or `session_expired`. */
export class ChatConnection implements ChatLink {
  /** Added to a server's `retry_after_ms` at random: late is fine, early is refused again. */
  static readonly HINT_JITTER_MS = 250;
  readonly #url: string;
  /** `host:port` of the URL, for messages. */
  readonly #host: string;
  readonly #WebSocket: WebSocketConstructor;
  readonly #random: () => number;
  readonly #timers: Timers;
  readonly #baseMs: number;
  readonly #capMs: number;
  readonly #emitter: ChatEmitter;
  readonly #hooks: ChatConnectionHooks;
  readonly #keepAlive: ChatKeepAlive;
  #state: ConnectionState = "idle";
  #socket: WebSocketLike | undefined;
  #attempt = 0;
  #retryTimer: unknown;
  /** The `retry_after_ms` of a refused sign-in, for the next reconnect. */
  #retryAfterMs: number | undefined;
  /** A socket this client is closing itself (a refused sign-in): its close is no failure. */
  #closedByUs: WebSocketLike | undefined;
  #closed: Promise<void> | undefined;
  #closedResolve: (() => void) | undefined;

  constructor(
    options: ChatClientOptions,
    timers: Timers,
    emitter: ChatEmitter,
    hooks: ChatConnectionHooks,
  ) {
    this.#url = String(options.url);
    this.#host = ChatFailures.hostOf(this.#url);
    this.#WebSocket = options.WebSocket ??
      (globalThis.WebSocket as unknown as WebSocketConstructor);
    this.#random = options.random ?? Math.random;
    this.#timers = timers;
    this.#baseMs = options.reconnectBaseMs ?? 500;
    this.#capMs = options.reconnectCapMs ?? 10_000;
    this.#emitter = emitter;
    this.#hooks = hooks;
    this.#keepAlive = new ChatKeepAlive(
      timers,
      options.pingIntervalMs ?? 25_000,
      options.pongTimeoutMs ?? 10_000,
      this,
    );
  }

  get state(): ConnectionState {
    return this.#state;
  }

  get socket(): WebSocketLike | undefined {
    return this.#socket;
  }

  /** Starts connecting, unless connecting or connected already, or closed. */
  connect(): void {
    if (this.#state === "idle" || this.#state === "expired") {
      this.#attempt = 0;
      this.#open();
    }
  }

  write(frame: string): void {
    try {
      this.#socket?.send(frame);
    } catch { /* closing: the close handler reconnects and re-sends */ }
  }

  /** The server accepted the token: messages go out directly from now on. */
  signedIn(): void {
    this.#setState("open");
  }

  /** Catch-up is over: reconnect backoff starts again from its base. */
  caughtUp(): void {
    this.#attempt = 0;
  }

  /** The server refused the sign-in for now: the next reconnect waits `ms` (`retry_after_ms`). */
  retryAfter(ms: number): void {
    if (Number.isFinite(ms) && ms >= 0) this.#retryAfterMs = Math.min(ms, 5 * 60_000);
  }

  /** A `pong` came: the connection lives. */
  pong(): void {
    this.#keepAlive.pong();
  }

  abandon(ws: WebSocketLike, reason: string, dead = false): void {
    ws.onopen = ws.onmessage = ws.onclose = null;
    try {
      ws.close(4000, reason.slice(0, 100));
    } catch { /* already closed */ }
    this.#socket = undefined;
    this.#lost();
    if (!dead) return this.#retry(reason);
    this.#fail({
      type: "error",
      code: "connection_lost",
      message: `connection to ${this.#host} lost: ${reason}`,
    });
  }

  closeSocket(code: number, reason: string): void {
    const ws = this.#socket;
    if (ws === undefined) return;
    this.#closedByUs = ws;
    try {
      ws.close(code, reason);
    } catch { /* already closed */ }
  }

  /**
   * The server ended the session (`session_expired`): the state becomes `expired` and nothing
   * reconnects until `connect()`, since the same token cannot help. `announce` runs once the
   * state says so, before the socket is closed.
   */
  expire(reason: string, announce: () => void): void {
    const ws = this.#socket;
    this.#stopTimers();
    this.#lost();
    this.#setState("expired", { reason });
    announce();
    try {
      ws?.close(1000, "session expired");
    } catch { /* already closed */ }
  }

  /**
   * Closes for good; resolves once the socket has closed. `settle` runs once the state is
   * `closed`, before the socket is closed, to fail what still waits for an answer.
   */
  close(settle: () => void): Promise<void> {
    if (this.#closed !== undefined) return this.#closed;
    this.#closed = new Promise((resolve) => (this.#closedResolve = resolve));
    this.#stopTimers();
    this.#setState("closed");
    settle();
    const socket = this.#socket;
    if (socket === undefined) this.#closedResolve!();
    else socket.close(1000, "client closed");
    return this.#closed;
  }

  #open(): void {
    this.#retryTimer = undefined;
    this.#setState("connecting");
    let ws: WebSocketLike;
    try {
      ws = new this.#WebSocket(this.#url);
    } catch (err) {
      const detail = err instanceof Error ? err.message : String(err);
      return this.#fail(ChatFailures.connectFailed(this.#url, this.#host, detail));
    }
    this.#socket = ws;
    let opened = false;
    /** What the runtime said about a failure (Deno and Node say it in the error event). */
    let detail: string | undefined;
    const current = () => ws === this.#socket && this.#state !== "closed";
    ws.onopen = () => {
      if (!current()) return;
      opened = true;
      this.#setState("authenticating");
      this.#keepAlive.schedule();
      this.#hooks.opened(ws);
    };
    ws.onmessage = (event) => void (current() && this.#hooks.receive(event.data));
    ws.onerror = (event) => void (detail ??= ChatFailures.errorText(event));
    ws.onclose = (event) => {
      if (ws !== this.#socket) return;
      this.#lost();
      if (this.#state === "closed") this.#closedResolve?.();
      else if (this.#state === "expired") return;
      else if (this.#closedByUs === ws) {
        this.#retry(`closed: ${event.reason || event.code}`);
      } else if (!opened) {
        this.#fail(ChatFailures.connectFailed(this.#url, this.#host, detail));
      } else this.#fail(ChatFailures.connectionLost(this.#host, event.code, event.reason));
    };
  }

  /** A connection failure: an `error` event that says what failed, then a reconnect. */
  #fail(failure: ClientErrorEvent): void {
    this.#emitter.emit("error", failure);
    this.#retry(failure.message);
  }

  #retry(reason: string): void {
    const hint = this.#retryAfterMs;
    this.#retryAfterMs = undefined;
    const ceiling = Math.min(this.#capMs, this.#baseMs * 2 ** Math.min(this.#attempt, 30));
    const delayMs = hint === undefined
      ? Math.floor(this.#random() * ceiling)
      : Math.ceil(hint + this.#random() * ChatConnection.HINT_JITTER_MS);
    this.#attempt++;
    this.#setState("waiting", { delayMs, reason });
    this.#retryTimer = this.#timers.setTimeout(() => this.#open(), delayMs);
  }

  /** The socket is gone: nothing of it may act any more. */
  #lost(): void {
    this.#socket = undefined;
    this.#keepAlive.stop();
    this.#hooks.lost();
  }

  #stopTimers(): void {
    if (this.#retryTimer !== undefined) this.#timers.clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    this.#keepAlive.stop();
  }

  #setState(state: ConnectionState, extra: { delayMs?: number; reason?: string } = {}): void {
    const previous = this.#state;
    this.#state = state;
    this.#emitter.emit("state", { state, previous, attempt: this.#attempt, ...extra });
  }
}
