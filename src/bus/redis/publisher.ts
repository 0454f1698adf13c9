/**
 * @module bus/redis/publisher
 * The Redis bus's publishes, with a bound on those awaiting Redis's reply.
 *
 * The publishes of one turn (a batch's messages to their recipients and senders, a presence
 * fan-out) go to Redis as one script call (`gbPublish`), in order: one command, one reply and
 * one promise per turn instead of per frame. A publish marked `toOthers` (the node itself
 * subscribes to the channel) is published only when another connection subscribes to it too;
 * the script asks Redis (NUMSUB) and publishes in one step, so a node subscribed at that moment
 * gets the frame exactly as with a plain PUBLISH.
 *
 * Past half of either bound (count, payload bytes), droppable frames (typing, presence) are
 * dropped; past the bound, every publish is counted failed at once, except a closing delivery
 * (`BusDelivery.close`, never dropped by the bus). So a session is never blocked and memory does
 * not grow with a backlog when Redis is slow or silent; a silent connection is replaced by
 * the health check (`link.ts`), which fails what it had in flight.
 */

import type { BusDelivery } from "../bus.ts";
import { type RedisLink, RedisLinkDownError } from "./link.ts";
import { encodePayload } from "./payload.ts";
import type { ScriptDefinition } from "./scripts.ts";
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
 * ARGV = (channel, to others, payload) per publish, in order. "To others" `1`: published only
 * when more than one connection (the calling node's own subscriber) is subscribed to the
 * channel. Answers how many subscribers got a frame. Pattern subscribers do not count in
 * NUMSUB, and the nodes use none.
 */
const PUBLISH_SCRIPT: ScriptDefinition = {
  numberOfKeys: 0,
  lua: `
local got = 0
for i = 1, #ARGV, 3 do
  local channel = ARGV[i]
  if ARGV[i + 1] == '0' or redis.call('PUBSUB', 'NUMSUB', channel)[2] > 1 then
    got = got + redis.call('PUBLISH', channel, ARGV[i + 2])
  end
end
return got
`,
};

interface PublishCommands {
  gbPublish(...args: string[]): Promise<number>;
}

/** Publishes per script call at most (each a few microseconds of Redis's time). */
const MAX_PER_CALL = 500;

export class RedisPublisher {
  readonly #link: RedisLink;
  readonly #options: RedisPublisherOptions;
  /** This turn's publishes, flat as the script takes them. */
  #turn: string[] = [];
  /** Publishes not yet answered (this turn's included), and their payload bytes. */
  #inFlight = 0;
  #bytes = 0;
  #failures = 0;
  #lastLog = 0;

  constructor(link: RedisLink, options: RedisPublisherOptions) {
    link.conn.defineCommand("gbPublish", PUBLISH_SCRIPT);
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
      this.#inFlight >= this.#options.maxInFlight * share ||
      this.#bytes + bytes > this.#options.maxBytesInFlight * share
    ) {
      this.#failed(new Error("too many publishes awaiting Redis"));
      return;
    }
    this.#inFlight++;
    this.#bytes += bytes;
    if (this.#turn.length === 0) queueMicrotask(() => this.#flush());
    this.#turn.push(channel, toOthers ? "1" : "0", payload);
  }

  /** Sends this turn's publishes, `MAX_PER_CALL` per script call. */
  #flush(): void {
    const turn = this.#turn;
    this.#turn = [];
    for (let i = 0; i < turn.length; i += 3 * MAX_PER_CALL) {
      const args = turn.slice(i, i + 3 * MAX_PER_CALL);
      const count = args.length / 3;
      let bytes = 0;
      for (let k = 2; k < args.length; k += 3) bytes += args[k]!.length;
      this.#link.run((conn) => (conn as unknown as PublishCommands).gbPublish(...args))
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
