/**
 * @module session/handlers/changes
 * `edit_message` and `delete_message` (docs/protocol.md, "Editing and
 * deleting"): the store checks and makes the change in one transaction and
 * numbers its update for each user who gets it; the frames follow the
 * commit. An edit's new text passes the moderation hook first, when one is
 * configured. A change that changed nothing is answered to the asking
 * connection alone, without `seq`.
 */

import type { DeleteMessageFrame, EditMessageFrame } from "../../protocol/mod.ts";
import { serverFrames } from "../../protocol/mod.ts";
import type { ChangeResult } from "../../store/mod.ts";
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
  const { repository } = ctx.services;
  const result = await repository.editMessage(
    ctx.userId,
    frame.messageId,
    frame.messageText,
    ctx.limits.editWindowS,
  );
  return answer(ctx, result);
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
