/**
 * @module bus/redis/publisher
 * The Redis bus's publishes, with a bound on those awaiting Redis's reply.
 *
 * The publishes of one turn (a batch's messages to their recipients and senders, a presence
 * fan-out) go to Redis as one script call (`gbPublish`) per batch key, in order: on one Redis
 * one command, one reply and one promise per turn instead of per frame; on a Redis Cluster one
 * call per hash slot, sent to the primary serving it (the channels are the script's keys).
 * Each frame is a sharded publish (`SPUBLISH`), so it travels only through the shard of its
 * user.
 *
 * A publish marked `toOthers` (the node itself subscribes to the channel) is published only
 * when another connection subscribes to it too; the script asks the user's own primary
 * (`PUBSUB SHARDNUMSUB`, which counts the subscribers of that primary, where every node
 * subscribes to the user's channel) and publishes in one step, so a node subscribed at that
 * moment gets the frame exactly as with a plain publish.
 *
 * Past half of either bound (count, payload bytes), droppable frames (typing, presence) are
 * dropped; past the bound, every publish is counted failed at once, except a closing delivery
 * (`BusDelivery.close`, never dropped by the bus). So a session is never blocked and memory does
 * not grow with a backlog when Redis is slow or silent; a silent connection is replaced by
 * the health check (`link.ts`), which fails what it had in flight.
 */

import type { BusDelivery } from "../bus.ts";
import { RedisLinkDownError } from "./link.ts";
import { callsBySlot } from "./batches.ts";
import { encodePayload } from "./payload.ts";
import type { ScriptDefinition } from "./scripts.ts";
import type { RedisShards } from "./shards.ts";
import { errorMessage, type Logger } from "../../log.ts";

/**
 * Far above what a healthy Redis leaves unanswered (its replies come within a millisecond or
 * so: a few hundred publishes at most at full load), low enough that a backlog of 4 KB frames
 * stays a few tens of MiB.
 */
export const MAX_PUBLISHES_IN_FLIGHT = 8192;
export const MAX_PUBLISH_BYTES_IN_FLIGHT = 16 * 1024 * 1024;
/** At most one `bus_publish_failed` line per this long (outside outages, logged apart). */
const LOG_EVERY_MS = 10_000;

export interface RedisPublisherOptions {
  nodeId: string;
  maxInFlight: number;
  maxBytesInFlight: number;
  logger: Logger;
  /** Told of every publish's outcome; a dropped one counts as failed. */
  onPublish: (ok: boolean) => void;
  /** Whether an outage is under way (its failures are then not logged one by one). */
  isDown: () => boolean;
}

/**
 * KEYS = the channel of each publish, or one channel for them all; ARGV = (to others, payload)
 * per publish, in order. "To others" `1`: published only when more than one connection (the
 * calling node's own subscriber) is subscribed to the channel on this primary. Answers how many
 * subscribers got a frame. Defined twice: `gbPublish` takes the key count first (several
 * channels), `gbPublishTo` one channel, first, so that on a cluster ioredis' automatic pipeline
 * groups it by that channel's slot and the publishes of a turn leave in one write per primary.
 */
const PUBLISH_LUA = `
local got = 0
for i = 1, #ARGV / 2 do
  local channel = KEYS[#KEYS == 1 and 1 or i]
  if ARGV[2 * i - 1] == '0' or redis.call('PUBSUB', 'SHARDNUMSUB', channel)[2] > 1 then
    got = got + redis.call('SPUBLISH', channel, ARGV[2 * i])
  end
end
return got
`;

interface PublishCommands {
  gbPublish(keyCount: number, channels: string[], args: string[]): Promise<number>;
  gbPublishTo(channel: string, args: string[]): Promise<number>;
}

interface Publish {
  channel: string;
  slot: number;
  toOthers: string;
  payload: string;
}

/** Publishes per script call at most (each a few microseconds of Redis's time). */
const MAX_PER_CALL = 500;

export class RedisPublisher {
  readonly #shards: RedisShards;
  readonly #options: RedisPublisherOptions;
  /** This turn's publishes. */
  #turn: Publish[] = [];
  /** Publishes not yet answered (this turn's included), and their payload bytes. */
  #inFlight = 0;
  #bytes = 0;
  #failures = 0;
  #lastLog = 0;

  constructor(shards: RedisShards, options: RedisPublisherOptions) {
    shards.commands.defineCommand("gbPublish", { lua: PUBLISH_LUA } satisfies ScriptDefinition);
    shards.commands.defineCommand("gbPublishTo", { numberOfKeys: 1, lua: PUBLISH_LUA });
    this.#shards = shards;
    this.#options = options;
  }

  /**
   * Publishes `delivery` on `channel`, of hash slot `slot`; never throws, never waits. With
   * `toOthers` (this node is subscribed to `channel`, confirmed), only when another subscriber
   * listens. Stamped with the clock of the primary serving the slot.
   */
  publish(channel: string, slot: number, delivery: BusDelivery, toOthers = false): void {
    const close = delivery.close === true;
    const share = close ? Infinity : delivery.droppable ? 0.5 : 1;
    const primary = this.#shards.primaryOf(slot)?.key;
    const sentAt = primary === undefined ? undefined : this.#shards.redisNow(primary);
    const payload = encodePayload(this.#options.nodeId, delivery, sentAt);
    const bytes = payload.length;
    if (
      this.#inFlight >= this.#options.maxInFlight * share ||
      this.#bytes + bytes > this.#options.maxBytesInFlight * share
    ) {
      this.#failed(new Error("too many publishes awaiting Redis"));
      return;
    }
    this.#inFlight++;
    this.#bytes += bytes;
    if (this.#turn.length === 0) queueMicrotask(() => this.#flush());
    this.#turn.push({ channel, slot, toOthers: toOthers ? "1" : "0", payload });
  }

  /** Sends this turn's publishes, a script call per batch key and `MAX_PER_CALL` publishes. */
  #flush(): void {
    const turn = this.#turn;
    this.#turn = [];
    for (const { slot, items } of callsBySlot(turn, (p) => p.slot, this.#shards, MAX_PER_CALL)) {
      const count = items.length;
      let bytes = 0;
      for (const item of items) bytes += item.payload.length;
      const scripts = this.#shards.commands as unknown as PublishCommands;
      const channel = items[0]!.channel;
      const args = items.flatMap((item) => [item.toOthers, item.payload]);
      this.#shards.run(
        slot,
        () =>
          items.every((item) => item.channel === channel)
            ? scripts.gbPublishTo(channel, args)
            : scripts.gbPublish(count, items.map((item) => item.channel), args),
      )
        .then(() => {
          for (let k = 0; k < count; k++) this.#options.onPublish(true);
        }, (err) => {
          for (let k = 0; k < count; k++) this.#failed(err);
        })
        .finally(() => {
          this.#inFlight -= count;
          this.#bytes -= bytes;
        });
    }
  }

  #failed(err: unknown): void {
    this.#failures++;
    this.#options.onPublish(false);
    // During an outage the outage's own line says it all.
    if (this.#options.isDown() || err instanceof RedisLinkDownError) return;
    const now = Date.now();
    if (now - this.#lastLog < LOG_EVERY_MS) return;
    this.#lastLog = now;
    this.#options.logger.warn("bus_publish_failed", {
      failures: this.#failures,
      error: errorMessage(err),
    });
  }
}
