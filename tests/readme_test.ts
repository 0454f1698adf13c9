/**
 * @module readme_test
 * The README's newcomer examples, copied out of README.md at test time (each fenced block follows a
 * `<!-- readme-test: NAME -->` marker) and run as a reader would run them, against real server
 * processes, so that the README cannot drift from what works. What the test changes, and only
 * that: its own database instead of the shared one, a free port instead of 8443, the printed token
 * in place of `<token>`, and the SDK's absolute path in place of `./client/chat_client.ts` (the
 * example is written to a temporary directory).
 */

import assert from "node:assert/strict";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";
import {
  type Background,
  collectLines,
  runDeno,
  spawnTask,
  stopTask,
  taskEnv,
} from "./support/process.ts";
import { within } from "./support/wait.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const README = new URL("../README.md", import.meta.url);
const READY_TIMEOUT_MS = 60_000;
const RUN_TIMEOUT_MS = 60_000;

/** The fenced block after `<!-- readme-test: name -->`. */
async function readmeBlock(name: string): Promise<string> {
  const text = await Deno.readTextFile(README);
  const marker = `<!-- readme-test: ${name} -->`;
  const at = text.indexOf(marker);
  assert.ok(at >= 0, `README.md has no ${marker}`);
  const match = /```[a-z]*\n([\s\S]*?)\n```/.exec(text.slice(at + marker.length));
  assert.ok(match, `no fenced block after ${marker}`);
  return match[1]!;
}

async function messages(db: TestDatabase) {
  return await db.sql<{ message_id: string; sender: string; recipient: string; text: string }[]>`
    select message_id, sender_user_id as sender, recipient_user_id as recipient,
           message_text as text
    from messages order by message_id`;
}

/** A word of an `export` line as a shell expands it: `$(command)` is the command's output. */
async function shellValue(word: string): Promise<string> {
  const command = /^\$\((.*)\)$/.exec(word);
  if (command === null) return word;
  const output = await new Deno.Command("sh", { args: ["-c", command[1]!], stderr: "inherit" })
    .output();
  assert.equal(output.code, 0, `'${command[1]}' failed`);
  return new TextDecoder().decode(output.stdout).trim();
}

Deno.test("the README's by-hand example works as written: seed, start, token, then a new message per run, and says what failed", async () => {
  const db = await createTestDatabase();
  const env = taskEnv({ PORT: "0" });
  let server: Background | undefined;
  let token = "";
  let created: string | undefined;
  try {
    // The shell block, line by line, the way a shell would run it.
    for (const raw of (await readmeBlock("by-hand-shell")).split("\n")) {
      const line = raw.replace(/\s+#.*$/, "").trim();
      if (line === "") continue;
      // `createdb NAME`: the test's own database stands in for it.
      const createdb = /^createdb(?:\s+-\S+\s+\S+)*\s+(\w+)$/.exec(line);
      if (createdb) {
        created = createdb[1];
        continue;
      }
      const exported = /^export\s+(.+)$/.exec(line);
      if (exported) {
        for (const [, name, value] of exported[1]!.matchAll(/(\w+)=(\$\([^)]*\)|\S+)/g)) {
          env[name!] = await shellValue(value!);
        }
        assert.ok(env.AUTH_SECRET && env.DATABASE_URL, "the example exports both");
        const name = new URL(env.DATABASE_URL).pathname.slice(1);
        assert.ok(
          created !== undefined && name === created,
          "the example uses the database it made",
        );
        assert.notEqual(name, "postgres", "not the shared postgres database");
        env.DATABASE_URL = db.url; // the test's own database, not the shared one
        continue;
      }
      const task = /^deno task (\S+(?: \S+)*?)( &)?$/.exec(line);
      assert.ok(task, `the test does not know how to run this README line: ${line}`);
      const args = task[1]!.split(" ");
      if (task[2]) {
        server = spawnTask(args, env);
        await within(
          READY_TIMEOUT_MS,
          server.err.until((lines) => lines.some((l) => l.includes('"event":"listening"'))),
          () => `'${line}' did not listen:\n${server!.err.lines.join("\n")}`,
        );
      } else {
        const result = await runDeno(["task", ...args], env);
        assert.equal(result.code, 0, `'${line}' failed:\n${result.stdout}\n${result.stderr}`);
        token = result.stdout.trim();
      }
    }
    assert.ok(server, "the example starts a server");
    assert.match(token, /^1:\d+:[0-9a-f]{64}$/, "the last command prints a token for user 1");
    const listening = JSON.parse(server.err.lines.find((l) => l.includes('"event":"listening"'))!);

    const script = (await readmeBlock("by-hand-js"))
      .replace('"<token>"', JSON.stringify(token))
      .replace("ws://localhost:8443/", `ws://localhost:${listening.public_port}/`);
    const dir = await Deno.makeTempDir({ prefix: "gb-readme-" });
    const byHand = async (source: string) => {
      await Deno.writeTextFile(`${dir}/by-hand.js`, source);
      return await runDeno(["run", "--allow-net", `${dir}/by-hand.js`], env);
    };
    try {
      for (const attempt of [1, 2]) {
        const result = await byHand(script);
        assert.equal(result.code, 0, result.stderr);
        assert.match(result.stdout, /type: "authenticated"/, `run ${attempt}: ${result.stdout}`);
        assert.match(result.stdout, /type: "message_sent"/, `run ${attempt}: ${result.stdout}`);
      }
      // Another text works too (a fresh client_message_id per run); a recipient who is no friend
      // is refused, said so, exit 1, no hang.
      const other = await byHand(script.replace('"hi bob"', '"hi again"'));
      assert.equal(other.code, 0, other.stderr);
      const stranger = await byHand(script.replace("recipient_user_id: 2", "recipient_user_id: 4"));
      assert.equal(stranger.code, 1, stranger.stdout);
      assert.match(stranger.stderr, /^refused: not_friends: You can only message friends$/m);

      // Each run is a new message, alice to bob.
      const rows = await messages(db);
      assert.deepEqual(rows.map(({ sender, recipient, text }) => ({ sender, recipient, text })), [
        { sender: "1", recipient: "2", text: "hi bob" },
        { sender: "1", recipient: "2", text: "hi bob" },
        { sender: "1", recipient: "2", text: "hi again" },
      ]);
      // `kill %1`: the server drains and exits 0.
      const code = await stopTask(server, "SIGTERM");
      server = undefined;
      assert.equal(code, 0);

      // With no server up the script says so and exits 1 instead of printing nothing.
      const down = await byHand(script);
      assert.equal(down.code, 1, down.stdout);
      assert.match(
        down.stderr,
        /^cannot connect to ws:\/\/localhost:\d+\/ws: is the server running \(deno task start\)\?$/m,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  } finally {
    if (server) await stopTask(server, "SIGKILL");
    await db.drop();
  }
});

Deno.test("the README's SDK example runs as written in Deno against deno task dev", async () => {
  const db = await createTestDatabase();
  // `deno task dev` as a reader starts it (no AUTH_SECRET: the dev-only secret), on the test's
  // database so that no embedded PostgreSQL is needed.
  const dev = spawnTask(["dev"], taskEnv({ PORT: "0", DATABASE_URL: db.url }));
  try {
    const links = await within(
      READY_TIMEOUT_MS,
      dev.out.until((lines) => lines.some((l) => /http:\/\/localhost:\d+\/\?user=1&/.test(l))),
      () => `no demo links:\n${dev.out.lines.join("\n")}\n${dev.err.lines.join("\n")}`,
    );
    const port = /http:\/\/localhost:(\d+)\//.exec(links.join("\n"))![1];

    const example = await readmeBlock("sdk-example");
    const command = /^\/\/ CHAT_TOKEN=\$\((deno task [^)]+)\) deno run ([^\n]+) sdk-example\.ts$/m
      .exec(example);
    assert.ok(command, "the example's first line says how to run it");
    const minted = await runDeno(command[1]!.split(" ").slice(1), taskEnv({}));
    assert.equal(minted.code, 0, minted.stderr);

    const dir = await Deno.makeTempDir({ prefix: "gb-readme-" });
    try {
      const sdk = new URL("../client/chat_client.ts", import.meta.url).href;
      await Deno.writeTextFile(
        `${dir}/sdk-example.ts`,
        example.replace('"./client/chat_client.ts"', JSON.stringify(sdk))
          .replace("ws://localhost:8443/", `ws://localhost:${port}/`),
      );
      const result = await runDeno(
        ["run", ...command[2]!.split(" "), `${dir}/sdk-example.ts`],
        taskEnv({ CHAT_TOKEN: minted.stdout.trim() }),
      );
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^signed in as user 1; friends online: \[\]$/m, result.stdout);
      assert.match(result.stdout, /^stored as message \d+ at \d{4}-\d\d-\d\dT/m, result.stdout);

      // Without a token it says so (and keeps retrying) instead of waiting silently.
      const silent = new Deno.Command(Deno.execPath(), {
        args: ["run", ...command[2]!.split(" "), `${dir}/sdk-example.ts`],
        cwd: ROOT,
        env: taskEnv({}),
        clearEnv: true,
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      const stderr = collectLines(silent.stderr);
      try {
        await within(
          RUN_TIMEOUT_MS,
          stderr.until((lines) => lines.some((l) => l.includes("error: get_token_failed"))),
          () => `no get_token_failed error:\n${stderr.lines.join("\n")}`,
        );
        assert.match(stderr.lines.join("\n"), /CHAT_TOKEN is unset/);
      } finally {
        silent.kill("SIGKILL");
        await silent.status;
        await stderr.done;
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
    const rows = await messages(db);
    assert.deepEqual(rows.map(({ sender, recipient, text }) => ({ sender, recipient, text })), [
      { sender: "1", recipient: "2", text: "hello bob" },
    ]);
    assert.equal(await stopTask(dev, "SIGINT"), 0, dev.err.lines.join("\n"));
  } finally {
    await stopTask(dev, "SIGKILL").catch(() => {});
    await db.drop();
  }
});
