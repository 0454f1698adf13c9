/**
 * @module dev/dev_secret
 * The secret `deno task dev` signs tokens with when `AUTH_SECRET` is unset. It is public (it is
 * right here), so a token signed with it proves nothing: the dev server listens on loopback only,
 * and `deno task start` never falls back to it.
 */

export const DEV_ONLY_SECRET = "geobeasts-chat-dev-only-secret";
