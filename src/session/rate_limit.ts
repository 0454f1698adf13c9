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

/**
 * The rate limits of one connection (README, "Limits"). Every bucket but the
 * frames' is made at its first use: a bucket starts full, so one made late is
 * the one that would have waited unused since the connection opened, and an
 * idle connection (most of them) holds one bucket instead of eight objects.
 */
export class ConnectionRates {
  /** Every frame. */
  readonly frames: TokenBucket;
  #frameAbuse: AbuseMeter | undefined;
  #chat: TokenBucket | undefined;
  #chatAbuse: AbuseMeter | undefined;
  #typing: TokenBucket | undefined;

  constructor(
    private readonly limits: {
      frameRatePerS: number;
      chatBurst: number;
      chatRatePerS: number;
      typingRatePerS: number;
    },
    private readonly now: () => number,
  ) {
    this.frames = new TokenBucket(limits.frameRatePerS, limits.frameRatePerS, now);
  }

  get frameAbuse(): AbuseMeter {
    return this.#frameAbuse ??= new AbuseMeter(this.limits.frameRatePerS, this.now);
  }

  /** Chat messages. */
  get chat(): TokenBucket {
    return this.#chat ??= new TokenBucket(
      this.limits.chatBurst,
      this.limits.chatRatePerS,
      this.now,
    );
  }

  get chatAbuse(): AbuseMeter {
    return this.#chatAbuse ??= new AbuseMeter(this.limits.chatRatePerS, this.now);
  }

  /** Typing frames (over the limit: dropped without an answer, never judged abuse). */
  get typing(): TokenBucket {
    const { typingRatePerS } = this.limits;
    return this.#typing ??= new TokenBucket(typingRatePerS, typingRatePerS, this.now);
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

  /** Milliseconds until `key`'s bucket has a token again (0 when it has one or is unknown). */
  msUntilToken(key: K): number {
    return this.#buckets.get(key)?.bucket.msUntilToken() ?? 0;
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

/** Why a sign-in was refused before any database work, and when to try again. */
export interface LoginRefusal {
  /** `sign_in_rate`: the user's or the address's own rate; `admission`: the node's. */
  reason: "sign_in_rate" | "admission";
  retryAfterMs: number;
}

/**
 * The sign-in rates of this node (README, "Security and limits"): per user
 * and per client address, each bucket holding one minute's allowance, and
 * the node's admission rate for everyone together (`LoginAdmission`). They
 * are checked before a sign-in costs any database work.
 */
export class LoginRates {
  readonly #users: KeyedBuckets<number>;
  readonly #addresses: KeyedBuckets<string>;
  readonly #admission: LoginAdmission | undefined;

  constructor(
    limits: {
      loginRatePerUserPerMin: number;
      loginRatePerIpPerMin: number;
      loginRatePerS: number;
    },
    now: () => number,
  ) {
    const { loginRatePerUserPerMin: perUser, loginRatePerIpPerMin: perAddress } = limits;
    this.#users = new KeyedBuckets(perUser, perUser / 60, now);
    this.#addresses = new KeyedBuckets(perAddress, perAddress / 60, now);
    this.#admission = limits.loginRatePerS > 0
      ? new LoginAdmission(limits.loginRatePerS, now)
      : undefined;
  }

  /**
   * Takes one sign-in of `userId` from `address`: undefined when it may go
   * on, else why not and when to try again. A sign-in refused for its user is
   * not charged to its address: one player's retry loop does not lock out the
   * others behind the same NAT. The node's admission comes last, so only
   * sign-ins their own rates allow take a place in it.
   */
  take(userId: number, address: string): LoginRefusal | undefined {
    if (!this.#users.take(userId)) {
      return { reason: "sign_in_rate", retryAfterMs: this.#users.msUntilToken(userId) };
    }
    if (!this.#addresses.take(address)) {
      return { reason: "sign_in_rate", retryAfterMs: this.#addresses.msUntilToken(address) };
    }
    const wait = this.#admission?.take(userId) ?? 0;
    return wait > 0 ? { reason: "admission", retryAfterMs: wait } : undefined;
  }
}

/**
 * The node's admission rate for sign-ins (`LOGIN_RATE_PER_S`): at most
 * `ratePerS` a second on average, a fifth of a second's worth at once. A
 * sign-in past it is not queued (it would hold a socket and, once admitted
 * late, find its client gone): it is refused with the time of its own place
 * in the schedule, which is kept for that user. Each refusal takes the next
 * free place, so a crowd that arrives at once is told to come back spread
 * over exactly the time the node needs for it, instead of all at the same
 * moment; a user who comes back at (or after) its time is let in without
 * taking another place, one who comes early is told again how long is left.
 * A place not used within `GRACE_MS` of its time is given up (the client went
 * away), and at most `maxPlaces` are kept.
 */
export class LoginAdmission {
  /** A place is honoured this long after its time (a client's jitter, a slow network). */
  static readonly GRACE_MS = 5000;
  /** A client this little early for its place is let in (timer granularity). */
  static readonly EARLY_MS = 20;
  readonly #intervalMs: number;
  readonly #toleranceMs: number;
  /** The time the next free place starts (GCRA's theoretical arrival time), monotonic ms. */
  #next = -Infinity;
  /** Places given to refused users, by user, in order of their time. */
  readonly #places = new Map<number, number>();

  constructor(
    ratePerS: number,
    private readonly now: () => number,
    private readonly maxPlaces = 100_000,
  ) {
    this.#intervalMs = 1000 / ratePerS;
    const burst = Math.max(1, Math.floor(ratePerS / 5));
    this.#toleranceMs = (burst - 1) * this.#intervalMs;
  }

  /** Places kept now (for tests and metrics). */
  get waiting(): number {
    return this.#places.size;
  }

  /** A sign-in of `userId` now: 0 when it may go on, else milliseconds until its place. */
  take(userId: number): number {
    const now = this.now();
    this.#forgetPast(now);
    const place = this.#places.get(userId);
    if (place !== undefined) {
      if (now >= place - LoginAdmission.EARLY_MS) {
        this.#places.delete(userId);
        return 0;
      }
      return Math.ceil(place - now);
    }
    const next = Math.max(this.#next, now);
    if (next - now <= this.#toleranceMs) {
      this.#next = next + this.#intervalMs;
      return 0;
    }
    // The place this sign-in would have had, if it had waited: taken now.
    const at = next - this.#toleranceMs;
    this.#next = next + this.#intervalMs;
    if (this.#places.size < this.maxPlaces) this.#places.set(userId, at);
    return Math.ceil(at - now);
  }

  #forgetPast(now: number): void {
    for (const [userId, at] of this.#places) {
      if (now - at < LoginAdmission.GRACE_MS) return;
      this.#places.delete(userId);
    }
  }
}
