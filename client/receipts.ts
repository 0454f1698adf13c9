/**
 * @module receipts
 * The `read` and `delivered` receipts this client still has to send. `read` is cumulative per
 * friend (the largest id wins); `delivered` goes out at most 10 per 500 ms, well below the
 * server's frame rate, so a long catch-up does not trip `rate_limited`. All runtime code lives
 * inside the class (the demo page embeds its source).
 */

import type { Timers } from "./options.ts";

/** Receipts waiting for a connection, or for their turn. */
export class ChatReceipts {
  readonly #reads = new Map<number, number>();
  readonly #delivered = new Set<number>();
  readonly #timers: Timers;
  #timer: unknown;

  constructor(timers: Timers) {
    this.#timers = timers;
  }

  read(friendId: number, upToMessageId: number): void {
    this.#reads.set(
      friendId,
      Math.max(upToMessageId, this.#reads.get(friendId) ?? 0),
    );
  }

  delivered(messageId: number): void {
    this.#delivered.add(messageId);
  }

  /**
   * Writes every `read` receipt and up to 10 `delivered` ones while `open()` holds; the other
   * `delivered` receipts follow, 10 every 500 ms.
   */
  flush(write: (frame: string) => void, open: () => boolean): void {
    if (!open()) return;
    for (const [friend, upTo] of this.#reads) {
      write(
        JSON.stringify({
          type: "read",
          friend_user_id: friend,
          up_to_message_id: upTo,
        }),
      );
    }
    this.#reads.clear();
    if (this.#timer !== undefined) return; // delivered receipts wait for their turn
    let sent = 0;
    for (const id of this.#delivered) {
      if (sent++ === 10) break;
      this.#delivered.delete(id);
      write(JSON.stringify({ type: "delivered", message_id: id }));
    }
    if (this.#delivered.size === 0) return;
    this.#timer = this.#timers.setTimeout(() => {
      this.#timer = undefined;
      this.flush(write, open);
    }, 500);
  }

  /** The connection is gone: stop pacing; what is left goes out after the next sign-in. */
  pause(): void {
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
