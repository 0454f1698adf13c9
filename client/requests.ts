/**
 * @module requests
 * The client's `history` requests waiting for their `history_result`: matched by friend, oldest
 * first, each with a deadline; re-sent after a reconnect. All runtime code lives inside the class
 * (the demo page embeds its source; see README.md, "Using it without a build step").
 */

import type { Timers } from "./options.ts";
import { ChatSendError } from "./errors.ts";
import type { HistoryResultFrame } from "./frames.ts";

interface Pending {
  friendId: number;
  frame: string;
  timer: unknown;
  resolve(result: HistoryResultFrame): void;
  reject(error: Error): void;
}

/** Unanswered requests in the order they were made. */
export class ChatRequests {
  readonly #pending: Pending[] = [];
  readonly #timers: Timers;
  readonly #timeoutMs: number;

  constructor(timers: Timers, timeoutMs: number) {
    this.#timers = timers;
    this.#timeoutMs = timeoutMs;
  }

  /** The frames of every unanswered request, to (re)send on a new connection. */
  get frames(): string[] {
    return this.#pending.map((p) => p.frame);
  }

  /** Registers the `history` frame for `friendId`; rejects with `timeout` after the deadline. */
  add(friendId: number, frame: string): Promise<HistoryResultFrame> {
    return new Promise((resolve, reject) => {
      const pending: Pending = {
        friendId,
        frame,
        timer: undefined,
        resolve,
        reject,
      };
      pending.timer = this.#timers.setTimeout(() => {
        this.#settle(pending)?.reject(
          new ChatSendError(
            "timeout",
            `No history_result within ${this.#timeoutMs} ms`,
            "",
          ),
        );
      }, this.#timeoutMs);
      this.#pending.push(pending);
    });
  }

  /** Resolves the oldest request for the result's friend. */
  answer(result: HistoryResultFrame): void {
    const pending = this.#pending.find((p) => p.friendId === result.friend_user_id);
    if (pending !== undefined) this.#settle(pending)!.resolve(result);
  }

  /** Rejects the oldest request with a server refusal; false when none was waiting. */
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

  /** Removes a request and its timer; returns it, or undefined if already settled. */
  #settle(pending: Pending): Pending | undefined {
    const index = this.#pending.indexOf(pending);
    if (index < 0) return undefined;
    this.#pending.splice(index, 1);
    this.#timers.clearTimeout(pending.timer);
    return pending;
  }
}
