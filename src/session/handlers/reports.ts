/**
 * @module session/handlers/reports
 * `report` (docs/protocol.md, "Reports"): a player reports a message they
 * sent or received; it is stored once per (reporter, message) with a
 * snapshot of the conversation around it, and answered `report_received`.
 * A message that does not exist and one the player is not part of get the
 * same `not_found`.
 */

import type { ReportFrame } from "../../protocol/mod.ts";
import { serverFrames } from "../../protocol/mod.ts";
import { type FrameHandler, type HandlerContext, refuse, type Reply } from "../context.ts";

export const reportHandlers: { report: FrameHandler<ReportFrame> } = {
  report: { auth: true, db: true, handle: report },
};

async function report(ctx: HandlerContext, frame: ReportFrame): Promise<Reply> {
  const result = await ctx.services.repository.reportMessage({
    reporterUserId: ctx.userId,
    messageId: frame.messageId,
    reason: frame.reason,
    note: frame.note,
  });
  if (result.status === "not_found") return refuse("not_found", "Message not found");
  if (result.created) {
    ctx.services.logger.info("message_reported", {
      report_id: result.reportId,
      reporter_user_id: ctx.userId,
      message_id: frame.messageId,
      reason: frame.reason,
    });
  }
  ctx.send(serverFrames.reportReceived(result.reportId));
}
