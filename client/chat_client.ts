/**
 * @module chat_client
 * A typed, dependency-free client for the GeoBeasts chat server that runs in browsers and Deno.
 *
 * Runtime code lives only inside the two classes below (everything else is types), so that
 * `ChatClient.toString()` is the complete JavaScript of the SDK: that is how the demo page
 * embeds it without a build step (see README.md, "Using it without a build step").
 */

import type {
  AuthenticatedFrame,
  ChatClientEvents,
  ChatMessage,
  ConnectionState,
  ErrorFrame,
  MessageSentFrame,
  UnknownFrame,
} from "./frames.ts";
export type * from "./frames.ts";

/** The part of the WebSocket API the client uses (a fake can implement it in tests). */
export interface WebSocketLike {
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface ChatClientOptions {
  /** `ws://` or `wss://` URL of the public listener, e.g. `wss://chat.example.com/ws`. */
  url: string | URL;
  /** Called on every (re)connect, so it can return a fresh token. */
  getToken: () => Promise<string>;
  /** First reconnect delay ceiling; doubles per failed attempt (default 500). */
  reconnectBaseMs?: number;
  /** Largest reconnect delay ceiling (default 30000). */
  reconnectCapMs?: number;
  /** Keep-alive `ping` period; 0 turns keep-alive off (default 25000). */
  pingIntervalMs?: number;
  /** A connection whose `pong` is this late is treated as dead (default 10000). */
  pongTimeoutMs?: number;
  /** Most unacknowledged messages held while not connected (default 100). */
  maxQueue?: number;
  WebSocket?: WebSocketConstructor;
  /** Returns [0, 1); used for the reconnect jitter. */
  random?: () => number;
  timers?: Timers;
  /** Generates `client_message_id`s (default `crypto.randomUUID()`). */
  newId?: () => string;
}

export interface SendOptions {
  /** 1–64 characters; a retry with the same id is stored once by the server. */
  clientMessageId?: string | undefined;
}

type Handler = (event: never) => void;
interface Outgoing {
  frame: string;
  promise: Promise<ChatMessage>;
  resolve(message: ChatMessage): void;
  reject(error: Error): void;
}

/** Why `send()` failed: a server `error` code, or `queue_full` / `closed` from the client. */
export class ChatSendError extends Error {
  override name = "ChatSendError";
  constructor(
    readonly code: string,
    message: string,
    readonly clientMessageId: string,
  ) {
    super(message);
  }
}

/** A chat connection that re-authenticates, reconnects and re-sends on its own. */
export class ChatClient {
  readonly #url: string;
  readonly #getToken: () => Promise<string>;
  readonly #WebSocket: WebSocketConstructor;
  readonly #random: () => number;
  readonly #timers: Timers;
  readonly #newId: () => string;
  readonly #baseMs: number;
  readonly #capMs: number;
  readonly #pingMs: number;
  readonly #pongMs: number;
  readonly #maxQueue: number;
  readonly #handlers = new Map<string, Set<Handler>>();
  /** Unacknowledged messages in send order, sent or not: all are (re)sent after authentication. */
  readonly #outbox = new Map<string, Outgoing>();
  #state: ConnectionState = "idle";
  #socket: WebSocketLike | undefined;
  #attempt = 0;
  #userId: number | undefined;
  #retryTimer: unknown;
  #pingTimer: unknown;
  #pongTimer: unknown;
  #closed: Promise<void> | undefined;
  #closedResolve: (() => void) | undefined;

  constructor(options: ChatClientOptions) {
    this.#url = String(options.url);
    this.#getToken = options.getToken;
    this.#WebSocket = options.WebSocket ??
      (globalThis.WebSocket as unknown as WebSocketConstructor);
    this.#random = options.random ?? Math.random;
    this.#timers = options.timers ?? {
      setTimeout: (callback, ms) => setTimeout(callback, ms),
      clearTimeout: (handle) => clearTimeout(handle as number),
    };
    this.#newId = options.newId ?? ChatClient.#uuid;
    this.#baseMs = options.reconnectBaseMs ?? 500;
    this.#capMs = options.reconnectCapMs ?? 30_000;
    this.#pingMs = options.pingIntervalMs ?? 25_000;
    this.#pongMs = options.pongTimeoutMs ?? 10_000;
    this.#maxQueue = options.maxQueue ?? 100;
  }

  get state(): ConnectionState {
    return this.#state;
  }
  /** The authenticated user, once known. */
  get userId(): number | undefined {
    return this.#userId;
  }
  /** Messages not yet acknowledged by `message_sent` or `error`. */
  get pending(): number {
    return this.#outbox.size;
  }

  /** Subscribes to an event; returns the function that unsubscribes. */
  on<K extends keyof ChatClientEvents>(
    type: K,
    handler: (event: ChatClientEvents[K]) => void,
  ): () => void;
  on(type: string, handler: (event: UnknownFrame) => void): () => void;
  on(type: string, handler: Handler): () => void {
    let set = this.#handlers.get(type);
    if (set === undefined) this.#handlers.set(type, set = new Set());
    set.add(handler);
    return () => void set.delete(handler);
  }

  /** Resolves with the next event of `type`. */
  once<K extends keyof ChatClientEvents>(type: K): Promise<ChatClientEvents[K]>;
  once(type: string): Promise<UnknownFrame>;
  once(type: string): Promise<unknown> {
    return new Promise((resolve) => {
      const off = this.on(type, (event: UnknownFrame) => (off(), resolve(event)));
    });
  }

  /** Starts connecting (once; later calls do nothing). */
  connect(): void {
    if (this.#state === "idle") this.#open();
  }

  /**
   * Sends a message; resolves with the stored message (`message_sent`), rejects with a
   * `ChatSendError` (the server's `error`, or `queue_full` / `closed`).
   */
  send(recipientId: number, text: string, options: SendOptions = {}): Promise<ChatMessage> {
    const id = options.clientMessageId ?? this.#newId();
    if (id.length < 1 || id.length > 64) {
      return Promise.reject(new RangeError("clientMessageId must be 1 to 64 characters"));
    }
    const known = this.#outbox.get(id);
    if (known !== undefined) return known.promise;
    if (this.#state === "closed") {
      return Promise.reject(new ChatSendError("closed", "The chat client is closed", id));
    }
    if (this.#state !== "open" && this.#outbox.size >= this.#maxQueue) {
      return Promise.reject(
        new ChatSendError(
          "queue_full",
          `Offline queue is full (${this.#maxQueue} messages wait for the connection)`,
          id,
        ),
      );
    }
    let resolve!: (message: ChatMessage) => void;
    let reject!: (error: Error) => void;
    const promise = new Promise<ChatMessage>((res, rej) => (resolve = res, reject = rej));
    const frame = JSON.stringify({
      type: "chat_message",
      recipient_user_id: recipientId,
      message_text: text,
      client_message_id: id,
    });
    this.#outbox.set(id, { frame, promise, resolve, reject });
    if (this.#state === "open") this.#write(frame);
    return promise;
  }

  /** Tells a friend whether this user is typing; returns false (dropped) when not connected. */
  typing(recipientId: number, isTyping = true): boolean {
    if (this.#state !== "open") return false;
    this.#write(
      JSON.stringify({ type: "typing", recipient_user_id: recipientId, is_typing: isTyping }),
    );
    return true;
  }

  /** Closes for good: stops every timer, rejects unacknowledged sends, resolves once closed. */
  close(): Promise<void> {
    if (this.#closed !== undefined) return this.#closed;
    this.#closed = new Promise((resolve) => (this.#closedResolve = resolve));
    for (const timer of [this.#retryTimer, this.#pingTimer, this.#pongTimer]) {
      if (timer !== undefined) this.#timers.clearTimeout(timer);
    }
    this.#retryTimer = this.#pingTimer = this.#pongTimer = undefined;
    this.#setState("closed");
    for (const [id, outgoing] of this.#outbox) {
      outgoing.reject(
        new ChatSendError(
          "closed",
          "The chat client was closed before the server acknowledged the message",
          id,
        ),
      );
    }
    this.#outbox.clear();
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
      return this.#retry(`cannot connect: ${err instanceof Error ? err.message : String(err)}`);
    }
    this.#socket = ws;
    const current = () => ws === this.#socket && this.#state !== "closed";
    ws.onopen = () => void (current() && this.#authenticate(ws));
    ws.onmessage = (event) => void (current() && this.#receive(event.data));
    ws.onerror = () => {};
    ws.onclose = (event) => {
      if (ws !== this.#socket) return;
      this.#socket = undefined;
      this.#stopPing();
      if (this.#state === "closed") this.#closedResolve?.();
      else this.#retry(`closed with ${event.code}${event.reason ? `: ${event.reason}` : ""}`);
    };
  }

  async #authenticate(ws: WebSocketLike): Promise<void> {
    this.#setState("authenticating");
    this.#schedulePing();
    let token: string;
    try {
      token = await this.#getToken();
    } catch (err) {
      const reason = `getToken failed: ${err instanceof Error ? err.message : String(err)}`;
      if (ws === this.#socket && this.#state !== "closed") this.#abandon(ws, reason);
      return;
    }
    if (ws === this.#socket && this.#state !== "closed") {
      this.#write(JSON.stringify({ type: "authenticate", auth_token: token }));
    }
  }

  #receive(data: unknown): void {
    let frame: UnknownFrame;
    try {
      frame = JSON.parse(String(data));
    } catch {
      return;
    }
    if (typeof frame !== "object" || frame === null || typeof frame.type !== "string") return;
    if (frame.type === "authenticated") {
      this.#attempt = 0;
      this.#userId = (frame as unknown as AuthenticatedFrame).user_id;
      for (const outgoing of this.#outbox.values()) this.#write(outgoing.frame);
      this.#setState("open");
    } else if (frame.type === "auth_error") {
      // Reconnect, which asks getToken() for a fresh token; the failed attempt counts for backoff.
      this.#socket?.close(4001, "authentication failed");
    } else if (frame.type === "message_sent") {
      const message = (frame as unknown as MessageSentFrame).data;
      const id = message?.client_message_id;
      const outgoing = id === undefined ? undefined : this.#outbox.get(id);
      if (outgoing !== undefined) {
        this.#outbox.delete(id!);
        outgoing.resolve(message);
      }
    } else if (frame.type === "error") {
      const error = frame as unknown as ErrorFrame;
      const id = error.client_message_id;
      const outgoing = id === undefined ? undefined : this.#outbox.get(id);
      if (outgoing !== undefined) {
        this.#outbox.delete(id!);
        outgoing.reject(new ChatSendError(error.code, error.message, id!));
      }
    } else if (frame.type === "pong" && this.#pongTimer !== undefined) {
      this.#timers.clearTimeout(this.#pongTimer);
      this.#pongTimer = undefined;
      this.#schedulePing();
    }
    // A pushed event named like a client-side event is delivered through `frame` only.
    if (frame.type !== "state" && frame.type !== "frame") this.#emit(frame.type, frame);
    this.#emit("frame", frame);
  }

  #retry(reason: string): void {
    const ceiling = Math.min(this.#capMs, this.#baseMs * 2 ** Math.min(this.#attempt, 30));
    const delayMs = Math.floor(this.#random() * ceiling);
    this.#attempt++;
    this.#setState("waiting", { delayMs, reason });
    this.#retryTimer = this.#timers.setTimeout(() => this.#open(), delayMs);
  }

  /** Gives up on a socket that may be dead without waiting for its closing handshake. */
  #abandon(ws: WebSocketLike, reason: string): void {
    ws.onopen = ws.onmessage = ws.onclose = null;
    try {
      ws.close(4000, reason.slice(0, 100));
    } catch { /* already closed */ }
    this.#socket = undefined;
    this.#stopPing();
    this.#retry(reason);
  }

  #schedulePing(): void {
    if (this.#pingMs <= 0) return;
    if (this.#pingTimer !== undefined) this.#timers.clearTimeout(this.#pingTimer);
    this.#pingTimer = this.#timers.setTimeout(() => {
      this.#pingTimer = undefined;
      const ws = this.#socket;
      if (ws === undefined) return;
      this.#write(JSON.stringify({ type: "ping" }));
      this.#pongTimer = this.#timers.setTimeout(() => {
        this.#pongTimer = undefined;
        if (ws === this.#socket) this.#abandon(ws, `no pong within ${this.#pongMs} ms`);
      }, this.#pongMs);
    }, this.#pingMs);
  }

  #stopPing(): void {
    if (this.#pingTimer !== undefined) this.#timers.clearTimeout(this.#pingTimer);
    if (this.#pongTimer !== undefined) this.#timers.clearTimeout(this.#pongTimer);
    this.#pingTimer = this.#pongTimer = undefined;
  }

  #write(frame: string): void {
    try {
      this.#socket?.send(frame);
    } catch { /* closing: the close handler reconnects and re-sends */ }
  }

  #setState(state: ConnectionState, extra: { delayMs?: number; reason?: string } = {}): void {
    const previous = this.#state;
    this.#state = state;
    this.#emit("state", { state, previous, attempt: this.#attempt, ...extra });
  }

  #emit(type: string, event: unknown): void {
    for (const handler of [...(this.#handlers.get(type) ?? [])]) {
      try {
        (handler as (event: unknown) => void)(event);
      } catch (err) {
        console.error(`ChatClient: a '${type}' handler threw`, err);
      }
    }
  }

  /** RFC 4122 v4; `crypto.randomUUID` exists only in secure contexts (https, localhost). */
  static #uuid(): string {
    if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6]! & 0x0f) | 0x40;
    b[8] = (b[8]! & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${
      h.slice(20)
    }`;
  }
}
