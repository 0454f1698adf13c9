/**
 * @module session/handlers/chat
 * `chat_message` and `typing` (docs/protocol.md, "Chat messages", "Typing"):
 * checks 5–8 (the shape checks 2–4 are `protocol/client_frames.ts`'s), the
 * moderation hook when one is configured ("Moderation hook"), storing, and
 * the fan-out that follows the commit.
 */

import type { Moderator } from "../../moderation/mod.ts";
import type { ChatMessageFrame, TypingFrame } from "../../protocol/mod.ts";
import { messageData, serverFrames } from "../../protocol/mod.ts";
import type { StoreResult } from "../../store/mod.ts";
import {
  type Checked,
  type FrameHandler,
  type HandlerContext,
  Refusal,
  refuse,
  type Reply,
} from "../context.ts";
import type { Turn } from "../send_order.ts";

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
  if (services.moderator !== undefined) {
    ctx.track(moderatedSend(ctx, services.moderator, frame, started), cmid);
    return;
  }
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

/**
 * A message through the moderation hook. Its turn among the sender's
 * messages to that friend is taken now, in the order sent (`send_order.ts`);
 * a repeat of a message being checked on this node waits for that one's
 * outcome; a repeat of a stored one is answered from its row; the hook is
 * called at most once per message.
 */
function moderatedSend(
  ctx: HandlerContext,
  moderator: Moderator,
  frame: ChatMessageFrame,
  started: number,
): Promise<Reply> {
  const { sendOrder } = ctx.services;
  const { recipientUserId, messageText, clientMessageId: cmid } = frame;
  const turn = sendOrder.take(ctx.userId, recipientUserId);
  const first = cmid === undefined
    ? undefined
    : sendOrder.checking(ctx.userId, cmid, recipientUserId, messageText);
  let checked: Promise<Checked>;
  if (first !== undefined) {
    turn.done();
    checked = first.then((c) => c instanceof Refusal ? c : { ...c, duplicate: true });
  } else {
    checked = checkAndStore(ctx, moderator, frame, turn).finally(() => turn.done());
    if (cmid !== undefined) {
      sendOrder.check(ctx.userId, cmid, recipientUserId, messageText, checked);
    }
  }
  return checked.then((c) => c instanceof Refusal ? c : stored(ctx, c, started));
}

async function checkAndStore(
  ctx: HandlerContext,
  moderator: Moderator,
  frame: ChatMessageFrame,
  turn: Turn,
): Promise<Checked> {
  const { repository } = ctx.services;
  const { recipientUserId, messageText, clientMessageId: cmid } = frame;
  if (cmid !== undefined) {
    // Stored before: the store answers the repeat from its row (or refuses a
    // reuse of the id for another message), and the hook is not asked again.
    const earlier = await repository.messageByClientId(ctx.userId, cmid);
    if (earlier !== undefined) {
      return await repository.storeMessage({
        senderUserId: ctx.userId,
        recipientUserId,
        messageText,
        clientMessageId: cmid,
      });
    }
  }
  const outcome = await moderator.review({
    kind: "new",
    senderUserId: ctx.userId,
    recipientUserId,
    messageText,
    ...(cmid === undefined ? {} : { clientMessageId: cmid }),
  });
  if (outcome.kind === "reject") return refuse("moderated", outcome.reason);
  if (outcome.kind === "unavailable") {
    return refuse("unavailable", "The message could not be checked, try again");
  }
  await turn.ready;
  const storing = repository.storeMessage({
    senderUserId: ctx.userId,
    recipientUserId,
    messageText: outcome.text,
    clientMessageId: cmid,
    ...(outcome.moderation === undefined ? {} : { moderation: outcome.moderation }),
  });
  turn.done(); // queued: the writer commits in queue order
  return await storing;
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
