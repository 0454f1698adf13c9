/**
 * @module dev/token_cli
 * `deno task token [--dev] USER_ID [UNIX_SECONDS]`: prints a token for trying the server locally,
 * signed with `AUTH_SECRET`, or with `--dev` with the dev-only secret that `deno task dev` uses
 * when `AUTH_SECRET` is unset.
 */

import { DEV_ONLY_SECRET } from "./dev_secret.ts";
import { importTokenKey, signToken } from "../token.ts";

const USAGE = "usage: AUTH_SECRET=... deno task token USER_ID [UNIX_SECONDS]\n" +
  "       deno task token --dev USER_ID [UNIX_SECONDS]   (for `deno task dev` without AUTH_SECRET)";

async function main(args: string[]): Promise<number> {
  const dev = args[0] === "--dev";
  const [user, time, extra] = dev ? args.slice(1) : args;
  if (user === undefined || !/^[1-9][0-9]*$/.test(user) || extra !== undefined) {
    console.error(USAGE);
    return 2;
  }
  const secret = dev ? DEV_ONLY_SECRET : Deno.env.get("AUTH_SECRET") ?? "";
  if (secret === "" || secret === "default_secret") {
    console.error(
      "token: set AUTH_SECRET to the secret the server uses, or pass --dev for a `deno task dev` started without AUTH_SECRET",
    );
    return 2;
  }
  const timestamp = time === undefined ? Math.floor(Date.now() / 1000) : Number(time);
  if (!/^[0-9]+$/.test(time ?? "0") || !Number.isSafeInteger(timestamp)) {
    console.error("token: UNIX_SECONDS must be a whole number of seconds");
    return 2;
  }
  console.log(await signToken(await importTokenKey(secret), Number(user), timestamp));
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
