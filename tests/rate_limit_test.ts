/**
 * The per-connection limiters under a clock that goes back (a wall-clock step must not refuse a client): sessions
 * give them `performance.now`, and a step back neither refuses nor refills anything.
 */

import assert from "node:assert/strict";
import { AbuseMeter, TokenBucket } from "../src/session/rate_limit.ts";

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
