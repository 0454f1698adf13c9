/**
 * @module store/postgres/settings_queries
 * Settings and last seen on PostgreSQL (migration 8: `chat_user_settings`,
 * `chat_mutes`), as plain functions of a postgres.js client; `repository.ts`
 * wraps each in its deadline.
 *
 * A change is one transaction: the user's settings row is locked, the named
 * settings change, the settings are read back (with the database's clock
 * deciding what has expired) and the change is appended to the user's update
 * sequence (`chat_append_update`, migration 6) as `settings_updated`, its body
 * the settings' wire form, so its `seq` follows commit order like every other
 * update of the user.
 */

import type { Sql, TransactionSql } from "postgres";
import type {
  SeenState,
  SettingsBody,
  SettingsChange,
  SettingsUpdate,
  UserSettings,
} from "../settings.ts";
import { rowsOf } from "./pg_rows.ts";

/** The user's settings now (defaults when they never changed one). */
export async function readSettings(
  sql: Sql | TransactionSql,
  userId: number,
): Promise<UserSettings> {
  const [[row], mutes] = await Promise.all([
    sql<{ dnd_until: Date | null; appear_offline: boolean }[]>`
      select case when dnd_until > now() then dnd_until end as dnd_until, appear_offline
      from chat_user_settings where user_id = ${userId}`.then(rowsOf),
    sql<{ friend_user_id: string; until: Date }[]>`
      select friend_user_id::text, until from chat_mutes
      where user_id = ${userId} and until > now()
      order by friend_user_id`.then(rowsOf),
  ]);
  return {
    muted: new Map(mutes.map((m) => [Number(m.friend_user_id), m.until])),
    dndUntil: row?.dnd_until ?? undefined,
    appearOffline: row?.appear_offline ?? false,
  };
}

/** Applies `change` and answers the settings after it, in one transaction. */
export async function updateSettings(
  sql: Sql,
  userId: number,
  change: SettingsChange,
  body: SettingsBody,
): Promise<SettingsUpdate> {
  return await sql.begin(async (tx) => {
    await tx`insert into chat_user_settings (user_id) values (${userId}) on conflict do nothing`;
    const [before] = rowsOf(
      await tx<{ appear_offline: boolean }[]>`
        select appear_offline from chat_user_settings where user_id = ${userId} for update`,
    );
    const { mute } = change;
    if (mute !== undefined) {
      if (mute.until === null) {
        await tx`delete from chat_mutes
                 where user_id = ${userId} and friend_user_id = ${mute.friendUserId}`;
      } else {
        // A time already past unmutes: no row that only waits to expire.
        await tx`delete from chat_mutes
                 where user_id = ${userId} and friend_user_id = ${mute.friendUserId}
                   and ${mute.until}::timestamptz <= now()`;
        await tx`insert into chat_mutes (user_id, friend_user_id, until)
                 select ${userId}, ${mute.friendUserId}, ${mute.until}::timestamptz
                 where ${mute.until}::timestamptz > now()
                 on conflict (user_id, friend_user_id) do update set until = excluded.until`;
      }
    }
    const appear = change.appearOffline;
    const turnedOn = appear === true && before?.appear_offline === false;
    const [row] = rowsOf(
      await tx<{ last_seen_at: Date | null }[]>`
        update chat_user_settings set
          dnd_until = ${
        change.dndUntil === undefined ? tx`dnd_until` : tx`${change.dndUntil}::timestamptz`
      },
          appear_offline = ${appear ?? tx`appear_offline`},
          last_seen_at = ${turnedOn ? tx`now()` : tx`last_seen_at`},
          updated_at = now()
        where user_id = ${userId}
        returning last_seen_at`,
    );
    const settings = await readSettings(tx, userId);
    const [appended] = rowsOf(
      await tx<{ seq: string }[]>`
        select chat_append_update(${userId}, 'settings_updated', null,
                                  ${tx.json(body(settings) as never)})::text as seq`,
    );
    const seq = appended === undefined ? undefined : Number(appended.seq);
    return {
      settings,
      seq,
      appearOfflineChanged: appear !== undefined && appear !== (before?.appear_offline ?? false),
      lastSeenAt: row?.last_seen_at ?? undefined,
    };
  });
}

/** Of `userIds`, those with a settings row: whether they appear offline and when last seen. */
export async function seenStates(
  sql: Sql,
  userIds: readonly number[],
): Promise<Map<number, SeenState>> {
  if (userIds.length === 0) return new Map();
  const rows = rowsOf(
    await sql<{ user_id: string; appear_offline: boolean; last_seen_at: Date | null }[]>`
      select user_id::text, appear_offline, last_seen_at from chat_user_settings
      where user_id = any(${sql.array([...userIds])}::bigint[])`,
  );
  return new Map(rows.map((r) => [Number(r.user_id), {
    appearOffline: r.appear_offline,
    lastSeenAt: r.last_seen_at ?? undefined,
  }]));
}

/** Whether the user appears offline now (read fresh: presence frames depend on it). */
export async function appearsOffline(sql: Sql, userId: number): Promise<boolean> {
  const [row] = rowsOf(
    await sql<{ appear_offline: boolean }[]>`
      select appear_offline from chat_user_settings where user_id = ${userId}`,
  );
  return row?.appear_offline ?? false;
}

/**
 * Records when users were last seen, one statement for all of them; a later
 * time never goes back (two nodes deciding one user's offline in turn).
 */
export async function writeLastSeen(
  sql: Sql,
  seen: readonly { userId: number; at: Date }[],
): Promise<void> {
  await sql`
    insert into chat_user_settings (user_id, last_seen_at)
    select * from unnest(${sql.array(seen.map((s) => s.userId))}::bigint[],
                         ${sql.array(seen.map((s) => s.at.toISOString()))}::timestamptz[])
    on conflict (user_id) do update set last_seen_at =
      greatest(chat_user_settings.last_seen_at, excluded.last_seen_at)`;
}
