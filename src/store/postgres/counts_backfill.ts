/**
 * @module store/postgres/counts_backfill
 * Adds the unread messages stored before migration 6 to the per-conversation
 * counters (`chat_unread`), a few users per short transaction
 * (`chat_backfill_counts`), in the background from start until every user
 * is counted. A user who signs in before the pass reaches them is counted at
 * that sign-in, once (`chat_ensure_counts`), so counts are right from the
 * first login; after that a login reads counters, never rows. Several nodes:
 * one works at a time (the others find the progress row locked), each pass
 * resumes where the last one stopped, on any node.
 */

import type { Sql } from "postgres";
import { errorMessage, type Logger } from "../../log.ts";

/** Users counted per transaction. */
const USERS_PER_PASS = 50;
/** Rest between passes, and before trying again after a failure or while another node works. */
const REST_MS = 200;
const RETRY_MS = 5_000;

export class CountsBackfill {
  #stopped = false;
  #running: Promise<void> | undefined;
  #wake: (() => void) | undefined;

  constructor(private readonly sql: Sql, private readonly logger: Logger) {}

  /** Starts the pass in the background (it ends by itself once every user is counted). */
  start(): void {
    this.#running ??= this.#run();
  }

  async close(): Promise<void> {
    this.#stopped = true;
    this.#wake?.();
    await this.#running;
  }

  async #run(): Promise<void> {
    let passes = 0;
    while (!this.#stopped) {
      let rest = REST_MS;
      try {
        const [row] = await this.sql<{ done: boolean }[]>`
          select chat_backfill_counts(${USERS_PER_PASS}) as done`;
        passes++;
        if (row?.done === true) {
          if (passes > 1) this.logger.info("unread_counts_backfilled", { passes });
          return;
        }
      } catch (err) {
        this.logger.warn("unread_counts_backfill_failed", { error: errorMessage(err) });
        rest = RETRY_MS;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, rest);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }
}
