/**
 * @module handlers/receipts
 * `read` (cumulative per friend) and `delivered` (per message, first device
 * wins), PROTOCOL.md v1.1. A receipt is stored first and announced only
 * when the store changed something, so each reaches its sockets once; when
 * storage fails the client is told `unavailable` and nothing is announced.
 */

import type { DeliveredFrame, ReadFrame } from "../../protocol/mod.ts";
import { serverFrames } from "../../protocol/mod.ts";
import { UnavailableError } from "../../store/mod.ts";
import type { Session } from "../session.ts";
import type { FrameHandler } from "./dispatch.ts";

export const receiptHandlers: {
  read: FrameHandler<ReadFrame>;
  delivered: FrameHandler<DeliveredFrame>;
} = {
  read: { auth: true, handle: read },
  delivered: { auth: true, handle: delivered },
};

async function read(session: Session, frame: ReadFrame): Promise<void> {
  if (frame.friendUserId === session.userId) {
    return session.sendError("invalid_field", "friend_user_id must not be your own id", undefined);
  }
  const readAt = await orUnavailable(
    session,
    () => session.ctx.repository.markRead(session.userId, frame.friendUserId, frame.upToMessageId),
  );
  if (readAt === undefined || readAt === UNAVAILABLE) return; // nothing changed: nothing sent
  const receipt = serverFrames.read(
    session.userId,
    frame.friendUserId,
    frame.upToMessageId,
    readAt,
  );
  session.ctx.hub.sendToUser(frame.friendUserId, receipt, false);
  session.ctx.hub.sendToUser(session.userId, receipt, false, session);
}

async function delivered(session: Session, frame: DeliveredFrame): Promise<void> {
  const result = await orUnavailable(
    session,
    () => session.ctx.repository.markDelivered(session.userId, frame.messageId),
  );
  if (result === UNAVAILABLE) return;
  if (result.status === "not_recipient") {
    return session.sendError(
      "invalid_field",
      "message_id does not name a message addressed to you",
      undefined,
    );
  }
  if (result.status === "first") {
    session.ctx.hub.sendToUser(
      result.senderUserId,
      serverFrames.delivered(frame.messageId, session.userId),
      false,
    );
  }
}

const UNAVAILABLE = Symbol("unavailable");

/** Runs a store; on `UnavailableError` answers `unavailable` and yields `UNAVAILABLE`. */
async function orUnavailable<T>(
  session: Session,
  store: () => Promise<T>,
): Promise<T | typeof UNAVAILABLE> {
  try {
    return await store();
  } catch (err) {
    if (!(err instanceof UnavailableError)) throw err;
    session.unavailable();
    return UNAVAILABLE;
  }
}
