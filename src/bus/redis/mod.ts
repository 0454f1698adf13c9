/**
 * @module bus/redis
 * The Redis bus: per-user channels, cluster presence with a heartbeat TTL,
 * and cluster-wide connection slots, over one command and one subscriber
 * connection per node.
 */

export { RedisBus, type RedisBusOptions } from "./bus.ts";
