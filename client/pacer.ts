/**
 * @module pacer
 * When the next chat message may go out: a token bucket that mirrors the server's chat rate for
 * this connection, from `authenticated.limits` (docs/protocol.md, "Limits"), so that the client
 * waits instead of being refused `rate_limited`. All runtime code lives inside the class (the demo
 * page embeds its source; see README.md, "Using it without a build step").
 */

import type { ChatLimits } from "./frames.ts";

/** The client's copy of a connection's chat bucket. */
export class ChatPacer {
  readonly #now: () => number;
  /** Unknown limits (a server before v1.2): no pacing of our own. */
  #limited = false;
  #capacity = 1;
  #ratePerS = 1;
  #tokens = 1;
  /** When `#tokens` was counted; in the future while a refusal's `retry_after_ms` runs. */
  #last = 0;

  constructor(now: () => number) {
    this.#now = now;
  }

  /**
   * A new session, whose buckets on the server are full. The chat rate counts against the frame
   * rate too, so the lower of each applies; one token is kept in hand, so that messages that
   * reach the server closer together than they left (network jitter up to one token's time) are
   * not refused.
   */
  reset(limits: ChatLimits | undefined): void {
    const valid = (n: unknown): n is number => typeof n === "number" && n > 0;
    this.#limited = limits !== undefined && valid(limits.chat_per_s) &&
      valid(limits.chat_burst) && valid(limits.frames_per_s);
    if (limits !== undefined && this.#limited) {
      this.#ratePerS = Math.min(limits.chat_per_s, limits.frames_per_s);
      this.#capacity = Math.max(1, Math.min(limits.chat_burst, limits.frames_per_s) - 1);
    }
    this.#tokens = this.#capacity;
    this.#last = this.#now();
  }

  /** Milliseconds until the next message may go; 0 when it may go now. */
  wait(): number {
    const now = this.#now();
    if (now < this.#last) return Math.ceil(this.#last - now);
    if (!this.#limited) return 0;
    this.#refill(now);
    if (this.#tokens >= 1) return 0;
    return Math.ceil(((1 - this.#tokens) / this.#ratePerS) * 1000);
  }

  /** A message goes out now (after `wait()` said 0). */
  take(): void {
    this.#refill(this.#now());
    if (this.#limited) this.#tokens -= 1;
  }

  /** The server refused a message for its rate: nothing goes before `retryAfterMs` from now. */
  refused(retryAfterMs: number): void {
    this.#tokens = Math.min(1, this.#capacity);
    this.#last = this.#now() + Math.max(0, retryAfterMs);
  }

  #refill(now: number): void {
    if (now <= this.#last) return;
    this.#tokens = Math.min(
      this.#capacity,
      this.#tokens + ((now - this.#last) / 1000) * this.#ratePerS,
    );
    this.#last = now;
  }
}
