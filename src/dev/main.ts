/**
 * @module dev/main
 * `deno task dev`: the chat server with zero setup, for development only.
 *
 * Without `DATABASE_URL` it starts an embedded PostgreSQL whose data lives in
 * `.dev-db/` (or `DEV_DB_DIR`); with it, it uses that database and never
 * loads the embedded one. Either way it applies the migrations, adds the demo
 * users (see `seed.ts`), turns the demo page on, and runs the node through
 * `main()` in `main.ts`, the same code path as `deno task start`. A user-set
 * `AUTH_SECRET` is honoured; only when it is unset does it sign with the
 * dev-only secret (`dev_secret.ts`). It then prints a ready link per demo
 * user and how to mint more tokens. SIGINT/SIGTERM drain the server as in
 * production, then stop the embedded database; the exit code is the server's.
 *
 * A second `deno task dev` on the same data directory finds the first one's
 * record (`dev_record.ts`) and says how to reach it instead of starting; on
 * ports that are taken it says so before touching the database.
 */

import postgres from "postgres";
import { main } from "../../main.ts";
import { errorMessage } from "../log.ts";
import { busyAddresses } from "../server/mod.ts";
import { migrate } from "../store/mod.ts";
import { importTokenKey, signToken } from "../token.ts";
import { DEV_ONLY_SECRET } from "./dev_secret.ts";
import { readDevRecord, removeDevRecord, writeDevRecord } from "./dev_record.ts";
import type { EmbeddedPostgres } from "./embedded_postgres.ts";
import { DEMO_USERS, describeSeed, seedDemoUsers } from "./seed.ts";

const DEFAULT_DATA_DIR = ".dev-db";

async function dev(): Promise<number> {
  const env = Deno.env.toObject();
  const devSecret = !env.AUTH_SECRET;
  if (devSecret) {
    env.AUTH_SECRET = DEV_ONLY_SECRET;
    console.error(
      "dev: AUTH_SECRET is unset: using a DEV-ONLY secret; tokens signed with it are forgeable by anyone",
    );
  } else {
    console.error("dev: signing with your AUTH_SECRET");
  }
  env.DEMO_PAGE ??= "true";
  // Loopback unless asked otherwise: the dev secret is public.
  env.HOST ??= "127.0.0.1";

  let database: EmbeddedPostgres | undefined;
  if (!env.DATABASE_URL) {
    const dataDir = env.DEV_DB_DIR || DEFAULT_DATA_DIR;
    // Loaded only here, so `deno task dev` with DATABASE_URL (like every
    // production path) never touches the embedded-postgres package.
    const { startEmbeddedPostgres, ClusterInUseError } = await import("./embedded_postgres.ts");
    try {
      database = await startEmbeddedPostgres({ dataDir });
    } catch (err) {
      if (err instanceof ClusterInUseError) {
        console.error(await alreadyRunning(err.dataDir, env.DEV_DB_DIR ?? "", err.postmasterPid));
      } else {
        console.error(`dev: cannot start the embedded PostgreSQL: ${errorMessage(err)}`);
      }
      return 1;
    }
    env.DATABASE_URL = database.url;
    console.error(`dev: embedded PostgreSQL (data in ${dataDir}) at ${database.url}`);
  }

  const busy = portsInUse(env);
  if (busy !== undefined) {
    console.error(busy);
    await database?.stop();
    return 1;
  }

  try {
    try {
      await prepareDatabase(env.DATABASE_URL);
    } catch (err) {
      console.error(`dev: cannot prepare the database: ${errorMessage(err)}`);
      return 1;
    }
    const secret = env.AUTH_SECRET ?? DEV_ONLY_SECRET; // set above
    const key = await importTokenKey(secret);
    return await main(env, {
      allowDevOnlySecret: true,
      // Anyone can sign with the public dev-only secret, so handing its tokens out costs nothing;
      // with the user's own secret there is no such route.
      ...(devSecret
        ? { devTokens: (userId: number) => signToken(key, userId, Math.floor(Date.now() / 1000)) }
        : {}),
      onStarted: async (server) => {
        if (database !== undefined) {
          await writeDevRecord(database.dataDir, {
            pid: Deno.pid,
            port: server.publicPort,
            devSecret,
          });
        }
        console.log(await instructions(server.publicPort, secret, devSecret));
      },
    });
  } finally {
    if (database !== undefined) await removeDevRecord(database.dataDir);
    await database?.stop();
  }
}

/** Migrations first (the server would apply them too), so the seed has its tables. */
async function prepareDatabase(url: string): Promise<void> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await migrate(sql);
    const report = await seedDemoUsers(sql);
    if (report.users.some((u) => !u.added && (!u.active || u.username === null))) {
      console.error(["dev: some demo users existed already:", ...describeSeed(report)].join("\n"));
    }
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/**
 * What stdout shows once the server listens: one ready link per demo user and the command that
 * mints more tokens for this server (the user's own AUTH_SECRET is never printed).
 */
async function instructions(port: number, secret: string, devSecret: boolean): Promise<string> {
  const mint = devSecret
    ? "deno task token --dev USER_ID   (e.g. deno task token --dev 1)"
    : "AUTH_SECRET=<your AUTH_SECRET> deno task token USER_ID";
  const lines = [
    "",
    "Demo users (open each link in its own browser tab):",
    ...await links(port, secret),
    "",
    devSecret
      ? "The pages renew their tokens from this server (GET /dev/token, dev-only secret only)."
      : "The links' tokens expire after TOKEN_TTL_SECONDS (a day): run deno task dev again for new ones.",
    `More tokens for this server: ${mint}`,
  ];
  return lines.join("\n") + "\n";
}

/**
 * One ready link per demo user; the tokens last TOKEN_TTL_SECONDS (a day by default), and a page
 * opened from one renews its token from `GET /dev/token` while the server signs with the dev-only
 * secret.
 */
async function links(port: number, secret: string): Promise<string[]> {
  const key = await importTokenKey(secret);
  const now = Math.floor(Date.now() / 1000);
  const lines = [];
  for (const user of DEMO_USERS) {
    const token = await signToken(key, user.userId, now);
    // The protocol has no friends list or names: the page shows these even while offline.
    const friends = DEMO_USERS.filter((u) => u.userId !== user.userId)
      .map((u) => `${u.userId}:${u.username}`);
    lines.push(
      `  ${user.username.padEnd(6)} http://localhost:${port}/?user=${user.userId}` +
        `&name=${user.username}&token=${token}&friends=${friends.join(",")}`,
    );
  }
  return lines;
}

/** The answer of a second `deno task dev` on a data directory that is in use. */
async function alreadyRunning(dataDir: string, devDbDir: string, postmaster: number) {
  const record = await readDevRecord(dataDir);
  const beside = `to run a second one beside it: DEV_DB_DIR=${
    devDbDir ? devDbDir + "-2" : ".dev-db-2"
  } PORT=8453 INTERNAL_PORT=8454 deno task dev`;
  if (record === undefined) {
    return [
      `dev: a PostgreSQL (pid ${postmaster}) is running on ${dataDir}, but no dev server is recorded with it.`,
      "  Another `deno task dev` may still be starting: wait for its links and retry.",
      `  If none is running, that PostgreSQL is left over: stop it with 'kill -INT ${postmaster}'.`,
      `  Or, ${beside}`,
    ].join("\n");
  }
  const lines = [
    `dev: another \`deno task dev\` (pid ${record.pid}) is running on ${dataDir}: use it instead.`,
  ];
  if (record.devSecret) {
    lines.push("  Its demo links (fresh tokens):", ...await links(record.port, DEV_ONLY_SECRET));
    lines.push("  More tokens for it: deno task token --dev USER_ID");
  } else {
    lines.push(
      `  Its page: http://localhost:${record.port}/?user=USER_ID&token=TOKEN`,
      "  Tokens for it: AUTH_SECRET=<the secret it was started with> deno task token USER_ID",
    );
  }
  lines.push(
    `  To stop it: Ctrl-C in its terminal (or kill -INT ${record.pid}).`,
    `  Or, ${beside}`,
  );
  return lines.join("\n");
}

/**
 * A hint when the ports are taken, most often by another `deno task dev` on the same database
 * (with DATABASE_URL there is no data directory to recognise it by); undefined when they are free.
 */
function portsInUse(env: Record<string, string>): string | undefined {
  const host = env.HOST || "127.0.0.1";
  const ports = [env.PORT || env.WEBSOCKET_PORT || "8443", env.INTERNAL_PORT || "8444"];
  const taken = busyAddresses(
    // 0 or invalid: the server decides.
    ports.filter((port) => /^[1-9][0-9]*$/.test(port)).map((port) => ({
      hostname: host === "0.0.0.0" ? "127.0.0.1" : host,
      port: Number(port),
      setting: "port",
    })),
  ).filter((busy) => busy.reason === "in use").map((busy) => busy.port);
  if (taken.length === 0) return undefined;
  const [publicPort] = ports;
  return [
    `dev: port ${taken.join(" and ")} on ${host} is in use, perhaps by another \`deno task dev\`.`,
    `  If so, use it: http://localhost:${publicPort}/ (its links are in its terminal; tokens for it:`,
    "  deno task token --dev USER_ID, or with its AUTH_SECRET: deno task token USER_ID).",
    "  Or run this one beside it: PORT=8453 INTERNAL_PORT=8454 deno task dev",
  ].join("\n");
}

Deno.exit(await dev());
