/**
 * @module server/dev_tokens
 * `GET /dev/token?user=N` on the public listener, only for `deno task dev` signing with its
 * public dev-only secret: a fresh token for user N, so that a demo page whose link has aged past
 * `TOKEN_TTL_SECONDS` renews itself instead of being refused. With a real secret it does not
 * exist (404 like any unknown path): minting tokens is then the game backend's business.
 */

/** A listener's handler of plain HTTP requests. */
type FetchHandler = (request: Request) => Response | Promise<Response>;

/** `fetch` with the dev token route in front of it when `mint` is given; `fetch` itself otherwise. */
export function withDevTokens(
  fetch: FetchHandler,
  mint: ((userId: number) => Promise<string>) | undefined,
): FetchHandler {
  if (mint === undefined) return fetch;
  return async (request) => {
    const url = new URL(request.url);
    if (url.pathname !== "/dev/token") return fetch(request);
    if (request.method !== "GET") {
      return Response.json({ error: "Use GET /dev/token?user=USER_ID" }, { status: 405 });
    }
    const user = url.searchParams.get("user") ?? "";
    if (!/^[1-9][0-9]*$/.test(user) || !Number.isSafeInteger(Number(user))) {
      return Response.json({ error: "user must be a positive user id" }, { status: 400 });
    }
    return new Response(await mint(Number(user)), {
      headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
    });
  };
}
