/**
 * @module handlers/catch_up
 * `sync` (catch-up by id, oldest first) and `history` (one conversation,
 * newest first), PROTOCOL.md v1.1. Both read only the user's own messages,
 * so they need no friendship: a former friend's conversation stays readable.
 */

import type { HistoryFrame, SyncFrame } from "../../protocol/mod.ts";
import { serverFrames } from "../../protocol/mod.ts";
import { UnavailableError } from "../../store/mod.ts";
import type { Session } from "../session.ts";
import type { FrameHandler } from "./dispatch.ts";

export const catchUpHandlers: {
  sync: FrameHandler<SyncFrame>;
  history: FrameHandler<HistoryFrame>;
} = {
  sync: { auth: true, handle: sync },
  history: { auth: true, handle: history },
};

async function sync(session: Session, frame: SyncFrame): Promise<void> {
  await answer(session, async () => {
    const page = await session.ctx.repository.messagesAfter(
      session.userId,
      frame.afterMessageId,
      frame.limit,
    );
    return serverFrames.syncResult(page.messages, page.hasMore);
  });
}

async function history(session: Session, frame: HistoryFrame): Promise<void> {
  await answer(session, async () => {
    const page = await session.ctx.repository.conversationBefore(
      session.userId,
      frame.friendUserId,
      frame.beforeMessageId,
      frame.limit,
    );
    return serverFrames.historyResult(frame.friendUserId, page.messages, page.hasMore);
  });
}

/** Sends what `read` builds, or `unavailable` when storage does not answer in time. */
async function answer(session: Session, read: () => Promise<string>): Promise<void> {
  let frame;
  try {
    frame = await read();
  } catch (err) {
    if (!(err instanceof UnavailableError)) throw err;
    return session.unavailable();
  }
  session.send(frame, false);
}
