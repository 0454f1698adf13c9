/**
 * @module bus/redis/slots
 * A user's connection slots counted across the cluster (`MAX_CONNECTIONS_PER_USER`), in
 * Redis next to the user's presence, in the user's hash slot (keys in `keys.ts`).
 *
 * `<p>{u:<id>}:conn` maps member → slots held there. A member's slots count until it is seen
 * dead, like its presence: a dead member's field is deleted by the next acquire of that user
 * (given the dead members the last heartbeat saw), and by the sweep of that member.
 *
 * This node's own counts are the truth: they answer while Redis is unreachable, and they are
 * written back to Redis after a failure (a changed count whose write failed) and after every
 * presence reconcile, for the slots it covered (Redis lost data, a failover lost a shard's last
 * writes, or the node registered anew and its counts move to its new member).
 */

import { callsBySlot, runLimited } from "./batches.ts";
import type { RedisKeys } from "./keys.ts";
import type { RedisPresence } from "./presence.ts";
import { type BusScripts, deadArgs, SLOT_SCRIPTS } from "./scripts.ts";
import type { RedisShards } from "./shards.ts";

/** Users per `gbSetSlots` call, and such calls in flight at most. */
const SET_CHUNK = 1000;
const CALLS_IN_FLIGHT = 32;

export class RedisSlots {
  readonly #shards: RedisShards;
  readonly #keys: RedisKeys;
  readonly #presence: RedisPresence;
  readonly #scripts: BusScripts;
  /** User id → slots held on this node. */
  readonly #held = new Map<number, number>();
  /** Users whose count Redis may not have right (a write failed or was not tried). */
  readonly #dirty = new Set<number>();

  constructor(shards: RedisShards, keys: RedisKeys, presence: RedisPresence) {
    for (const [name, definition] of Object.entries(SLOT_SCRIPTS)) {
      shards.commands.defineCommand(name, definition);
    }
    this.#shards = shards;
    this.#keys = keys;
    this.#presence = presence;
    this.#scripts = shards.commands as unknown as BusScripts;
  }

  /** Takes a slot; while Redis does not answer, decides from this node's count. */
  async acquire(userId: number, max: number): Promise<boolean> {
    try {
      const member = this.#presence.member;
      const taken = await this.#shards.run(this.#keys.slotOf(userId), () =>
        this.#scripts.gbAcquire(
          this.#keys.at(userId),
          this.#keys.conn(userId),
          member,
          deadArgs(this.#presence.dead),
          max,
        ));
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
      const member = this.#presence.member;
      await this.#shards.run(
        this.#keys.slotOf(userId),
        () => this.#scripts.gbRelease(this.#keys.conn(userId), member),
      );
    } catch {
      this.#dirty.add(userId);
    }
  }

  /**
   * Writes this node's counts to Redis: those whose write failed, and every count of a user in
   * `slots` (all users when undefined). Throws when Redis does not answer (they stay dirty).
   */
  async writeBack(slots: ReadonlySet<number> | undefined): Promise<void> {
    const users = new Set(this.#dirty);
    for (const id of this.#held.keys()) {
      if (slots === undefined || slots.has(this.#keys.slotOf(id))) users.add(id);
    }
    if (users.size === 0) return;
    for (const id of users) this.#dirty.delete(id);
    const member = this.#presence.member;
    const old = this.#presence.oldMembers;
    const calls = callsBySlot(users, (id) => this.#keys.slotOf(id), this.#shards, SET_CHUNK);
    const errors = await runLimited(
      calls.map(({ slot, items }) => async () => {
        try {
          await this.#shards.run(slot, () =>
            this.#scripts.gbSetSlots(
              items.length,
              items.map((id) => this.#keys.conn(id)),
              member,
              old.length,
              old,
              items.map((id) => this.#held.get(id) ?? 0),
            ));
        } catch (err) {
          for (const id of items) this.#dirty.add(id);
          throw err;
        }
      }),
      CALLS_IN_FLIGHT,
    );
    if (errors[0] !== undefined) throw errors[0];
  }

  /** The users holding slots on this node. */
  users(): number[] {
    return [...this.#held.keys(), ...this.#dirty];
  }

  /** Forgets every count (the node retired; Redis dropped its fields). */
  clear(): void {
    this.#held.clear();
    this.#dirty.clear();
  }
}
