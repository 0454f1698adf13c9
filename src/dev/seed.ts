/**
 * @module dev/seed
 * Demo data for `deno task dev` and `deno task seed`: users 1 alice, 2 bob and 3 carol, each an
 * approved friend of the others. Idempotent and additive: rows that exist are left as they are,
 * nothing is updated or deleted, so it is safe on a database that holds real users (an existing
 * user 1 keeps its name; the report says so).
 */

import type { Sql } from "postgres";

export interface DemoUser {
  userId: number;
  username: string;
}

export const DEMO_USERS: readonly DemoUser[] = [
  { userId: 1, username: "alice" },
  { userId: 2, username: "bob" },
  { userId: 3, username: "carol" },
];

/** What the seed found or made for one demo user. */
export interface SeededUser {
  userId: number;
  /** The name in the database (the demo name unless the user existed already). */
  username: string | null;
  added: boolean;
  /** False when the row existed with `active = false`: its tokens are refused. */
  active: boolean;
}

export interface SeedReport {
  users: SeededUser[];
  /** Friendships inserted by this run (0 on a second run). */
  friendshipsAdded: number;
}

/** Adds the demo users and their friendships that are missing (the schema must exist). */
export async function seedDemoUsers(sql: Sql): Promise<SeedReport> {
  return await sql.begin(async (tx) => {
    const users: SeededUser[] = [];
    for (const user of DEMO_USERS) {
      const inserted = await tx`insert into users (user_id, username, active)
               values (${user.userId}, ${user.username}, true)
               on conflict (user_id) do nothing
               returning user_id`;
      const [row] = await tx<{ username: string | null; active: boolean }[]>`
        select username, active from users where user_id = ${user.userId}`;
      users.push({
        userId: user.userId,
        username: row?.username ?? null,
        added: inserted.length > 0,
        active: row?.active ?? false,
      });
    }
    let friendshipsAdded = 0;
    for (const [i, a] of DEMO_USERS.entries()) {
      for (const b of DEMO_USERS.slice(i + 1)) {
        const added =
          await tx`insert into friendships (requester_user_id, recipient_user_id, status)
                 select ${a.userId}, ${b.userId}, 'approved'
                 where not exists (
                   select 1 from friendships
                   where status = 'approved'
                     and ((requester_user_id = ${a.userId} and recipient_user_id = ${b.userId})
                       or (requester_user_id = ${b.userId} and recipient_user_id = ${a.userId})))
                 returning friendship_id`;
        friendshipsAdded += added.length;
      }
    }
    return { users, friendshipsAdded };
  });
}

/** One line per user, plus warnings for rows that make the README's example behave otherwise. */
export function describeSeed(report: SeedReport): string[] {
  const lines = report.users.map((u) => {
    const demo = DEMO_USERS.find((d) => d.userId === u.userId)?.username;
    const state = u.added ? "added" : "already there";
    const name = u.username === demo ? "" : ` (named ${JSON.stringify(u.username)}, not ${demo})`;
    const inactive = u.active ? "" : " — INACTIVE: its tokens are refused";
    return `  user ${u.userId} ${demo}: ${state}${name}${inactive}`;
  });
  lines.push(
    `  friendships: ${report.friendshipsAdded} added, every pair of the three is approved`,
  );
  return lines;
}
