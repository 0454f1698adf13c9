/**
 * @module settings
 * The user's settings as the client knows them (from `authenticated`, then every
 * `settings_updated`, whichever device made the change), the friends' last seen times (from
 * `authenticated`, then `presence`), and the client's own `settings` changes waiting for the
 * server: each is answered by the first `settings_updated` that shows it applied (the frame
 * carries no request id, and another device's change may come first), or by a refusal, or
 * rejected `timeout`; unanswered ones are sent again after a reconnect (a change is idempotent).
 * All runtime code lives inside the class (the demo page embeds its source; see README.md,
 * "Using it without a build step").
 */

import type { Timers } from "./options.ts";
import { ChatSendError } from "./errors.ts";
import type { ChatSettings, PresenceFrame } from "./frames.ts";

/** What one `settings` frame asks for, in its wire form. */
export interface SettingsRequest {
  mute?: { friend_user_id: number; until: string | null };
  dnd_until?: string | null;
  appear_offline?: boolean;
}

interface Pending {
  request: SettingsRequest;
  frame: string;
  timer: unknown;
  resolve(settings: ChatSettings): void;
  reject(error: Error): void;
}

export class ChatSettingsRequests {
  readonly #pending: Pending[] = [];
  readonly #timers: Timers;
  readonly #timeoutMs: number;
  readonly #now: () => number;
  #settings: ChatSettings | undefined;
  readonly #lastSeen = new Map<number, string>();

  constructor(timers: Timers, timeoutMs: number, now: () => number) {
    this.#timers = timers;
    this.#timeoutMs = timeoutMs;
    this.#now = now;
  }

  /** The settings as last reported by the server; undefined before `authenticated`. */
  get settings(): ChatSettings | undefined {
    return this.#settings;
  }

  /** Friend id → when last seen (ISO 8601), for friends offline now, as far as known. */
  get lastSeen(): ReadonlyMap<number, string> {
    return this.#lastSeen;
  }

  /** The frames of every unanswered change, to (re)send on a new connection. */
  get frames(): string[] {
    return this.#pending.map((p) => p.frame);
  }

  /** Registers a change; resolves with the settings that show it, rejects `timeout`. */
  add(request: SettingsRequest): { frame: string; answer: Promise<ChatSettings> } {
    const frame = JSON.stringify({ type: "settings", ...request });
    const answer = new Promise<ChatSettings>((resolve, reject) => {
      const pending: Pending = { request, frame, timer: undefined, resolve, reject };
      pending.timer = this.#timers.setTimeout(() => {
        this.#settle(pending)?.reject(
          new ChatSendError("timeout", `No settings_updated within ${this.#timeoutMs} ms`, ""),
        );
      }, this.#timeoutMs);
      this.#pending.push(pending);
    });
    return { frame, answer };
  }

  /** `authenticated`: the settings and last seen times it carries (a v1.1 server has none). */
  signedIn(settings: ChatSettings | undefined, lastSeen: Record<string, string> | undefined): void {
    this.#settings = settings;
    this.#lastSeen.clear();
    for (const [id, at] of Object.entries(lastSeen ?? {})) this.#lastSeen.set(Number(id), at);
  }

  /** `settings_updated`: the new settings; resolves the changes they show applied. */
  updated(settings: ChatSettings): void {
    this.#settings = settings;
    for (const pending of [...this.#pending]) {
      if (this.#shows(settings, pending.request)) this.#settle(pending)!.resolve(settings);
    }
  }

  /** `presence`: a friend's last seen time is kept while they are offline. */
  presence(frame: PresenceFrame): void {
    if (frame.status === "online") this.#lastSeen.delete(frame.user_id);
    else if (frame.last_seen_at !== undefined) {
      this.#lastSeen.set(frame.user_id, frame.last_seen_at);
    }
  }

  /** Rejects the oldest change with a server refusal; false when none was waiting. */
  failOldest(code: string, message: string): boolean {
    const pending = this.#pending[0];
    if (pending === undefined) return false;
    this.#settle(pending)!.reject(new ChatSendError(code, message, ""));
    return true;
  }

  failAll(code: string, message: string): void {
    for (const pending of [...this.#pending]) {
      this.#settle(pending)!.reject(new ChatSendError(code, message, ""));
    }
  }

  /** Whether `settings` has every value `request` asked for (a time already past: none). */
  #shows(settings: ChatSettings, request: SettingsRequest): boolean {
    const live = (at: string | null) => at !== null && Date.parse(at) > this.#now() ? at : null;
    if (request.mute !== undefined) {
      const id = String(request.mute.friend_user_id);
      if ((settings.muted[id] ?? null) !== live(request.mute.until)) return false;
    }
    if (request.dnd_until !== undefined && settings.dnd_until !== live(request.dnd_until)) {
      return false;
    }
    return request.appear_offline === undefined ||
      settings.appear_offline === request.appear_offline;
  }

  #settle(pending: Pending): Pending | undefined {
    const index = this.#pending.indexOf(pending);
    if (index < 0) return undefined;
    this.#pending.splice(index, 1);
    this.#timers.clearTimeout(pending.timer);
    return pending;
  }
}
