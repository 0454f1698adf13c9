/**
 * @module session/handlers/catch_up
 * `sync` (v1.2: the user's updates after a seq; v1.1: messages after an id)
 * and `history` (one conversation, newest first), docs/protocol.md
 * "Updates" and "Catch-up, history, unread, receipts".
 * Both read only the user's own messages, so they need no friendship: a
 * former friend's conversation stays readable.
 *
 * A page is cut to `PAGE_MAX_BYTES` as well as to `limit` (docs/protocol.md
 * "Catch-up"): a page of escape-heavy texts can serialize to several times
 * its stored size, and one frame must not fill the send buffer on its own.
 * And a user's pages are paced to their page allowance (`CATCH_UP_BYTES_PER_S`,
 * `user_work.ts`): a page is read only once the pages sent before it are paid for.
 */

import type { HistoryFrame, SyncFrame } from "../../protocol/mod.ts";
import { serverFrames } from "../../protocol/mod.ts";
import type { FrameHandler, HandlerContext } from "../context.ts";

export const catchUpHandlers: {
  sync: FrameHandler<SyncFrame>;
  history: FrameHandler<HistoryFrame>;
} = {
  sync: { auth: true, db: true, handle: sync },
  history: { auth: true, db: true, handle: history },
};

async function sync(ctx: HandlerContext, frame: SyncFrame): Promise<void> {
  await ctx.pacePages();
  if (frame.afterSeq !== undefined) {
    const updates = await ctx.services.repository.updatesAfter(
      ctx.userId,
      frame.afterSeq,
      frame.limit,
    );
    ctx.sendPage(
      serverFrames.syncUpdates(
        updates.updates,
        updates.hasMore,
        updates.seq,
        ctx.limits.pageMaxBytes,
      ),
    );
    return;
  }
  const page = await ctx.services.repository.messagesAfter(
    ctx.userId,
    frame.afterMessageId,
    frame.limit,
  );
  ctx.sendPage(serverFrames.syncResult(page.messages, page.hasMore, ctx.limits.pageMaxBytes));
}

async function history(ctx: HandlerContext, frame: HistoryFrame): Promise<void> {
  await ctx.pacePages();
  const page = await ctx.services.repository.conversationBefore(
    ctx.userId,
    frame.friendUserId,
    frame.beforeMessageId,
    frame.limit,
  );
  ctx.sendPage(
    serverFrames.historyResult(
      frame.friendUserId,
      page.messages,
      page.hasMore,
      ctx.limits.pageMaxBytes,
    ),
  );
}
