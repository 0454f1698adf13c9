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
 * One instance for every session of a node; a user's entry exists only while
 * they have work running.
 */

interface UserSlots {
  running: number;
  /** Wakes the frames waiting for a slot, oldest first. */
  waiting: (() => void)[];
}

export class UserWork {
  readonly #users = new Map<number, UserSlots>();

  constructor(
    /** Frames of one user handled at once. */
    private readonly inFlight: number,
    /** Frames of one user waiting beyond those. */
    private readonly queued: number,
  ) {}

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
