/**
 * @module bus/redis/scripts
 * Cluster presence in Redis as Lua scripts, each one atomic, so no lock is needed.
 *
 * Keys (`<p>` is the key prefix):
 * - `<p>nodes`: sorted set, node id → heartbeat deadline (Redis `TIME` in ms + TTL). A node
 *   is live while its deadline is in the future. Only Redis's clock is used, so nodes need
 *   not agree on the time.
 * - `<p>node:<nodeId>`: set of the user ids present on that node. It has no expiry: when a
 *   node dies its list must outlive it, so that a sweep can take its users offline.
 * - `<p>user:<userId>`: set of the node ids the user is present on.
 * - `<p>conn:<userId>`: hash, node id → connection slots the user holds there
 *   (`slots.ts`); a sweep or retire of a node deletes its fields of its users.
 *
 * Every script that reads a user's nodes drops the dead ones from the user's set (and the
 * user from theirs), so each "went offline" is reported by exactly one script call. Scripts
 * build key names from the prefix, so they need one Redis primary, not Redis Cluster.
 */

/** Lua helpers shared by the scripts below (and the connection-slot scripts). */
export const LIB = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function is_live(nodes, node, now)
  local deadline = redis.call('ZSCORE', nodes, node)
  return deadline ~= false and deadline ~= nil and tonumber(deadline) > now
end
-- Drops dead nodes from the user's set; true when a live node still has the user.
local function live_after_prune(p, nodes, uid, now)
  local ukey = p .. 'user:' .. uid
  local live = false
  for _, node in ipairs(redis.call('SMEMBERS', ukey)) do
    if is_live(nodes, node, now) then
      live = true
    else
      redis.call('SREM', ukey, node)
      redis.call('SREM', p .. 'node:' .. node, uid)
    end
  end
  return live
end
`;

/** A script with its key count, in the shape ioredis's `defineCommand` takes. */
export interface ScriptDefinition {
  numberOfKeys: number;
  lua: string;
}

/**
 * The presence scripts. Every one takes KEYS[1] = `<p>nodes`, ARGV[1] = the prefix and,
 * except `online`/`sweep`, ARGV[2] = this node's id.
 */
export const PRESENCE_SCRIPTS = {
  /** ARGV[3] = user id → 1 when no live node had the user before. */
  gbJoin: {
    numberOfKeys: 1,
    lua: LIB + `
local p, self, uid = ARGV[1], ARGV[2], ARGV[3]
local first = not live_after_prune(p, KEYS[1], uid, now_ms())
redis.call('SADD', p .. 'node:' .. self, uid)
redis.call('SADD', p .. 'user:' .. uid, self)
return first and 1 or 0`,
  },
  /** ARGV[3] = user id → 1 when no live node has the user now. */
  gbLeave: {
    numberOfKeys: 1,
    lua: LIB + `
local p, self, uid = ARGV[1], ARGV[2], ARGV[3]
redis.call('SREM', p .. 'node:' .. self, uid)
redis.call('SREM', p .. 'user:' .. uid, self)
return live_after_prune(p, KEYS[1], uid, now_ms()) and 0 or 1`,
  },
  /** ARGV[2..] = user ids → those present on a live node. Writes nothing. */
  gbOnline: {
    numberOfKeys: 1,
    lua: LIB + `
local p, now, out = ARGV[1], now_ms(), {}
for i = 2, #ARGV do
  for _, node in ipairs(redis.call('SMEMBERS', p .. 'user:' .. ARGV[i])) do
    if is_live(KEYS[1], node, now) then
      out[#out + 1] = ARGV[i]
      break
    end
  end
end
return out`,
  },
  /**
   * ARGV[3] = TTL in ms → 1 after extending this node's deadline; 0 when the node is unknown
   * or its deadline has passed (Redis lost it, or others may have swept it): the caller must
   * reconcile instead.
   */
  gbHeartbeat: {
    numberOfKeys: 1,
    lua: LIB + `
local now = now_ms()
if not is_live(KEYS[1], ARGV[2], now) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
return 1`,
  },
  /**
   * ARGV[3] = TTL in ms, ARGV[4] = n, ARGV[5..4+n] = every user present on this node, the rest
   * = users whose `leave` failed → { users that came online (added here, no other live node
   * had them), users that went offline (on no live node now: listed here in Redis but not
   * present, or left while Redis was unreachable) }. Makes Redis agree with the node after a
   * failed write, a Redis restart or a sweep of a node that was only late; marks it live.
   */
  gbReconcile: {
    numberOfKeys: 1,
    lua: LIB + `
local p, self, now, n = ARGV[1], ARGV[2], now_ms(), tonumber(ARGV[4])
local nkey = p .. 'node:' .. self
local want, online, offline, told = {}, {}, {}, {}
for i = 5, 4 + n do want[ARGV[i]] = true end
for _, uid in ipairs(redis.call('SMEMBERS', nkey)) do
  if not want[uid] then
    redis.call('SREM', nkey, uid)
    redis.call('SREM', p .. 'user:' .. uid, self)
    told[uid] = true
    if not live_after_prune(p, KEYS[1], uid, now) then offline[#offline + 1] = uid end
  end
end
for i = 5 + n, #ARGV do
  local uid = ARGV[i]
  if not want[uid] and not told[uid] and not live_after_prune(p, KEYS[1], uid, now) then
    told[uid] = true
    offline[#offline + 1] = uid
  end
end
for i = 5, 4 + n do
  local uid = ARGV[i]
  if redis.call('SISMEMBER', nkey, uid) == 0 then
    if not live_after_prune(p, KEYS[1], uid, now) then online[#online + 1] = uid end
    redis.call('SADD', nkey, uid)
    redis.call('SADD', p .. 'user:' .. uid, self)
  end
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), self)
return {online, offline}`,
  },
  /**
   * ARGV[2] = batch size → {} when no node is dead, else { dead node id, users of it that
   * are on no live node now }. Takes up to a batch of the first dead node's users (SPOP, so
   * concurrent sweepers never report the same user) and forgets the node once it has none.
   */
  gbSweep: {
    numberOfKeys: 1,
    lua: LIB + `
local p, now = ARGV[1], now_ms()
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1)[1]
if dead == nil then return {} end
local nkey = p .. 'node:' .. dead
local offline = {}
for _, uid in ipairs(redis.call('SPOP', nkey, tonumber(ARGV[2]))) do
  redis.call('SREM', p .. 'user:' .. uid, dead)
  redis.call('HDEL', p .. 'conn:' .. uid, dead)
  if not live_after_prune(p, KEYS[1], uid, now) then offline[#offline + 1] = uid end
end
if redis.call('EXISTS', nkey) == 0 then redis.call('ZREM', KEYS[1], dead) end
return {dead, offline}`,
  },
  /** Removes this node and all its users (clean shutdown) → how many users it had. */
  gbRetire: {
    numberOfKeys: 1,
    lua: LIB + `
local p, self = ARGV[1], ARGV[2]
local nkey = p .. 'node:' .. self
local uids = redis.call('SMEMBERS', nkey)
for _, uid in ipairs(uids) do
  redis.call('SREM', p .. 'user:' .. uid, self)
  redis.call('HDEL', p .. 'conn:' .. uid, self)
end
redis.call('DEL', nkey)
redis.call('ZREM', KEYS[1], self)
return #uids`,
  },
} satisfies Record<string, ScriptDefinition>;

/**
 * The script commands `defineCommand` adds to a client, as the bus calls them (ioredis
 * flattens array arguments, so long id lists are passed as arrays, not spread).
 */
export interface PresenceCommands {
  gbJoin(nodes: string, prefix: string, nodeId: string, userId: number): Promise<number>;
  gbLeave(nodes: string, prefix: string, nodeId: string, userId: number): Promise<number>;
  gbOnline(nodes: string, prefix: string, userIds: readonly number[]): Promise<string[]>;
  gbHeartbeat(nodes: string, prefix: string, nodeId: string, ttlMs: number): Promise<number>;
  gbReconcile(
    nodes: string,
    prefix: string,
    nodeId: string,
    ttlMs: number,
    present: number,
    userIds: readonly number[],
  ): Promise<[string[], string[]]>;
  gbSweep(nodes: string, prefix: string, batch: number): Promise<[] | [string, string[]]>;
  gbRetire(nodes: string, prefix: string, nodeId: string): Promise<number>;
}
