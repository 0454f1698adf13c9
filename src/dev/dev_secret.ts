/**
 * @module dev_secret
 * The secret `deno task dev` signs tokens with when `AUTH_SECRET` is unset. It is public, so a
 * token signed with it proves nothing: the dev server listens on loopback only, and only
 * `deno task dev` accepts it (`src/config.ts` refuses it for every other start).
 */

export { DEV_ONLY_SECRET } from "../config.ts";
