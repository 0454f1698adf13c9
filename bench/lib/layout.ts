/**
 * @module layout
 * The benchmark's social graph, as pure functions of the user id, so the
 * database seed (real server) and the bare relay (no storage) agree on who
 * is whose friend without sharing anything at run time.
 *
 * - Pair users `1..PAIR_USERS`: `2k-1` and `2k` are friends (1–2, 3–4, ...).
 * - Hub users `HUB_BASE + h` (h = 1..HUBS): each has `FRIENDS_PER_HUB`
 *   friends `FRIEND_BASE + (h-1)·FRIENDS_PER_HUB + k` (k = 1..50), and each
 *   of those has only its hub as a friend.
 */

/** Users seeded as friend pairs: enough for the 10,000-connection capacity run. */
export const PAIR_USERS = 10_000;
export const HUB_BASE = 1_000_000;
export const FRIEND_BASE = 2_000_000;
/** Hub users seeded (the presence scenario uses up to this many). */
export const HUBS = 40;
export const FRIENDS_PER_HUB = 50;

/** The partner of a pair user. */
export function partnerOf(userId: number): number {
  return userId % 2 === 1 ? userId + 1 : userId - 1;
}

/** The friends of hub `h` (1-based). */
export function hubFriends(h: number): number[] {
  const first = FRIEND_BASE + (h - 1) * FRIENDS_PER_HUB + 1;
  return Array.from({ length: FRIENDS_PER_HUB }, (_, k) => first + k);
}

/** Every friend of `userId` in the benchmark graph (empty for an unknown id). */
export function friendsOf(userId: number): number[] {
  if (userId >= 1 && userId <= PAIR_USERS) return [partnerOf(userId)];
  if (userId > HUB_BASE && userId <= HUB_BASE + HUBS) return hubFriends(userId - HUB_BASE);
  const last = FRIEND_BASE + HUBS * FRIENDS_PER_HUB;
  if (userId > FRIEND_BASE && userId <= last) {
    return [HUB_BASE + Math.floor((userId - FRIEND_BASE - 1) / FRIENDS_PER_HUB) + 1];
  }
  return [];
}
