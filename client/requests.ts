/**
 * @module requests
 * The client's requests waiting for their answer, oldest first, each with a deadline; re-sent after
 * a reconnect: `history` (answered by `history_result`, matched by friend) and, v1.2,
 * `edit_message` / `delete_message` (answered by the editing connection's `message_updated`,
 * matched by message id; a repeated edit or deletion changes nothing, so re-sending one is safe).
 * All runtime code lives inside the class (the demo page embeds its source; see README.md, "Using
 * it without a build step").
 */

import type { Timers } from "./options.ts";
import { ChatSendError } from "./errors.ts";

/** `history` (keyed by friend id) or `update`, an edit or deletion (keyed by message id). */
export type ChatRequestKind = "history" | "update";

interface Pending {
  kind: ChatRequestKind;
  key: number;
  frame: string;
  timer: unknown;
  resolve(result: never): void;
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

  /** Registers a request's frame; rejects with `timeout` after the deadline. */
  add<T>(kind: ChatRequestKind, key: number, frame: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const pending: Pending = {
        kind,
        key,
        frame,
        timer: undefined,
        resolve,
        reject,
      };
      pending.timer = this.#timers.setTimeout(() => {
        this.#settle(pending)?.reject(
          new ChatSendError(
            "timeout",
            `No ${
              kind === "history" ? "history_result" : "message_updated"
            } within ${this.#timeoutMs} ms`,
            "",
          ),
        );
      }, this.#timeoutMs);
      this.#pending.push(pending);
    });
  }

  /** Resolves the oldest request of `kind` for `key` (a friend id, a message id) with `result`. */
  answer<T>(kind: ChatRequestKind, key: number, result: T): void {
    const pending = this.#pending.find((p) => p.kind === kind && p.key === key);
    if (pending !== undefined) (this.#settle(pending)!.resolve as (result: T) => void)(result);
  }

  /**
   * Rejects the oldest request (of `kind`, when given) with a server refusal; false when none was
   * waiting.
   */
  failOldest(code: string, message: string, kind?: ChatRequestKind): boolean {
    const pending = this.#pending.find((p) => kind === undefined || p.kind === kind);
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
