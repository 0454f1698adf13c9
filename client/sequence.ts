/**
 * @module sequence
 * The user's update sequence as this client has applied it (docs/protocol.md, "Updates", v1.2):
 * the largest `seq` applied, and the updates that came after a gap, held until it is filled.
 * Updates are applied in `seq` order, each once, whether they came live or from `sync`: one below
 * or at the last applied is a duplicate and skipped, the next one is applied (with the held ones
 * that follow it), one further on is held until a `sync` fills the gap. Pure state, no I/O;
 * `ChatCatchUp` drives it. All runtime code lives inside the class (the demo page embeds its
 * source; see README.md, "Using it without a build step").
 */

import type { UpdateFrame } from "./frames.ts";

/** Applied, held and syncing state of one user's updates. */
export class ChatSequence {
  /** The largest `seq` applied; undefined until a v1.2 `authenticated` (or the `lastSeq` option). */
  #last: number | undefined;
  /** Updates above `#last + 1`, by `seq`, waiting for the gap below them to be filled. */
  readonly #held = new Map<number, UpdateFrame>();
  /** A `sync {after_seq}` is under way (its pages are still coming). */
  #syncing = false;

  constructor(lastSeq?: number) {
    this.#last = lastSeq;
  }

  /** The largest `seq` applied (save it as `lastSeq` to resume a later page without a gap). */
  get last(): number | undefined {
    return this.#last;
  }

  get syncing(): boolean {
    return this.#syncing;
  }

  /** Updates are held: something below them is missing. */
  get gap(): boolean {
    return this.#held.size > 0;
  }

  /** The smallest held `seq`, if any. */
  get firstHeld(): number | undefined {
    return this.#held.size === 0 ? undefined : Math.min(...this.#held.keys());
  }

  /**
   * A v1.2 `authenticated` with the user's latest `seq`: returns the `seq` to sync after, or
   * undefined when there is nothing to fetch. A device with no state starts from the server's
   * number; a remembered number above the server's belongs to another database (the server's was
   * reset) and is replaced by it.
   */
  authenticated(serverSeq: number): number | undefined {
    this.#held.clear();
    this.#syncing = false;
    if (this.#last === undefined || this.#last > serverSeq) this.#last = serverSeq;
    return this.#last < serverSeq ? this.#last : undefined;
  }

  /**
   * Takes in one update: skipped when already applied, applied (then every held one that now
   * follows) when it is the next, held otherwise. `apply` is called in `seq` order, with `last`
   * already moved to the update it is given.
   */
  offer(update: UpdateFrame & { seq: number }, apply: (update: UpdateFrame) => void): void {
    const last = this.#last;
    if (last === undefined || update.seq <= last) return;
    if (update.seq > last + 1) {
      this.#held.set(update.seq, update);
      return;
    }
    this.#apply(update, apply);
  }

  /**
   * Gives up on the gap below the held updates (the server answered a complete `sync` whose latest
   * `seq` covers them without the missing ones) and applies them in order.
   */
  skipGap(apply: (update: UpdateFrame) => void): void {
    const first = this.firstHeld;
    if (first === undefined) return;
    const update = this.#held.get(first)!;
    this.#held.delete(first);
    this.#apply(update as UpdateFrame & { seq: number }, apply);
    this.skipGap(apply);
  }

  beginSync(): void {
    this.#syncing = true;
  }

  endSync(): void {
    this.#syncing = false;
  }

  /** The connection is gone: the held updates come again from the next `sync`. */
  abort(): void {
    this.#syncing = false;
    this.#held.clear();
  }

  #apply(update: UpdateFrame & { seq: number }, apply: (update: UpdateFrame) => void): void {
    this.#last = update.seq;
    apply(update);
    for (let next = this.#held.get(this.#last + 1); next !== undefined;) {
      this.#held.delete(this.#last + 1);
      this.#last++;
      apply(next);
      next = this.#held.get(this.#last + 1);
    }
  }
}
