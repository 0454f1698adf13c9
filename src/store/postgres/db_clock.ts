/**
 * @module store/postgres/db_clock
 * Tells the database "now + N ms" in the database's own clock, without
 * comparing it with this server's wall clock (the two may be seconds apart).
 *
 * Each answer the database gives carries its `clock_timestamp()` D, taken
 * before the answer left; we note the monotonic time L at which it arrived.
 * D was read no later than L, so `D + (now - L)` on our monotonic clock is at
 * most the database's clock at `now`: a deadline built on it falls due at the
 * database no later than our own deadline does. The observation kept is the
 * tightest one (largest D - L) of the last `FRESH_MS`, so a slow reply does not
 * make deadlines needlessly early for long, and a clock step at the database
 * is followed within that time.
 */

/** How long an observation may be preferred over a newer, looser one. */
const FRESH_MS = 30_000;

export class DbClock {
  /** `dbMs - localMs` of the kept observation; undefined before the first. */
  #offset: number | undefined;
  #observedAt = -Infinity;

  constructor(private readonly monotonicNow: () => number = () => performance.now()) {}

  /** Records that the database's clock read `dbTime` at or before the local instant `localMs`. */
  observe(dbTime: Date, localMs: number = this.monotonicNow()): void {
    const offset = dbTime.getTime() - localMs;
    const stale = localMs - this.#observedAt > FRESH_MS;
    if (this.#offset === undefined || stale || offset >= this.#offset) {
      this.#offset = offset;
      this.#observedAt = localMs;
    }
  }

  get known(): boolean {
    return this.#offset !== undefined;
  }

  /** The database's clock `ms` from now, at the latest; throws before the first observation. */
  after(ms: number): Date {
    if (this.#offset === undefined) throw new Error("the database clock was never observed");
    return new Date(this.monotonicNow() + this.#offset + ms);
  }
}
