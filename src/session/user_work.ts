/**
 * @module session/user_work
 * How much database work one user may have on this node at once (docs/protocol.md,
 * "Limits"). Frames whose handler reads or writes the user's mailbox (`db` in
 * the dispatch table) run within it, whichever of the user's connections sent
 * them: at most `inFlight` at a time, at most `queued` more waiting, and a
 * frame beyond those is refused at once (`rate_limited`), never queued. So
 * one user holds at most `inFlight` of the pool's connections whatever their
 * number of sockets and however fast they send, and waits at most behind
 * `queued` of their own frames.
 *
 * Catch-up pages (`sync_result`, `history_result`) also draw on a per-user
 * allowance of bytes, `pageBytesPerS` a second with four seconds of it at
 * once: a user past it waits (within their slot, holding no database
 * connection) until it has refilled enough before the next page is read. A
 * slot bounds how many of a user's queries run at once, this how much they
 * read and send a second: without it, a few sockets asking for the same large
 * page over and over keep Postgres and the event loop busy for everyone.
 *
 * One instance for every session of a node; a user's entry exists only while
 * they have work running, or pages charged within the last four seconds.
 */

interface UserSlots {
  running: number;
  /** Wakes the frames waiting for a slot, oldest first. */
  waiting: (() => void)[];
}

/** Seconds of `pageBytesPerS` a user may be sent at once. */
const PAGE_BURST_S = 4;

export class UserWork {
  readonly #users = new Map<number, UserSlots>();
  /** Each user's page allowance left (bytes; negative: owed), in order of last charge. */
  readonly #pages = new Map<number, { left: number; at: number }>();
  readonly #burst: number;

  constructor(
    /** Frames of one user handled at once. */
    private readonly inFlight: number,
    /** Frames of one user waiting beyond those. */
    private readonly queued: number,
    /** Bytes of catch-up pages one user is sent a second, on average. */
    private readonly pageBytesPerS = Infinity,
    /** Monotonic milliseconds. */
    private readonly now: () => number = performance.now.bind(performance),
  ) {
    this.#burst = pageBytesPerS * PAGE_BURST_S;
  }

  /** Milliseconds until `userId` may be sent another page: 0 unless they owe bytes. */
  pageWaitMs(userId: number): number {
    const left = this.#pageAllowance(userId, this.now());
    return left >= 0 ? 0 : Math.ceil((-left / this.pageBytesPerS) * 1000);
  }

  /** Charges a page of `bytes` sent to `userId`. */
  chargePage(userId: number, bytes: number): void {
    if (this.pageBytesPerS === Infinity) return;
    const now = this.now();
    const left = this.#pageAllowance(userId, now) - bytes;
    this.#pages.delete(userId);
    this.#pages.set(userId, { left, at: now });
    // Entries refilled to the full allowance are forgotten (a new one allows as much).
    for (const [id, entry] of this.#pages) {
      if (entry.left + ((now - entry.at) / 1000) * this.pageBytesPerS < this.#burst) break;
      this.#pages.delete(id);
    }
  }

  /** Users with page charges remembered (for tests). */
  get pageUsers(): number {
    return this.#pages.size;
  }

  /**
   * Runs `work` once one of the user's slots is free and resolves with what it
   * returns; `undefined` (nothing run) when the user's slots and queue are full.
   */
  run<T>(userId: number, work: () => T | Promise<T>): Promise<T> | undefined {
    const user = this.#users.get(userId) ?? this.#add(userId);
    let turn: Promise<void>;
    if (user.running < this.inFlight) {
      user.running++;
      turn = Promise.resolve();
    } else if (user.waiting.length < this.queued) {
      turn = new Promise((resolve) => user.waiting.push(resolve));
    } else {
      return undefined; // (the user's entry holds running work: nothing to remove)
    }
    return turn.then(work).finally(() => this.#done(userId, user));
  }

  /** Users with work running or waiting (for tests and metrics). */
  get users(): number {
    return this.#users.size;
  }

  #pageAllowance(userId: number, now: number): number {
    const entry = this.#pages.get(userId);
    if (entry === undefined) return this.#burst;
    const refilled = (Math.max(0, now - entry.at) / 1000) * this.pageBytesPerS;
    return Math.min(this.#burst, entry.left + refilled);
  }

  #add(userId: number): UserSlots {
    const user: UserSlots = { running: 0, waiting: [] };
    this.#users.set(userId, user);
    return user;
  }

  #done(userId: number, user: UserSlots): void {
    const next = user.waiting.shift();
    if (next !== undefined) {
      next(); // the slot passes to the oldest waiting frame
    } else if (--user.running === 0) {
      this.#users.delete(userId);
    }
  }
}
