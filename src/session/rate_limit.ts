/**
 * @module session/rate_limit
 * Token buckets for per-connection limits, the abuse meter that turns a
 * sustained flood into a close, and the sign-in rates kept per user and per
 * client address.
 *
 * Give them a monotonic clock (`performance.now`): a wall clock stepped back
 * would otherwise refuse a well-behaved client until it caught up again. A
 * clock that does go back is tolerated all the same: the step refills
 * nothing and takes nothing away.
 */

/** Allows `burst` events at once and `ratePerS` on average. */
export class TokenBucket {
  #tokens: number;
  #last: number;

  constructor(
    private readonly burst: number,
    private readonly ratePerS: number,
    private readonly now: () => number,
  ) {
    this.#tokens = burst;
    this.#last = now();
  }

  /** Takes one token; false when the bucket is empty (the event is over the limit). */
  take(): boolean {
    const now = this.now();
    const elapsed = Math.max(0, now - this.#last);
    this.#tokens = Math.min(this.burst, this.#tokens + (elapsed / 1000) * this.ratePerS);
    this.#last = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /**
   * Milliseconds until `take()` would succeed, as of the last `take()` (0 when a token is left):
   * what a refusal tells the client as `retry_after_ms` (docs/protocol.md, "Chat messages").
   * Rounded up, so a client that waits exactly this long is not refused again.
   */
  msUntilToken(): number {
    if (this.#tokens >= 1) return 0;
    const waited = Math.max(0, this.now() - this.#last);
    const missing = 1 - this.#tokens - (waited / 1000) * this.ratePerS;
    return missing <= 0 ? 0 : Math.ceil((missing / this.ratePerS) * 1000);
  }
}

/**
 * Counts refusals of a limit of `ratePerS`. It forgives `ratePerS` refusals a
 * second and holds `10 × ratePerS`, so a client sending more than twice the
 * limit for about ten seconds (three times the limit: ten seconds) is judged
 * abusive, while one that only bursts past it now and then never is.
 */
export class AbuseMeter {
  readonly #bucket: TokenBucket;

  constructor(ratePerS: number, now: () => number) {
    this.#bucket = new TokenBucket(Math.max(10, 10 * ratePerS), ratePerS, now);
  }

  /** Records one refusal; true when the client should now be disconnected. */
  refused(): boolean {
    return !this.#bucket.take();
  }
}

/** The rate limits of one connection (README, "Limits"). */
export class ConnectionRates {
  /** Every frame. */
  readonly frames: TokenBucket;
  readonly frameAbuse: AbuseMeter;
  /** Chat messages. */
  readonly chat: TokenBucket;
  readonly chatAbuse: AbuseMeter;
  /** Typing frames (over the limit: dropped without an answer, never judged abuse). */
  readonly typing: TokenBucket;

  constructor(
    limits: {
      frameRatePerS: number;
      chatBurst: number;
      chatRatePerS: number;
      typingRatePerS: number;
    },
    now: () => number,
  ) {
    this.frames = new TokenBucket(limits.frameRatePerS, limits.frameRatePerS, now);
    this.frameAbuse = new AbuseMeter(limits.frameRatePerS, now);
    this.chat = new TokenBucket(limits.chatBurst, limits.chatRatePerS, now);
    this.chatAbuse = new AbuseMeter(limits.chatRatePerS, now);
    this.typing = new TokenBucket(limits.typingRatePerS, limits.typingRatePerS, now);
  }
}

/**
 * One token bucket per key (a user id, a client address), on this node. A
 * bucket left alone until it is full again is forgotten (it would allow just
 * what a new one allows), so memory holds only the keys used within the last
 * `burst / ratePerS` seconds, and never more than `maxKeys`: past that the
 * longest unused bucket is dropped and its key starts afresh.
 */
export class KeyedBuckets<K> {
  /** In order of last use, oldest first. */
  readonly #buckets = new Map<K, { bucket: TokenBucket; usedAt: number }>();
  readonly #refillMs: number;

  constructor(
    private readonly burst: number,
    private readonly ratePerS: number,
    private readonly now: () => number,
    private readonly maxKeys = 100_000,
  ) {
    this.#refillMs = (burst / ratePerS) * 1000;
  }

  /** Keys remembered now. */
  get size(): number {
    return this.#buckets.size;
  }

  /** Takes one token of `key`'s bucket; false when it is empty. */
  take(key: K): boolean {
    const now = this.now();
    this.#forgetRefilled(now);
    const bucket = this.#buckets.get(key)?.bucket ??
      new TokenBucket(this.burst, this.ratePerS, this.now);
    this.#buckets.delete(key);
    this.#buckets.set(key, { bucket, usedAt: now });
    if (this.#buckets.size > this.maxKeys) {
      const [oldest] = this.#buckets.keys();
      this.#buckets.delete(oldest!);
    }
    return bucket.take();
  }

  #forgetRefilled(now: number): void {
    for (const [key, { usedAt }] of this.#buckets) {
      if (now - usedAt < this.#refillMs) return;
      this.#buckets.delete(key);
    }
  }
}

/**
 * The sign-in rates of this node (README, "Security and limits"): per user
 * and per client address, each bucket holding one minute's allowance. They
 * are checked before a sign-in costs any database work.
 */
export class LoginRates {
  readonly #users: KeyedBuckets<number>;
  readonly #addresses: KeyedBuckets<string>;

  constructor(
    limits: { loginRatePerUserPerMin: number; loginRatePerIpPerMin: number },
    now: () => number,
  ) {
    const { loginRatePerUserPerMin: perUser, loginRatePerIpPerMin: perAddress } = limits;
    this.#users = new KeyedBuckets(perUser, perUser / 60, now);
    this.#addresses = new KeyedBuckets(perAddress, perAddress / 60, now);
  }

  /**
   * Takes one sign-in of `userId` from `address`; false when either is over
   * its rate. A sign-in refused for its user is not charged to its address:
   * one player's retry loop does not lock out the others behind the same NAT.
   */
  take(userId: number, address: string): boolean {
    return this.#users.take(userId) && this.#addresses.take(address);
  }
}
