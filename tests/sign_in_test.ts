/**
 * Signing in and staying signed in, in-process (tests/support/session_harness.ts).
 */

import assert from "node:assert/strict";
import { SessionHarness } from "./support/session_harness.ts";

async function withHarness(
  env: Record<string, string>,
  fn: (h: SessionHarness) => Promise<void>,
): Promise<void> {
  const h = await SessionHarness.start({ env });
  try {
    await fn(h);
  } finally {
    await h.close();
  }
}

Deno.test("a revoked token is refused on authenticate and reauthenticate; a token issued after the revocation is not", () =>
  withHarness({}, async (h) => {
    const alice = await h.join(1);
    const nowS = Math.floor(Date.now() / 1000);
    await h.repository.revokeTokens([1], new Date(nowS * 1000 + 500));
    alice.push({ type: "reauthenticate", auth_token: await h.token(1) });
    assert.deepEqual(await alice.next(), { type: "auth_error", message: "Invalid auth token" });
    const again = h.connect();
    again.push({ type: "authenticate", auth_token: await h.token(1) });
    assert.deepEqual(await again.next(), { type: "auth_error", message: "Invalid auth token" });
    const later = await h.tokenAt(1, nowS + 1);
    alice.push({ type: "reauthenticate", auth_token: later });
    assert.equal((await alice.next()).type, "reauthenticated");
    again.push({ type: "authenticate", auth_token: later });
    assert.equal((await again.next()).type, "authenticated");
  }));
