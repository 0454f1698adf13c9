/**
 * @module handlers/chat
 * `chat_message` and `typing` (PROTOCOL.md, "Chat messages", "Typing"):
 * checks 5–8 (the shape checks 2–4 are `protocol.ts`'s), storing, and the
 * fan-out that follows the commit.
 */

import { errorMessage } from "../../log.ts";
import type { ChatMessageFrame, TypingFrame } from "../../protocol/mod.ts";
import { serverFrames } from "../../protocol/mod.ts";
import { ClientMessageIdReusedError, type StoreResult, UnavailableError } from "../../store/mod.ts";
import { messageData } from "../../protocol/mod.ts";
import type { Session } from "../session.ts";
import type { FrameHandler } from "./dispatch.ts";

export const chatHandlers: {
  chat_message: FrameHandler<ChatMessageFrame>;
  typing: FrameHandler<TypingFrame>;
} = {
  chat_message: { auth: true, handle: chatMessage },
  typing: { auth: true, handle: typing },
};

async function chatMessage(session: Session, frame: ChatMessageFrame): Promise<void> {
  const cmid = frame.clientMessageId;
  if (!(await mayReach(session, frame.recipientUserId, cmid))) return;
  if (!session.allowChat(cmid)) return;
  if (session.draining) return session.sendError("unavailable", "Server is shutting down", cmid);
  const { ctx } = session;
  const started = ctx.now();
  // Queued now (keeping this connection's order), answered when committed.
  session.track(
    ctx.repository.storeMessage({
      senderUserId: session.userId,
      recipientUserId: frame.recipientUserId,
      messageText: frame.messageText,
      clientMessageId: cmid,
    }).then(
      (result) => stored(session, result, started),
      (err) => {
        if (err instanceof UnavailableError) return session.unavailable(cmid);
        if (err instanceof ClientMessageIdReusedError) {
          return session.sendError(
            "invalid_field",
            "client_message_id was already used for another message",
            cmid,
          );
        }
        ctx.logger.error("store_failed", { user_id: session.userId, error: errorMessage(err) });
        session.sendError("internal", "Internal error", cmid);
      },
    ),
  );
}

function stored(session: Session, { message, duplicate }: StoreResult, started: number): void {
  const { ctx } = session;
  const frames = serverFrames.messageFrames(messageData(message));
  if (!duplicate) {
    ctx.metrics.messageAcknowledged(ctx.now() - started);
    ctx.hub.sendToUser(message.recipientUserId, frames.chatMessage, false);
    ctx.hub.sendToUser(message.senderUserId, frames.chatMessage, false, session);
  }
  session.send(frames.messageSent, false);
}

async function typing(session: Session, frame: TypingFrame): Promise<void> {
  if (!(await mayReach(session, frame.recipientUserId, undefined))) return;
  if (!session.allowTyping()) return; // over the typing rate: dropped without an answer
  const { hub, typing } = session.ctx;
  hub.sendToUser(frame.recipientUserId, serverFrames.typing(session.userId, frame.isTyping), true);
  typing.relayed(session.userId, frame.recipientUserId, frame.isTyping);
}

/** Checks 5, 6 and 7; answers the frame and returns false when one fails. */
async function mayReach(
  session: Session,
  recipientUserId: number,
  cmid: string | undefined,
): Promise<boolean> {
  if (recipientUserId === session.userId) {
    session.sendError("invalid_recipient", "You cannot message yourself", cmid);
    return false;
  }
  let relation;
  try {
    relation = await session.ctx.repository.relation(session.userId, recipientUserId);
  } catch (err) {
    if (!(err instanceof UnavailableError)) throw err;
    session.unavailable(cmid);
    return false;
  }
  if (relation === "not_friends") {
    session.sendError("not_friends", "You can only message friends", cmid);
  }
  if (relation === "blocked") {
    session.sendError("forbidden", "Cannot send message to this user", cmid);
  }
  return relation === "ok";
}
