/**
 * @module store/postgres/sign_in
 * A login's storage work in one statement (`chat_sign_in`, migration 10): the
 * token's access and, when it may sign in, the friends, the mailbox summary
 * (the counters of `chat_mailbox`, O(1) in the mailbox), the settings and the
 * friends' seen states, as one json value. The five statements it replaces
 * cost the server more to write than Postgres to answer (bench/README.md,
 * "Logins").
 */

import type { Sql } from "postgres";
import type { MailboxSummary, SignIn } from "../repository.ts";
import type { SeenState } from "../settings.ts";
import { rowsOf } from "./pg_rows.ts";

/** `chat_sign_in`'s answer (its comment in `schema.ts` describes it); times in Unix ms. */
interface SignInJson {
  access: "ok" | "inactive" | "revoked";
  friends?: number[];
  mailbox?: [number | null, number][];
  last?: number;
  dnd?: number | null;
  offline?: boolean;
  mutes?: [number, number][] | null;
  seen?: [number, boolean, number | null][] | null;
}

export async function signIn(sql: Sql, userId: number, issuedAt: number): Promise<SignIn> {
  const [row] = rowsOf(
    await sql<{ r: SignInJson }[]>`
    select chat_sign_in(${userId}::bigint, ${issuedAt}::float8) as r`,
  );
  if (row === undefined) throw new Error("chat_sign_in answered no row");
  const r = row.r;
  if (r.access !== "ok") return { access: r.access };
  const mailbox: MailboxSummary = {
    unreadCount: 0,
    unreadBySender: new Map(),
    lastMessageId: r.last ?? 0,
    seq: 0,
  };
  for (const [friend, n] of r.mailbox ?? []) {
    if (friend === null) mailbox.seq = n;
    else {
      mailbox.unreadBySender.set(friend, n);
      mailbox.unreadCount += n;
    }
  }
  const seen = new Map<number, SeenState>();
  for (const [id, appearOffline, lastSeen] of r.seen ?? []) {
    seen.set(id, { appearOffline, lastSeenAt: lastSeen === null ? undefined : new Date(lastSeen) });
  }
  return {
    access: "ok",
    friends: r.friends ?? [],
    mailbox,
    settings: {
      muted: new Map((r.mutes ?? []).map(([friend, until]) => [friend, new Date(until)])),
      dndUntil: r.dnd == null ? undefined : new Date(r.dnd),
      appearOffline: r.offline ?? false,
    },
    seen,
  };
}
