/**
 * @module session
 * One WebSocket connection: its state (unauthenticated, joining, authenticated,
 * closed), its limits, and the dispatch of its frames through one table keyed
 * by `type`. What each frame does lives in its family's module under
 * `handlers/`.
 *
 * Frames of one connection are handled one after another, so replies and
 * stored messages keep the order they were sent in; a stored message's
 * delivery does not hold up the next frame. A failure inside a handler
 * becomes `error` `internal` for that frame and never reaches other
 * connections.
 *
 * While joining (between a valid `authenticate` and the `authenticated`
 * answer) frames the hub routes to the user are held, so nothing, presence
 * included, reaches the client before `authenticated`.
 */

import { CloseCode } from "../protocol/mod.ts";
import type { Config } from "../config.ts";
import { DISPATCH, type FrameHandler } from "./handlers/dispatch.ts";
import type { Hub, Peer } from "../hub/mod.ts";
import type { Logger } from "../log.ts";
import { errorMessage } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import { type DeadlineQueue, DeadlineTimer } from "./deadline_timer.ts";
import { Outbox } from "./outbox.ts";
import type { ClientFrame, ErrorCode, FrameError } from "../protocol/mod.ts";
import { parseClientFrame, serverFrames } from "../protocol/mod.ts";
import { type AbuseMeter, ConnectionRates } from "./rate_limit.ts";
import type { ChatRepository } from "../store/mod.ts";
import type { TokenKey } from "../token.ts";
import type { TypingExpiry } from "../hub/mod.ts";
import type { WsConnection, WsHandlers } from "../transport/mod.ts";

/** The settings a session enforces (see `Config` for their meaning and defaults). */
export type SessionLimits = Pick<
  Config,
  | "authTimeoutMs"
  | "maxAuthFailures"
  | "maxMessageChars"
  | "tokenTtlSeconds"
  | "chatBurst"
  | "chatRatePerS"
  | "typingRatePerS"
  | "frameRatePerS"
  | "sendBufferMaxBytes"
  | "sendBufferShedBytes"
>;

/** What every session of a server shares. */
export interface SessionContext {
  hub: Hub;
  repository: ChatRepository;
  typing: TypingExpiry;
  tokenKey: TokenKey;
  limits: SessionLimits;
  logger: Logger;
  metrics: Metrics;
  /** Milliseconds since the epoch (token ages, session expiry). */
  now: () => number;
  /** Monotonic milliseconds (rate limits): a wall-clock step must not refuse a client. */
  monotonic: () => number;
  /** Where every session's expiry waits (one timer for all; its clock is `now`). */
  expiries: DeadlineQueue;
}

/** What the server is told of one session (the context above is shared by all of them). */
export interface SessionHooks {
  /** Called once when the session stops counting as unauthenticated (it authenticated or closed). */
  onUnauthenticatedEnd: () => void;
  /** Called once when the connection has closed. */
  onClosed: () => void;
}

export const UNAVAILABLE_MESSAGE = "Service temporarily unavailable, try again";

export class Session implements Peer, WsHandlers {
  #userId = 0;
  #state: "new" | "joining" | "authenticated" | "closed" = "new";
  #failures = 0;
  #authTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #expiry: DeadlineTimer;
  #slotHeld = false;
  #endAfterJoin: string | undefined;
  readonly #out: Outbox;
  #chain: Promise<void> = Promise.resolve();
  /** Stores queued and not yet answered. */
  readonly #inFlight = new Set<Promise<void>>();
  #draining = false;
  /** We sent a close frame: frames from the peer are no longer handled. */
  #closing = false;
  readonly #rates: ConnectionRates;

  constructor(
    private readonly conn: WsConnection,
    readonly ctx: SessionContext,
    private readonly hooks: SessionHooks,
  ) {
    const { limits } = ctx;
    this.#rates = new ConnectionRates(limits, ctx.monotonic);
    this.#out = new Outbox(conn, ctx, () => this.#userId);
    this.#expiry = new DeadlineTimer(ctx.expiries, () => {
      ctx.logger.info("session_expired", { user_id: this.#userId });
      this.end(serverFrames.sessionExpired());
    });
    this.#authTimer = setTimeout(() => {
      this.#authTimer = undefined;
      this.close(CloseCode.policy, "authentication timeout");
    }, limits.authTimeoutMs);
  }

  get userId(): number {
    return this.#userId;
  }

  get isOpen(): boolean {
    return this.#state !== "closed";
  }

  get isAuthenticated(): boolean {
    return this.#state === "authenticated";
  }

  /** When the session ends unless reauthenticated (ms since the epoch; 0 before auth). */
  get expiresAt(): number {
    return this.#expiry.at;
  }

  /** Shutting down: frames that would store a message are answered `unavailable`. */
  get draining(): boolean {
    return this.#draining;
  }

  onText(text: string): void {
    if (this.#state === "closed" || this.#closing) return;
    if (!this.#rates.frames.take()) {
      this.ctx.metrics.frameIn("refused");
      this.refuse("rate_limited", "Too many frames", undefined, this.#rates.frameAbuse);
      return;
    }
    const frame = parseClientFrame(text, this.ctx.limits);
    this.ctx.metrics.frameIn(frame.type === "error" ? "invalid" : frame.type);
    this.#chain = this.#chain.then(() => this.#dispatch(frame)).catch((err) => {
      this.ctx.logger.error("frame_failed", { user_id: this.#userId, error: errorMessage(err) });
      this.sendError("internal", "Internal error", undefined);
    });
  }

  onBinary(): void {
    if (this.#state === "closed" || this.#closing) return;
    this.ctx.metrics.frameIn("binary");
    if (!this.#rates.frames.take()) {
      this.refuse("rate_limited", "Too many frames", undefined, this.#rates.frameAbuse);
      return;
    }
    // Answered in turn, after the frames received before it.
    this.#chain = this.#chain.then(() => {
      if (this.#state !== "closed") {
        this.sendError("invalid_frame", "Invalid message format", undefined);
      }
    });
  }

  onClose(code: number): void {
    if (this.#state === "closed") return;
    const previous = this.#state;
    this.#state = "closed";
    clearTimeout(this.#authTimer);
    this.#authTimer = undefined;
    this.#expiry.stop();
    this.#out.closed();
    if (previous === "new") this.hooks.onUnauthenticatedEnd();
    else this.ctx.hub.remove(this);
    this.#releaseSlot();
    this.ctx.logger.debug("connection_closed", { user_id: this.#userId || null, code });
    this.hooks.onClosed();
  }

  deliver(frame: string, droppable: boolean): void {
    this.#out.deliver(frame, droppable);
  }

  end(frame: string): void {
    if (this.#state === "joining") {
      this.#endAfterJoin = frame;
      return;
    }
    this.send(frame, false);
    this.close(CloseCode.policy, "session expired");
  }

  /**
   * Shutdown: frames from now on that would store a message are answered
   * `unavailable`; resolves once every frame received before is handled and
   * every queued message is committed and answered.
   */
  async drain(): Promise<void> {
    this.#draining = true;
    await this.#chain;
    await Promise.all(this.#inFlight);
  }

  close(code: number, reason: string): void {
    if (this.#state === "closed") return;
    // Whatever the peer sends after our close frame is not answered (RFC 6455 §5.5.1).
    this.#closing = true;
    this.conn.close(code, reason);
  }

  /** Keeps `answered` (a queued store) in the set `drain` waits for. */
  track(answered: Promise<void>): void {
    const tracked = answered.finally(() => this.#inFlight.delete(tracked));
    this.#inFlight.add(tracked);
  }

  /** Takes a chat token; when none is left, answers `rate_limited` and returns false. */
  allowChat(cmid: string | undefined): boolean {
    if (this.#rates.chat.take()) return true;
    this.refuse("rate_limited", "Too many messages, slow down", cmid, this.#rates.chatAbuse);
    return false;
  }

  /** Takes a typing token; false means the frame is dropped without an answer. */
  allowTyping(): boolean {
    return this.#rates.typing.take();
  }

  /** A failed `authenticate`; the connection closes at `maxAuthFailures`. */
  authFailed(message: "Auth token required" | "Invalid auth token"): void {
    this.send(serverFrames.authError(message), false);
    if (++this.#failures >= this.ctx.limits.maxAuthFailures) {
      this.close(CloseCode.policy, "too many failed authentication attempts");
    }
  }

  /**
   * Records a cluster connection slot taken for `userId`, released exactly
   * once when the connection closes (at once when it already has).
   */
  holdSlot(userId: number): void {
    if (this.#state === "closed") {
      void this.ctx.hub.releaseSlot(userId);
      return;
    }
    this.#userId = userId;
    this.#slotHeld = true;
  }

  /**
   * Starts joining as `userId`: the session stops counting as
   * unauthenticated, and resolves once the hub has subscribed and joined the
   * user; frames for them are held until `completeJoin`.
   */
  async join(userId: number, expiresAt: number): Promise<void> {
    if (this.#state !== "new") return;
    clearTimeout(this.#authTimer);
    this.#authTimer = undefined;
    this.#userId = userId;
    this.#state = "joining";
    this.#out.hold();
    this.hooks.onUnauthenticatedEnd();
    this.extendSession(expiresAt);
    await this.ctx.hub.add(this);
  }

  /** Sends `authenticated`, then the frames held while joining. */
  completeJoin(authenticated: string): void {
    if (this.#state !== "joining") return;
    this.#state = "authenticated";
    this.send(authenticated, false);
    this.#out.release();
    if (this.#endAfterJoin !== undefined) this.end(this.#endAfterJoin);
  }

  /** Sets when the session expires (`session_expired`, close 1008) unless extended again. */
  extendSession(expiresAt: number): void {
    this.#expiry.set(expiresAt);
  }

  refuse(code: ErrorCode, message: string, cmid: string | undefined, meter: AbuseMeter): void {
    this.sendError(code, message, cmid);
    if (meter.refused()) {
      this.ctx.logger.warn("rate_abuse_closed", { user_id: this.#userId || null });
      this.close(CloseCode.policy, "rate limit exceeded");
    }
  }

  sendError(code: ErrorCode, message: string, cmid: string | undefined): void {
    this.ctx.metrics.errorSent(code);
    this.send(serverFrames.error(code, message, cmid), false);
  }

  /** Answers `unavailable` (storage did not answer in time). */
  unavailable(cmid?: string): void {
    this.sendError("unavailable", UNAVAILABLE_MESSAGE, cmid);
  }

  send(frame: string, droppable: boolean): void {
    this.#out.send(frame, droppable);
  }

  async #dispatch(frame: ClientFrame | FrameError): Promise<void> {
    if (this.#state === "closed") return;
    if (frame.type === "error") {
      if (
        frame.frameType !== undefined && DISPATCH[frame.frameType].auth && !this.isAuthenticated
      ) {
        return this.#notAuthenticated(frame.clientMessageId);
      }
      return this.sendError(frame.code, frame.message, frame.clientMessageId);
    }
    const handler = DISPATCH[frame.type] as FrameHandler<typeof frame>;
    if (handler.auth && !this.isAuthenticated) {
      return this.#notAuthenticated(
        frame.type === "chat_message" ? frame.clientMessageId : undefined,
      );
    }
    await handler.handle(this, frame);
  }

  #notAuthenticated(cmid: string | undefined): void {
    this.sendError("not_authenticated", "Not authenticated", cmid);
  }

  #releaseSlot(): void {
    if (!this.#slotHeld) return;
    this.#slotHeld = false;
    void this.ctx.hub.releaseSlot(this.#userId);
  }
}
