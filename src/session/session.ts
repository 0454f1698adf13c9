/**
 * @module session/session
 * One WebSocket connection: its state (unauthenticated, joining, authenticated,
 * closed), its limits, and the dispatch of its frames through one table keyed
 * by `type`. What each frame does lives in its family's module under
 * `handlers/`.
 *
 * Frames of one connection are handled one after another, so replies and
 * stored messages keep the order they were sent in; a stored message's
 * delivery does not hold up the next frame. An unexpected failure inside a
 * handler becomes `error` `internal` for that frame and never reaches other
 * connections.
 *
 * What a connection and a user may make the server hold is bounded
 * (docs/protocol.md, "Limits"): at most `MAX_QUEUED_FRAMES` frames received
 * and not yet handled per connection, and frames that are database work of
 * the user's run within the user's share on this node (`user_work.ts`); a
 * frame beyond either is refused `rate_limited` at once, not queued.
 *
 * While joining (between a valid `authenticate` and the `authenticated`
 * answer) frames the hub routes to the user are held, so nothing, presence
 * included, reaches the client before `authenticated`.
 */

import type { Hub, Peer } from "../hub/mod.ts";
import { errorMessage } from "../log.ts";
import type { ClientFrame, ErrorCode, FrameError } from "../protocol/mod.ts";
import { CloseCode, parseClientFrame, serverFrames, utf8Length } from "../protocol/mod.ts";
import { ClientMessageIdReusedError, UnavailableError } from "../store/mod.ts";
import type { TokenKey } from "../token.ts";
import type { WsConnection, WsHandlers } from "../transport/mod.ts";
import {
  type FrameHandler,
  type HandlerServices,
  type LifetimeContext,
  Refusal,
  type Reply,
  type SessionLimits,
} from "./context.ts";
import { type DeadlineQueue, DeadlineTimer } from "./deadline_timer.ts";
import { DISPATCH } from "./handlers/dispatch.ts";
import { Outbox } from "./outbox.ts";
import {
  type AbuseMeter,
  ConnectionRates,
  type LoginRates,
  type LoginRefusal,
  type TokenBucket,
} from "./rate_limit.ts";
import type { UserWork } from "./user_work.ts";

export type { SessionLimits } from "./context.ts";

/**
 * What every session of a server shares: one object for all of them (a copy
 * per connection would cost memory per connection). Handlers see only its
 * `HandlerServices` part.
 */
export interface SessionContext extends HandlerServices {
  hub: Hub;
  tokenKey: TokenKey;
  limits: SessionLimits;
  /** Monotonic milliseconds (rate limits): a wall-clock step must not refuse a client. */
  monotonic: () => number;
  /** Where every session's expiry waits (one timer for all; its clock is `now`). */
  expiries: DeadlineQueue;
  /** Each user's share of database work on this node. */
  userWork: UserWork;
  /** This node's sign-in rates per user and per client address (clock: `monotonic`). */
  logins: LoginRates;
}

/** What the server is told of one session (the context above is shared by all of them). */
export interface SessionHooks {
  /** Called once when the session stops counting as unauthenticated (it authenticated or closed). */
  onUnauthenticatedEnd(session: Session): void;
  /** Called once when the connection has closed. */
  onClosed(session: Session): void;
}

const UNAVAILABLE_MESSAGE = "Service temporarily unavailable, try again";
const QUEUE_FULL_MESSAGE = "Too many frames waiting, slow down";
const USER_WORK_FULL_MESSAGE = "Too many requests in progress, slow down";
/** The retry hint of a refusal for work waiting rather than for a rate: a round trip or a few. */
const BUSY_RETRY_MS = 1000;
/** How often a page held for the user's page allowance looks again (a closed session stops it). */
const PAGE_PACE_CHECK_MS = 250;

/**
 * A session's expiry on the shared queue: one object that knows its session,
 * rather than a closure and its context per connection.
 */
class SessionExpiry extends DeadlineTimer {
  constructor(queue: DeadlineQueue, readonly session: Session) {
    super(queue, expire);
  }
}

function expire(this: SessionExpiry): void {
  this.session.expired();
}

export class Session implements Peer, WsHandlers, LifetimeContext {
  #userId = 0;
  #state: "new" | "joining" | "authenticated" | "closed" = "new";
  #failures = 0;
  #authTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #expiry: DeadlineTimer;
  /** The user whose cluster connection slot this session holds; 0 when none. */
  #slotUserId = 0;
  #endAfterJoin: string | undefined;
  readonly #out: Outbox;
  #chain: Promise<void> = Promise.resolve();
  /** Frames on `#chain` not yet answered. */
  #queued = 0;
  /** Stores queued and not yet answered; made by the first (most connections never store). */
  #inFlight: Set<Promise<void>> | undefined;
  #draining = false;
  /** We sent a close frame: frames from the peer are no longer handled. */
  #closing = false;
  readonly #rates: ConnectionRates;
  readonly #conn: WsConnection;
  readonly #ctx: SessionContext;
  readonly #hooks: SessionHooks;
  readonly #address: string;

  /** `address` is the client's (the TCP peer, or as a trusted proxy forwarded it). */
  constructor(conn: WsConnection, ctx: SessionContext, hooks: SessionHooks, address: string) {
    this.#conn = conn;
    this.#ctx = ctx;
    this.#hooks = hooks;
    this.#address = address;
    const { limits } = ctx;
    this.#rates = new ConnectionRates(limits, ctx.monotonic);
    this.#out = new Outbox(conn, ctx, this);
    this.#expiry = new SessionExpiry(ctx.expiries, this);
    this.#authTimer = setTimeout(() => {
      this.#authTimer = undefined;
      this.close(CloseCode.policy, "authentication timeout");
    }, limits.authTimeoutMs);
  }

  get userId(): number {
    return this.#userId;
  }

  /** The session's expiry came (`SessionExpiry`): `session_expired`, then close 1008. */
  expired(): void {
    this.#ctx.logger.info("session_expired", { user_id: this.#userId });
    this.end(serverFrames.sessionExpired());
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

  get limits(): SessionLimits {
    return this.#ctx.limits;
  }

  get services(): HandlerServices {
    return this.#ctx;
  }

  get tokenKey(): TokenKey {
    return this.#ctx.tokenKey;
  }

  get hub(): Hub {
    return this.#ctx.hub;
  }

  onText(text: string): void {
    if (this.#state === "closed" || this.#closing) return;
    const { metrics, limits } = this.#ctx;
    if (!this.#rates.frames.take()) {
      metrics.frameIn("refused");
      this.#refuse("Too many frames", undefined, this.#rates.frames, this.#rates.frameAbuse);
      return;
    }
    const frame = parseClientFrame(text, limits);
    metrics.frameIn(frame.type === "error" ? "invalid" : frame.type);
    const cmid = frame.type === "chat_message" || frame.type === "error"
      ? frame.clientMessageId
      : undefined;
    if (this.#queued >= limits.maxQueuedFrames) {
      const { frames, frameAbuse } = this.#rates;
      this.#refuse(QUEUE_FULL_MESSAGE, cmid, frames, frameAbuse, BUSY_RETRY_MS);
      return;
    }
    this.#queued++;
    this.#chain = this.#chain.then(() => this.#handle(frame, cmid));
  }

  onBinary(): void {
    if (this.#state === "closed" || this.#closing) return;
    this.#ctx.metrics.frameIn("binary");
    if (!this.#rates.frames.take()) {
      this.#refuse("Too many frames", undefined, this.#rates.frames, this.#rates.frameAbuse);
      return;
    }
    if (this.#queued >= this.#ctx.limits.maxQueuedFrames) {
      const { frames, frameAbuse } = this.#rates;
      this.#refuse(QUEUE_FULL_MESSAGE, undefined, frames, frameAbuse, BUSY_RETRY_MS);
      return;
    }
    // Answered in turn, after the frames received before it.
    this.#enqueue(() => {
      if (this.#state !== "closed") {
        this.#sendError("invalid_frame", "Invalid message format", undefined);
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
    if (previous === "new") this.#hooks.onUnauthenticatedEnd(this);
    else this.#ctx.hub.remove(this);
    this.releaseSlot();
    this.#ctx.logger.debug("connection_closed", { user_id: this.#userId || null, code });
    this.#hooks.onClosed(this);
  }

  deliver(frame: string, droppable: boolean): void {
    this.#out.deliver(frame, droppable);
  }

  end(frame: string): void {
    // Closing already (e.g. signed out twice by `POST /disconnect`): nothing more to send.
    if (this.#state === "closed" || this.#closing) return;
    if (this.#state === "joining") {
      this.#endAfterJoin = frame;
      return;
    }
    this.#out.send(frame, false);
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
    if (this.#inFlight !== undefined) await Promise.all(this.#inFlight);
  }

  close(code: number, reason: string): void {
    if (this.#state === "closed") return;
    // Whatever the peer sends after our close frame is not answered (RFC 6455 §5.5.1).
    this.#closing = true;
    this.#conn.close(code, reason);
  }

  // --- HandlerContext -------------------------------------------------------

  send(frame: string): void {
    this.#out.send(frame, false);
  }

  async pacePages(): Promise<void> {
    for (;;) {
      const ms = this.#ctx.userWork.pageWaitMs(this.#userId);
      if (ms === 0 || this.#state === "closed") return;
      await new Promise((resolve) => setTimeout(resolve, Math.min(ms, PAGE_PACE_CHECK_MS)));
    }
  }

  sendPage(frame: string): void {
    this.#ctx.userWork.chargePage(this.#userId, utf8Length(frame));
    this.send(frame);
  }

  sendToUser(userId: number, frame: string, droppable: boolean): void {
    this.#ctx.hub.sendToUser(userId, frame, droppable);
  }

  sendToOtherDevices(frame: string): void {
    this.#ctx.hub.sendToUser(this.#userId, frame, false, this);
  }

  allowChat(): boolean {
    return this.#rates.chat.take();
  }

  allowTyping(): boolean {
    return this.#rates.typing.take();
  }

  track(answered: Promise<Reply>, cmid: string | undefined): void {
    const inFlight = this.#inFlight ??= new Set();
    const tracked: Promise<void> = answered.then(
      (reply) => {
        inFlight.delete(tracked);
        this.#answer(reply, cmid);
      },
      (err) => {
        inFlight.delete(tracked);
        this.#answer(err, cmid);
      },
    );
    inFlight.add(tracked);
  }

  // --- LifetimeContext ------------------------------------------------------

  authFailed(message: "Auth token required" | "Invalid auth token"): void {
    this.#out.send(serverFrames.authError(message), false);
    if (++this.#failures >= this.#ctx.limits.maxAuthFailures) {
      this.close(CloseCode.policy, "too many failed authentication attempts");
    }
  }

  get clientAddress(): string {
    return this.#address;
  }

  admitLogin(userId: number): LoginRefusal | undefined {
    return this.#ctx.logins.take(userId, this.#address);
  }

  holdSlot(userId: number): void {
    if (this.#state === "closed") {
      void this.#ctx.hub.releaseSlot(userId);
      return;
    }
    this.releaseSlot(); // never two at once (a sign-in is answered before the next starts)
    this.#slotUserId = userId;
  }

  releaseSlot(): void {
    if (this.#slotUserId === 0) return;
    const userId = this.#slotUserId;
    this.#slotUserId = 0;
    void this.#ctx.hub.releaseSlot(userId);
  }

  /** Also stops the session counting as unauthenticated. */
  async join(userId: number, expiresAt: number): Promise<void> {
    if (this.#state !== "new") return;
    clearTimeout(this.#authTimer);
    this.#authTimer = undefined;
    this.#userId = userId;
    this.#state = "joining";
    this.#out.hold();
    this.#hooks.onUnauthenticatedEnd(this);
    this.extendSession(expiresAt);
    await this.#ctx.hub.add(this);
  }

  completeJoin(authenticated: string): void {
    if (this.#state !== "joining") return;
    this.#state = "authenticated";
    this.#out.send(authenticated, false);
    this.#out.release();
    if (this.#endAfterJoin !== undefined) this.end(this.#endAfterJoin);
  }

  /** Sets when the session expires (`session_expired`, close 1008) unless extended again. */
  extendSession(expiresAt: number): void {
    this.#expiry.set(expiresAt);
  }

  // --- dispatch and answers ---------------------------------------------------

  /** Handles a frame after those received before it; it counts as queued until answered. */
  #enqueue(handle: () => void | Promise<void>): void {
    this.#queued++;
    this.#chain = this.#chain.then(handle).finally(() => this.#queued--);
  }

  /**
   * Handles a queued frame and answers it; it stops counting as queued as it is answered. A
   * frame answered at once takes no promise of its own; one with work to wait for, one `then`.
   */
  #handle(frame: ClientFrame | FrameError, cmid: string | undefined): void | Promise<void> {
    let outcome: unknown;
    try {
      const reply = this.#dispatch(frame, cmid);
      if (reply instanceof Promise) {
        return reply.then(
          (r) => this.#answerQueued(r, cmid),
          (err) => this.#answerQueued(err, cmid),
        );
      }
      outcome = reply;
    } catch (err) {
      outcome = err;
    }
    this.#answerQueued(outcome, cmid);
  }

  #answerQueued(outcome: unknown, cmid: string | undefined): void {
    this.#queued--;
    this.#answer(outcome, cmid);
  }

  #dispatch(frame: ClientFrame | FrameError, cmid: string | undefined): Reply | Promise<Reply> {
    if (this.#state === "closed") return;
    if (frame.type === "error") {
      if (
        frame.frameType !== undefined && DISPATCH[frame.frameType].auth && !this.isAuthenticated
      ) {
        return new Refusal("not_authenticated", "Not authenticated");
      }
      return new Refusal(frame.code, frame.message);
    }
    const handler = DISPATCH[frame.type] as FrameHandler<typeof frame>;
    if (handler.auth && !this.isAuthenticated) {
      return new Refusal("not_authenticated", "Not authenticated");
    }
    if (handler.lifetime) return handler.handle(this, frame);
    if (!handler.db) return handler.handle(this, frame);
    const work = this.#ctx.userWork.run(this.#userId, () => handler.handle(this, frame));
    if (work === undefined) {
      const { frames, frameAbuse } = this.#rates;
      this.#refuse(USER_WORK_FULL_MESSAGE, cmid, frames, frameAbuse, BUSY_RETRY_MS);
    }
    return work;
  }

  /**
   * The one place a frame's outcome becomes its answer: a refusal is sent as
   * `error` (a chat `rate_limited` also counts toward the abuse close and says
   * when the next message would be accepted), storage that did not answer in
   * time as `unavailable`, anything else as `internal`.
   */
  #answer(outcome: unknown, cmid: string | undefined): void {
    if (outcome === undefined || this.#state === "closed") return;
    if (outcome instanceof Refusal) {
      if (outcome.code === "rate_limited") {
        const { chat, chatAbuse } = this.#rates;
        this.#refuse(outcome.message, cmid, chat, chatAbuse, outcome.retryAfterMs);
      } else {
        this.#sendError(outcome.code, outcome.message, cmid);
      }
      if (outcome.closeAfter) this.close(outcome.closeAfter.code, outcome.closeAfter.reason);
    } else if (outcome instanceof UnavailableError) {
      this.#sendError("unavailable", UNAVAILABLE_MESSAGE, cmid);
    } else if (outcome instanceof ClientMessageIdReusedError) {
      this.#sendError(
        "invalid_field",
        "client_message_id was already used for another message",
        cmid,
      );
    } else {
      this.#ctx.logger.error("frame_failed", {
        user_id: this.#userId || null,
        error: errorMessage(outcome),
      });
      this.#sendError("internal", "Internal error", cmid);
    }
  }

  /**
   * `rate_limited` with `retry_after_ms` (docs/protocol.md, "Chat messages",
   * check 8): when `bucket` has its next token, unless the refusal named a time.
   */
  #refuse(
    message: string,
    cmid: string | undefined,
    bucket: TokenBucket,
    meter: AbuseMeter,
    retryAfterMs = bucket.msUntilToken(),
  ): void {
    this.#sendError("rate_limited", message, cmid, retryAfterMs);
    if (meter.refused()) {
      this.#ctx.logger.warn("rate_abuse_closed", {
        user_id: this.#userId || null,
        client_ip: this.#address,
      });
      this.close(CloseCode.policy, "rate limit exceeded");
    }
  }

  #sendError(
    code: ErrorCode,
    message: string,
    cmid: string | undefined,
    retryAfterMs?: number,
  ): void {
    this.#ctx.metrics.errorSent(code);
    this.#out.send(serverFrames.error(code, message, cmid, retryAfterMs), false);
  }
}
