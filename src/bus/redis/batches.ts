/**
 * @module bus/redis/batches
 * Many users' work as few script calls: grouped by batch key (on a Redis Cluster the hash slot,
 * since a script may touch one slot only; on one Redis all users share one), in calls of
 * bounded size, run with a bound on calls in flight.
 */

import type { RedisKeys } from "./keys.ts";
import type { RedisShards } from "./shards.ts";

/** Users per script call about several users, and such calls in flight at most. */
const USERS_PER_CALL = 500;
const CALLS_IN_FLIGHT = 32;

/** One script call's share: items of one batch key, `slot` being one of theirs. */
export interface Call<T> {
  slot: number;
  items: T[];
}

/** `items` in calls of at most `perCall`, each of one batch key; order kept within a key. */
export function callsBySlot<T>(
  items: Iterable<T>,
  slotOf: (item: T) => number,
  shards: RedisShards,
  perCall: number,
): Call<T>[] {
  const groups = new Map<number, Call<T>>();
  for (const item of items) {
    const slot = slotOf(item);
    const key = shards.batchKey(slot);
    let group = groups.get(key);
    if (group === undefined) groups.set(key, group = { slot, items: [] });
    group.items.push(item);
  }
  const calls: Call<T>[] = [];
  for (const { slot, items: all } of groups.values()) {
    for (let i = 0; i < all.length; i += perCall) {
      calls.push({ slot, items: all.slice(i, i + perCall) });
    }
  }
  return calls;
}

/** Runs every task, at most `limit` at a time; resolves with the errors of those that failed. */
export async function runLimited(
  tasks: readonly (() => Promise<void>)[],
  limit: number,
): Promise<unknown[]> {
  const errors: unknown[] = [];
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const task = tasks[next++]!;
      try {
        await task();
      } catch (err) {
        errors.push(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return errors;
}

/**
 * Runs `call` for `users` in script calls of one batch key each, gated on the primary serving
 * it; resolves with the failures.
 */
export function perUserCalls(
  shards: RedisShards,
  keys: RedisKeys,
  users: Iterable<number>,
  call: (batch: Call<number>) => Promise<void>,
): Promise<unknown[]> {
  const calls = callsBySlot(users, (id) => keys.slotOf(id), shards, USERS_PER_CALL);
  return runLimited(
    calls.map((batch) => () => shards.run(batch.slot, () => call(batch))),
    CALLS_IN_FLIGHT,
  );
}

/** The `at` and `conn` keys of each user, in order, as the several-user scripts take them. */
export function userKeys(keys: RedisKeys, ids: readonly number[]): string[] {
  return ids.flatMap((id) => [keys.at(id), keys.conn(id)]);
}
