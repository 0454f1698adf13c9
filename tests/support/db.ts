/**
 * @module db
 * A fresh PostgreSQL database per test, on the server at `DATABASE_URL`
 * (default: the local one), dropped afterwards, and seeding helpers that
 * write what the game backend would write.
 */

import postgres, { type Sql } from "postgres";
import { DEFAULT_DATABASE_URL } from "../../src/config.ts";

export interface TestDatabase {
  url: string;
  sql: Sql;
  addUser(userId: number, options?: { active?: boolean; username?: string }): Promise<void>;
  befriend(requester: number, recipient: number, status?: string): Promise<void>;
  block(blocker: number, blocked: number): Promise<void>;
  /** Drops the database. */
  drop(): Promise<void>;
}

/** The admin URL tests create their databases through. */
export function adminUrl(): string {
  return Deno.env.get("DATABASE_URL") || DEFAULT_DATABASE_URL;
}

/** Creates an empty database with a unique name; the server's migrations fill it. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `gb_test_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`;
  const admin = postgres(adminUrl(), { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl());
  url.pathname = `/${name}`;
  const sql = postgres(url.href, { max: 2, onnotice: () => {} });
  return {
    url: url.href,
    sql,
    async addUser(userId, options = {}) {
      await sql`insert into users (user_id, username, active)
                values (${userId}, ${options.username ?? `user${userId}`}, ${
        options.active ?? true
      })`;
    },
    async befriend(requester, recipient, status = "approved") {
      await sql`insert into friendships (requester_user_id, recipient_user_id, status)
                values (${requester}, ${recipient}, ${status})`;
    },
    async block(blocker, blocked) {
      await sql`insert into blocks (blocker_user_id, blocked_user_id) values (${blocker}, ${blocked})`;
    },
    async drop() {
      await sql.end();
      const admin = postgres(adminUrl(), { max: 1, onnotice: () => {} });
      try {
        await admin.unsafe(`drop database if exists ${name} with (force)`);
      } finally {
        await admin.end();
      }
    },
  };
}
