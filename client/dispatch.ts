/**
 * @module dispatch
 * What each server frame (docs/protocol.md) does to the client, in a table keyed by frame type.
 * Every frame is also emitted: under its own type (unless named like a client event) and as
 * `frame`; a frame type the table does not know (the backend's `/notify` pushes) only that. Each
 * handler emits its frame itself, because the order of events matters: `sync_result` comes
 * before the messages it carries, `authenticated` after the client is `open`. A frame that carries
 * an update's `seq` (v1.2) is emitted as `frame` when it comes and under its own type when the
 * catch-up applies it (in `seq` order, once). All runtime code
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
  MessageUpdatedFrame,
  PresenceFrame,
  ReadFrame,
  ReauthenticatedFrame,
  ReportReceivedFrame,
  SettingsUpdatedFrame,
  SyncResultFrame,
  SyncUpdatesResultFrame,
  UnknownFrame,
  UpdateFrame,
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
  /**
   * Refusals only an edit or a deletion gets (v1.2): they answer the oldest one, else go on (`unknown_type`:
   * a v1.1 server, which knows neither, and no settings either).
   */
  static readonly #UPDATE_ERRORS = [
    "unknown_type",
    "not_found",
    "edit_window_passed",
    "message_deleted",
    "moderated",
    "message_empty",
    "message_too_long",
  ];
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
        catchUp.page(frame as unknown as SyncResultFrame | SyncUpdatesResultFrame);
      }],
      ["history_result", (frame) => {
        const result = frame as unknown as HistoryResultFrame;
        requests.answer("history", result.friend_user_id, result);
        emitter.emitFrame(frame);
      }],
      ["read", (frame) => {
        if (this.#update(frame)) return;
        catchUp.read(frame as unknown as ReadFrame);
        emitter.emit("frame", frame);
      }],
      ["delivered", (frame) => this.#update(frame) || emitter.emitFrame(frame)],
      ["message_updated", (frame) => this.#messageUpdated(frame)],
      ["report_received", (frame) => {
        requests.answer("report", 0, (frame as unknown as ReportReceivedFrame).report_id);
        emitter.emitFrame(frame);
      }],
      ["reauthenticated", (frame) => {
        auth.expiresAt((frame as unknown as ReauthenticatedFrame).session_expires_at);
        emitter.emitFrame(frame);
      }],
      ["session_expired", (frame) => this.#sessionExpired(frame)],
      ["settings_updated", (frame) => {
        // The state and a waiting change follow the frame when it comes; the event comes when
        // the update is applied (in seq order). A synced one is older than what `authenticated`
        // said, so it changes only the event stream, not the state.
        parts.settings.updated((frame as unknown as SettingsUpdatedFrame).settings);
        if (!this.#update(frame)) emitter.emitFrame(frame);
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
    const seq = Number.isSafeInteger(frame.seq) && frame.seq! >= 0 ? frame.seq : undefined;
    this.#catchUp.start(after, frame.last_message_id !== undefined, seq);
  }

  /**
   * A frame with an update's `seq` on a v1.2 session: emitted as `frame` now, and handed to the
   * catch-up, which applies it in `seq` order; false for any other frame (a v1.1 server's, or an
   * answer that changed nothing), which the caller handles as v1.1 did.
   */
  #update(frame: UnknownFrame): boolean {
    const seq = frame.seq;
    if (!this.#catchUp.sequenced || !Number.isSafeInteger(seq) || (seq as number) <= 0) {
      return false;
    }
    this.#parts.emitter.emit("frame", frame);
    this.#catchUp.update(frame as unknown as UpdateFrame & { seq: number });
    return true;
  }

  #chatMessage(frame: UnknownFrame): void {
    if (this.#update(frame)) return;
    if (typeof frame.message_id === "number") {
      this.#catchUp.live(frame as unknown as ChatMessage);
    } else if (typeof frame.message === "object") {
      // Not a stored socket message: the game backend's `{type, message}` push (its ids are
      // another database's), passed on as it came.
      this.#parts.emitter.emit("backend_chat_message", frame);
    }
    this.#parts.emitter.emit("frame", frame);
  }

  /**
   * Our message was stored: its `send()` resolves now, whatever the `seq` (a gap before it is
   * filled by the catch-up, and the same message from there is not emitted again).
   */
  #messageSent(frame: UnknownFrame): void {
    const me = this.#parts.auth.userId;
    const message = (frame as unknown as MessageSentFrame).data;
    if (me !== undefined && message !== undefined) this.#parts.mailbox.accept(message, me, true);
    this.#parts.outbox.acknowledge(message);
    this.#parts.emitter.emit("message_sent", frame);
    if (!this.#update(frame)) this.#parts.emitter.emit("frame", frame);
  }

  /**
   * An edit or deletion (v1.2): the editing connection's copy answers its `editMessage()` /
   * `deleteMessage()` at once; the event comes when the update is applied (in `seq` order), or
   * now for a repeated one that changed nothing (no `seq`).
   */
  #messageUpdated(frame: UnknownFrame): void {
    const { message } = frame as unknown as MessageUpdatedFrame;
    const { requests, emitter } = this.#parts;
    if (typeof message === "object" && message !== null) {
      requests.answer("update", message.message_id, message);
    }
    if (!this.#update(frame)) emitter.emitFrame(frame);
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
    // `not_found` answers an edit, a deletion or a report, whichever was asked first.
    if (
      error.code === "not_found" &&
      requests.failOldest(error.code, error.message, ["update", "report"])
    ) return;
    if (
      ChatDispatcher.#UPDATE_ERRORS.includes(error.code) &&
      requests.failOldest(error.code, error.message, "update")
    ) return;
    if (ChatDispatcher.#SETTINGS_ERRORS.includes(error.code) || error.code === "unknown_type") {
      settings.failOldest(error.code, error.message);
      return;
    }
    if (!ChatDispatcher.#REQUEST_ERRORS.includes(error.code)) return;
    if (!this.#catchUp.refused(error) && !requests.failOldest(error.code, error.message)) {
      settings.failOldest(error.code, error.message);
    }
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
