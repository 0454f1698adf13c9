/**
 * @module session/handlers/dispatch
 * The dispatch table: one handler per client frame type, each family's
 * module contributing its part. Adding a frame type touches
 * `protocol/client_frames.ts`, this table and one handler module.
 */

import type { ClientFrame } from "../../protocol/mod.ts";
import { serverFrames } from "../../protocol/mod.ts";
import type { FrameHandler } from "../context.ts";
import { catchUpHandlers } from "./catch_up.ts";
import { changeHandlers } from "./changes.ts";
import { chatHandlers } from "./chat.ts";
import { lifetimeHandlers } from "./lifetime.ts";
import { receiptHandlers } from "./receipts.ts";
import { reportHandlers } from "./reports.ts";
import { settingsHandlers } from "./settings.ts";

export type DispatchTable = {
  [T in ClientFrame["type"]]: FrameHandler<Extract<ClientFrame, { type: T }>>;
};

export const DISPATCH: DispatchTable = {
  ping: { auth: false, handle: (ctx) => ctx.send(serverFrames.pong()) },
  ...lifetimeHandlers,
  ...chatHandlers,
  ...catchUpHandlers,
  ...receiptHandlers,
  ...reportHandlers,
  ...settingsHandlers,
  ...changeHandlers,
};
