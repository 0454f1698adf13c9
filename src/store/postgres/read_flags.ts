/**
 * @module read_flags
 * Sets the `is_read`/`read_at` flags of the rows a read mark covers
 * (`chat_read_marks`, migration 4), behind the mark, in short transactions.
 *
 * A `read` only raises its conversation's mark (`mailbox_queries.ts`); the
 * server's own queries count rows at or below it as read at once. The flags,
 * which the game backend reads, follow here: at most `batchRows` rows per
 * transaction, so no statement holds row locks another writer may wait for
 * (a repeated `client_message_id` of one of those rows, the game's own
 * updates) for more than a few milliseconds, and no backlog outlives the
 * statement timeout. A mark keeps `pending` until every row it covers has its
 * flags, and is found again at start and every `intervalMs` after: a node that
 * stops or crashes mid-way leaves the rest to the next sweep, on any node.
 *
 * Several nodes: a batch locks its mark row (`for no key update skip locked`),
 * so two nodes never flag one conversation at once; the one that finds it
 * locked leaves it to the other. A `read` raising that mark waits for the
 * batch (milliseconds). Rows flagged take the mark's `read_at` as it is when
 * their batch runs: rows a receipt covered whose flags were still unset when a
 * later receipt of the same conversation arrived take the later one's time.
 *
 * Its database share is bounded: one batch at a time per node, on the shared
 * pool, resting as long as each batch took (at most half of one connection).
 */

import type { Sql } from "postgres";
import { errorMessage, type Logger } from "../../log.ts";
import { rowsOf } from "./pg_rows.ts";

export interface ReadFlagOptions {
  /** Rows per transaction (default 200: about 5 ms of row locks here). */
  batchRows?: number | undefined;
  /** How often pending marks are looked for (default 30 s). */
  intervalMs?: number | undefined;
  logger: Logger;
}

/** A conversation whose mark may be pending: the reader and the friend whose rows are read. */
interface Conversation {
  reader: number;
  friend: number;
}

/**
 * Planned on a table without statistics (a new deployment, or a backlog
 * inserted since the last ANALYZE), a batch scanned the user's whole index
 * with a sort, then hash-joined every unread row to update 200 of them: 20 ms
 * of row locks per batch instead of 5. With sorts and scans of the whole
 * table priced out, the plan is the ordered key range of the unread index and
 * one primary-key probe per row, whatever the statistics say.
 */
const BATCH_PLANNER_SETTINGS = `set local enable_seqscan = off; set local enable_sort = off;
  set local enable_incremental_sort = off;
  set local enable_hashjoin = off; set local enable_mergejoin = off; set local jit = off`;

/** Marks looked up per sweep of pending ones; the next sweep finds the rest. */
const PENDING_PAGE = 1000;

export class ReadFlagSweeper {
  readonly #sql: Sql;
  readonly #batchRows: number;
  readonly #intervalMs: number;
  readonly #logger: Logger;
  /** Conversations to flag, in arrival order, keyed `reader:friend`. */
  readonly #queue = new Map<string, Conversation>();
  #running: Promise<void> | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #rest: { timer: ReturnType<typeof setTimeout>; wake: () => void } | undefined;
  #closed = false;

  constructor(sql: Sql, options: ReadFlagOptions) {
    this.#sql = sql;
    this.#batchRows = options.batchRows ?? 200;
    this.#intervalMs = options.intervalMs ?? 30_000;
    this.#logger = options.logger;
  }

  /**
   * Looks for pending marks now (resolving once it has, so nothing of the
   * sweeper's is in flight when the caller goes on) and every `intervalMs`
   * after; their rows are flagged in the background.
   */
  start(): Promise<void> {
    return this.#findPending();
  }

  /** A read raised the mark of `reader`'s conversation with `friend`: flag its rows. */
  wake(reader: number, friend: number): void {
    if (this.#closed) return;
    this.#queue.set(`${reader}:${friend}`, { reader, friend });
    this.#kick();
  }

  /** Stops after the batch in progress; marks not finished stay pending for the next start. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    if (this.#rest !== undefined) {
      clearTimeout(this.#rest.timer);
      this.#rest.wake();
    }
    await this.#running;
  }

  #findPending(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return this.#sql<{ reader: string; friend: string }[]>`
      select reader_user_id::text as reader, friend_user_id::text as friend
      from chat_read_marks where pending limit ${PENDING_PAGE}`.then(
      (rows) => {
        for (const row of rowsOf(rows)) this.wake(Number(row.reader), Number(row.friend));
      },
      (err) => this.#logger.warn("read_flags_failed", { error: errorMessage(err) }),
    ).finally(() => {
      if (!this.#closed) this.#timer = setTimeout(() => this.#findPending(), this.#intervalMs);
    });
  }

  /** Starts draining the queue unless a drain runs (it takes what is added meanwhile). */
  #kick(): void {
    if (this.#running !== undefined || this.#closed) return;
    this.#running = this.#drain().finally(() => {
      this.#running = undefined;
      if (this.#queue.size > 0) this.#kick();
    });
  }

  async #drain(): Promise<void> {
    for (const [key, conversation] of this.#queue) {
      if (this.#closed) return;
      this.#queue.delete(key);
      try {
        await this.#flagAll(conversation);
      } catch (err) {
        // Left pending: the next look for pending marks retries it.
        this.#logger.warn("read_flags_failed", {
          user_id: conversation.reader,
          error: errorMessage(err),
        });
      }
    }
  }

  /** Batches until the mark is done, gone, or another node holds it. */
  async #flagAll({ reader, friend }: Conversation): Promise<void> {
    let after = 0;
    while (!this.#closed) {
      const started = performance.now();
      const batch = await this.#sql.begin(async (tx) => {
        await tx.unsafe(BATCH_PLANNER_SETTINGS);
        return await flagBatch(tx as unknown as Sql, reader, friend, after, this.#batchRows);
      });
      if (batch.last === undefined || batch.finished) return;
      after = batch.last;
      await this.#restFor(performance.now() - started);
    }
  }

  #restFor(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        this.#rest = undefined;
        resolve();
      };
      this.#rest = { timer: setTimeout(wake, ms), wake };
    });
  }
}

/** What one batch did. */
export interface FlagBatch {
  /** The largest id it flagged; undefined when the mark was not pending, or locked, or had no row left. */
  last: number | undefined;
  /** Every row the mark covers has its flags now (the mark is no longer pending). */
  finished: boolean;
}

/**
 * One transaction: locks the conversation's pending mark (skipped when
 * another node holds it), flags up to `rows` of the unread rows at or below
 * it with an id above `after`, and clears `pending` once fewer than `rows`
 * were left or the last of them was the mark's own row. Rows are a key range of the unread index (see `mailbox_queries.ts`
 * for why a key range).
 */
export async function flagBatch(
  sql: Sql,
  reader: number,
  friend: number,
  after: number,
  rows: number,
): Promise<FlagBatch> {
  const [row] = rowsOf(
    await sql<{ last: string | null; finished: boolean }[]>`
    with mark as materialized (
      select up_to_message_id, read_at from chat_read_marks
      where reader_user_id = ${reader} and friend_user_id = ${friend} and pending
      for no key update skip locked
    ), batch as materialized (
      select message_id from messages
      where (recipient_user_id, sender_user_id, message_id) > (${reader}, ${friend}, ${after})
        and (recipient_user_id, sender_user_id, message_id)
          <= (${reader}, ${friend}, (select up_to_message_id from mark))
        and not is_read
      order by recipient_user_id, sender_user_id, message_id limit ${rows}
    ), flagged as (
      update messages m set is_read = true, read_at = (select read_at from mark)
      from batch where m.message_id = batch.message_id and not m.is_read
      returning m.message_id
    ), finished as (
      update chat_read_marks set pending = false
      where reader_user_id = ${reader} and friend_user_id = ${friend}
        and exists (select 1 from mark)
        and ((select count(*) from batch) < ${rows}
          -- the mark is the id of a row it covers (mailbox_queries.ts): flagged last
          or (select max(message_id) from batch) = (select up_to_message_id from mark))
      returning 1
    )
    -- (data-modifying CTEs run whether or not the result refers to them)
    select (select max(message_id) from batch)::text as last,
      exists (select 1 from finished) as finished`,
  );
  return {
    last: row?.last == null ? undefined : Number(row.last),
    finished: row?.finished === true,
  };
}
