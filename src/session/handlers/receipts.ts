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
  const result = await ctx.services.repository.markRead(
    ctx.userId,
    frame.friendUserId,
    frame.upToMessageId,
  );
  if (result === undefined) return; // nothing changed: nothing sent
  const receipt = (seq: number | undefined) =>
    serverFrames.read(ctx.userId, frame.friendUserId, frame.upToMessageId, result.readAt, seq);
  // The friend's sequence holds the receipt only while the two may see each
  // other (the store checks it), and then the friend is told live too.
  const friendSeq = result.seqs.get(frame.friendUserId);
  if (friendSeq !== undefined && await mayTell(ctx, frame.friendUserId)) {
    ctx.sendToUser(frame.friendUserId, receipt(friendSeq), false);
  }
  // Every connection of the reader, this one too: it is an update of the
  // reader's sequence, and a device that never saw its number would take the
  // next one for a gap.
  const own = receipt(result.seqs.get(ctx.userId));
  ctx.send(own);
  ctx.sendToOtherDevices(own);
}

async function delivered(ctx: HandlerContext, frame: DeliveredFrame): Promise<Reply> {
  const result = await ctx.services.repository.markDelivered(ctx.userId, frame.messageId);
  if (result.status === "not_recipient") {
    return refuse("invalid_field", "message_id does not name a message addressed to you");
  }
  if (result.status !== "first") return;
  const senderSeq = result.seqs.get(result.senderUserId);
  if (senderSeq !== undefined && await mayTell(ctx, result.senderUserId)) {
    ctx.sendToUser(
      result.senderUserId,
      serverFrames.delivered(frame.messageId, ctx.userId, senderSeq),
      false,
    );
  }
  // Every device of the recipient learns it was shown (the others stop showing
  // it as new, v1.2), this one too: it is an update of the recipient's sequence.
  const own = serverFrames.delivered(frame.messageId, ctx.userId, result.seqs.get(ctx.userId));
  ctx.send(own);
  ctx.sendToOtherDevices(own);
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
