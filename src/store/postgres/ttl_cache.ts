/**
 * @module store/postgres/ttl_cache
 * A bounded cache of async answers that expire after a fixed age. Concurrent
 * misses for one key share the pending load; a failed load is not cached.
 */

export class TtlCache<K, V> {
  readonly #entries = new Map<K, { value: Promise<V>; expires: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** The cached answer for `key`, or the result of `load` (cached for `ttlMs`). */
  get(key: K, load: () => Promise<V>): Promise<V> {
    const now = this.now();
    const hit = this.#entries.get(key);
    if (hit !== undefined && hit.expires > now) return hit.value;
    if (this.#entries.size >= this.maxEntries) this.#evictExpired(now);
    const value = load();
    const entry = { value, expires: now + this.ttlMs };
    this.#entries.set(key, entry);
    value.catch(() => {
      if (this.#entries.get(key) === entry) this.#entries.delete(key);
    });
    return value;
  }

  #evictExpired(now: number): void {
    for (const [key, entry] of this.#entries) {
      if (entry.expires <= now) this.#entries.delete(key);
    }
    // Still full of live entries: start over rather than grow without bound.
    if (this.#entries.size >= this.maxEntries) this.#entries.clear();
  }
}
