/**
 * @module seed
 * Demo data for `deno task dev`: users 1 alice, 2 bob and 3 carol, each an
 * approved friend of the others. Idempotent and additive: rows that exist
 * are left as they are, nothing is updated or deleted.
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

/** Adds the demo users and their friendships that are missing (the schema must exist). */
export async function seedDemoUsers(sql: Sql): Promise<void> {
  await sql.begin(async (tx) => {
    for (const user of DEMO_USERS) {
      await tx`insert into users (user_id, username, active)
               values (${user.userId}, ${user.username}, true)
               on conflict (user_id) do nothing`;
    }
    for (const [i, a] of DEMO_USERS.entries()) {
      for (const b of DEMO_USERS.slice(i + 1)) {
        await tx`insert into friendships (requester_user_id, recipient_user_id, status)
                 select ${a.userId}, ${b.userId}, 'approved'
                 where not exists (
                   select 1 from friendships
                   where status = 'approved'
                     and ((requester_user_id = ${a.userId} and recipient_user_id = ${b.userId})
                       or (requester_user_id = ${b.userId} and recipient_user_id = ${a.userId})))`;
      }
    }
  });
}
