/**
 * @module session/handlers/receipts
 * `read` (cumulative per friend) and `delivered` (per message, first device
 * wins), docs/protocol.md "Catch-up, history, unread, receipts". A receipt is
 * stored first and announced only when the store changed something, so each
 * reaches its sockets once; when storage fails the client is told
 * `unavailable` and nothing is announced.
 */

import type { DeliveredFrame, ReadFrame } from "../../protocol/mod.ts";
import { serverFrames } from "../../protocol/mod.ts";
import { type FrameHandler, type HandlerContext, refuse, type Reply } from "../context.ts";

export const receiptHandlers: {
  read: FrameHandler<ReadFrame>;
  delivered: FrameHandler<DeliveredFrame>;
} = {
  read: { auth: true, db: true, handle: read },
  delivered: { auth: true, db: true, handle: delivered },
};

async function read(ctx: HandlerContext, frame: ReadFrame): Promise<Reply> {
  if (frame.friendUserId === ctx.userId) {
    return refuse("invalid_field", "friend_user_id must not be your own id");
  }
  const readAt = await ctx.services.repository.markRead(
    ctx.userId,
    frame.friendUserId,
    frame.upToMessageId,
  );
  if (readAt === undefined) return; // nothing changed: nothing sent
  const receipt = serverFrames.read(ctx.userId, frame.friendUserId, frame.upToMessageId, readAt);
  ctx.sendToUser(frame.friendUserId, receipt, false);
  ctx.sendToOtherDevices(receipt);
}

async function delivered(ctx: HandlerContext, frame: DeliveredFrame): Promise<Reply> {
  const result = await ctx.services.repository.markDelivered(ctx.userId, frame.messageId);
  if (result.status === "not_recipient") {
    return refuse("invalid_field", "message_id does not name a message addressed to you");
  }
  if (result.status === "first") {
    ctx.sendToUser(
      result.senderUserId,
      serverFrames.delivered(frame.messageId, ctx.userId),
      false,
    );
  }
}
