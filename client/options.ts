/**
 * @module options
 * The types a `ChatClient` is configured with: its options and the injectable parts of its
 * environment (WebSocket, timers). Types only and importing nothing, so that every module of the
 * SDK can use them without an import cycle.
 */

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
  /** Called on every (re)connect and before the session expires, so it can return a fresh token. */
  getToken: () => Promise<string>;
  /**
   * Catch up after this message id on the first connection (e.g. `client.lastMessageId` saved
   * by an earlier page). Without it the first connection starts from the server's newest id.
   */
  lastMessageId?: number;
  /**
   * v1.2: the update number to catch up after on the first connection (`client.lastSeq` saved by
   * an earlier page). Without it the first connection starts from the server's latest
   * (`authenticated.seq`) and older messages come from `history()`. Ignored by a v1.1 server.
   */
  lastSeq?: number | undefined;
  /** Messages (v1.1) or updates (v1.2) per `sync` page, 1–500 (default 100). */
  syncPageSize?: number;
  /** Send `delivered` for every incoming message once it is emitted (default true). */
  autoDelivered?: boolean;
  /** Refresh the token this long before `session_expires_at` (default 120000). */
  refreshBeforeMs?: number;
  /** `history()` rejects with `timeout` when no answer came within this (default 15000). */
  requestTimeoutMs?: number;
  /** First reconnect delay ceiling; doubles per failed attempt (default 500). */
  reconnectBaseMs?: number;
  /** Largest reconnect delay ceiling (default 10000). */
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
  /** Milliseconds since the epoch (default `Date.now`); times the token refresh and the pacing. */
  now?: () => number;
  /** Generates `client_message_id`s (default `crypto.randomUUID()`). */
  newId?: () => string;
}

export interface SendOptions {
  /** 1–64 characters; a retry with the same id is stored once by the server. */
  clientMessageId?: string | undefined;
}
