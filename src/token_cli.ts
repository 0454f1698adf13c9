/**
 * @module token_cli
 * `deno task token USER_ID [TIMESTAMP]`: prints a token signed with
 * `AUTH_SECRET`, for trying the server locally.
 */

import { importTokenKey, signToken } from "./token.ts";

async function main(args: string[]): Promise<number> {
  const [user, time] = args;
  const secret = Deno.env.get("AUTH_SECRET") ?? "";
  if (user === undefined || !/^[1-9][0-9]*$/.test(user)) {
    console.error("usage: AUTH_SECRET=... deno task token USER_ID [UNIX_SECONDS]");
    return 2;
  }
  if (secret === "" || secret === "default_secret") {
    console.error("token: set AUTH_SECRET to the secret the server uses");
    return 2;
  }
  const timestamp = time === undefined ? Math.floor(Date.now() / 1000) : Number(time);
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) {
    console.error("token: UNIX_SECONDS must be a whole number of seconds");
    return 2;
  }
  console.log(await signToken(await importTokenKey(secret), Number(user), timestamp));
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
