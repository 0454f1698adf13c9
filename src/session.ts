/**
 * @module session
 * One WebSocket connection: authentication, limits, and the checks of every
 * frame in the order PROTOCOL.md gives, answered with stable error codes.
 *
 * Frames of one connection are handled one after another, so replies and
 * stored messages keep the order they were sent in; a stored message's
 * delivery does not hold up the next frame. A failure inside a handler
 * becomes `error` `internal` for that frame and never reaches other
 * connections.
 */

import type { Config } from "./config.ts";
import type { Hub, Peer } from "./hub.ts";
import type { Logger } from "./log.ts";
import { errorMessage } from "./log.ts";
import type { Metrics } from "./metrics.ts";
import type {
  ChatMessageFrame,
  ClientFrame,
  ErrorCode,
  FrameError,
  MessageData,
  TypingFrame,
} from "./protocol.ts";
import { parseClientFrame, serverFrames } from "./protocol.ts";
import { AbuseMeter, TokenBucket } from "./rate_limit.ts";
import type { ChatRepository, StoredMessage, StoreResult } from "./repository.ts";
import { UnavailableError } from "./repository.ts";
import { verifyToken } from "./token.ts";
import type { WsConnection, WsHandlers } from "./transport.ts";

/** Close codes the server uses. */
export const CloseCode = {
  goingAway: 1001,
  policy: 1008,
  tryAgainLater: 1013,
} as const;

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
  tokenKey: CryptoKey;
  limits: SessionLimits;
  logger: Logger;
  metrics: Metrics;
  /** Milliseconds since the epoch. */
  now: () => number;
  /** Called once when the session stops counting as unauthenticated (it authenticated or closed). */
  onUnauthenticatedEnd: () => void;
  /** Called once when the connection has closed. */
  onClosed: () => void;
}

const UNAVAILABLE_MESSAGE = "Service temporarily unavailable, try again";

export class Session implements Peer, WsHandlers {
  #userId = 0;
  #state: "new" | "authenticated" | "closed" = "new";
  #failures = 0;
  #authTimer: ReturnType<typeof setTimeout> | undefined;
  #killTimer: ReturnType<typeof setTimeout> | undefined;
  #chain: Promise<void> = Promise.resolve();
  /** Stores queued and not yet answered. */
  readonly #inFlight = new Set<Promise<void>>();
  #draining = false;
  readonly #frames: TokenBucket;
  readonly #frameAbuse: AbuseMeter;
  readonly #chat: TokenBucket;
  readonly #chatAbuse: AbuseMeter;
  readonly #typing: TokenBucket;

  constructor(private readonly conn: WsConnection, private readonly ctx: SessionContext) {
    const { limits, now } = ctx;
    this.#frames = new TokenBucket(limits.frameRatePerS, limits.frameRatePerS, now);
    this.#frameAbuse = new AbuseMeter(limits.frameRatePerS, now);
    this.#chat = new TokenBucket(limits.chatBurst, limits.chatRatePerS, now);
    this.#chatAbuse = new AbuseMeter(limits.chatRatePerS, now);
    this.#typing = new TokenBucket(limits.typingRatePerS, limits.typingRatePerS, now);
    this.#authTimer = setTimeout(() => {
      this.#authTimer = undefined;
      this.close(CloseCode.policy, "authentication timeout");
    }, limits.authTimeoutMs);
  }

  get userId(): number {
    return this.#userId;
  }

  onText(text: string): void {
    if (this.#state === "closed") return;
    if (!this.#frames.take()) {
      this.ctx.metrics.frameIn("refused");
      this.#refuse("rate_limited", "Too many frames", undefined, this.#frameAbuse);
      return;
    }
    const frame = parseClientFrame(text, this.ctx.limits);
    this.ctx.metrics.frameIn(frame.type === "error" ? "invalid" : frame.type);
    this.#chain = this.#chain.then(() => this.#handle(frame)).catch((err) => {
      this.ctx.logger.error("frame_failed", { user_id: this.#userId, error: errorMessage(err) });
      this.#sendError("internal", "Internal error", undefined);
    });
  }

  onBinary(): void {
    if (this.#state === "closed") return;
    this.ctx.metrics.frameIn("binary");
    if (!this.#frames.take()) {
      this.#refuse("rate_limited", "Too many frames", undefined, this.#frameAbuse);
      return;
    }
    this.#sendError("invalid_frame", "Invalid message format", undefined);
  }

  onClose(code: number): void {
    if (this.#state === "closed") return;
    const wasNew = this.#state === "new";
    this.#state = "closed";
    clearTimeout(this.#authTimer);
    clearTimeout(this.#killTimer);
    this.#authTimer = this.#killTimer = undefined;
    if (wasNew) this.ctx.onUnauthenticatedEnd();
    else this.ctx.hub.remove(this);
    this.ctx.logger.debug("connection_closed", { user_id: this.#userId || null, code });
    this.ctx.onClosed();
  }

  deliver(frame: string, droppable: boolean): void {
    this.#send(frame, droppable);
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
    this.conn.close(code, reason);
  }

  async #handle(frame: ClientFrame | FrameError): Promise<void> {
    if (this.#state === "closed") return;
    switch (frame.type) {
      case "error":
        if (
          frame.frameType !== undefined && frame.frameType !== "authenticate" &&
          this.#state !== "authenticated"
        ) {
          return this.#notAuthenticated(frame.clientMessageId);
        }
        return this.#sendError(frame.code, frame.message, frame.clientMessageId);
      case "ping":
        return this.#send(serverFrames.pong(), false);
      case "authenticate":
        return await this.#authenticate(frame.authToken);
      case "chat_message":
        return await this.#chatMessage(frame);
      case "typing":
        return await this.#typingFrame(frame);
    }
  }

  async #authenticate(token: string | undefined): Promise<void> {
    if (this.#state === "authenticated") {
      return this.#sendError("already_authenticated", "Already authenticated", undefined);
    }
    if (token === undefined) return this.#authFailed("Auth token required");
    const { tokenKey, limits, now, repository, hub } = this.ctx;
    const result = await verifyToken(
      token,
      tokenKey,
      Math.floor(now() / 1000),
      limits.tokenTtlSeconds,
    );
    if (!result.ok) {
      this.ctx.logger.info("auth_failed", { reason: result.reason });
      return this.#authFailed("Invalid auth token");
    }
    const userId = result.userId;
    let friendsOnline: number[];
    try {
      if (!(await repository.isActiveUser(userId))) {
        this.ctx.logger.info("auth_failed", {
          reason: "inactive_or_unknown_user",
          user_id: userId,
        });
        return this.#authFailed("Invalid auth token");
      }
      friendsOnline = await hub.onlineFriends(userId);
    } catch (err) {
      if (!(err instanceof UnavailableError)) throw err;
      return this.#sendError("unavailable", UNAVAILABLE_MESSAGE, undefined);
    }
    if (this.#state !== "new") return; // closed while the database answered
    if (!hub.hasRoomFor(userId)) {
      this.#sendError("too_many_connections", "Too many connections for this user", undefined);
      return this.close(CloseCode.tryAgainLater, "too many connections");
    }
    clearTimeout(this.#authTimer);
    this.#authTimer = undefined;
    this.#userId = userId;
    this.#state = "authenticated";
    this.ctx.onUnauthenticatedEnd();
    hub.add(this);
    this.#send(serverFrames.authenticated(userId, friendsOnline), false);
    this.ctx.logger.debug("authenticated", { user_id: userId });
  }

  #authFailed(message: "Auth token required" | "Invalid auth token"): void {
    this.#send(serverFrames.authError(message), false);
    if (++this.#failures >= this.ctx.limits.maxAuthFailures) {
      this.close(CloseCode.policy, "too many failed authentication attempts");
    }
  }

  async #chatMessage(frame: ChatMessageFrame): Promise<void> {
    const cmid = frame.clientMessageId;
    if (this.#state !== "authenticated") return this.#notAuthenticated(cmid);
    if (!(await this.#mayReach(frame.recipientUserId, cmid))) return;
    if (!this.#chat.take()) {
      return this.#refuse("rate_limited", "Too many messages, slow down", cmid, this.#chatAbuse);
    }
    if (this.#draining) return this.#sendError("unavailable", "Server is shutting down", cmid);
    const started = this.ctx.now();
    // Queued now (keeping this connection's order), answered when committed.
    const answered = this.ctx.repository.storeMessage({
      senderUserId: this.#userId,
      recipientUserId: frame.recipientUserId,
      messageText: frame.messageText,
      clientMessageId: cmid,
    }).then(
      (result) => this.#stored(result, started),
      (err) => {
        if (!(err instanceof UnavailableError)) {
          this.ctx.logger.error("store_failed", {
            user_id: this.#userId,
            error: errorMessage(err),
          });
          return this.#sendError("internal", "Internal error", cmid);
        }
        this.#sendError("unavailable", UNAVAILABLE_MESSAGE, cmid);
      },
    ).finally(() => this.#inFlight.delete(answered));
    this.#inFlight.add(answered);
  }

  #stored({ message, duplicate }: StoreResult, started: number): void {
    const data = messageData(message);
    if (!duplicate) {
      this.ctx.metrics.messageAcknowledged(this.ctx.now() - started);
      const frame = serverFrames.chatMessage(data);
      this.ctx.hub.sendToUser(message.recipientUserId, frame, false);
      this.ctx.hub.sendToUser(message.senderUserId, frame, false, this);
    }
    this.#send(serverFrames.messageSent(data), false);
  }

  async #typingFrame(frame: TypingFrame): Promise<void> {
    if (this.#state !== "authenticated") return this.#notAuthenticated(undefined);
    if (!(await this.#mayReach(frame.recipientUserId, undefined))) return;
    if (!this.#typing.take()) return; // over the typing rate: dropped without an answer
    this.ctx.hub.sendToUser(
      frame.recipientUserId,
      serverFrames.typing(this.#userId, frame.isTyping),
      true,
    );
  }

  /** Checks 5, 6 and 7; answers the frame and returns false when one fails. */
  async #mayReach(recipientUserId: number, cmid: string | undefined): Promise<boolean> {
    if (recipientUserId === this.#userId) {
      this.#sendError("invalid_recipient", "You cannot message yourself", cmid);
      return false;
    }
    let relation;
    try {
      relation = await this.ctx.repository.relation(this.#userId, recipientUserId);
    } catch (err) {
      if (!(err instanceof UnavailableError)) throw err;
      this.#sendError("unavailable", UNAVAILABLE_MESSAGE, cmid);
      return false;
    }
    if (relation === "not_friends") {
      this.#sendError("not_friends", "You can only message friends", cmid);
    }
    if (relation === "blocked") {
      this.#sendError("forbidden", "Cannot send message to this user", cmid);
    }
    return relation === "ok";
  }

  #notAuthenticated(cmid: string | undefined): void {
    this.#sendError("not_authenticated", "Not authenticated", cmid);
  }

  #refuse(code: ErrorCode, message: string, cmid: string | undefined, meter: AbuseMeter): void {
    this.#sendError(code, message, cmid);
    if (meter.refused()) {
      this.ctx.logger.warn("rate_abuse_closed", { user_id: this.#userId || null });
      this.close(CloseCode.policy, "rate limit exceeded");
    }
  }

  #sendError(code: ErrorCode, message: string, cmid: string | undefined): void {
    this.ctx.metrics.errorSent(code);
    this.#send(serverFrames.error(code, message, cmid), false);
  }

  #send(frame: string, droppable: boolean): void {
    if (this.#state === "closed") return;
    const buffered = this.conn.bufferedAmount;
    const { sendBufferMaxBytes, sendBufferShedBytes } = this.ctx.limits;
    if (buffered > sendBufferMaxBytes) return this.#slowConsumer();
    if (droppable && buffered > sendBufferShedBytes) return this.ctx.metrics.frameDropped();
    this.conn.send(frame);
    this.ctx.metrics.frameOut(frame);
  }

  #slowConsumer(): void {
    if (this.#killTimer !== undefined) return;
    this.ctx.metrics.slowConsumerClosed();
    this.ctx.logger.warn("slow_consumer_closed", { user_id: this.#userId || null });
    this.conn.close(CloseCode.tryAgainLater, "slow consumer");
    // The close frame waits behind the full buffer; do not hold the memory for long.
    this.#killTimer = setTimeout(() => this.conn.terminate(), 2000);
  }
}

function messageData(message: StoredMessage): MessageData {
  const data: MessageData = {
    message_id: message.messageId,
    sender_user_id: message.senderUserId,
    recipient_user_id: message.recipientUserId,
    message_text: message.messageText,
    sent_at: message.sentAt.toISOString(),
  };
  if (message.clientMessageId !== undefined) data.client_message_id = message.clientMessageId;
  return data;
}
