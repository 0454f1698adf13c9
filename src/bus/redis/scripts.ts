/**
 * @module bus/redis/scripts
 * Cluster presence and connection slots in Redis as Lua scripts (keys in `keys.ts`).
 * Each script is atomic and touches one hash slot through its declared keys, so it runs as is
 * on one Redis and on a Redis Cluster; scripts of several users take keys of one slot only
 * (one Redis: any keys, `RedisShards.batchKey`).
 *
 * Two kinds:
 * - registry scripts (`{nodes}` slot): a node's registration (member) and its heartbeat
 *   deadline, the users each member holds, the sweep's claims on a dead member's users. Only
 *   these read `TIME`, all on the registry's primary, so deadlines are compared on one clock;
 * - user scripts (the user's slot): which members hold the user, their connection slots.
 *   They never judge liveness themselves: they are given the dead members (those the last
 *   heartbeat saw past their deadline) and drop those. A member never comes back from the
 *   dead (`keys.ts`), so a stale list may miss a death, never name a live member.
 *
 * "Some member holds this user → none" happens in exactly one user script call, the one whose
 * removal leaves the user's set empty: a `leave`, a reconcile, or the sweep of a dead member
 * (which reports only when its own removal emptied the set, so a user dropped earlier by a
 * `leave` that pruned that member is not reported twice). So each "went offline" is reported
 * once, whichever node's call it was.
 *
 * User scripts take `ARGV[1]` = this node's member, `ARGV[2]` = n, `ARGV[3..2+n]` = the dead
 * members, then their own arguments.
 */

/** Lua helpers of the registry scripts. */
const REGISTRY_LIB = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function is_live(nodes, member, now)
  local deadline = redis.call('ZSCORE', nodes, member)
  return deadline ~= false and deadline ~= nil and tonumber(deadline) > now
end
`;

/** Lua helpers of the user scripts. */
const USER_LIB = `
local member = ARGV[1]
local dead, after = {}, 3 + tonumber(ARGV[2])
for i = 3, after - 1 do dead[ARGV[i]] = true end
-- Drops dead members from a user's set and slots.
local function prune(at, conn)
  for _, m in ipairs(redis.call('SMEMBERS', at)) do
    if dead[m] then redis.call('SREM', at, m) end
  end
  for m in pairs(dead) do redis.call('HDEL', conn, m) end
end
`;

/** A script with its key count (absent: the caller passes the count first). */
export interface ScriptDefinition {
  numberOfKeys?: number;
  lua: string;
}

export const PRESENCE_SCRIPTS = {
  /** KEYS = nodes; ARGV = member, TTL ms: registers a member, live for TTL. */
  gbRegister: {
    numberOfKeys: 1,
    lua: REGISTRY_LIB + `
redis.call('ZADD', KEYS[1], now_ms() + tonumber(ARGV[2]), ARGV[1])
return 1`,
  },
  /**
   * KEYS = nodes; ARGV = member, TTL ms, max → { 1 after extending the member's deadline, 0
   * when it is unknown or past (dead for good: register anew), the dead members (at most max) }.
   */
  gbBeat: {
    numberOfKeys: 1,
    lua: REGISTRY_LIB + `
local now = now_ms()
local alive = is_live(KEYS[1], ARGV[1], now)
if alive then redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1]) end
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
return {alive and 1 or 0, dead}`,
  },
  /**
   * KEYS = nodes, users of member; ARGV = member, user ids → 1 after listing them as held by
   * the member; 0 (nothing written) when the member is not live: a dead member's list only
   * shrinks, so its sweep ends.
   */
  gbHold: {
    numberOfKeys: 2,
    lua: REGISTRY_LIB + `
if not is_live(KEYS[1], ARGV[1], now_ms()) then return 0 end
for i = 2, #ARGV do redis.call('SADD', KEYS[2], ARGV[i]) end
return 1`,
  },
  /**
   * KEYS = nodes, users of a dead member, its claims; ARGV = the dead member, batch, claim ms →
   * up to a batch of its users to clean up, each claimed by the caller for claim ms (a user
   * whose claim lapsed, its sweeper gone, is claimed again). Forgets the member once it has
   * neither users nor claims left. Concurrent sweepers get disjoint batches.
   */
  gbClaim: {
    numberOfKeys: 3,
    lua: REGISTRY_LIB + `
local now, batch = now_ms(), tonumber(ARGV[2])
if is_live(KEYS[1], ARGV[1], now) then return {} end
local uids = redis.call('SPOP', KEYS[2], batch)
for _, uid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, batch)) do
  uids[#uids + 1] = uid
end
for _, uid in ipairs(uids) do redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), uid) end
if #uids == 0 and redis.call('EXISTS', KEYS[2], KEYS[3]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return uids`,
  },
  /** KEYS = nodes, users of member, its claims; ARGV = member: forgets it (clean shutdown). */
  gbRetire: {
    numberOfKeys: 3,
    lua: `
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
return 1`,
  },
  /** KEYS = at, conn of a user → 1 when no member held the user before this one joined. */
  gbJoin: {
    numberOfKeys: 2,
    lua: USER_LIB + `
prune(KEYS[1], KEYS[2])
local first = redis.call('SCARD', KEYS[1]) == 0
redis.call('SADD', KEYS[1], member)
return first and 1 or 0`,
  },
  /** KEYS = at, conn of a user → 1 when no member holds the user now. */
  gbLeave: {
    numberOfKeys: 2,
    lua: USER_LIB + `
redis.call('SREM', KEYS[1], member)
prune(KEYS[1], KEYS[2])
return redis.call('SCARD', KEYS[1]) == 0 and 1 or 0`,
  },
  /**
   * KEYS = at, conn of user 1, at, conn of user 2, ...; after the dead members: n, n previous
   * members of this node (dropped everywhere), then one flag per user: `1` held here, `0` left
   * (reported offline when no member holds the user now), `2` listed but not held (reported
   * offline only when this removal emptied the set) → { users (by position) that came online:
   * added here, held by no member and by no previous member of this node before; users that
   * went offline }. Makes Redis agree with the node after lost writes.
   */
  gbReconcile: {
    lua: USER_LIB + `
local old, flags = {}, after + 1 + tonumber(ARGV[after])
for i = after + 1, flags - 1 do old[#old + 1] = ARGV[i] end
local online, offline = {}, {}
for u = 1, #KEYS / 2 do
  local at, conn, flag = KEYS[2 * u - 1], KEYS[2 * u], ARGV[flags + u - 1]
  local known = redis.call('SISMEMBER', at, member) == 1
  for _, m in ipairs(old) do
    if redis.call('SREM', at, m) == 1 then known = true end
    redis.call('HDEL', conn, m)
  end
  prune(at, conn)
  if flag == '1' then
    if not known and redis.call('SCARD', at) == 0 then online[#online + 1] = u end
    redis.call('SADD', at, member)
  else
    local removed = redis.call('SREM', at, member) == 1
    if redis.call('SCARD', at) == 0 and (flag == '0' or removed) then offline[#offline + 1] = u end
  end
end
return {online, offline}`,
  },
  /**
   * KEYS = at, conn of users 1..n; ARGV[1] = the dead member swept, then the dead members →
   * the users (by position) this call took offline: its removal of the member emptied the set.
   */
  gbSweep: {
    lua: USER_LIB + `
local offline = {}
for u = 1, #KEYS / 2 do
  local at, conn = KEYS[2 * u - 1], KEYS[2 * u]
  local removed = redis.call('SREM', at, member) == 1
  redis.call('HDEL', conn, member)
  prune(at, conn)
  if removed and redis.call('SCARD', at) == 0 then offline[#offline + 1] = u end
end
return offline`,
  },
  /** KEYS = at, conn of users 1..n; ARGV[1] = member: drops it without reporting (retire). */
  gbForget: {
    lua: `
for u = 1, #KEYS / 2 do
  redis.call('SREM', KEYS[2 * u - 1], ARGV[1])
  redis.call('HDEL', KEYS[2 * u], ARGV[1])
end
return 1`,
  },
} satisfies Record<string, ScriptDefinition>;

export const SLOT_SCRIPTS = {
  /** KEYS = at, conn of a user; after the dead members: max → 1 after taking a slot, else 0. */
  gbAcquire: {
    numberOfKeys: 2,
    lua: USER_LIB + `
prune(KEYS[1], KEYS[2])
local held, fields = 0, redis.call('HGETALL', KEYS[2])
for i = 2, #fields, 2 do held = held + tonumber(fields[i]) end
if held >= tonumber(ARGV[after]) then return 0 end
redis.call('HINCRBY', KEYS[2], member, 1)
return 1`,
  },
  /** KEYS = conn of a user; ARGV = member: gives one slot back. */
  gbRelease: {
    numberOfKeys: 1,
    lua: `
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1`,
  },
  /**
   * KEYS = conn of users 1..n; ARGV = member, n, n previous members (dropped), then one count
   * per user: sets this node's counts.
   */
  gbSetSlots: {
    lua: `
local member, first = ARGV[1], 3 + tonumber(ARGV[2])
for u = 1, #KEYS do
  for i = 3, first - 1 do redis.call('HDEL', KEYS[u], ARGV[i]) end
  local n = tonumber(ARGV[first + u - 1])
  if n > 0 then redis.call('HSET', KEYS[u], member, n) else redis.call('HDEL', KEYS[u], member) end
end
return 1`,
  },
} satisfies Record<string, ScriptDefinition>;

/** The scripts called with their key count first (several users', or channels, per call). */
export const VARIABLE_KEY_SCRIPTS = [
  "gbPublish",
  "gbReconcile",
  "gbSweep",
  "gbForget",
  "gbSetSlots",
] as const;

type Arg = string | number;

/**
 * The script commands `defineCommand` adds to a client, as the bus calls them (ioredis
 * flattens array arguments; scripts without a fixed key count take it first).
 */
export interface BusScripts {
  gbRegister(nodes: string, member: string, ttlMs: number): Promise<number>;
  gbBeat(nodes: string, member: string, ttlMs: number, max: number): Promise<[number, string[]]>;
  gbHold(nodes: string, users: string, member: string, userIds: readonly Arg[]): Promise<number>;
  gbClaim(
    nodes: string,
    users: string,
    claimed: string,
    member: string,
    batch: number,
    claimMs: number,
  ): Promise<string[]>;
  gbRetire(nodes: string, users: string, claimed: string, member: string): Promise<number>;
  gbJoin(at: string, conn: string, member: string, dead: readonly Arg[]): Promise<number>;
  gbLeave(at: string, conn: string, member: string, dead: readonly Arg[]): Promise<number>;
  gbReconcile(keyCount: number, ...args: (Arg | readonly Arg[])[]): Promise<[number[], number[]]>;
  gbSweep(keyCount: number, ...args: (Arg | readonly Arg[])[]): Promise<number[]>;
  gbForget(keyCount: number, ...args: (Arg | readonly Arg[])[]): Promise<number>;
  gbAcquire(
    at: string,
    conn: string,
    member: string,
    dead: readonly Arg[],
    max: number,
  ): Promise<number>;
  gbRelease(conn: string, member: string): Promise<number>;
  gbSetSlots(keyCount: number, ...args: (Arg | readonly Arg[])[]): Promise<number>;
}

/** `dead` as the user scripts take it: the count, then the members. */
export function deadArgs(dead: readonly string[]): Arg[] {
  return [dead.length, ...dead];
}
