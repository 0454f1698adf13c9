/**
 * @module requests
 * The client's requests waiting for their answer, each with a deadline, re-sent after a
 * reconnect: `history` waiting for its `history_result` (matched by friend, oldest first), and
 * `report` (v1.2) waiting for its `report_received` (oldest first; the server stores a report once
 * per message, so sending it again is safe). All runtime code lives inside the class
 * (the demo page embeds its source; see README.md, "Using it without a build step").
 */

import type { Timers } from "./options.ts";
import { ChatSendError } from "./errors.ts";
import type { HistoryResultFrame, ReportReceivedFrame } from "./frames.ts";

interface Pending {
  kind: "history" | "report";
  /** `history`: the friend; 0 for a report. */
  friendId: number;
  frame: string;
  timer: unknown;
  /** `history`: the `history_result`; `report`: the report's id. */
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

  /** Registers the `history` frame for `friendId`; rejects with `timeout` after the deadline. */
  add(friendId: number, frame: string): Promise<HistoryResultFrame> {
    return this.#add("history", friendId, frame);
  }

  /** Registers a `report` frame; resolves with the report's id, rejects like `add`. */
  addReport(frame: string): Promise<number> {
    return this.#add("report", 0, frame);
  }

  #add<T>(kind: Pending["kind"], friendId: number, frame: string): Promise<T> {
    const what = kind === "history" ? "history_result" : "report_received";
    return new Promise<T>((resolve, reject) => {
      const pending: Pending = {
        kind,
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
            `No ${what} within ${this.#timeoutMs} ms`,
            "",
          ),
        );
      }, this.#timeoutMs);
      this.#pending.push(pending);
    });
  }

  /** Resolves the oldest request for the result's friend. */
  answer(result: HistoryResultFrame): void {
    const pending = this.#pending.find((p) =>
      p.kind === "history" && p.friendId === result.friend_user_id
    );
    if (pending !== undefined) (this.#settle(pending)!.resolve as (r: unknown) => void)(result);
  }

  /** Resolves the oldest `report` with its id. */
  answerReport(frame: ReportReceivedFrame): void {
    const pending = this.#pending.find((p) => p.kind === "report");
    if (pending !== undefined) {
      (this.#settle(pending)!.resolve as (r: unknown) => void)(frame.report_id);
    }
  }

  /**
   * Rejects the oldest request with a server refusal (`not_found`: the oldest report, the only
   * request it answers); false when none was waiting.
   */
  failOldest(code: string, message: string): boolean {
    const pending = code === "not_found"
      ? this.#pending.find((p) => p.kind === "report")
      : this.#pending[0];
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
