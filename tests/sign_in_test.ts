/**
 * Signing in and staying signed in, in-process (tests/support/session_harness.ts): the limits a
 * sign-in meets before any database work (the user's connection cap, the per-user and
 * per-address sign-in rates), the slot it gives back when it fails, and what a failed
 * `reauthenticate` does. The same limits over real sockets are in limits_test.ts.
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

Deno.test("the sign-in past MAX_CONNECTIONS_PER_USER is refused too_many_connections before any database work", () =>
  withHarness({ MAX_CONNECTIONS_PER_USER: "2" }, async (h) => {
    await h.join(1);
    await h.join(1);
    h.repository.down = true; // any query now would be answered `unavailable`
    const third = h.connect();
    third.push({ type: "authenticate", auth_token: await h.token(1) });
    const refusal = await third.next("error");
    assert.equal(refusal.code, "too_many_connections");
    assert.deepEqual(third.closed, { code: 1013, reason: "too many connections" });
  }));

Deno.test("a sign-in that fails after taking its slot gives it back exactly once", () =>
  withHarness({ MAX_CONNECTIONS_PER_USER: "2" }, async (h) => {
    await h.join(1); // holds one of the two slots throughout
    const failing = h.connect();
    h.repository.down = true;
    for (let i = 0; i < 3; i++) {
      failing.push({ type: "authenticate", auth_token: await h.token(1) });
      assert.equal((await failing.next("error")).code, "unavailable", `attempt ${i + 1}`);
    }
    h.repository.down = false;
    h.repository.addUser(1, false); // deactivated: auth_error
    failing.push({ type: "authenticate", auth_token: await h.token(1) });
    assert.equal((await failing.next()).type, "auth_error");
    failing.close(1000);
    h.repository.addUser(1, true);
    await h.join(1); // the second slot is free again...
    const third = h.connect();
    third.push({ type: "authenticate", auth_token: await h.token(1) });
    // ...and was given back only once: the first session still holds its own.
    assert.equal((await third.next("error")).code, "too_many_connections");
  }));

Deno.test("sign-ins of one user past LOGIN_RATE_PER_USER_PER_MIN are refused rate_limited with 1013 after a pause, costing no database work; others sign in", () =>
  withHarness({ LOGIN_RATE_PER_USER_PER_MIN: "3" }, async (h) => {
    for (let i = 0; i < 3; i++) await h.join(1);
    h.repository.down = true;
    const fourth = h.connect();
    fourth.push({ type: "authenticate", auth_token: await h.token(1) });
    // Answered after a pause: a client looping on refusals opens a connection a second, no more.
    assert.deepEqual(await fourth.unread(), [], "answered at once");
    assert.equal(fourth.closed, undefined);
    const refusal = await fourth.next();
    assert.equal(refusal.code, "rate_limited");
    assert.match(String(refusal.message), /try again later/);
    assert.deepEqual(fourth.closed, { code: 1013, reason: "too many sign-ins" });
    h.repository.down = false;
    await h.join(2); // same address: its allowance was not spent on user 1's refusal
    await h.join(3, "198.51.100.7");
  }));

Deno.test("sign-ins from one address past LOGIN_RATE_PER_IP_PER_MIN are refused rate_limited; a user from another address signs in", () =>
  withHarness({ LOGIN_RATE_PER_IP_PER_MIN: "3" }, async (h) => {
    for (const id of [1, 2, 3]) await h.join(id, "203.0.113.5");
    const fourth = h.connect("203.0.113.5");
    fourth.push({ type: "authenticate", auth_token: await h.token(4) });
    assert.equal((await fourth.next()).code, "rate_limited");
    assert.equal(fourth.closed?.code, 1013);
    await h.join(5, "198.51.100.7");
    await h.join(4, "198.51.100.7");
  }));

Deno.test("a deactivated user's reauthenticate ends the session at once with session_expired and 1008", () =>
  withHarness({}, async (h) => {
    const alice = await h.join(1);
    h.repository.addUser(1, false);
    alice.push({ type: "reauthenticate", auth_token: await h.token(1) });
    assert.deepEqual(await alice.next(), { type: "session_expired", reason: "deactivated" });
    assert.deepEqual(alice.closed, { code: 1008, reason: "session expired" });
  }));

Deno.test("the fifth failed reauthenticate on one connection closes it with 1008", () =>
  withHarness({}, async (h) => {
    const alice = await h.join(1);
    const attempts = [
      { type: "reauthenticate", auth_token: "garbage" },
      { type: "reauthenticate" },
      { type: "reauthenticate", auth_token: await h.token(2) },
      { type: "reauthenticate", auth_token: "1:123:deadbeef" },
    ];
    for (const frame of attempts) {
      alice.push(frame);
      assert.equal((await alice.next()).type, "auth_error");
      assert.equal(alice.closed, undefined, `closed after ${JSON.stringify(frame)}`);
    }
    alice.push({ type: "reauthenticate", auth_token: "garbage" });
    assert.equal((await alice.next()).type, "auth_error");
    assert.deepEqual(alice.closed, {
      code: 1008,
      reason: "too many failed authentication attempts",
    });
  }));

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
