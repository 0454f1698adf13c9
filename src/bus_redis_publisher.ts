/**
 * @module bus_redis_publisher
 * The Redis bus's publishes, with a bound on those awaiting Redis's reply.
 *
 * Past half of either bound (count, payload bytes), droppable frames (typing, presence) are
 * dropped; past the bound, every publish is counted failed at once, except a closing delivery
 * (`BusDelivery.close`, never dropped by the bus). So a session is never blocked and memory does
 * not grow with a backlog when Redis is slow or silent; a silent connection is replaced by
 * the health check (`bus_redis_link.ts`), which fails what it had in flight.
 */

import type { BusDelivery } from "./bus.ts";
import { type RedisLink, RedisLinkDownError } from "./bus_redis_link.ts";
import { encodePayload } from "./bus_redis_payload.ts";
import type { ScriptDefinition } from "./bus_redis_scripts.ts";
import { errorMessage, type Logger } from "./log.ts";

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
 * ARGV[1] = channel, ARGV[2] = payload: published when more than one connection (the
 * caller's node's own subscriber) is subscribed to the channel. Answers how many got it.
 * Pattern subscribers do not count in NUMSUB, and the nodes use none.
 */
const PUBLISH_TO_OTHERS: ScriptDefinition = {
  numberOfKeys: 0,
  lua: `
if redis.call('PUBSUB', 'NUMSUB', ARGV[1])[2] > 1 then
  return redis.call('PUBLISH', ARGV[1], ARGV[2])
end
return 0
`,
};

interface PublishCommands {
  gbPublishToOthers(channel: string, payload: string): Promise<number>;
}

export class RedisPublisher {
  readonly #link: RedisLink;
  readonly #options: RedisPublisherOptions;
  #bytes = 0;
  #failures = 0;
  #lastLog = 0;

  constructor(link: RedisLink, options: RedisPublisherOptions) {
    link.conn.defineCommand("gbPublishToOthers", PUBLISH_TO_OTHERS);
    this.#link = link;
    this.#options = options;
  }

  /**
   * Publishes `delivery` on `channel`; never throws, never waits. With `toOthers` (this node
   * is subscribed to `channel`, confirmed), only when another subscriber listens.
   */
  publish(channel: string, delivery: BusDelivery, toOthers = false): void {
    const close = delivery.close === true;
    const share = close ? Infinity : delivery.droppable ? 0.5 : 1;
    const payload = encodePayload(this.#options.nodeId, delivery, this.#link.redisNow());
    const bytes = payload.length;
    if (
      this.#link.inFlight >= this.#options.maxInFlight * share ||
      this.#bytes + bytes > this.#options.maxBytesInFlight * share
    ) {
      this.#failed(new Error("too many publishes awaiting Redis"));
      return;
    }
    this.#bytes += bytes;
    this.#link.run((conn) =>
      toOthers
        ? (conn as unknown as PublishCommands).gbPublishToOthers(channel, payload)
        : conn.publish(channel, payload)
    )
      .then(() => this.#options.onPublish(true), (err) => this.#failed(err))
      .finally(() => (this.#bytes -= bytes));
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
