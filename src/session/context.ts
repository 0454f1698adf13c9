/**
 * @module session/context
 * What a frame handler may do, as types only: act as the connection's user,
 * answer on its socket, reach other users' sockets, and use the services it
 * needs. Handlers never see the session itself.
 *
 * A handler *returns* its refusal (`refuse(...)`) instead of sending an
 * `error` frame, and lets storage errors (`UnavailableError`, …) propagate:
 * the session turns both into `error` frames in one place, with the frame's
 * `client_message_id`.
 */

import type { Config } from "../config.ts";
import type { Hub } from "../hub/mod.ts";
import type { TypingExpiry } from "../hub/mod.ts";
import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { Moderator } from "../moderation/mod.ts";
import type { ClientFrame, ErrorCode } from "../protocol/mod.ts";
import type { ChatRepository, StoreResult } from "../store/mod.ts";
import type { TokenKey } from "../token.ts";
import type { SendOrder } from "./send_order.ts";
import type { LoginRefusal } from "./rate_limit.ts";

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
  | "maxQueuedFrames"
  | "sendBufferMaxBytes"
  | "sendBufferShedBytes"
  | "pageMaxBytes"
  | "editWindowS"
>;

/**
 * A frame refused: answered as `error` with this code and message (and the
 * frame's `client_message_id`), then, with `closeAfter`, the connection closes.
 * `retryAfterMs` is the `retry_after_ms` of a `rate_limited` answer; left out,
 * the session fills it in from the connection's chat rate.
 */
export class Refusal {
  constructor(
    readonly code: ErrorCode,
    readonly message: string,
    readonly closeAfter?: { code: number; reason: string },
    readonly retryAfterMs?: number,
  ) {}
}

/** Builds the refusal a handler returns. */
export function refuse(
  code: ErrorCode,
  message: string,
  closeAfter?: { code: number; reason: string },
  retryAfterMs?: number,
): Refusal {
  return new Refusal(code, message, closeAfter, retryAfterMs);
}

/** What a message checked by the moderation hook came to: its row (new or repeated), or its refusal. */
export type Checked = StoreResult | Refusal;

/** What a handler answers: nothing more to send, or a refusal. */
export type Reply = void | Refusal;

/** The services a handler may use. */
export interface HandlerServices {
  readonly repository: ChatRepository;
  readonly typing: TypingExpiry;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Milliseconds since the epoch. */
  readonly now: () => number;
  /** The moderation hook (`MODERATION_URL`); undefined when none is configured. */
  readonly moderator?: Moderator | undefined;
  /** The order of each sender's messages to each friend while the hook checks them. */
  readonly sendOrder: SendOrder<Checked>;
}

/** What every frame handler gets. */
export interface HandlerContext {
  /** The authenticated user (0 before authentication). */
  readonly userId: number;
  /** Shutting down: frames that would store a message are refused `unavailable`. */
  readonly draining: boolean;
  readonly limits: SessionLimits;
  readonly services: HandlerServices;
  /** What handlers use of the hub beyond sending frames (settings, appear offline). */
  readonly hub: Pick<Hub, "settingsChanged" | "appearsOffline">;
  /** Sends a serialized frame on this connection (never shed). */
  send(frame: string): void;
  /**
   * Resolves once this user may be sent another catch-up page (at once unless they were sent
   * more than their page allowance, `user_work.ts`); read the page after it.
   */
  pacePages(): Promise<void>;
  /** Sends a catch-up page on this connection and charges its bytes to the user's allowance. */
  sendPage(frame: string): void;
  /** Sends to every socket of `userId` in the cluster; a droppable frame may be shed. */
  sendToUser(userId: number, frame: string, droppable: boolean): void;
  /** Sends to this user's other sockets in the cluster, not this one. */
  sendToOtherDevices(frame: string): void;
  /** Takes a chat token; false when none is left (refuse with `rate_limited`). */
  allowChat(): boolean;
  /** Takes a typing token; false means the frame is dropped without an answer. */
  allowTyping(): boolean;
  /**
   * An answer that comes later (a queued store): `drain` waits for it, and
   * what it settles with is answered like a handler's return value.
   */
  track(answered: Promise<Reply>, clientMessageId: string | undefined): void;
}

/** What the frames that change the session's state (`authenticate`, `reauthenticate`) get too. */
export interface LifetimeContext extends HandlerContext {
  readonly isOpen: boolean;
  readonly isAuthenticated: boolean;
  /** When the session ends unless reauthenticated (ms since the epoch; 0 before auth). */
  readonly expiresAt: number;
  readonly tokenKey: TokenKey;
  readonly hub: Pick<Hub, "acquireSlot" | "onlineAmong" | "settingsChanged" | "appearsOffline">;
  /**
   * A failed `authenticate` or `reauthenticate`: answers `auth_error`; the
   * connection closes at `maxAuthFailures` failures of either.
   */
  authFailed(message: "Auth token required" | "Invalid auth token"): void;
  /**
   * Takes one sign-in of `userId` from this connection's client address:
   * undefined when it may go on; else the user or the address is over its
   * sign-in rate, or the node over its admission rate, and when to try again.
   */
  admitLogin(userId: number): LoginRefusal | undefined;
  /** The client's address (the TCP peer, or as a trusted proxy forwarded it), for log lines. */
  readonly clientAddress: string;
  /**
   * Records a cluster connection slot taken for `userId`. It is given back
   * exactly once: by `releaseSlot`, or when the socket closes.
   */
  holdSlot(userId: number): void;
  /** Gives back the slot `holdSlot` recorded, if still held (a sign-in that failed after it). */
  releaseSlot(): void;
  /** Sends `frame` (a `session_expired`), then closes the connection with 1008. */
  end(frame: string): void;
  /** Joins the hub as `userId`; frames for the user are held until `completeJoin`. */
  join(userId: number, expiresAt: number): Promise<void>;
  /** Sends `authenticated`, then the frames held while joining. */
  completeJoin(authenticated: string): void;
  /** Sets when the session expires unless extended again. */
  extendSession(expiresAt: number): void;
}

/**
 * How one frame type is handled: whether it needs authentication, whether it
 * is database work of the user's, and by what.
 */
export type FrameHandler<F extends ClientFrame> =
  | {
    auth: boolean;
    /**
     * Reads or writes the user's mailbox: handled within the user's share of
     * database work on this node (`user_work.ts`), refused `rate_limited` beyond it.
     */
    db?: true;
    lifetime?: false;
    handle(ctx: HandlerContext, frame: F): Reply | Promise<Reply>;
  }
  | {
    auth: boolean;
    db?: false;
    /** Changes the session's state, so it gets the wider context. */
    lifetime: true;
    handle(ctx: LifetimeContext, frame: F): Reply | Promise<Reply>;
  };
