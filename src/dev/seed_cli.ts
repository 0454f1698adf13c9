/**
 * @module dev/seed_cli
 * `deno task seed`: applies the migrations to the database at `DATABASE_URL` (the server's
 * default when unset) and adds the demo users alice (1), bob (2) and carol (3) and their
 * friendships, so that the README's "Trying it by hand" works on any database. Run it as often
 * as you like: it only adds what is missing.
 */

import postgres from "postgres";
import { DEFAULT_DATABASE_URL } from "../config.ts";
import { errorMessage } from "../log.ts";
import { migrate } from "../store/mod.ts";
import { describeSeed, seedDemoUsers } from "./seed.ts";

async function main(): Promise<number> {
  const url = Deno.env.get("DATABASE_URL") || DEFAULT_DATABASE_URL;
  const shown = withoutPassword(url);
  const sql = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    await migrate(sql);
    const report = await seedDemoUsers(sql);
    console.log([`seed: demo users in ${shown}`, ...describeSeed(report)].join("\n"));
    return report.users.every((u) => u.active) ? 0 : 1;
  } catch (err) {
    console.error(`seed: cannot seed ${shown}: ${errorMessage(err)}`);
    return 1;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** The URL as printed: never a password on the terminal. */
function withoutPassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== "") parsed.password = "***";
    return parsed.href;
  } catch {
    return "(DATABASE_URL is not a URL)";
  }
}

Deno.exit(await main());
