/**
 * @module dispatch
 * What each server frame (docs/protocol.md) does to the client, in a table keyed by frame type.
 * Every frame is also emitted: under its own type (unless named like a client event) and as
 * `frame`; a frame type the table does not know (the backend's `/notify` pushes) only that. Each
 * handler emits its frame itself, because the order of events matters: `sync_result` comes
 * before the messages it carries, `authenticated` after the client is `open`. All runtime code
 * lives inside the class (the demo page embeds its source; see README.md, "Using it without a
 * build step").
 */

import type { ChatCatchUp, ChatCatchUpParts } from "./catch_up.ts";
import type {
  AuthenticatedFrame,
  ChatMessage,
  ErrorFrame,
  HistoryResultFrame,
  MessageSentFrame,
  PresenceFrame,
  ReadFrame,
  ReauthenticatedFrame,
  SettingsUpdatedFrame,
  SyncResultFrame,
  UnknownFrame,
} from "./frames.ts";
import type { ChatRequests } from "./requests.ts";
import type { ChatSettingsRequests } from "./settings.ts";

/** The parts of the client that server frames reach. */
export interface ChatParts extends ChatCatchUpParts {
  readonly requests: ChatRequests;
  /** The settings, friends' last seen times, and the settings changes waiting (v1.2). */
  readonly settings: ChatSettingsRequests;
  /** Sends the receipts waiting, when connected. */
  flushReceipts(): void;
}

/** Parses the frames of the current socket and hands each to its handler. */
export class ChatDispatcher {
  /** Refusals that carry no `client_message_id`: they answer the catch-up or a request. */
  static readonly #REQUEST_ERRORS = ["unavailable", "invalid_field", "rate_limited"];
  /** Refusals only a `settings` change gets. */
  static readonly #SETTINGS_ERRORS = ["not_friends", "missing_fields"];
  readonly #parts: ChatParts;
  readonly #catchUp: ChatCatchUp;
  readonly #handlers: ReadonlyMap<string, (frame: UnknownFrame) => void>;

  constructor(parts: ChatParts, catchUp: ChatCatchUp) {
    this.#parts = parts;
    this.#catchUp = catchUp;
    const { connection, auth, requests, emitter } = parts;
    this.#handlers = new Map<string, (frame: UnknownFrame) => void>([
      ["authenticated", (frame) => this.#authenticated(frame as unknown as AuthenticatedFrame)],
      ["auth_error", (frame) => (auth.refused(), emitter.emitFrame(frame))],
      ["chat_message", (frame) => this.#chatMessage(frame)],
      ["message_sent", (frame) => this.#messageSent(frame)],
      ["error", (frame) => this.#error(frame)],
      ["sync_result", (frame) => {
        emitter.emitFrame(frame);
        catchUp.page(frame as unknown as SyncResultFrame);
      }],
      ["history_result", (frame) => {
        requests.answer(frame as unknown as HistoryResultFrame);
        emitter.emitFrame(frame);
      }],
      ["read", (frame) => this.#read(frame)],
      ["reauthenticated", (frame) => {
        auth.expiresAt((frame as unknown as ReauthenticatedFrame).session_expires_at);
        emitter.emitFrame(frame);
      }],
      ["session_expired", (frame) => this.#sessionExpired(frame)],
      ["settings_updated", (frame) => {
        parts.settings.updated((frame as unknown as SettingsUpdatedFrame).settings);
        emitter.emitFrame(frame);
      }],
      ["presence", (frame) => {
        parts.settings.presence(frame as unknown as PresenceFrame);
        emitter.emitFrame(frame);
      }],
      ["pong", (frame) => (connection.pong(), emitter.emitFrame(frame))],
    ]);
  }

  /** Data from the socket; anything but a JSON object with a string `type` is ignored. */
  receive(data: unknown): void {
    let frame: UnknownFrame;
    try {
      frame = JSON.parse(String(data));
    } catch {
      return;
    }
    if (typeof frame !== "object" || frame === null || typeof frame.type !== "string") return;
    const handle = this.#handlers.get(frame.type);
    if (handle === undefined) this.#parts.emitter.emitFrame(frame);
    else handle(frame);
  }

  /**
   * Signed in: what waits for an answer is (re)sent before the state is `open`, so that nothing
   * a `state` handler sends goes out twice; then the catch-up starts.
   */
  #authenticated(frame: AuthenticatedFrame): void {
    const { connection, auth, outbox, requests, mailbox, emitter } = this.#parts;
    auth.signedIn(frame.user_id);
    outbox.signedIn(frame.limits);
    for (const waiting of requests.frames) connection.write(waiting);
    for (const waiting of this.#parts.settings.frames) connection.write(waiting);
    this.#parts.settings.signedIn(frame.settings, frame.last_seen);
    const after = mailbox.authenticated(frame);
    connection.signedIn();
    outbox.pump(); // unanswered messages go out again, one at a time, paced
    auth.expiresAt(frame.session_expires_at);
    emitter.emitFrame(frame as unknown as UnknownFrame);
    if (frame.last_message_id !== undefined) emitter.emit("unread", mailbox.unread());
    this.#parts.flushReceipts();
    this.#catchUp.start(after, frame.last_message_id !== undefined);
  }

  #chatMessage(frame: UnknownFrame): void {
    if (typeof frame.message_id === "number") {
      this.#catchUp.live(frame as unknown as ChatMessage);
    } else if (typeof frame.message === "object") {
      // Not a stored socket message: the game backend's `{type, message}` push (its ids are
      // another database's), passed on as it came.
      this.#parts.emitter.emit("backend_chat_message", frame);
    }
    this.#parts.emitter.emit("frame", frame);
  }

  #messageSent(frame: UnknownFrame): void {
    const me = this.#parts.auth.userId;
    const message = (frame as unknown as MessageSentFrame).data;
    if (me !== undefined && message !== undefined) this.#parts.mailbox.accept(message, me, true);
    this.#parts.outbox.acknowledge(message);
    this.#parts.emitter.emitFrame(frame);
  }

  /**
   * A refusal of one of our messages, else of the catch-up, else of the oldest request. A
   * message refused only for the rate is sent again by the outbox: that is no `error` event.
   */
  #error(frame: UnknownFrame): void {
    const error = frame as unknown as ErrorFrame;
    const { outbox, emitter } = this.#parts;
    if (outbox.retries(error)) {
      emitter.emit("frame", frame);
      outbox.refuse(error);
      return;
    }
    emitter.emitFrame(frame);
    if (outbox.refuse(error)) return;
    const { settings, requests, connection } = this.#parts;
    if (connection.state === "authenticating") {
      // A refused sign-in (the server closes next): the reconnect waits as long as it says.
      if (typeof error.retry_after_ms === "number") connection.retryAfter(error.retry_after_ms);
      return;
    }
    if (ChatDispatcher.#SETTINGS_ERRORS.includes(error.code)) {
      settings.failOldest(error.code, error.message);
      return;
    }
    if (!ChatDispatcher.#REQUEST_ERRORS.includes(error.code)) return;
    if (!this.#catchUp.refused(error) && !requests.failOldest(error.code, error.message)) {
      settings.failOldest(error.code, error.message);
    }
  }

  /** A read receipt; the user's own (from another device) lowers the unread counts. */
  #read(frame: UnknownFrame): void {
    const { auth, mailbox, emitter } = this.#parts;
    const read = frame as unknown as ReadFrame;
    const changed = read.user_id === auth.userId &&
      mailbox.read(read.friend_user_id, read.up_to_message_id);
    emitter.emitFrame(frame);
    if (changed) emitter.emit("unread", mailbox.unread());
  }

  #sessionExpired(frame: UnknownFrame): void {
    const reason = `session expired${frame.reason ? `: ${frame.reason}` : ""}`;
    this.#parts.connection.expire(reason, () => {
      this.#parts.requests.failAll(
        "session_expired",
        "The session expired before the answer came",
      );
      this.#parts.emitter.emitFrame(frame);
    });
  }
}
