/**
 * @module handlers/lifetime
 * A session's lifetime: `authenticate` (join, then the snapshot, then
 * `authenticated`), `reauthenticate` (a fresh token extends the session).
 * Expiry itself is armed by the session (`Session.extendSession`), and
 * deactivated users are found by `active_check.ts`.
 *
 * Login order (ISSUE 13.2, 13.6): the cluster slot is taken, then the hub
 * subscribes and joins the user, and only then are online friends read, so
 * of two friends logging in at once the later join sees the earlier, and the
 * earlier is sent the later's `presence` on a channel it already receives.
 */

import { errorMessage } from "../../log.ts";
import type { AuthenticateFrame, ReauthenticateFrame } from "../../protocol/mod.ts";
import { serverFrames } from "../../protocol/mod.ts";
import { type MailboxSummary, UnavailableError } from "../../store/mod.ts";
import { CloseCode } from "../../protocol/mod.ts";
import type { Session } from "../session.ts";
import type { FrameHandler } from "./dispatch.ts";
import { verifyToken } from "../../token.ts";

export const lifetimeHandlers: {
  authenticate: FrameHandler<AuthenticateFrame>;
  reauthenticate: FrameHandler<ReauthenticateFrame>;
} = {
  authenticate: { auth: false, handle: authenticate },
  reauthenticate: { auth: true, handle: reauthenticate },
};

async function authenticate(session: Session, frame: AuthenticateFrame): Promise<void> {
  if (session.isAuthenticated) {
    return session.sendError("already_authenticated", "Already authenticated", undefined);
  }
  if (frame.authToken === undefined) return session.authFailed("Auth token required");
  const { ctx } = session;
  const token = await checkToken(session, frame.authToken);
  if (token === undefined) return session.authFailed("Invalid auth token");
  const userId = token.userId;
  let friends: readonly number[];
  let mailbox: MailboxSummary;
  try {
    if (!(await ctx.repository.isActiveUser(userId))) {
      ctx.logger.info("auth_failed", { reason: "inactive_or_unknown_user", user_id: userId });
      return session.authFailed("Invalid auth token");
    }
    [friends, mailbox] = await Promise.all([
      ctx.repository.friendIds(userId),
      ctx.repository.mailboxSummary(userId),
    ]);
  } catch (err) {
    if (!(err instanceof UnavailableError)) throw err;
    return session.unavailable();
  }
  if (!session.isOpen) return; // closed while the database answered
  if (!(await ctx.hub.acquireSlot(userId))) {
    session.sendError("too_many_connections", "Too many connections for this user", undefined);
    return session.close(CloseCode.tryAgainLater, "too many connections");
  }
  session.holdSlot(userId);
  if (!session.isOpen) return;
  await session.join(userId, expiresAt(session, token.timestamp));
  if (!session.isOpen) return;
  const onlineFriends = await ctx.hub.onlineAmong(friends).catch((err) => {
    ctx.logger.warn("online_friends_failed", { user_id: userId, error: errorMessage(err) });
    return [] as number[];
  });
  session.completeJoin(serverFrames.authenticated(userId, {
    onlineFriends,
    mailbox,
    sessionExpiresAt: new Date(session.expiresAt),
  }));
  ctx.logger.debug("authenticated", { user_id: userId });
}

async function reauthenticate(session: Session, frame: ReauthenticateFrame): Promise<void> {
  if (frame.authToken === undefined) {
    return session.send(serverFrames.authError("Auth token required"), false);
  }
  const token = await checkToken(session, frame.authToken);
  let valid = token !== undefined && token.userId === session.userId;
  if (valid) {
    try {
      valid = await session.ctx.repository.isActiveUser(session.userId);
    } catch (err) {
      if (!(err instanceof UnavailableError)) throw err;
      return session.unavailable();
    }
  }
  if (!valid || token === undefined || !session.isOpen) {
    session.ctx.logger.info("reauth_failed", { user_id: session.userId });
    return session.send(serverFrames.authError("Invalid auth token"), false);
  }
  // Never shortens: an older token that is still valid keeps the later expiry.
  session.extendSession(Math.max(session.expiresAt, expiresAt(session, token.timestamp)));
  session.send(serverFrames.reauthenticated(new Date(session.expiresAt)), false);
}

/** The token's user and timestamp when its signature and age are valid. */
async function checkToken(
  session: Session,
  authToken: string,
): Promise<{ userId: number; timestamp: number } | undefined> {
  const { tokenKey, limits, now, logger } = session.ctx;
  const result = await verifyToken(
    authToken,
    tokenKey,
    Math.floor(now() / 1000),
    limits.tokenTtlSeconds,
  );
  if (result.ok) return result;
  logger.info("auth_failed", { reason: result.reason });
  return undefined;
}

/** When a token of `timestamp` (Unix seconds) reaches `TOKEN_TTL_SECONDS`, in ms. */
function expiresAt(session: Session, timestamp: number): number {
  return (timestamp + session.ctx.limits.tokenTtlSeconds) * 1000;
}
