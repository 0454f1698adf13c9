/**
 * Many timers on one queue (sessions' expiries): each fires once, at its own moment, in
 * order; a moved timer fires at its new moment, a stopped one never; the queue holds one
 * pending timeout whatever the count.
 */

import assert from "node:assert/strict";
import { DeadlineQueue, DeadlineTimer } from "../src/session/deadline_timer.ts";
import { sleep } from "./support/wait.ts";

Deno.test("timers on one queue fire once each, in order of their moments; moved ones at the new moment, stopped ones never", async () => {
  const queue = new DeadlineQueue(Date.now);
  const fired: { id: number; at: number; late: number }[] = [];
  const timers = Array.from({ length: 200 }, (_, id) => {
    const timer: DeadlineTimer = new DeadlineTimer(queue, () => {
      fired.push({ id, at: timer.at, late: Date.now() - timer.at });
    });
    return timer;
  });
  const start = Date.now();
  // Moments 20–220 ms ahead in a shuffled order, so the heap reorders them.
  timers.forEach((timer, id) => timer.set(start + 20 + ((id * 37) % 200)));
  for (let id = 0; id < 200; id += 10) timers[id]!.stop();
  for (let id = 5; id < 200; id += 10) timers[id]!.set(start + 250 + id); // moved later
  for (let id = 3; id < 200; id += 20) timers[id]!.set(start + 10); // moved earlier
  assert.equal(queue.size, 180);
  await sleep(1500);
  assert.equal(queue.size, 0);
  const stopped = new Set(Array.from({ length: 20 }, (_, k) => 10 * k));
  assert.deepEqual(
    fired.map((f) => f.id).sort((a, b) => a - b),
    timers.map((_, id) => id).filter((id) => !stopped.has(id)),
    "each timer not stopped fired once",
  );
  const moments = fired.map((f) => f.at);
  assert.deepEqual(moments, [...moments].sort((a, b) => a - b), "in order of their moments");
  assert.ok(fired.every((f) => f.late >= 0), "none before its moment");
  const moved = fired.find((f) => f.id === 5)!;
  assert.equal(moved.at, start + 255);
});

Deno.test("a timer set again while it fires waits for its new moment, and a closed queue fires nothing", async () => {
  const queue = new DeadlineQueue(Date.now);
  let runs = 0;
  const timer: DeadlineTimer = new DeadlineTimer(queue, () => {
    if (++runs === 1) timer.set(Date.now() + 30);
  });
  timer.set(Date.now() + 10);
  await sleep(500);
  assert.equal(runs, 2, "fired at its first moment and again at the one it was set to");

  const other = new DeadlineTimer(queue, () => runs++);
  other.set(Date.now() + 20);
  timer.set(Date.now() + 20);
  queue.close();
  assert.equal(queue.size, 0);
  await sleep(80);
  assert.equal(runs, 2, "nothing fires after close");
});

Deno.test("a timer whose moment the wall clock has not reached when the timeout fires waits on", async () => {
  // The wall clock is stepped back by a second after the timer is set.
  let offset = 0;
  const queue = new DeadlineQueue(() => Date.now() + offset);
  let firedAt: number | undefined;
  const timer = new DeadlineTimer(queue, () => (firedAt = Date.now()));
  const start = Date.now();
  timer.set(start + 30);
  offset = -1000;
  await sleep(100);
  assert.equal(firedAt, undefined, "not fired at the original delay: the clock is behind");
  for (let waited = 0; firedAt === undefined && waited < 5000; waited += 50) await sleep(50);
  assert.ok(firedAt !== undefined && firedAt - start >= 1000, `fired at +${firedAt! - start} ms`);
});
