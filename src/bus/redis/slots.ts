/**
 * @module bus/redis/slots
 * A user's connection slots counted across the cluster (`MAX_CONNECTIONS_PER_USER`), in
 * Redis next to presence (keys in `scripts.ts`).
 *
 * `<p>conn:<userId>` maps node id → slots held there. A node's slots count only while the
 * node is live (its heartbeat deadline in `<p>nodes` is ahead), like its presence: a dead
 * node's fields are deleted by the next acquire of that user, and by the sweep of that node.
 *
 * This node's own counts are the truth: they answer while Redis is unreachable, and they are
 * written back to Redis after a failure (a changed count whose write failed) and after every
 * full presence reconcile (Redis lost its data, or swept this node while it was only late).
 */

import type { RedisLink } from "./link.ts";
import { LIB, type ScriptDefinition } from "./scripts.ts";

const SLOT_SCRIPTS = {
  /**
   * KEYS[1] = `<p>nodes`, ARGV = prefix, this node, user id, max → 1 after taking a slot,
   * 0 when live nodes (this one included) already hold `max`.
   */
  gbAcquire: {
    numberOfKeys: 1,
    lua: LIB + `
local p, self, max = ARGV[1], ARGV[2], tonumber(ARGV[4])
local key, now, held = p .. 'conn:' .. ARGV[3], now_ms(), 0
local fields = redis.call('HGETALL', key)
for i = 1, #fields, 2 do
  if fields[i] == self or is_live(KEYS[1], fields[i], now) then
    held = held + tonumber(fields[i + 1])
  else
    redis.call('HDEL', key, fields[i])
  end
end
if held >= max then return 0 end
redis.call('HINCRBY', key, self, 1)
return 1`,
  },
  /** ARGV = prefix, this node, user id: gives one slot back. */
  gbRelease: {
    numberOfKeys: 0,
    lua: `
local key = ARGV[1] .. 'conn:' .. ARGV[3]
if redis.call('HINCRBY', key, ARGV[2], -1) <= 0 then redis.call('HDEL', key, ARGV[2]) end
return 1`,
  },
  /** ARGV = prefix, this node, then pairs of user id and count: sets this node's counts. */
  gbSetSlots: {
    numberOfKeys: 0,
    lua: `
local p, self = ARGV[1], ARGV[2]
for i = 3, #ARGV, 2 do
  local key, n = p .. 'conn:' .. ARGV[i], tonumber(ARGV[i + 1])
  if n > 0 then redis.call('HSET', key, self, n) else redis.call('HDEL', key, self) end
end
return 1`,
  },
} satisfies Record<string, ScriptDefinition>;

interface SlotCommands {
  gbAcquire(
    nodes: string,
    prefix: string,
    nodeId: string,
    userId: number,
    max: number,
  ): Promise<number>;
  gbRelease(prefix: string, nodeId: string, userId: number): Promise<number>;
  gbSetSlots(prefix: string, nodeId: string, pairs: readonly number[]): Promise<number>;
}

/** Users per `gbSetSlots` call, to keep each script call short. */
const SET_CHUNK = 1000;

export class RedisSlots {
  readonly #link: RedisLink;
  readonly #scripts: SlotCommands;
  readonly #prefix: string;
  readonly #nodeId: string;
  /** User id → slots held on this node. */
  readonly #held = new Map<number, number>();
  /** Users whose count Redis may not have right (a write failed or was not tried). */
  readonly #dirty = new Set<number>();

  constructor(link: RedisLink, options: { prefix: string; nodeId: string }) {
    for (const [name, definition] of Object.entries(SLOT_SCRIPTS)) {
      link.conn.defineCommand(name, definition);
    }
    this.#link = link;
    this.#scripts = link.conn as unknown as SlotCommands;
    this.#prefix = options.prefix;
    this.#nodeId = options.nodeId;
  }

  /** Takes a slot; while Redis does not answer, decides from this node's count. */
  async acquire(userId: number, max: number): Promise<boolean> {
    try {
      const nodes = `${this.#prefix}nodes`;
      const taken = await this.#link.run(() =>
        this.#scripts.gbAcquire(nodes, this.#prefix, this.#nodeId, userId, max)
      );
      if (taken !== 1) return false;
    } catch {
      // Redis may or may not have counted it: this node's count decides and is written back.
      this.#dirty.add(userId);
      if ((this.#held.get(userId) ?? 0) >= max) return false;
    }
    this.#held.set(userId, (this.#held.get(userId) ?? 0) + 1);
    return true;
  }

  async release(userId: number): Promise<void> {
    const held = this.#held.get(userId) ?? 0;
    if (held === 0) return;
    if (held > 1) this.#held.set(userId, held - 1);
    else this.#held.delete(userId);
    try {
      await this.#link.run(() => this.#scripts.gbRelease(this.#prefix, this.#nodeId, userId));
    } catch {
      this.#dirty.add(userId);
    }
  }

  /**
   * Writes this node's counts to Redis: every count when `all` (after a full reconcile), else
   * those whose write failed. Throws when Redis does not answer (they stay to be written).
   */
  async writeBack(all: boolean): Promise<void> {
    const users = all ? [...new Set([...this.#held.keys(), ...this.#dirty])] : [...this.#dirty];
    if (users.length === 0) return;
    for (const id of users) this.#dirty.delete(id);
    try {
      for (let i = 0; i < users.length; i += SET_CHUNK) {
        const pairs = users.slice(i, i + SET_CHUNK).flatMap((id) => [id, this.#held.get(id) ?? 0]);
        await this.#link.run(() => this.#scripts.gbSetSlots(this.#prefix, this.#nodeId, pairs));
      }
    } catch (err) {
      for (const id of users) this.#dirty.add(id);
      throw err;
    }
  }

  /** Forgets every count (the node retired; Redis dropped its fields). */
  clear(): void {
    this.#held.clear();
    this.#dirty.clear();
  }
}
