/**
 * @module store/postgres/last_seen
 * Writes `chat_user_settings.last_seen_at` behind the presence decisions
 * that set it (docs/protocol.md, "Settings"), off their path: a user's
 * offline is announced at once, and the time is queued here.
 *
 * Bounded: one pending time per user (a later one replaces it), at most
 * `maxPending` users waiting (beyond that a time is dropped and logged: a
 * database that cannot keep up must not make the node hold one entry per
 * user it ever saw), and one statement at a time of at most `batchSize`
 * users. A node shutting down (every user going offline at once) costs a
 * statement per batch, not one per user. A failed write is logged and
 * dropped: last seen is a hint, and the next offline writes it again.
 */

import type { Sql } from "postgres";
import { errorMessage, type Logger } from "../../log.ts";
import { writeLastSeen } from "./settings_queries.ts";

export interface LastSeenOptions {
  logger: Logger;
  /** Runs one write against the repository's deadline. */
  deadline: <T>(work: () => Promise<T>) => Promise<T>;
  /** Users per statement (default 1000). */
  batchSize?: number;
  /** Users waiting at most (default 100,000). */
  maxPending?: number;
}

export class LastSeenWriter {
  readonly #sql: Sql;
  readonly #options: LastSeenOptions;
  readonly #batchSize: number;
  readonly #maxPending: number;
  readonly #pending = new Map<number, Date>();
  #running: Promise<void> | undefined;

  constructor(sql: Sql, options: LastSeenOptions) {
    this.#sql = sql;
    this.#options = options;
    this.#batchSize = options.batchSize ?? 1000;
    this.#maxPending = options.maxPending ?? 100_000;
  }

  /** Queues `at` as the user's last seen time; never throws. */
  record(userId: number, at: Date): void {
    const queued = this.#pending.get(userId);
    if (queued === undefined && this.#pending.size >= this.#maxPending) {
      this.#options.logger.warn("last_seen_dropped", { user_id: userId });
      return;
    }
    if (queued === undefined || queued < at) this.#pending.set(userId, at);
    this.#running ??= this.#run().finally(() => (this.#running = undefined));
  }

  /** Resolves once everything queued before the call is written (or dropped). */
  async flush(): Promise<void> {
    while (this.#running !== undefined) await this.#running;
  }

  async #run(): Promise<void> {
    // Let the presence changes of the same moment (a node's shutdown) join the first batch.
    await Promise.resolve();
    while (this.#pending.size > 0) {
      const batch: { userId: number; at: Date }[] = [];
      for (const [userId, at] of this.#pending) {
        batch.push({ userId, at });
        this.#pending.delete(userId);
        if (batch.length >= this.#batchSize) break;
      }
      try {
        await this.#options.deadline(() => writeLastSeen(this.#sql, batch));
      } catch (err) {
        this.#options.logger.warn("last_seen_failed", {
          users: batch.length,
          error: errorMessage(err),
        });
      }
    }
  }
}
