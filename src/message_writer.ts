/**
 * @module message_writer
 * Group commit: messages queued while earlier batches are being written go
 * to the database together in the next statement, so the batch size follows
 * the load (1 when idle, up to `MAX_BATCH` under pressure) with no timer.
 * Up to `MAX_IN_FLIGHT` batches are written at once, so one batch's commit
 * (its WAL flush) does not hold up the next.
 *
 * Guarantees: each `store` resolves only after its row is committed, with
 * its own `message_id` and `sent_at`, or rejects (then nothing of it was
 * acknowledged). Ids are taken from blocks reserved from the table's
 * sequence, in queue order, and batches are answered in queue order, so the
 * messages of one connection get increasing ids and are acknowledged and
 * delivered in the order sent, whichever batch commits first.
 *
 * A batch carries the instant after which the caller will have given up on
 * it (`timeoutMs` from its start). The database inserts only the rows it
 * reaches before then, so a statement held up by a frozen network and
 * delivered late stores nothing that was already answered `unavailable`.
 * The caller's own deadline is later by a margin that covers the commit and
 * the reply (see `repository_postgres.ts`).
 */

import type { Sql } from "postgres";
import type { NewMessage, StoredMessage, StoreResult } from "./repository.ts";
import { ClientMessageIdReusedError, UnavailableError } from "./repository.ts";

const MAX_BATCH = 256;
const MAX_IN_FLIGHT = 3;
/** Ids reserved from the sequence per round trip (unused ones are gaps, as sequences allow). */
const ID_BLOCK = 1024;

interface Pending {
  message: NewMessage;
  resolve(result: StoreResult): void;
  reject(err: unknown): void;
}

interface InsertedRow {
  message_id: string;
  sent_at: Date | null;
  in_time: boolean;
}

interface ExistingRow {
  message_id: string;
  sender_user_id: string;
  recipient_user_id: string;
  message_text: string;
  sent_at: Date;
  client_message_id: string;
}

export class MessageWriter {
  #queue: Pending[] = [];
  #scheduled = false;
  #inFlight = 0;
  /** Reserved ids, ascending, not yet given to a message. */
  #ids: number[] = [];
  #reserving: Promise<void> | undefined;
  /** Settles when the last started batch has been answered (answers go in order). */
  #answered: Promise<void> = Promise.resolve();
  #idleWaiters: (() => void)[] = [];

  constructor(
    private readonly sql: Sql,
    /** The `messages.message_id` sequence, resolved once at start. */
    private readonly sequence: string,
    /** How long the database may take to reach a batch's insert. */
    private readonly timeoutMs: number,
    /** Wraps one round trip with the caller's (later) deadline. */
    private readonly deadline: <T>(work: () => Promise<T>) => Promise<T>,
    /** Told of every committed batch: its size and how long it took. */
    private readonly onBatch: (size: number, ms: number) => void,
  ) {}

  /** Queues a message; resolves once it is committed. */
  store(message: NewMessage): Promise<StoreResult> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ message, resolve, reject });
      if (this.#scheduled) return;
      this.#scheduled = true;
      // Let the frames of this tick join the batch before it starts.
      queueMicrotask(() => {
        this.#scheduled = false;
        this.#pump();
      });
    });
  }

  /** Resolves when everything queued so far is committed or rejected. */
  async drain(): Promise<void> {
    while (this.#queue.length > 0 || this.#inFlight > 0 || this.#reserving !== undefined) {
      await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
    }
  }

  /** Starts batches while there is room, each with ids taken in queue order. */
  #pump(): void {
    while (this.#inFlight < MAX_IN_FLIGHT && this.#queue.length > 0) {
      const size = Math.min(MAX_BATCH, this.#queue.length);
      if (this.#ids.length < size) return this.#reserve();
      const batch = this.#queue.splice(0, size);
      const ids = this.#ids.splice(0, size);
      this.#start(batch, ids);
    }
    if (this.#ids.length < ID_BLOCK / 2) this.#reserve(); // refill ahead of need
    this.#wakeIfIdle();
  }

  #start(batch: Pending[], ids: number[]): void {
    this.#inFlight++;
    const previous = this.#answered;
    const answered = Promise.withResolvers<void>();
    this.#answered = answered.promise;
    const started = performance.now();
    const insertBefore = new Date(Date.now() + this.timeoutMs);
    const written = this.deadline(() =>
      this.#write(batch.map((p) => p.message), ids, insertBefore)
    );
    written.then(() => this.onBatch(batch.length, performance.now() - started), () => {});
    // Answer only after every earlier batch is answered: delivery keeps queue order.
    Promise.allSettled([written, previous]).then(([result]) => {
      if (result.status === "rejected") {
        for (const pending of batch) pending.reject(result.reason);
      } else {
        batch.forEach((pending, i) => {
          const outcome = result.value[i]!;
          if (outcome instanceof Error) pending.reject(outcome);
          else pending.resolve(outcome);
        });
      }
      answered.resolve();
      this.#inFlight--;
      this.#pump();
    });
  }

  /** Reserves a block of ids; a failure rejects what is queued (nothing of it was stored). */
  #reserve(): void {
    if (this.#reserving !== undefined) return;
    const need = Math.max(ID_BLOCK, Math.min(MAX_BATCH, this.#queue.length));
    this.#reserving = this.deadline(async () => {
      const rows = await this.sql<{ id: string }[]>`
        select nextval(${this.sequence}::regclass)::text as id from generate_series(1, ${need})`;
      const ids = rows.map((row) => Number(row.id)).sort((a, b) => a - b);
      this.#ids.push(...ids);
    }).catch((err) => {
      for (const pending of this.#queue.splice(0)) pending.reject(err);
    }).finally(() => {
      this.#reserving = undefined;
      this.#pump();
    });
  }

  #wakeIfIdle(): void {
    if (this.#queue.length > 0 || this.#inFlight > 0 || this.#reserving !== undefined) return;
    for (const wake of this.#idleWaiters.splice(0)) wake();
  }

  /** Inserts a batch in one statement; rows that hit the dedup key are answered by the original. */
  async #write(
    messages: NewMessage[],
    ids: number[],
    insertBefore: Date,
  ): Promise<(StoreResult | Error)[]> {
    const sql = this.sql;
    // `input` is materialised (clock_timestamp is volatile), so the insert and
    // the answer see the same rows and the same verdict on the deadline.
    const rows = await sql<InsertedRow[]>`
      with input as materialized (
        select t.*, clock_timestamp() < ${insertBefore}::timestamptz as in_time
        from unnest(
          ${sql.array(ids)}::bigint[],
          ${sql.array(messages.map((m) => m.senderUserId))}::bigint[],
          ${sql.array(messages.map((m) => m.recipientUserId))}::bigint[],
          ${sql.array(messages.map((m) => m.messageText))}::text[],
          ${sql.array(messages.map((m) => m.clientMessageId ?? null))}::text[]
        ) as t(id, sender, recipient, body, cmid)
      ), inserted as (
        insert into messages (message_id, sender_user_id, recipient_user_id, message_text, client_message_id)
        select id, sender, recipient, body, cmid from input where in_time
        on conflict (sender_user_id, client_message_id) do nothing
        returning message_id, sent_at
      )
      select input.id::text as message_id, inserted.sent_at, input.in_time
      from input left join inserted on inserted.message_id = input.id`;
    const index = new Map(ids.map((id, i) => [id, i]));
    const results: (StoreResult | Error)[] = new Array(messages.length);
    const duplicates: number[] = [];
    for (const row of rows) {
      const i = index.get(Number(row.message_id))!;
      const message = messages[i]!;
      if (!row.in_time) {
        results[i] = new UnavailableError("the database reached the insert after its deadline");
      } else if (row.sent_at === null) {
        duplicates.push(i);
      } else {
        results[i] = {
          message: { messageId: ids[i]!, ...message, sentAt: row.sent_at },
          duplicate: false,
        };
      }
    }
    if (duplicates.length > 0) {
      const originals = await this.#originals(duplicates.map((i) => messages[i]!));
      for (const i of duplicates) {
        const message = messages[i]!;
        const original = originals.get(`${message.senderUserId}:${message.clientMessageId}`);
        if (original === undefined) throw new Error("deduplicated message has no original row");
        const reused = original.recipientUserId !== message.recipientUserId ||
          original.messageText !== message.messageText;
        results[i] = reused
          ? new ClientMessageIdReusedError("client_message_id was already used for another message")
          : { message: original, duplicate: true };
      }
    }
    return results;
  }

  async #originals(messages: NewMessage[]): Promise<Map<string, StoredMessage>> {
    const sql = this.sql;
    const rows = await sql<ExistingRow[]>`
      select m.message_id, m.sender_user_id, m.recipient_user_id, m.message_text, m.sent_at,
             m.client_message_id
      from unnest(
        ${sql.array(messages.map((m) => m.senderUserId))}::bigint[],
        ${sql.array(messages.map((m) => m.clientMessageId ?? ""))}::text[]
      ) as k(sender, cmid)
      join messages m on m.sender_user_id = k.sender and m.client_message_id = k.cmid`;
    const byKey = new Map<string, StoredMessage>();
    for (const row of rows) {
      byKey.set(`${row.sender_user_id}:${row.client_message_id}`, {
        messageId: Number(row.message_id),
        senderUserId: Number(row.sender_user_id),
        recipientUserId: Number(row.recipient_user_id),
        messageText: row.message_text,
        sentAt: row.sent_at,
        clientMessageId: row.client_message_id,
      });
    }
    return byKey;
  }
}
