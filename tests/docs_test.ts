/**
 * @module docs_test
 * What the docs tell a newcomer, checked against what the project does: how to install Deno where
 * its site is blocked (the npm package CI installs, at CI's version), the name of the table the
 * migrations record themselves in, that `deno task compile` says it downloads a runtime, and that
 * every data folder `deno task dev` suggests is ignored by git.
 */

import assert from "node:assert/strict";
import { MIGRATIONS_TABLE } from "../src/store/postgres/migrations.ts";

const ROOT = new URL("..", import.meta.url);
const read = (path: string) => Deno.readTextFile(new URL(path, ROOT));

Deno.test("the README says how to install Deno from npm, at the version CI pins", async () => {
  const pinned = JSON.parse(await read(".ci/tools/package.json")).dependencies.deno;
  assert.match(pinned, /^\d+\.\d+\.\d+$/);
  const readme = await read("README.md");
  const twoCommands = readme.slice(readme.indexOf("## Two commands"), readme.indexOf("```sh"));
  assert.ok(twoCommands.includes(`npm install -g deno@${pinned}`), twoCommands);
  assert.ok(twoCommands.includes(`npx deno@${pinned}`), twoCommands);
  assert.equal(
    Deno.version.deno.split(".").slice(0, 2).join("."),
    pinned.split(".").slice(0, 2).join("."),
    "the README's Deno is the one running the tests",
  );
});

Deno.test("docs/protocol.md names the table the migrations are recorded in", async () => {
  const protocol = await read("docs/protocol.md");
  const database = protocol.slice(protocol.indexOf("## Database"));
  assert.match(database, new RegExp(`recorded in its own table \`${MIGRATIONS_TABLE}\``));
  assert.doesNotMatch(database, /recorded in `schema_migrations`/);
});

Deno.test("deno task compile says that it downloads a runtime, and the docs say how to do without", async () => {
  const { tasks } = JSON.parse(await read("deno.json"));
  assert.match(
    tasks.compile,
    /^echo '[^']*downloads the denort runtime[^']*DENORT_BIN[^']*' && deno compile /,
  );
  const deploy = await read("docs/deploy.md");
  assert.match(deploy, /`DENORT_BIN`/);
  assert.match(
    await read("README.md"),
    /`deno task compile`, which downloads\s+Deno's\s+`denort` runtime/,
  );
});

Deno.test("every data folder deno task dev suggests is ignored by git", async () => {
  const dev = await read("src/dev/main.ts");
  // `.dev-db` by default, `.dev-db-2` (or DEV_DB_DIR-2) to run a second one beside it.
  assert.match(dev, /DEFAULT_DATA_DIR = "\.dev-db"/);
  assert.match(dev, /"\.dev-db-2"/);
  for (const dir of [".dev-db", ".dev-db-2", ".dev-db-2-2"]) {
    const check = await new Deno.Command("git", {
      args: ["check-ignore", "--no-index", "-q", `${dir}/PG_VERSION`],
      cwd: ROOT,
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.equal(
      check.code,
      0,
      `${dir}/ is not ignored: ${new TextDecoder().decode(check.stderr)}`,
    );
  }
});
