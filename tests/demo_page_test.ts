/**
 * @module demo_page_test
 * The demo page's inline script is the SDK's own code plus the page's, and stays valid JavaScript
 * however the server was built: run from source, and from a `deno bundle` (which renames and
 * unnames classes). The browser test covers what the page does; this covers that it loads at all.
 */

import assert from "node:assert/strict";

const DEMO_PAGE_MODULE = new URL("../src/demo_page/page.ts", import.meta.url).href;

/** Loads the SDK module the page embeds, sends nothing, and reports what a user of it sees. */
const PROBE = `
import { CLIENT_JS, DEMO_PAGE } from ${JSON.stringify(DEMO_PAGE_MODULE)};
const sdk = await import("data:text/javascript," + encodeURIComponent(CLIENT_JS));
const client = new sdk.ChatClient({ url: "ws://127.0.0.1:9/ws", getToken: async () => "" });
const error = new sdk.ChatSendError("not_friends", "You can only message friends", "m1");
const script = DEMO_PAGE.slice(
  DEMO_PAGE.indexOf('<script type="module">') + 22,
  DEMO_PAGE.lastIndexOf("</script>"),
);
new Function(script); // parses (no import/export in it), runs nothing
console.log(JSON.stringify({
  history: typeof client.history,
  markRead: typeof client.markRead,
  state: client.state,
  error: [error.name, error.code, error instanceof Error],
}));
await client.close();
`;

const EXPECTED = {
  history: "function",
  markRead: "function",
  state: "idle",
  error: ["ChatSendError", "not_friends", true],
};

async function deno(args: string[]): Promise<string> {
  const output = await new Deno.Command(Deno.execPath(), {
    args,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, `deno ${args[0]} failed:\n${stderr}`);
  return new TextDecoder().decode(output.stdout);
}

Deno.test("the page's embedded SDK and script load when the server runs from source", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gb-page-" });
  try {
    await Deno.writeTextFile(`${dir}/probe.ts`, PROBE);
    const out = await deno(["run", "--allow-read", `${dir}/probe.ts`]);
    assert.deepEqual(JSON.parse(out), EXPECTED);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the page's embedded SDK and script load from a deno bundle, whose classes are renamed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gb-page-" });
  try {
    await Deno.writeTextFile(`${dir}/probe.ts`, PROBE);
    await deno([
      "bundle",
      "--platform",
      "deno",
      "--output",
      `${dir}/probe.bundle.js`,
      `${dir}/probe.ts`,
    ]);
    const bundled = await Deno.readTextFile(`${dir}/probe.bundle.js`);
    // What makes this test worth having: the bundle does rename the SDK's classes.
    assert.match(bundled, /class _ChatClient|class extends Error/);
    const out = await deno(["run", "--allow-read", `${dir}/probe.bundle.js`]);
    assert.deepEqual(JSON.parse(out), EXPECTED);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
