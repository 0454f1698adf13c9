/**
 * @module store/postgres/batch_loader
 * Coalesces single-key lookups into one query: while a query is out, new
 * keys wait and go together in the next one, so a burst of logins costs a
 * few round trips rather than one each, with no timer and no added delay
 * when idle (the group-commit idea, for reads).
 */

export class BatchLoader<K, V> {
  #waiting = new Map<K, PromiseWithResolvers<V>[]>();
  #busy = false;

  constructor(
    /** Answers many keys at once; a key missing from the map gets `fallback`. */
    private readonly loadMany: (keys: K[]) => Promise<Map<K, V>>,
    private readonly fallback: V,
    private readonly maxKeys = 1000,
  ) {}

  load(key: K): Promise<V> {
    const waiter = Promise.withResolvers<V>();
    const list = this.#waiting.get(key);
    if (list === undefined) this.#waiting.set(key, [waiter]);
    else list.push(waiter);
    if (!this.#busy) {
      this.#busy = true;
      queueMicrotask(() => this.#flush());
    }
    return waiter.promise;
  }

  async #flush(): Promise<void> {
    while (this.#waiting.size > 0) {
      const batch = new Map<K, PromiseWithResolvers<V>[]>();
      for (const [key, waiters] of this.#waiting) {
        if (batch.size >= this.maxKeys) break;
        batch.set(key, waiters);
      }
      for (const key of batch.keys()) this.#waiting.delete(key);
      try {
        const found = await this.loadMany([...batch.keys()]);
        for (const [key, waiters] of batch) {
          const value = found.has(key) ? found.get(key)! : this.fallback;
          for (const waiter of waiters) waiter.resolve(value);
        }
      } catch (err) {
        for (const waiters of batch.values()) for (const waiter of waiters) waiter.reject(err);
      }
    }
    this.#busy = false;
  }
}
