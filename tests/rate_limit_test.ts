/**
 * The per-connection limiters under a clock that goes back (a wall-clock step must not refuse a
 * client): sessions give them `performance.now`, and a step back neither refuses nor refills
 * anything. And the sign-in buckets kept per key: what they remember stays bounded.
 */

import assert from "node:assert/strict";
import { AbuseMeter, KeyedBuckets, TokenBucket } from "../src/session/rate_limit.ts";

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
