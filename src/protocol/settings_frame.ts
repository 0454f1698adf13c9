/**
 * @module protocol/settings_frame
 * The shape checks of the `settings` frame (docs/protocol.md, "Settings"),
 * part of `client_frames.ts`'s parsing: a change to at least one of `mute`,
 * `dnd_until`, `appear_offline`, each well formed.
 */

import type { SettingsChange } from "../store/mod.ts";

/** `settings` (v1.2): changes the named settings only. */
export interface SettingsFrame {
  type: "settings";
  change: SettingsChange;
}

/** A refused `settings` frame: its error code and message. */
export interface SettingsFrameError {
  code: "missing_fields" | "invalid_field";
  message: string;
}

/**
 * An ISO 8601 date and time with its offset (`2026-11-25T10:00:00Z`,
 * `…:00.123+01:00`): a time without an offset would mean the server's zone.
 */
const ISO_TIME =
  /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(?:Z|[+-](\d{2}):(\d{2}))$/;

/** Validates the fields of a `settings` frame (`value.type` is `"settings"`). */
export function parseSettings(value: Record<string, unknown>): SettingsFrame | SettingsFrameError {
  const change: SettingsChange = {};
  if (
    value.mute === undefined && value.dnd_until === undefined &&
    value.appear_offline === undefined
  ) {
    return missing("mute, dnd_until or appear_offline is required");
  }
  if (value.mute !== undefined) {
    const mute = value.mute;
    if (typeof mute !== "object" || mute === null || Array.isArray(mute)) {
      return invalid("mute must be an object {friend_user_id, until}");
    }
    const { friend_user_id: friend, until } = mute as Record<string, unknown>;
    if (friend === undefined || friend === null || until === undefined) {
      return missing("mute needs friend_user_id and until");
    }
    const friendUserId = positiveId(friend);
    if (friendUserId === undefined) {
      return invalid("mute.friend_user_id must be a positive integer");
    }
    const at = until === null ? null : isoTime(until);
    if (at === undefined) {
      return invalid("mute.until must be an ISO 8601 time with offset, or null");
    }
    change.mute = { friendUserId, until: at };
  }
  if (value.dnd_until !== undefined) {
    const at = value.dnd_until === null ? null : isoTime(value.dnd_until);
    if (at === undefined) return invalid("dnd_until must be an ISO 8601 time with offset, or null");
    change.dndUntil = at;
  }
  if (value.appear_offline !== undefined) {
    if (typeof value.appear_offline !== "boolean") {
      return invalid("appear_offline must be a boolean");
    }
    change.appearOffline = value.appear_offline;
  }
  return { type: "settings", change };
}

/** A time given as ISO 8601 with an offset, years 1970–9999; undefined when not one. */
function isoTime(value: unknown): Date | undefined {
  const parts = typeof value === "string" ? ISO_TIME.exec(value) : null;
  if (parts === null) return undefined;
  const [year, month, day, hour, minute, second, offsetH, offsetM] = parts.slice(1).map((p) =>
    p === undefined ? 0 : Number(p)
  ) as number[];
  // Date.parse rolls a day that does not exist over into the next month: refused here.
  const daysInMonth = new Date(Date.UTC(year!, month!, 0)).getUTCDate();
  if (
    month! < 1 || month! > 12 || day! < 1 || day! > daysInMonth || hour! > 23 ||
    minute! > 59 || second! > 59 || offsetH! > 23 || offsetM! > 59
  ) return undefined;
  const ms = Date.parse(value as string);
  if (Number.isNaN(ms) || ms < 0 || ms >= Date.UTC(10000, 0, 1)) return undefined;
  return new Date(ms);
}

/** A positive safe integer, as a JSON number or a canonical decimal string (as `parseUserId`). */
function positiveId(value: unknown): number | undefined {
  if (typeof value === "string" && /^[1-9][0-9]{0,15}$/.test(value)) value = Number(value);
  return typeof value === "number" && Number.isSafeInteger(value) && value > 0 ? value : undefined;
}

function missing(message: string): SettingsFrameError {
  return { code: "missing_fields", message };
}

function invalid(message: string): SettingsFrameError {
  return { code: "invalid_field", message };
}
