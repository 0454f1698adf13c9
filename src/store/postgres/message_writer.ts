/**
 * @module store/postgres/message_writer
 * Group commit: messages queued while earlier batches are being written go
 * to the database together in the next statement, so the batch size follows
 * the load (1 when idle, up to `MAX_BATCH` under pressure) with no timer.
 *
 * Batches commit one after another on the writer's own connection, which
 * pipelines up to `MAX_IN_FLIGHT` of them: the next batch is already at the
 * database when the previous one commits (no round trip between them), the
 * database runs them in the order sent (so one connection's messages get
 * increasing ids and, per user, increasing seqs in queue order), and the rest
 * of the queue gathers into a larger next batch.
 *
 * A batch never waits long for a user another transaction holds (a long
 * transaction of the game backend's, a read recounting a large backlog): it
 * locks all its users in id order, waiting in turn behind another writer's
 * batch (`chat_try_lock_users`, migration 14), but for at most 200 ms per
 * held user; after that it locks the users no one holds and stores the
 * messages whose sender and recipient it got; the others are `BUSY` and go
 * to the waiting lane with every later message of their users, where each
 * waits for its users' locks in a statement of its own on the pool (at most
 * `WAITING_IN_FLIGHT` at once). So one held user delays only its own
 * messages, and one pair's messages keep their order: a pair's later
 * message joins the lane behind the earlier one. (One race is left: a
 * batch pipelined behind the one that gave up on a user after 200 ms, which
 * finds the user free by then, stores that user's later message first; it
 * takes a hold of more than 200 ms ending in the moment between the two.)
 *
 * A second batch goes out while one is in flight only once `PIPELINE_MIN`
 * messages wait. Below that, sending it early saves one loopback round trip
 * (a fraction of a millisecond; it still waits for the lock) but costs a
 * statement of its own, about as much CPU between server and database as
 * the batch after the commit would spend on all of them together. Measured,
 * the threshold lowered both CPU per message and the tail at 5,000 msgs/s and
 * raised the saturated rate, and never pipelining cut that rate by a quarter:
 * the figures, before → after, are in bench/README.md ("Changes"; earlier
 * passes in bench/HISTORY.md).
 *
 * Guarantees: each `store` resolves only after its row is committed, with
 * its own `message_id` and `sent_at`, or rejects (then its row was not
 * committed); batches are answered in queue order. What each row of a batch
 * gets is its own outcome (`message_insert.ts`).
 *
 * A batch carries the instant after which the caller will have given up on
 * it, `timeoutMs` from its start, in the database's clock (`db_clock.ts`):
 * the database inserts nothing it gets to later, so a statement held up by a
 * frozen network and delivered late stores nothing that was already answered
 * `unavailable`. The caller's own deadline is later by a margin that covers
 * the commit and the reply (see `repository.ts`).
 *
 * After a failed batch the connection is replaced, once every batch still out
 * on it has settled (so the order above holds across the switch). Nothing is
 * retried here: a failure rejects that batch, and the next batch is sent only
 * when there are messages to send.
 */

import type { Sql } from "postgres";
import type { NewMessage, StoreResult } from "../repository.ts";
import { DbClock } from "./db_clock.ts";
import { BUSY, insertRows, lookUpOriginals, outcomesOf } from "./message_insert.ts";

const MAX_BATCH = 256;
const MAX_IN_FLIGHT = 2;
/** Messages waiting before a batch is pipelined behind one in flight. */
const PIPELINE_MIN = 32;
/** Statements of the waiting lane at once (each may wait for a held user's lock). */
const WAITING_IN_FLIGHT = 4;

interface Pending {
  message: NewMessage;
  resolve(result: StoreResult): void;
  reject(err: unknown): void;
}

/** The writer's connection and the batches still out on it. */
interface Line {
  sql: Sql;
  /**
   * Its first query, reading the database's clock. Queries with array
   * parameters wait for it: postgres.js serialises them wrongly when they are
   * built before a new client has fetched the array types.
   */
  ready: Promise<void>;
  inFlight: number;
  /** A batch on it failed: no new batch goes on it; it closes once empty. */
  retired: boolean;
}

export class MessageWriter {
  #queue: Pending[] = [];
  #scheduled = false;
  #line: Line;
  #lines = new Set<Line>();
  readonly #clock: DbClock;
  /** Settles when the last started batch has been answered (answers go in order). */
  #answered: Promise<void> = Promise.resolve();
  #idleWaiters: (() => void)[] = [];
  /**
   * The waiting lane: messages of users another transaction held when their
   * batch ran, and every later message of those users (so one pair's
   * messages keep their order), written one batch at a time on the pool,
   * waiting for the locks. Users with messages in it → how many.
   */
  #held = new Map<number, number>();
  #waiting: Pending[] = [];
  /** Users of the waiting lane's statements in flight, and how many there are. */
  #laneUsers = new Set<number>();
  #laneInFlight = 0;

  constructor(
    /** Opens the writer's own single connection (statement timeout set). */
    private readonly connect: () => Sql,
    /** Pool for the look-up of originals the insert could not see. */
    private readonly pool: Sql,
    /** How long the database may take to get to a batch's insert. */
    private readonly timeoutMs: number,
    /** Wraps one round trip with the caller's (later) deadline. */
    private readonly deadline: <T>(work: () => Promise<T>) => Promise<T>,
    /** Told of every committed batch: its size and how long it took. */
    private readonly onBatch: (size: number, ms: number) => void,
    clock: DbClock = new DbClock(),
  ) {
    this.#clock = clock;
    this.#line = this.#open();
  }

  /** Resolves once the first connection has answered (the first batch needs the clock). */
  start(): Promise<void> {
    return this.#line.ready;
  }

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

  /** Messages waiting for a batch (not those of batches being written). */
  get queued(): number {
    return this.#queue.length;
  }

  /** Resolves when everything queued so far is committed or rejected. */
  async drain(): Promise<void> {
    while (this.#queue.length > 0 || this.#busy()) {
      await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
    }
  }

  /** Drains, then closes the connections. */
  async close(): Promise<void> {
    await this.drain();
    await Promise.all([...this.#lines].map((line) => line.sql.end({ timeout: 5 })));
  }

  #open(): Line {
    const sql = this.connect();
    const ready = sql<{ now: Date }[]>`select clock_timestamp() as now`.then(([row]) => {
      this.#clock.observe(row!.now);
    });
    ready.catch(() => {}); // a failure reaches the first batch, which awaits it
    const line = { sql, ready, inFlight: 0, retired: false };
    this.#lines.add(line);
    return line;
  }

  #busy(): boolean {
    return [...this.#lines].some((line) => line.inFlight > 0) || this.#waiting.length > 0 ||
      this.#laneInFlight > 0;
  }

  /** Moves queued messages of users in the waiting lane behind them there. */
  #divert(): void {
    if (this.#held.size === 0) return;
    const keep: Pending[] = [];
    for (const pending of this.#queue) {
      const { senderUserId, recipientUserId } = pending.message;
      if (this.#held.has(senderUserId) || this.#held.has(recipientUserId)) this.#hold(pending);
      else keep.push(pending);
    }
    this.#queue = keep;
  }

  #hold(pending: Pending): void {
    for (const user of new Set([pending.message.senderUserId, pending.message.recipientUserId])) {
      this.#held.set(user, (this.#held.get(user) ?? 0) + 1);
    }
    this.#waiting.push(pending);
  }

  #release(pending: Pending): void {
    for (const user of new Set([pending.message.senderUserId, pending.message.recipientUserId])) {
      const left = (this.#held.get(user) ?? 1) - 1;
      if (left > 0) this.#held.set(user, left);
      else this.#held.delete(user);
    }
  }

  /**
   * Starts the waiting lane's messages that share no user with one started or
   * waiting before them (so one pair's messages keep their order), each in a
   * statement of its own on the pool that waits for the users' locks, at most
   * `WAITING_IN_FLIGHT` at once: one held user delays only messages of its own.
   */
  #pumpWaiting(): void {
    const taken = new Set<number>(this.#laneUsers);
    const later: Pending[] = [];
    for (const pending of this.#waiting) {
      const users = [pending.message.senderUserId, pending.message.recipientUserId];
      const free = users.every((user) => !taken.has(user));
      for (const user of users) taken.add(user);
      if (free && this.#laneInFlight < WAITING_IN_FLIGHT) this.#startWaiting(pending);
      else later.push(pending);
    }
    this.#waiting = later;
  }

  #startWaiting(pending: Pending): void {
    this.#laneInFlight++;
    const users = [pending.message.senderUserId, pending.message.recipientUserId];
    for (const user of users) this.#laneUsers.add(user);
    const messages = [pending.message];
    const insertBefore = this.#clock.after(this.timeoutMs);
    const started = performance.now();
    this.deadline(() => insertRows(this.pool, messages, insertBefore, true))
      .then((inserted) => {
        if (inserted.dbNow !== undefined) this.#clock.observe(inserted.dbNow);
        this.onBatch(1, performance.now() - started);
        return outcomesOf(
          messages,
          inserted,
          (keys) => this.deadline(() => lookUpOriginals(this.pool, keys)),
        );
      })
      .then(
        ([outcome]) => {
          if (outcome === BUSY || outcome === undefined) {
            pending.reject(new Error("a waiting message found its users held"));
          } else if (outcome instanceof Error) pending.reject(outcome);
          else pending.resolve(outcome);
        },
        (err) => pending.reject(err),
      )
      .finally(() => {
        for (const user of users) this.#laneUsers.delete(user);
        this.#release(pending);
        this.#laneInFlight--;
        this.#pump();
      });
  }

  /** Starts batches while the line has room; swaps a retired line once it is empty. */
  #pump(): void {
    if (this.#line.retired) {
      if (this.#line.inFlight > 0) return; // its batches settle first: ids stay in queue order
      this.#close(this.#line);
      this.#line = this.#open();
    }
    this.#divert();
    while (this.#line.inFlight < MAX_IN_FLIGHT && this.#queue.length > 0) {
      if (this.#line.inFlight > 0 && this.#queue.length < PIPELINE_MIN) break;
      this.#start(this.#queue.splice(0, Math.min(MAX_BATCH, this.#queue.length)));
    }
    this.#pumpWaiting();
    if (this.#queue.length === 0 && !this.#busy()) {
      for (const wake of this.#idleWaiters.splice(0)) wake();
    }
  }

  #close(line: Line): void {
    this.#lines.delete(line);
    line.sql.end({ timeout: 0 }).catch(() => {});
  }

  #start(batch: Pending[]): void {
    const line = this.#line;
    line.inFlight++;
    const previous = this.#answered;
    const answered = Promise.withResolvers<void>();
    this.#answered = answered.promise;
    const started = performance.now();
    const messages = batch.map((p) => p.message);
    const insertBefore = this.#clock.after(this.timeoutMs);
    const insert = this.deadline(async () => {
      await line.ready;
      return await insertRows(line.sql, messages, insertBefore);
    });
    insert.catch(() => line.retired = true);
    const written = insert.then((inserted) => {
      if (inserted.dbNow !== undefined) this.#clock.observe(inserted.dbNow);
      this.onBatch(batch.length, performance.now() - started);
      // The look-up of originals has a deadline of its own: committed rows are
      // answered by the insert alone, whatever happens to it.
      return outcomesOf(
        messages,
        inserted,
        (keys) => this.deadline(() => lookUpOriginals(this.pool, keys)),
      );
    });
    // Answer only after every earlier batch is answered: delivery keeps queue order.
    Promise.allSettled([written, previous]).then(([result]) => {
      if (result.status === "rejected") {
        for (const pending of batch) pending.reject(result.reason);
      } else {
        batch.forEach((pending, i) => {
          const outcome = result.value[i]!;
          if (outcome === BUSY) this.#hold(pending);
          else if (outcome instanceof Error) pending.reject(outcome);
          else pending.resolve(outcome);
        });
      }
      answered.resolve();
      line.inFlight--;
      if (line !== this.#line && line.inFlight === 0) this.#close(line);
      this.#pump();
    });
  }
}
