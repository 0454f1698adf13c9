/**
 * @module refresh
 * When the client refreshes its token: `refreshBeforeMs` before `session_expires_at` (halfway
 * there when the session is shorter), and after a failed refresh halfway to the expiry again
 * while at least 2 s are left. All runtime code lives inside the class (the demo page embeds its
 * source).
 */

import type { Timers } from "./options.ts";

/** One timer that calls `run` when the token should be refreshed. */
export class ChatRefreshTimer {
  readonly #timers: Timers;
  readonly #now: () => number;
  readonly #beforeMs: number;
  readonly #run: () => void;
  #timer: unknown;
  #expiresAt: number | undefined;

  constructor(timers: Timers, now: () => number, beforeMs: number, run: () => void) {
    this.#timers = timers;
    this.#now = now;
    this.#beforeMs = beforeMs;
    this.#run = run;
  }

  /** Plans the refresh of a session ending at `expiresAt` (ISO 8601; none when absent). */
  schedule(expiresAt: string | undefined): void {
    this.stop();
    const at = expiresAt === undefined ? NaN : Date.parse(expiresAt);
    this.#expiresAt = Number.isNaN(at) ? undefined : at;
    if (this.#expiresAt === undefined) return;
    const remaining = this.#expiresAt - this.#now();
    const delay = remaining > this.#beforeMs
      ? remaining - this.#beforeMs
      : Math.max(0, remaining / 2);
    this.#start(Math.min(delay, 2_147_483_647));
  }

  /** After a failed refresh: try again halfway to the expiry, while there is time left. */
  retry(): void {
    if (this.#expiresAt === undefined) return;
    const remaining = this.#expiresAt - this.#now();
    if (remaining >= 2000) this.#start(remaining / 2);
  }

  stop(): void {
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #start(ms: number): void {
    this.stop();
    this.#timer = this.#timers.setTimeout(() => {
      this.#timer = undefined;
      this.#run();
    }, ms);
  }
}
