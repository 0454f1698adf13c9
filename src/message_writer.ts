/**
 * @module message_writer
 * Group commit: messages queued while a batch is being written go to the
 * database together in the next statement, so the batch size follows the
 * load (1 when idle, up to `MAX_BATCH` under pressure) with no timer.
 *
 * Guarantees: each `store` resolves only after its row is committed, with
 * its own `message_id` and `sent_at`, or rejects (then nothing of it was
 * acknowledged); rows of one connection are inserted in the order queued.
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
import { UnavailableError } from "./repository.ts";

const MAX_BATCH = 500;

interface Pending {
  message: NewMessage;
  resolve(result: StoreResult): void;
  reject(err: unknown): void;
}

interface InsertedRow {
  ord: number;
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
  #running: Promise<void> | undefined;

  constructor(
    private readonly sql: Sql,
    /** The `messages.message_id` sequence, resolved once at start. */
    private readonly sequence: string,
    /** How long the database may take to reach a batch's insert. */
    private readonly timeoutMs: number,
    /** Wraps one batch's work with the caller's (later) deadline. */
    private readonly deadline: <T>(work: () => Promise<T>) => Promise<T>,
    /** Told of every committed batch: its size and how long it took. */
    private readonly onBatch: (size: number, ms: number) => void,
  ) {}

  /** Queues a message; resolves once it is committed. */
  store(message: NewMessage): Promise<StoreResult> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ message, resolve, reject });
      // Let the frames of this tick join the batch before it starts.
      this.#running ??= Promise.resolve().then(() => this.#run());
    });
  }

  /** Resolves when everything queued so far is committed or rejected. */
  async drain(): Promise<void> {
    while (this.#running !== undefined) await this.#running;
  }

  async #run(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue.splice(0, MAX_BATCH);
        try {
          const started = performance.now();
          const insertBefore = new Date(Date.now() + this.timeoutMs);
          const results = await this.deadline(() =>
            this.#write(batch.map((p) => p.message), insertBefore)
          );
          this.onBatch(batch.length, performance.now() - started);
          batch.forEach((pending, i) => {
            const result = results[i]!;
            if (result instanceof Error) pending.reject(result);
            else pending.resolve(result);
          });
        } catch (err) {
          for (const pending of batch) pending.reject(err);
        }
      }
    } finally {
      this.#running = undefined;
    }
  }

  /** Inserts a batch in one statement; rows that hit the dedup key are answered by the original. */
  async #write(messages: NewMessage[], insertBefore: Date): Promise<(StoreResult | Error)[]> {
    const sql = this.sql;
    // Ids come from the sequence inside a materialised CTE, so each input
    // row knows its id whether or not RETURNING keeps the input order.
    const rows = await sql<InsertedRow[]>`
      with input as materialized (
        select nextval(${this.sequence}::regclass) as id,
               clock_timestamp() < ${insertBefore}::timestamptz as in_time, t.*
        from unnest(
          ${sql.array(messages.map((m) => m.senderUserId))}::bigint[],
          ${sql.array(messages.map((m) => m.recipientUserId))}::bigint[],
          ${sql.array(messages.map((m) => m.messageText))}::text[],
          ${sql.array(messages.map((m) => m.clientMessageId ?? null))}::text[]
        ) with ordinality as t(sender, recipient, body, cmid, ord)
      ), inserted as (
        insert into messages (message_id, sender_user_id, recipient_user_id, message_text, client_message_id)
        select id, sender, recipient, body, cmid from input where in_time order by ord
        on conflict (sender_user_id, client_message_id) do nothing
        returning message_id, sent_at
      )
      select input.ord::int as ord, input.id as message_id, inserted.sent_at, input.in_time
      from input left join inserted on inserted.message_id = input.id
      order by input.ord`;
    const results: (StoreResult | Error)[] = new Array(messages.length);
    const duplicates: number[] = [];
    for (const row of rows) {
      const i = row.ord - 1;
      const message = messages[i]!;
      if (!row.in_time) {
        results[i] = new UnavailableError("the database reached the insert after its deadline");
        continue;
      }
      if (row.sent_at === null) {
        duplicates.push(i);
        continue;
      }
      results[i] = {
        message: { messageId: Number(row.message_id), ...message, sentAt: row.sent_at },
        duplicate: false,
      };
    }
    if (duplicates.length > 0) {
      const originals = await this.#originals(duplicates.map((i) => messages[i]!));
      for (const i of duplicates) {
        const message = messages[i]!;
        const original = originals.get(`${message.senderUserId}:${message.clientMessageId}`);
        if (original === undefined) throw new Error("deduplicated message has no original row");
        results[i] = { message: original, duplicate: true };
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
