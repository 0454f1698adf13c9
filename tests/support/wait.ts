/**
 * @module wait
 * Waiting in tests: a plain pause, polling until a condition holds, and a deadline on a promise.
 * Each fails with a message saying what did not happen, and leaves no timer behind.
 */

/** A promise of `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Text for a failure message, built only when it is needed. */
export type What = string | (() => string);

const say = (what: What) => typeof what === "string" ? what : what();

/** Resolves once `check` returns true, polling every 10 ms; rejects after `timeoutMs`. */
export async function eventually(
  what: What,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${say(what)}`);
    await sleep(10);
  }
}

/** `promise`, or a rejection saying `what` did not happen within `ms`. */
export async function within<T>(ms: number, promise: Promise<T>, what: What): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not within ${ms} ms: ${say(what)}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
