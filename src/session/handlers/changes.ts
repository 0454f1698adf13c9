/**
 * @module session/handlers/changes
 * `edit_message` and `delete_message` (docs/protocol.md, "Editing and
 * deleting"): the store checks and makes the change in one transaction and
 * numbers its update for each user who gets it; the frames follow the
 * commit. An edit's new text passes the moderation hook first, when one is
 * configured (only an edit the store would make; a rejected edit leaves the
 * old text, and a replacement is stored as `moderation = 'replaced'`). A change that changed nothing is answered to the asking
 * connection alone, without `seq`.
 */

import type { DeleteMessageFrame, EditMessageFrame } from "../../protocol/mod.ts";
import { serverFrames } from "../../protocol/mod.ts";
import type { ChangeResult, MessageRecord } from "../../store/mod.ts";
import { type FrameHandler, type HandlerContext, refuse, type Reply } from "../context.ts";

export const changeHandlers: {
  edit_message: FrameHandler<EditMessageFrame>;
  delete_message: FrameHandler<DeleteMessageFrame>;
} = {
  edit_message: { auth: true, db: true, handle: editMessage },
  delete_message: { auth: true, db: true, handle: deleteMessage },
};

const NOT_FOUND = "Message not found";

async function editMessage(ctx: HandlerContext, frame: EditMessageFrame): Promise<Reply> {
  if (!ctx.allowChat()) return refuse("rate_limited", "Too many messages, slow down");
  const { repository, moderator } = ctx.services;
  let text = frame.messageText;
  let moderation: "replaced" | "unchecked" | undefined;
  if (moderator !== undefined) {
    // The hook sees only an edit that could be made: the refusals come first,
    // as the store would give them (it checks again when it edits).
    const current = await repository.messageFor(ctx.userId, frame.messageId);
    const refusal = editRefusal(ctx, current);
    if (refusal !== undefined) return refusal;
    if (current!.messageText === text) {
      return answer(ctx, { status: "unchanged", message: current! });
    }
    const outcome = await moderator.review({
      kind: "edit",
      messageId: frame.messageId,
      senderUserId: ctx.userId,
      recipientUserId: current!.recipientUserId,
      messageText: text,
    });
    if (outcome.kind === "reject") return refuse("moderated", outcome.reason);
    if (outcome.kind === "unavailable") {
      return refuse("unavailable", "Moderation is unavailable, try again");
    }
    text = outcome.text;
    moderation = outcome.moderation;
  }
  const result = await repository.editMessage(
    ctx.userId,
    frame.messageId,
    text,
    ctx.limits.editWindowS,
    moderation,
  );
  return answer(ctx, result);
}

/** The refusal of an edit of `message` (as `messageFor` read it), if any. */
function editRefusal(ctx: HandlerContext, message: MessageRecord | undefined): Reply {
  if (message === undefined || message.senderUserId !== ctx.userId) {
    return refuse("not_found", NOT_FOUND);
  }
  if (message.deletedAt !== undefined) {
    return refuse("message_deleted", "This message was deleted");
  }
  const windowMs = ctx.limits.editWindowS * 1000;
  if (windowMs <= 0 || ctx.services.now() > message.sentAt.getTime() + windowMs) {
    return refuse("edit_window_passed", "The time to edit this message has passed");
  }
}

async function deleteMessage(ctx: HandlerContext, frame: DeleteMessageFrame): Promise<Reply> {
  if (!ctx.allowChat()) return refuse("rate_limited", "Too many messages, slow down");
  const result = await ctx.services.repository.deleteMessage(
    ctx.userId,
    frame.messageId,
    frame.scope,
  );
  return answer(ctx, result);
}

/** The refusal, or the frames of the change: each user's connections get their own seq. */
function answer(ctx: HandlerContext, result: ChangeResult): Reply {
  switch (result.status) {
    case "not_found":
      return refuse("not_found", NOT_FOUND);
    case "edit_window_passed":
      return refuse("edit_window_passed", "The time to edit this message has passed");
    case "message_deleted":
      return refuse("message_deleted", "This message was deleted");
    case "unchanged":
      ctx.send(serverFrames.messageUpdated(result.message));
      return;
    case "changed": {
      for (const [userId, seq] of result.seqs) {
        const frame = serverFrames.messageUpdated(result.message, seq);
        if (userId === ctx.userId) {
          ctx.send(frame);
          ctx.sendToOtherDevices(frame);
        } else {
          ctx.sendToUser(userId, frame, false);
        }
      }
    }
  }
}
