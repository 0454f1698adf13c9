/** BatchLoader: lookups asked while a query is out go together in the next one. */

import assert from "node:assert/strict";
import { BatchLoader } from "../src/store/postgres/batch_loader.ts";
import { sleep } from "./support/wait.ts";

Deno.test("a burst of lookups costs two queries, each key answered with its own value or the fallback", async () => {
  const calls: number[][] = [];
  const loader = new BatchLoader<number, string>(async (keys) => {
    calls.push(keys);
    await sleep(5);
    return new Map(keys.filter((k) => k % 2 === 0).map((k) => [k, `v${k}`]));
  }, "none");
  const first = loader.load(1);
  await Promise.resolve(); // the first query is now out
  const rest = Array.from({ length: 100 }, (_, i) => loader.load(i));
  const answers = await Promise.all([first, ...rest]);
  assert.equal(calls.length, 2);
  assert.deepEqual(calls[0], [1]);
  assert.equal(calls[1]!.length, 100);
  assert.equal(answers[0], "none");
  assert.deepEqual(answers.slice(1, 5), ["v0", "none", "v2", "none"]);
});

Deno.test("a failed query rejects its own lookups only", async () => {
  let fail = true;
  const loader = new BatchLoader<number, number>((keys) => {
    if (fail) {
      fail = false;
      return Promise.reject(new Error("database down"));
    }
    return Promise.resolve(new Map(keys.map((k) => [k, k * 10])));
  }, 0);
  await assert.rejects(loader.load(1), /database down/);
  assert.equal(await loader.load(2), 20);
});
