/**
 * @module db
 * A fresh PostgreSQL database per test, on the server `adminUrl()` names,
 * dropped afterwards, and seeding helpers that write what the game backend
 * would write.
 */

import postgres, { type Sql } from "postgres";
import { DEFAULT_DATABASE_URL } from "../../src/config.ts";
import { type Logger, silentLogger } from "../../src/log.ts";
import { PostgresRepository } from "../../src/store/postgres/repository.ts";
import { eventually } from "./wait.ts";

/** A user to create: an id (user<id>, active), or an id with its username or `active: false`. */
export type SeedUser = number | { id: number; username?: string; active?: boolean };

/** A friendship to create: requester, recipient, and its status (`approved` unless given). */
export type SeedFriendship = [number, number] | [number, number, string];

/** What the game backend has written before a test starts. */
export interface Seed {
  users?: SeedUser[];
  friends?: SeedFriendship[];
}

export interface TestDatabase {
  url: string;
  sql: Sql;
  addUser(userId: number, options?: { active?: boolean; username?: string }): Promise<void>;
  befriend(requester: number, recipient: number, status?: string): Promise<void>;
  block(blocker: number, blocked: number): Promise<void>;
  /** Creates `seed.users`, then `seed.friends` (the tables must exist: migrate first). */
  seed(seed: Seed): Promise<void>;
  /** Drops the database. */
  drop(): Promise<void>;
}

/**
 * The admin URL tests create their databases through: `DATABASE_URL` when
 * set; else the local server at 127.0.0.1:5432 when something listens there;
 * else an embedded PostgreSQL, so that `deno task test` needs nothing but Deno.
 */
export async function adminUrl(): Promise<string> {
  return Deno.env.get("DATABASE_URL") || await (fallbackUrl ??= localOrEmbedded());
}

let fallbackUrl: Promise<string> | undefined;

async function localOrEmbedded(): Promise<string> {
  try {
    (await Deno.connect({ hostname: "127.0.0.1", port: 5432 })).close();
    return DEFAULT_DATABASE_URL;
  } catch {
    return await embeddedUrl();
  }
}

/**
 * Where the embedded cluster's URL is shared. `deno test` runs each test
 * module in a fresh runtime of one process, so a module variable would start
 * a cluster per module; the process environment outlives them.
 */
const EMBEDDED_URL_VAR = "GB_TEST_EMBEDDED_DATABASE_URL";

/**
 * One embedded cluster for the whole `deno test` process, started by the
 * first test that needs a database. Not stopped on `unload` (that fires per
 * module, and later modules still need it): its watchdog stops it and deletes
 * its data directory once the process has exited, however it exits.
 */
async function embeddedUrl(): Promise<string> {
  const shared = Deno.env.get(EMBEDDED_URL_VAR);
  if (shared) return shared;
  // Dev/test-only module, loaded only on this path.
  const { startEmbeddedPostgres } = await import("../../src/dev/embedded_postgres.ts");
  const cluster = await startEmbeddedPostgres({
    dataDir: `/tmp/gb-test-pg-${crypto.randomUUID().slice(0, 8)}`,
    ephemeral: true,
  });
  Deno.env.set(EMBEDDED_URL_VAR, cluster.url);
  return cluster.url;
}

/** Creates an empty database with a unique name; the server's migrations fill it. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `gb_test_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`;
  const admin = postgres(await adminUrl(), { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(await adminUrl());
  url.pathname = `/${name}`;
  const sql = postgres(url.href, { max: 2, onnotice: () => {} });
  const db: TestDatabase = {
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
    async seed({ users = [], friends = [] }) {
      for (const user of users) {
        const { id, ...options } = typeof user === "number" ? { id: user } : user;
        await db.addUser(id, options);
      }
      for (const [requester, recipient, status] of friends) {
        await db.befriend(requester, recipient, status);
      }
    },
    async drop() {
      await sql.end();
      const admin = postgres(await adminUrl(), { max: 1, onnotice: () => {} });
      try {
        await admin.unsafe(`drop database if exists ${name} with (force)`);
      } finally {
        await admin.end();
      }
    },
  };
  return db;
}

/** How many rows `messages` holds, of those read or not (`isRead`) and from `senderUserId`. */
export async function countMessages(
  sql: Sql,
  where: { isRead?: boolean; senderUserId?: number } = {},
): Promise<number> {
  const [row] = await sql`select count(*)::int as n from messages where true
    ${where.isRead === undefined ? sql`` : sql`and is_read = ${where.isRead}`}
    ${where.senderUserId === undefined ? sql`` : sql`and sender_user_id = ${where.senderUserId}`}`;
  return row!.n;
}

/** Resolves once a backend of `db` whose query contains `needle` waits for a lock (10 s at most). */
export async function waitingOnLock(db: TestDatabase, needle: string): Promise<void> {
  await eventually(`a query with ${needle} waiting on a lock`, async () => {
    const [row] = await db.sql`select count(*)::int as n from pg_stat_activity
      where datname = current_database() and wait_event_type = 'Lock'
        and position(${needle} in query) > 0`;
    return row!.n > 0;
  }, 10_000);
}

/** A repository on `url` (its migrations applied unless `migrate`), relation cache off, logs silent. */
export function connectRepository(
  url: string,
  options: {
    poolSize?: number;
    statementTimeoutMs?: number;
    logger?: Logger;
    migrate?: "auto" | "off";
  } = {},
): Promise<PostgresRepository> {
  return PostgresRepository.connect({
    url,
    poolSize: options.poolSize ?? 2,
    statementTimeoutMs: options.statementTimeoutMs ?? 5000,
    relationCacheMs: 0,
    logger: options.logger ?? silentLogger,
    migrate: options.migrate ?? "auto",
  });
}
