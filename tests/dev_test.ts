/**
 * @module dev_test
 * `deno task dev` on a machine with nothing but Deno: with no DATABASE_URL it
 * starts the embedded PostgreSQL, serves, prints a working link per demo user,
 * and on SIGINT drains, stops the database and exits 0.
 */

import assert from "node:assert/strict";
import { TestClient } from "./support/client.ts";
import { createTestDatabase } from "./support/db.ts";
import { freePort, runDeno, spawnTask, stopTask, taskEnv } from "./support/process.ts";
import { startTestServer } from "./support/server.ts";
import { sleep, within } from "./support/wait.ts";

const READY_TIMEOUT_MS = 90_000; // a first run type-checks and runs initdb
const STOP_TIMEOUT_MS = 20_000;
const LINK =
  /^\s*(\w+)\s+http:\/\/localhost:(\d+)\/\?user=(\d+)&name=(\w+)&token=([^\s&]+)&friends=([\w:,]+)$/;

Deno.test("deno task dev without DATABASE_URL serves the demo users and exits 0 on SIGINT", async () => {
  const port = freePort();
  const internalPort = freePort();
  const dataDir = `/tmp/gb-dev-test-${crypto.randomUUID().slice(0, 8)}`;
  const devEnv = taskEnv({
    PORT: String(port),
    INTERNAL_PORT: String(internalPort),
    DEV_DB_DIR: dataDir,
  });
  // A process group of its own, so the finally block can kill `deno task` and the `deno run`
  // under it together.
  const dev = spawnTask(["dev"], devEnv);
  const { out, err } = dev;
  let client: TestClient | undefined;
  try {
    const links = await within(
      READY_TIMEOUT_MS,
      out.until((lines) => lines.filter((line) => LINK.test(line)).length >= 3),
      () =>
        `no demo links within ${READY_TIMEOUT_MS} ms:\n${out.lines.join("\n")}\n${
          err.lines.join("\n")
        }`,
    );
    const parsed = links.flatMap((line) => {
      const match = LINK.exec(line);
      return match === null ? [] : [{
        name: match[1],
        port: Number(match[2]),
        user: Number(match[3]),
        username: match[4],
        token: match[5]!,
        friends: match[6],
      }];
    });
    assert.deepEqual(
      parsed.map(({ name, port, user }) => ({ name, port, user })),
      [{ name: "alice", port, user: 1 }, { name: "bob", port, user: 2 }, {
        name: "carol",
        port,
        user: 3,
      }],
    );
    assert.deepEqual(parsed.map((p) => [p.username, p.friends]), [
      ["alice", "2:bob,3:carol"],
      ["bob", "1:alice,3:carol"],
      ["carol", "1:alice,2:bob"],
    ]);
    assert.match(err.lines.join("\n"), /DEV-ONLY secret/);
    const mint = await within(
      READY_TIMEOUT_MS,
      out.until((lines) => lines.some((line) => line.startsWith("More tokens for this server:"))),
      () => out.lines.join("\n"),
    );
    assert.match(mint.join("\n"), /More tokens for this server: deno task token --dev USER_ID/);

    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    await ready.body?.cancel();
    assert.equal(ready.status, 200);

    // The printed token signs in, and the seeded friends are there.
    client = await TestClient.open(`ws://127.0.0.1:${port}/ws`);
    client.send({ type: "authenticate", auth_token: parsed[0]!.token });
    const authenticated = await client.next("authenticated");
    assert.equal(authenticated.user_id, 1);

    // A page opened from a link renews its token here: GET /dev/token, dev-only secret only.
    const renewal = await fetch(`http://127.0.0.1:${port}/dev/token?user=2`);
    assert.equal(renewal.status, 200);
    assert.equal(renewal.headers.get("cache-control"), "no-store");
    const bob = await TestClient.open(`ws://127.0.0.1:${port}/ws`);
    try {
      bob.send({ type: "authenticate", auth_token: (await renewal.text()).trim() });
      assert.equal((await bob.next("authenticated")).user_id, 2);
    } finally {
      await bob.close();
    }
    const bad = await fetch(`http://127.0.0.1:${port}/dev/token?user=bob`);
    assert.equal(bad.status, 400);
    assert.deepEqual(await bad.json(), { error: "user must be a positive user id" });
    assert.match(out.lines.join("\n"), /The pages renew their tokens from this server/);

    // The printed way to mint a token works for this server.
    const minted = await runDeno(["task", "token", "--dev", "3"], devEnv);
    const carol = await TestClient.open(`ws://127.0.0.1:${port}/ws`);
    try {
      carol.send({ type: "authenticate", auth_token: minted.stdout.trim() });
      assert.equal((await carol.next("authenticated")).user_id, 3);
    } finally {
      await carol.close();
    }

    // A second `deno task dev` on the same directory points at this one and leaves it alone.
    const second = await runDeno(
      ["task", "dev"],
      { ...devEnv, PORT: String(freePort()), INTERNAL_PORT: String(freePort()) },
    );
    const secondErr = second.stderr;
    assert.equal(second.code, 1, secondErr);
    assert.match(secondErr, /another `deno task dev` \(pid \d+\) is running on /);
    assert.doesNotMatch(secondErr, /earlier run/);
    assert.match(secondErr, new RegExp(`http://localhost:${port}/\\?user=1&name=alice&token=`));
    const stillReady = await fetch(`http://127.0.0.1:${port}/readyz`);
    await stillReady.body?.cancel();
    assert.equal(stillReady.status, 200, "the running dev server is untouched");

    const started = Date.now();
    dev.child.kill("SIGINT");
    assert.equal(await client.closedWith(STOP_TIMEOUT_MS), 1001);
    const { code } = await within(STOP_TIMEOUT_MS, dev.status, "an exit after SIGINT");
    assert.equal(code, 0, err.lines.join("\n"));
    assert.ok(Date.now() - started < STOP_TIMEOUT_MS);
    // The embedded database was stopped before the exit, not left behind.
    await assert.rejects(Deno.stat(`${dataDir}/postmaster.pid`), Deno.errors.NotFound);
  } finally {
    await client?.close();
    await stopTask(dev, "SIGKILL");
    // A killed run leaves its database to the watchdog, which stops it within a second.
    await removeWhenStopped(dataDir);
  }
});

async function removeWhenStopped(dataDir: string): Promise<void> {
  for (let i = 0; i < 50; i++) {
    try {
      await Deno.stat(`${dataDir}/postmaster.pid`);
    } catch {
      break;
    }
    await sleep(100);
  }
  await Deno.remove(dataDir, { recursive: true }).catch(() => {});
}

Deno.test("deno task dev on ports that are taken says so and how to run beside them", async () => {
  const db = await createTestDatabase();
  const held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (held.addr as Deno.NetAddr).port;
  try {
    const output = await runDeno(
      ["task", "dev"],
      taskEnv({ DATABASE_URL: db.url, PORT: String(port), INTERNAL_PORT: String(freePort()) }),
    );
    const stderr = output.stderr;
    assert.equal(output.code, 1, stderr);
    assert.match(stderr, new RegExp(`port ${port} on 127\\.0\\.0\\.1 is in use`));
    assert.match(stderr, /PORT=8453 INTERNAL_PORT=8454 deno task dev/);
    assert.doesNotMatch(stderr, /startup_failed|EADDRINUSE/);
    assert.equal(output.stdout, "", "no demo links for a server not started");
  } finally {
    held.close();
    await db.drop();
  }
});

Deno.test("GET /dev/token is deno task dev's alone: a server started any other way answers 404", async () => {
  const t = await startTestServer();
  try {
    const response = await fetch(`${t.httpUrl}/dev/token?user=1`);
    await response.body?.cancel();
    assert.equal(response.status, 404);
  } finally {
    await t.close();
  }
});
