/**
 * @module handlers/dispatch
 * The dispatch table: one handler per client frame type, each family's
 * module contributing its part. Adding a frame type touches `protocol.ts`,
 * this table and one handler module.
 */

import type { ClientFrame } from "../../protocol/mod.ts";
import { serverFrames } from "../../protocol/mod.ts";
import type { Session } from "../session.ts";
import { catchUpHandlers } from "./catch_up.ts";
import { chatHandlers } from "./chat.ts";
import { lifetimeHandlers } from "./lifetime.ts";
import { receiptHandlers } from "./receipts.ts";

/** How one frame type is handled: whether it needs authentication, and by what. */
export interface FrameHandler<F extends ClientFrame> {
  auth: boolean;
  handle(session: Session, frame: F): void | Promise<void>;
}

export type DispatchTable = {
  [T in ClientFrame["type"]]: FrameHandler<Extract<ClientFrame, { type: T }>>;
};

export const DISPATCH: DispatchTable = {
  ping: { auth: false, handle: (session) => session.send(serverFrames.pong(), false) },
  ...lifetimeHandlers,
  ...chatHandlers,
  ...catchUpHandlers,
  ...receiptHandlers,
};
