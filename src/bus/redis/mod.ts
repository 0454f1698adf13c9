/**
 * @module bus/redis
 * The Redis bus, on one Redis or a Redis Cluster: per-user shard channels,
 * cluster presence with a heartbeat TTL, and cluster-wide connection slots,
 * everything about a user in one hash slot.
 */

export { RedisBus, type RedisBusOptions } from "./bus.ts";
