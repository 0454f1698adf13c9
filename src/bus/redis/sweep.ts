/**
 * @module bus/redis/sweep
 * Cleaning up after dead members (`presence.ts` runs it after every heartbeat, with
 * the dead members that heartbeat saw): each sweeper claims a batch of a dead member's users
 * (`gbClaim`: concurrent sweepers get disjoint batches), drops the member from each user's set
 * and slots in the user's slot (`gbSweep`, reporting the users whose set that emptied: they
 * went offline), then gives the claims back. A sweeper that dies in between leaves claims that
 * lapse, and another sweeper takes those users again: `gbSweep` of a user already swept removes
 * nothing and reports nothing. The registry forgets the member once it has no users left.
 */

import { perUserCalls, userKeys } from "./batches.ts";
import { type BusScripts, deadArgs } from "./scripts.ts";
import type { BusParts } from "./shards.ts";

/** Users of one dead member claimed per call, to keep each script call short. */
const SWEEP_BATCH = 1000;
/** Claim calls per sweep at most; more waits for the next heartbeat. */
const SWEEP_CALLS = 100;
/** How long a sweeper's claim holds before another sweeper takes the users over. */
const CLAIM_MS = 30_000;

export interface SweepOptions extends BusParts {
  scripts: BusScripts;
  /** The dead members to clean up after (also dropped from every user this sweep touches). */
  dead: readonly string[];
  stopped(): boolean;
  /** Told of each user this sweep took offline. */
  offline(userId: number): void;
}

/** Sweeps `dead`; throws when Redis does not answer (the next heartbeat sweeps again). */
export async function sweepDead(o: SweepOptions): Promise<void> {
  const { keys, scripts } = o;
  let calls = 0;
  for (const dead of o.dead) {
    const users = keys.users(dead);
    const claimed = keys.claimed(dead);
    while (calls++ < SWEEP_CALLS && !o.stopped()) {
      const ids = (await o.shards.run(keys.registrySlot, () =>
        scripts.gbClaim(keys.nodes, users, claimed, dead, SWEEP_BATCH, CLAIM_MS))).map(Number);
      if (ids.length === 0) {
        break;
      }
      const offline: number[] = [];
      const errors = await perUserCalls(o.shards, keys, ids, async ({ items }) => {
        const gone = await scripts.gbSweep(
          2 * items.length,
          ...userKeys(keys, items),
          dead,
          deadArgs(o.dead),
        );
        for (const u of gone) {
          offline.push(items[u - 1]!);
        }
      });
      for (const id of offline) {
        o.offline(id);
      }
      o.logger.info("bus_node_swept", { node_id: dead, offline_users: offline.length });
      // A failed call's users keep their claim; once it lapses a sweeper tries again.
      if (errors[0] !== undefined) {
        throw errors[0];
      }
      await o.shards.run(keys.registrySlot, () =>
        o.shards.commands.zrem(claimed, ...ids));
    }
  }
}
