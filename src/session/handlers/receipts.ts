/**
 * @module session/handlers/receipts
 * `read` (cumulative per friend) and `delivered` (per message, first device
 * wins), docs/protocol.md "Catch-up, history, unread, receipts". A receipt is
 * stored first and announced only when the store changed something, so each
 * reaches its sockets once; when storage fails the client is told
 * `unavailable` and nothing is announced. The other user is told only while
 * the two are friends and neither blocked the other: a block hides receipts
 * both ways, as it hides chat, typing and presence.
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
  if (await mayTell(ctx, frame.friendUserId)) ctx.sendToUser(frame.friendUserId, receipt, false);
  ctx.sendToOtherDevices(receipt);
}

async function delivered(ctx: HandlerContext, frame: DeliveredFrame): Promise<Reply> {
  const result = await ctx.services.repository.markDelivered(ctx.userId, frame.messageId);
  if (result.status === "not_recipient") {
    return refuse("invalid_field", "message_id does not name a message addressed to you");
  }
  if (result.status === "first" && await mayTell(ctx, result.senderUserId)) {
    ctx.sendToUser(
      result.senderUserId,
      serverFrames.delivered(frame.messageId, ctx.userId),
      false,
    );
  }
}

/**
 * Whether `otherUserId` may be told of this user's receipt: friends, neither
 * blocked (the relation check of chat, as stale as 5 s). The receipt is
 * stored already, so a check the database fails tells no one and the frame
 * still succeeds (the failure is logged by the repository).
 */
async function mayTell(ctx: HandlerContext, otherUserId: number): Promise<boolean> {
  try {
    return (await ctx.services.repository.relation(ctx.userId, otherUserId)) === "ok";
  } catch {
    return false;
  }
}
