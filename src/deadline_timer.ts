/**
 * @module deadline_timer
 * A timer for a moment on the wall clock (a session's expiry), however far
 * ahead: `setTimeout` holds at most about 24.8 days, and the wall clock can
 * be stepped, so the timer re-checks the clock whenever it fires.
 */

/** Longest single `setTimeout`. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class DeadlineTimer {
  #at = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** `now` is the wall clock in ms since the epoch; `onDue` runs once per `set`, when due. */
  constructor(private readonly now: () => number, private readonly onDue: () => void) {}

  /** When it is due (ms since the epoch); 0 when never set. */
  get at(): number {
    return this.#at;
  }

  /** Replaces the moment it is due. */
  set(at: number): void {
    this.#at = at;
    this.stop();
    const arm = () => {
      const left = this.#at - this.now();
      if (left <= 0) {
        this.#timer = undefined;
        return this.onDue();
      }
      this.#timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
    };
    arm();
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
