/**
 * @module session/handlers/lifetime
 * A session's lifetime: `authenticate` (join, then the snapshot, then
 * `authenticated`), `reauthenticate` (a fresh token extends the session).
 * Expiry itself is armed by the session (`extendSession`), and deactivated
 * users are found by `server/active_check.ts`.
 *
 * Login order: the token is verified, the user's and the address's sign-in
 * rates and the cluster slot are taken (no database work before them), the
 * user is checked (active, token not revoked), then the hub subscribes and
 * joins the user, and only then are online friends read. Of two friends
 * logging in at once the later join therefore sees the earlier, and the
 * earlier is sent the later's `presence` on a channel it already receives:
 * neither misses the other.
 */

import { errorMessage } from "../../log.ts";
import type { AuthenticateFrame, ReauthenticateFrame } from "../../protocol/mod.ts";
import { CloseCode, serverFrames } from "../../protocol/mod.ts";
import { verifyToken } from "../../token.ts";
import { type FrameHandler, type LifetimeContext, refuse, type Reply } from "../context.ts";

/**
 * A sign-in refused for its rate is answered after this pause. A client that reconnects as soon as
 * it is refused then costs one connection a second per loop rather than as many as it can open
 * (each opening and closing costs the node far more than the refusal); a well-behaved client waits
 * longer than this before it tries again anyway. Meanwhile the connection holds one of its
 * address's `MAX_UNAUTH_PER_IP` slots, as any connection not signed in yet does.
 */
export const RATE_REFUSAL_PAUSE_MS = 1000;

export const lifetimeHandlers: {
  authenticate: FrameHandler<AuthenticateFrame>;
  reauthenticate: FrameHandler<ReauthenticateFrame>;
} = {
  authenticate: { auth: false, lifetime: true, handle: authenticate },
  reauthenticate: { auth: true, lifetime: true, handle: reauthenticate },
};

async function authenticate(ctx: LifetimeContext, frame: AuthenticateFrame): Promise<Reply> {
  if (ctx.isAuthenticated) return refuse("already_authenticated", "Already authenticated");
  if (frame.authToken === undefined) return ctx.authFailed("Auth token required");
  const token = await checkToken(ctx, frame.authToken);
  if (token === undefined) return ctx.authFailed("Invalid auth token");
  const userId = token.userId;
  // The limits come before any database work: a refused sign-in costs none.
  const refused = ctx.admitLogin(userId);
  if (refused !== undefined) {
    let retryAfterMs = refused.retryAfterMs;
    // The node's admission refuses thousands at once in a reconnect storm and says nothing
    // about the client: counted (`errors_sent`), not logged one by one, and answered at once
    // (its clients are told when to come back; holding their sockets would only cost the node).
    if (refused.reason === "sign_in_rate") {
      ctx.services.logger.info("auth_refused", {
        reason: refused.reason,
        user_id: userId,
        client_ip: ctx.clientAddress,
      });
      await new Promise((resolve) => setTimeout(resolve, RATE_REFUSAL_PAUSE_MS));
      retryAfterMs = Math.max(0, retryAfterMs - RATE_REFUSAL_PAUSE_MS);
    }
    return refuse(
      "rate_limited",
      refused.reason === "admission"
        ? "Too many sign-ins on this server, try again in retry_after_ms"
        : "Too many sign-ins, try again later",
      { code: CloseCode.tryAgainLater, reason: "too many sign-ins" },
      retryAfterMs,
    );
  }
  if (!(await ctx.hub.acquireSlot(userId))) {
    return refuse("too_many_connections", "Too many connections for this user", {
      code: CloseCode.tryAgainLater,
      reason: "too many connections",
    });
  }
  ctx.holdSlot(userId);
  try {
    return await signIn(ctx, userId, token.timestamp);
  } finally {
    // Failed, refused or closed meanwhile: the slot goes back (once; a closed socket gave it back).
    if (!ctx.isAuthenticated) ctx.releaseSlot();
  }
}

/** The database's part of `authenticate`, once the limits let it through and a slot is held. */
async function signIn(ctx: LifetimeContext, userId: number, issuedAt: number): Promise<Reply> {
  const { repository, logger } = ctx.services;
  if (!ctx.isOpen) return;
  // One statement: the token's access, then friends, mailbox, settings and last seen.
  const signedIn = await repository.signIn(userId, issuedAt);
  if (signedIn.access !== "ok") {
    logger.info("auth_failed", {
      reason: signedIn.access,
      user_id: userId,
      client_ip: ctx.clientAddress,
    });
    return ctx.authFailed("Invalid auth token");
  }
  const { friends, mailbox, settings, seen } = signedIn;
  if (!ctx.isOpen) return; // closed while the database answered
  await ctx.join(userId, expiresAt(ctx, issuedAt));
  if (!ctx.isOpen) return;
  const online = await ctx.hub.onlineAmong(friends).catch((err) => {
    logger.warn("online_friends_failed", { user_id: userId, error: errorMessage(err) });
    return [] as number[];
  });
  // Friends who appear offline are offline here: out of the list, their last seen shown.
  const onlineFriends = online.filter((id) => seen.get(id)?.appearOffline !== true);
  const shownOnline = new Set(onlineFriends);
  const lastSeen = new Map<number, Date>();
  for (const [id, state] of seen) {
    if (state.lastSeenAt !== undefined && !shownOnline.has(id)) lastSeen.set(id, state.lastSeenAt);
  }
  ctx.completeJoin(serverFrames.authenticated(userId, {
    onlineFriends,
    mailbox,
    sessionExpiresAt: new Date(ctx.expiresAt),
    limits: ctx.limits,
    settings,
    lastSeen,
  }));
  logger.debug("authenticated", { user_id: userId });
}

/**
 * A fresh token extends the session. Its failures count toward
 * `MAX_AUTH_FAILURES` like those of `authenticate`; a user found deactivated
 * (or deleted) is signed out at once, as `server/active_check.ts` would.
 */
async function reauthenticate(ctx: LifetimeContext, frame: ReauthenticateFrame): Promise<Reply> {
  const { repository, logger } = ctx.services;
  if (frame.authToken === undefined) return ctx.authFailed("Auth token required");
  const token = await checkToken(ctx, frame.authToken);
  if (token === undefined || token.userId !== ctx.userId) {
    logger.info("reauth_failed", { user_id: ctx.userId, client_ip: ctx.clientAddress });
    return ctx.authFailed("Invalid auth token");
  }
  const access = await repository.tokenAccess(ctx.userId, token.timestamp);
  if (!ctx.isOpen) return;
  if (access === "inactive") {
    logger.info("user_deactivated_closed", { user_id: ctx.userId });
    return ctx.end(serverFrames.sessionExpired("deactivated"));
  }
  if (access === "revoked") {
    logger.info("reauth_failed", {
      user_id: ctx.userId,
      reason: access,
      client_ip: ctx.clientAddress,
    });
    return ctx.authFailed("Invalid auth token");
  }
  // Never shortens: an older token that is still valid keeps the later expiry.
  ctx.extendSession(Math.max(ctx.expiresAt, expiresAt(ctx, token.timestamp)));
  ctx.send(serverFrames.reauthenticated(new Date(ctx.expiresAt)));
}

/** The token's user and timestamp when its signature and age are valid. */
async function checkToken(
  ctx: LifetimeContext,
  authToken: string,
): Promise<{ userId: number; timestamp: number } | undefined> {
  const result = await verifyToken(
    authToken,
    ctx.tokenKey,
    Math.floor(ctx.services.now() / 1000),
    ctx.limits.tokenTtlSeconds,
  );
  if (result.ok) return result;
  ctx.services.logger.info("auth_failed", {
    reason: result.reason,
    client_ip: ctx.clientAddress,
  });
  return undefined;
}

/** When a token of `timestamp` (Unix seconds) reaches `TOKEN_TTL_SECONDS`, in ms. */
function expiresAt(ctx: LifetimeContext, timestamp: number): number {
  return (timestamp + ctx.limits.tokenTtlSeconds) * 1000;
}
