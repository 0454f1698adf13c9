/**
 * @module session/deadline_timer
 * Timers for moments on the wall clock (sessions' expiries), however many and however far
 * ahead, all on one `setTimeout` per queue.
 *
 * A pending `setTimeout` costs about 2.4 KiB of memory in Deno (RSS over 20,000 of them), more
 * than an idle session's own state; a timer in a queue costs a few dozen bytes. The queue is a
 * binary min-heap of its timers by moment, with its one `setTimeout` armed for the earliest;
 * setting or stopping a timer moves it in O(log n).
 *
 * `setTimeout` holds at most about 24.8 days, and the wall clock can be stepped, so the queue
 * reads the clock again whenever its timeout fires and fires only what is due by then.
 */

/** Longest single `setTimeout`. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class DeadlineQueue {
  readonly #heap: DeadlineTimer[] = [];
  #timeout: ReturnType<typeof setTimeout> | undefined;
  /** The moment the timeout was armed for; Infinity when none is. */
  #armedFor = Infinity;

  /** `now` is the wall clock in ms since the epoch. */
  constructor(readonly now: () => number) {}

  /** Timers waiting. */
  get size(): number {
    return this.#heap.length;
  }

  /** Stops every timer and the timeout (shutdown). */
  close(): void {
    for (const timer of this.#heap) timer.index = -1;
    this.#heap.length = 0;
    this.#arm();
  }

  /** Puts `timer` at its moment `due`, whether it waits already or not. */
  schedule(timer: DeadlineTimer, due: number): void {
    timer.due = due;
    if (timer.index < 0) {
      timer.index = this.#heap.length;
      this.#heap.push(timer);
    }
    this.#siftDown(this.#siftUp(timer.index));
    this.#arm();
  }

  /** Takes `timer` out; nothing when it does not wait. */
  remove(timer: DeadlineTimer): void {
    const i = timer.index;
    if (i < 0) return;
    timer.index = -1;
    const last = this.#heap.pop()!;
    if (last !== timer) {
      this.#heap[i] = last;
      last.index = i;
      this.#siftDown(this.#siftUp(i));
    }
    this.#arm();
  }

  /** Arms the timeout for the earliest moment (or clears it when nothing waits). */
  #arm(): void {
    const first = this.#heap[0];
    const due = first === undefined ? Infinity : first.due;
    if (due === this.#armedFor) return;
    clearTimeout(this.#timeout);
    this.#timeout = undefined;
    this.#armedFor = due;
    if (first === undefined) return;
    const left = Math.max(0, Math.min(due - this.now(), MAX_TIMER_MS));
    this.#timeout = setTimeout(() => this.#fire(), left);
  }

  #fire(): void {
    this.#timeout = undefined;
    this.#armedFor = Infinity;
    const now = this.now();
    try {
      // Each is taken out before it runs, so its `onDue` may set it (or any other) again.
      while (this.#heap.length > 0 && this.#heap[0]!.due <= now) {
        const timer = this.#heap[0]!;
        this.remove(timer);
        timer.onDue();
      }
    } finally {
      this.#arm();
    }
  }

  #siftUp(i: number): number {
    const heap = this.#heap;
    const timer = heap[i]!;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent]!.due <= timer.due) break;
      heap[i] = heap[parent]!;
      heap[i]!.index = i;
      i = parent;
    }
    heap[i] = timer;
    timer.index = i;
    return i;
  }

  #siftDown(i: number): void {
    const heap = this.#heap;
    const timer = heap[i]!;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      const child = right < heap.length && heap[right]!.due < heap[left]!.due ? right : left;
      if (heap[child]!.due >= timer.due) break;
      heap[i] = heap[child]!;
      heap[i]!.index = i;
      i = child;
    }
    heap[i] = timer;
    timer.index = i;
  }
}

/** One moment on a `DeadlineQueue`; `onDue` runs once per `set`, when it is due. */
export class DeadlineTimer {
  #at = 0;
  /** Where it waits in the queue's heap; -1 when it does not (the queue's to keep). */
  index = -1;
  /** The moment it waits for (the queue's to keep). */
  due = 0;

  constructor(private readonly queue: DeadlineQueue, readonly onDue: () => void) {}

  /** When it is due (ms since the epoch); 0 when never set. */
  get at(): number {
    return this.#at;
  }

  /** Replaces the moment it is due. */
  set(at: number): void {
    this.#at = at;
    this.queue.schedule(this, at);
  }

  stop(): void {
    this.queue.remove(this);
  }
}
