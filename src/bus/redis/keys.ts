/**
 * @module bus/redis/keys
 * The Redis bus's key and channel names, and the hash slot each one lives in.
 *
 * Everything about one user shares a hash tag, `{u:<id>}`, so it lives in one slot of a Redis
 * Cluster and every script about the user touches that slot only:
 * - `<p>{u:<id>}`: the user's shard channel (SSUBSCRIBE/SPUBLISH);
 * - `<p>{u:<id>}:at`: set of the node registrations (members, below) the user is present on;
 * - `<p>{u:<id>}:conn`: hash, member → connection slots the user holds there.
 *
 * The node registry has a tag of its own, `{nodes}`:
 * - `<p>{nodes}`: sorted set, member → heartbeat deadline (that shard's `TIME` in ms + TTL);
 * - `<p>{nodes}:users:<member>`: set of the user ids present on that member;
 * - `<p>{nodes}:claimed:<member>`: sorted set of a dead member's users a sweeper is cleaning
 *   up, user id → when the claim lapses.
 *
 * A member is one registration of a node, `<node id>#<tag>`: a node whose deadline passed is
 * dead for good, and registers again under a new member (`presence.ts`). So a member
 * once seen dead never comes back, and a list of dead members may be cached and passed to the
 * user scripts without ever naming a live one. `<p>` must not contain `{` or `}`.
 */

export const HASH_SLOTS = 16384;

/** The hash slot of `key`: CRC16 (XModem) of its hash tag, or of the whole key without one. */
export function hashSlot(key: string): number {
  const open = key.indexOf("{");
  if (open >= 0) {
    const close = key.indexOf("}", open + 1);
    if (close > open + 1) key = key.slice(open + 1, close);
  }
  let crc = 0;
  for (const byte of new TextEncoder().encode(key)) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
  }
  return crc % HASH_SLOTS;
}

export class RedisKeys {
  readonly prefix: string;
  /** `<p>{nodes}`. */
  readonly nodes: string;
  /** The registry's slot. */
  readonly registrySlot: number;
  readonly #slots = new Map<number, number>();

  constructor(prefix: string) {
    if (/[{}]/.test(prefix)) {
      throw new RangeError(`Cannot use key prefix '${prefix}': it must not contain '{' or '}'`);
    }
    this.prefix = prefix;
    this.nodes = `${prefix}{nodes}`;
    this.registrySlot = hashSlot(this.nodes);
  }

  channel(userId: number): string {
    return `${this.prefix}{u:${userId}}`;
  }

  at(userId: number): string {
    return `${this.prefix}{u:${userId}}:at`;
  }

  conn(userId: number): string {
    return `${this.prefix}{u:${userId}}:conn`;
  }

  users(member: string): string {
    return `${this.nodes}:users:${member}`;
  }

  claimed(member: string): string {
    return `${this.nodes}:claimed:${member}`;
  }

  /** The user a channel of this prefix belongs to; NaN for any other channel. */
  userOf(channel: string): number {
    const head = `${this.prefix}{u:`;
    if (!channel.startsWith(head) || !channel.endsWith("}")) return NaN;
    return Number(channel.slice(head.length, -1));
  }

  /** The slot of everything about `userId` (cached: a user's slot never changes). */
  slotOf(userId: number): number {
    let slot = this.#slots.get(userId);
    if (slot === undefined) {
      slot = hashSlot(`{u:${userId}}`);
      if (this.#slots.size >= 100_000) this.#slots.clear();
      this.#slots.set(userId, slot);
    }
    return slot;
  }
}
