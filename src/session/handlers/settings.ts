/**
 * @module session/handlers/settings
 * `settings` (docs/protocol.md, "Settings: mute, do-not-disturb, appear
 * offline, last seen"): the named settings change in one transaction that
 * also appends `settings_updated` to the user's update sequence; once
 * committed, every connection of the user on every node gets
 * `settings_updated`, and a change of `appear_offline` is announced to the
 * user's online friends as `offline` (with the moment it was switched on)
 * or `online`.
 *
 * Only a friend can be muted (`not_friends` otherwise, as for a message; a
 * friend either of the two blocked still can); unmuting (`until: null`) is
 * always accepted, so a mute outliving its friendship can be lifted.
 */

import type { SettingsFrame } from "../../protocol/mod.ts";
import { serverFrames, settingsData } from "../../protocol/mod.ts";
import { type FrameHandler, type HandlerContext, refuse, type Reply } from "../context.ts";

export const settingsHandlers: { settings: FrameHandler<SettingsFrame> } = {
  settings: { auth: true, db: true, handle: settings },
};

async function settings(ctx: HandlerContext, frame: SettingsFrame): Promise<Reply> {
  const { repository } = ctx.services;
  const { mute } = frame.change;
  if (mute !== undefined && mute.until !== null) {
    if (mute.friendUserId === ctx.userId) {
      return refuse("invalid_field", "mute.friend_user_id must not be your own id");
    }
    const relation = await repository.relation(ctx.userId, mute.friendUserId);
    if (relation === "not_friends") return refuse("not_friends", "You can only mute friends");
  }
  const update = await repository.updateSettings(ctx.userId, frame.change, settingsData);
  await ctx.hub.settingsChanged(
    ctx.userId,
    serverFrames.settingsUpdated(update.settings, update.seq),
    {
      appearOffline: update.settings.appearOffline,
      changed: update.appearOfflineChanged,
      lastSeenAt: update.lastSeenAt,
    },
  );
}
