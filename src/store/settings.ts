/**
 * @module store/settings
 * A user's settings (docs/protocol.md, "Settings: mute, do-not-disturb, appear
 * offline, last seen"), as the repository reads and changes them: the types
 * only; `postgres/settings_queries.ts` and `memory.ts` implement them.
 */

/** A user's settings now: expired mutes and do-not-disturb left out. */
export interface UserSettings {
  /** Friend id → until when that friend is muted. */
  muted: Map<number, Date>;
  /** Until when the user is in do-not-disturb; undefined when not. */
  dndUntil: Date | undefined;
  /** Friends see the user as if they had no connection. */
  appearOffline: boolean;
}

/** What one `settings` frame changes; a field left out keeps its value. */
export interface SettingsChange {
  /** `until: null` (or a time already past) unmutes. */
  mute?: { friendUserId: number; until: Date | null };
  /** `null` ends do-not-disturb. */
  dndUntil?: Date | null;
  appearOffline?: boolean;
}

/** The outcome of `updateSettings`, once committed. */
export interface SettingsUpdate {
  settings: UserSettings;
  /** The change's number in the user's update sequence (`settings_updated`). */
  seq: number | undefined;
  /** `appear_offline` changed value (friends are to be told). */
  appearOfflineChanged: boolean;
  /** The user's last seen time as stored after the change (set now when appearing offline). */
  lastSeenAt: Date | undefined;
}

/** What a friend's `authenticated` may show of a user: hidden, and when last seen. */
export interface SeenState {
  appearOffline: boolean;
  /** When the user's last connection closed, or when they started to appear offline. */
  lastSeenAt: Date | undefined;
}

/** The user's settings after `change`, for its stored update body (`settings_updated`). */
export type SettingsBody = (settings: UserSettings) => unknown;
