/**
 * The per-connection limiters under a clock that goes back (a wall-clock step must not refuse a
 * client): sessions give them `performance.now`, and a step back neither refuses nor refills
 * anything. And the sign-in buckets kept per key: what they remember stays bounded.
 */

import assert from "node:assert/strict";
import {
  AbuseMeter,
  KeyedBuckets,
  LoginAdmission,
  LoginRates,
  TokenBucket,
} from "../src/session/rate_limit.ts";

Deno.test("a clock stepped back 15 s does not refuse a client sending one chat a second", () => {
  let t = 1_000_000_000_000;
  const now = () => t;
  const frames = new TokenBucket(50, 50, now);
  const chat = new TokenBucket(20, 5, now);
  const abuse = new AbuseMeter(50, now);
  t += 600_000;
  assert.ok(frames.take() && chat.take());
  t -= 15_000;
  let refused = 0;
  for (let s = 0; s < 30; s++) {
    t += 1000;
    if (!(frames.take() && chat.take())) {
      refused++;
      abuse.refused();
    }
  }
  assert.equal(refused, 0);
});

Deno.test("a clock stepped back refills nothing: the burst is still the limit", () => {
  let t = 5_000;
  const bucket = new TokenBucket(3, 1, () => t);
  for (let i = 0; i < 3; i++) assert.ok(bucket.take());
  t -= 4_000;
  assert.equal(bucket.take(), false);
  t += 1_000; // one second after the step: one token, as without it
  assert.equal(bucket.take(), true);
  assert.equal(bucket.take(), false);
});

Deno.test("per-key buckets forget a key once its bucket is full again, and never hold more than maxKeys", () => {
  let t = 0;
  const buckets = new KeyedBuckets<string>(2, 2 / 60, () => t, 1000); // 2 a minute
  assert.ok(buckets.take("a") && buckets.take("a"));
  assert.equal(buckets.take("a"), false, "the third within the minute");
  for (let i = 0; i < 5000; i++) buckets.take(`address-${i}`);
  assert.equal(buckets.size, 1000, "the longest unused dropped past maxKeys");
  t += 59_000;
  buckets.take("b");
  assert.equal(buckets.size, 1000, "nothing is full again yet: still the cap");
  t += 1_000;
  buckets.take("c");
  assert.equal(buckets.size, 2, "a minute after their last use the others are forgotten");
  assert.ok(buckets.take("b"), "a bucket kept is still there and refilling");
});

Deno.test("the node's sign-in admission gives a crowd places one interval apart and lets each in at its place", () => {
  let t = 5_000;
  const admission = new LoginAdmission(10, () => t); // 100 ms apart, 2 at once
  assert.equal(admission.take(1), 0);
  assert.equal(admission.take(2), 0);
  const waits = [3, 4, 5, 6, 7].map((user) => admission.take(user));
  assert.deepEqual(waits, [100, 200, 300, 400, 500]);
  assert.equal(admission.waiting, 5);
  // Early: told again how long is left of its own place, and no place is taken.
  t += 150;
  assert.equal(admission.take(5), 150);
  assert.equal(admission.take(3), 0, "user 3's place (100 ms) has come");
  // A newcomer queues behind the crowd, not in front of it.
  assert.equal(admission.take(8), 450);
  t += 1000;
  assert.deepEqual([4, 5, 6, 7, 8].map((user) => admission.take(user)), [0, 0, 0, 0, 0]);
  assert.equal(admission.waiting, 0);
});

Deno.test("a place not used within its grace is given up, and the schedule does not run ahead for ever", () => {
  let t = 0;
  const admission = new LoginAdmission(10, () => t);
  for (let user = 1; user <= 50; user++) admission.take(user);
  assert.ok(admission.waiting > 0);
  t += 60_000; // nobody came back
  assert.equal(admission.take(99), 0);
  assert.equal(admission.waiting, 0);
});

Deno.test("sign-ins refused for the user's own rate say when its bucket has a token again", () => {
  let t = 0;
  const rates = new LoginRates(
    { loginRatePerUserPerMin: 2, loginRatePerIpPerMin: 100, loginRatePerS: 0 },
    () => t,
  );
  assert.equal(rates.take(1, "a"), undefined);
  assert.equal(rates.take(1, "a"), undefined);
  assert.deepEqual(rates.take(1, "a"), { reason: "sign_in_rate", retryAfterMs: 30_000 });
  t += 30_000;
  assert.equal(rates.take(1, "a"), undefined);
});
