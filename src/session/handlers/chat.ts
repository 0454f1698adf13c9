/**
 * @module session/handlers/chat
 * `chat_message` and `typing` (docs/protocol.md, "Chat messages", "Typing"):
 * checks 5–8 (the shape checks 2–4 are `protocol/client_frames.ts`'s),
 * storing, and the fan-out that follows the commit.
 */

import type { ChatMessageFrame, TypingFrame } from "../../protocol/mod.ts";
import { messageData, serverFrames } from "../../protocol/mod.ts";
import type { StoreResult } from "../../store/mod.ts";
import {
  type FrameHandler,
  type HandlerContext,
  type Refusal,
  refuse,
  type Reply,
} from "../context.ts";

export const chatHandlers: {
  chat_message: FrameHandler<ChatMessageFrame>;
  typing: FrameHandler<TypingFrame>;
} = {
  chat_message: { auth: true, handle: chatMessage },
  typing: { auth: true, handle: typing },
};

async function chatMessage(ctx: HandlerContext, frame: ChatMessageFrame): Promise<Reply> {
  const cmid = frame.clientMessageId;
  const unreachable = await mayReach(ctx, frame.recipientUserId);
  if (unreachable) return unreachable;
  if (!ctx.allowChat()) return refuse("rate_limited", "Too many messages, slow down");
  if (ctx.draining) return refuse("unavailable", "Server is shutting down");
  const { services } = ctx;
  const started = services.now();
  // Queued now (keeping this connection's order), answered when committed.
  const answered = services.repository.storeMessage({
    senderUserId: ctx.userId,
    recipientUserId: frame.recipientUserId,
    messageText: frame.messageText,
    clientMessageId: cmid,
  }).then((result) => stored(ctx, result, started));
  ctx.track(answered, cmid);
}

function stored(
  ctx: HandlerContext,
  { message, duplicate, seqs }: StoreResult,
  started: number,
): void {
  const { services } = ctx;
  const frames = serverFrames.messageFrames(messageData(message));
  const senderSeq = seqs.get(message.senderUserId);
  if (!duplicate) {
    services.metrics.messageAcknowledged(services.now() - started);
    ctx.sendToUser(
      message.recipientUserId,
      frames.chatMessage(seqs.get(message.recipientUserId)),
      false,
    );
    ctx.sendToOtherDevices(frames.chatMessage(senderSeq));
  }
  ctx.send(frames.messageSent(senderSeq));
}

async function typing(ctx: HandlerContext, frame: TypingFrame): Promise<Reply> {
  const unreachable = await mayReach(ctx, frame.recipientUserId);
  if (unreachable) return unreachable;
  if (!ctx.allowTyping()) return; // over the typing rate: dropped without an answer
  // Appearing offline: friends see no typing, as from a user with no connection.
  if (ctx.hub.appearsOffline(ctx.userId)) return;
  ctx.sendToUser(frame.recipientUserId, serverFrames.typing(ctx.userId, frame.isTyping), true);
  ctx.services.typing.relayed(ctx.userId, frame.recipientUserId, frame.isTyping);
}

/** Checks 5, 6 and 7: the refusal when one fails. */
async function mayReach(
  ctx: HandlerContext,
  recipientUserId: number,
): Promise<Refusal | undefined> {
  if (recipientUserId === ctx.userId) {
    return refuse("invalid_recipient", "You cannot message yourself");
  }
  const relation = await ctx.services.repository.relation(ctx.userId, recipientUserId);
  if (relation === "not_friends") return refuse("not_friends", "You can only message friends");
  if (relation === "blocked") return refuse("forbidden", "Cannot send message to this user");
}
