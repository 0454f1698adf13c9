/**
 * @module client_package_test
 * The installable SDK as a game frontend gets it: built by `client/build.ts`, packed with
 * `npm pack`, installed from the tarball into a scratch npm project (offline: it has no
 * dependencies), then imported under Node and chatting with a real server, type-checked through
 * the package's `exports`/`types`, and loaded by a page in Chromium that chats too.
 */

import assert from "node:assert/strict";
import ts from "typescript";
import { buildClient } from "../client/build.ts";
import { startTestServer, type TestServer } from "./support/server.ts";
import { CHROMIUM, launchChromium, needing } from "./support/tools.ts";

const CLIENT = new URL("../client/", import.meta.url).pathname;
const NAME = "@geobeasts/chat-client";

async function run(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}) {
  const out = await new Deno.Command(cmd, {
    args,
    cwd,
    env: { NO_COLOR: "1", npm_config_update_notifier: "false", npm_config_fund: "false", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `${cmd} ${args.join(" ")} failed:\n${stdout}\n${stderr}`);
  return stdout;
}

/** Builds, packs and installs the SDK; returns the scratch project's directory. */
async function installPackage(dir: string): Promise<{ app: string; packed: string[] }> {
  const pkg = `${dir}/package`;
  await buildClient(`${pkg}/dist`);
  for (const file of ["package.json", "README.md"]) {
    await Deno.copyFile(`${CLIENT}${file}`, `${pkg}/${file}`);
  }
  const [report] = JSON.parse(await run("npm", ["pack", "--json", "--pack-destination", dir], pkg));
  const app = `${dir}/app`;
  await Deno.mkdir(app);
  await Deno.writeTextFile(
    `${app}/package.json`,
    JSON.stringify({ name: "scratch-game", private: true, type: "module" }),
  );
  await run(
    "npm",
    [
      "install",
      "--offline",
      "--no-audit",
      "--ignore-scripts",
      `${dir}/${report.filename}`,
    ],
    app,
    { npm_config_cache: `${dir}/npm-cache` },
  );
  return { app, packed: report.files.map((f: { path: string }) => f.path).sort() };
}

function chatServer(): Promise<TestServer> {
  return startTestServer({ users: [1, 2, 3], friends: [[1, 2]] });
}

const NODE_CHAT = `
import { ChatClient, ChatSendError } from "${NAME}";
const client = new ChatClient({
  url: process.env.CHAT_URL,
  getToken: async () => process.env.CHAT_TOKEN,
  pingIntervalMs: 0,
});
client.connect();
const auth = await client.once("authenticated");
const sent = await client.send(2, "hello from node");
const refused = await client.send(3, "not a friend").catch((e) => e);
console.log(JSON.stringify({
  user: auth.user_id,
  sent,
  refused: refused instanceof ChatSendError ? refused.code : String(refused),
}));
await client.close();
`;

const TYPED_USE = `
import { ChatClient, ChatSendError, type ChatClientEvents, type ChatMessage } from "${NAME}";
const client = new ChatClient({ url: "wss://chat.example.com/ws", getToken: async () => "t" });
client.on("chat_message", (m) => console.log(m.message_id + 1, m.message_text.trim()));
client.on("unread", (u) => console.log(u.total, u.by_friend["2"]));
client.on("session_expired", (f) => console.log(f.reason));
const page: Promise<{ has_more: boolean }> = client.history(2, undefined, 20);
const sent: Promise<ChatMessage> = client.send(2, "hi");
const failure: ChatSendError = new ChatSendError("closed", "closed", "id");
const last: number | undefined = client.lastMessageId;
console.log(page, sent, failure, last);
// @ts-expect-error message_id is a number: the package's types are real, not \`any\`
const wrong: string = ({} as ChatClientEvents["chat_message"]).message_id;
console.log(wrong);
`;

/** Type-checks `file` as a TypeScript user of the installed package would (NodeNext). */
function typeCheck(file: string): string[] {
  const program = ts.createProgram([file], {
    noEmit: true,
    strict: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ["lib.es2022.d.ts", "lib.dom.d.ts"],
    types: [],
  });
  return ts.getPreEmitDiagnostics(program).map((d) =>
    ts.flattenDiagnosticMessageText(d.messageText, "\n")
  );
}

Deno.test("the packed SDK installs offline, chats under Node, type-checks, and chats in Chromium", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "gb-client-pkg-" });
  try {
    const { app, packed } = await installPackage(dir);
    assert.deepEqual(packed, [
      "README.md",
      "dist/auth.d.ts",
      "dist/catch_up.d.ts",
      "dist/chat_client.d.ts",
      "dist/chat_client.js",
      "dist/connection.d.ts",
      "dist/dispatch.d.ts",
      "dist/emitter.d.ts",
      "dist/errors.d.ts",
      "dist/failures.d.ts",
      "dist/frames.d.ts",
      "dist/keep_alive.d.ts",
      "dist/link.d.ts",
      "dist/mailbox.d.ts",
      "dist/options.d.ts",
      "dist/outbox.d.ts",
      "dist/pacer.d.ts",
      "dist/receipts.d.ts",
      "dist/refresh.d.ts",
      "dist/requests.d.ts",
      "dist/sequence.d.ts",
      "dist/settings.d.ts",
      "package.json",
    ]);

    await t.step("imported by Node, it chats with a real server", async () => {
      const server = await chatServer();
      try {
        const bob = await server.connectAs(2);
        await Deno.writeTextFile(`${app}/chat.mjs`, NODE_CHAT);
        const probe = await run("node", ["-e", "console.log(typeof WebSocket)"], app);
        const flags = probe.trim() === "function" ? [] : ["--experimental-websocket"];
        const out = await run("node", [...flags, "chat.mjs"], app, {
          CHAT_URL: server.wsUrl,
          CHAT_TOKEN: await server.token(1),
        });
        const result = JSON.parse(out.trim().split("\n").at(-1)!);
        assert.equal(result.user, 1);
        assert.equal(result.sent.message_text, "hello from node");
        assert.equal(result.refused, "not_friends");
        assert.deepEqual(await bob.next("chat_message"), {
          type: "chat_message",
          ...result.sent,
          seq: 1, // bob's update number (v1.2)
        });
      } finally {
        await server.close();
      }
    });

    await t.step("its types resolve through exports and catch a wrong use", async () => {
      await Deno.writeTextFile(`${app}/game.ts`, TYPED_USE);
      assert.deepEqual(typeCheck(`${app}/game.ts`), []);
      await Deno.writeTextFile(`${app}/broken.ts`, TYPED_USE.replace("// @ts-expect-error", "//"));
      const errors = typeCheck(`${app}/broken.ts`);
      assert.equal(errors.length, 1, errors.join("\n"));
      assert.match(errors[0]!, /Type 'number' is not assignable to type 'string'/);
    });

    await t.step(needing(CHROMIUM, {
      name: "loaded by a page in Chromium, it chats with a real server",
      fn: () => chatInChromium(`${app}/node_modules/${NAME}/dist/chat_client.js`),
    }));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Serves a page that imports the installed bundle as an ES module and sends one message. */
async function chatInChromium(bundle: string): Promise<void> {
  const server = await chatServer();
  const token = await server.token(1);
  const page = `<!doctype html><script type="module">
import { ChatClient } from "/chat_client.js";
const client = new ChatClient({ url: ${JSON.stringify(server.wsUrl)}, getToken: async () => ${
    JSON.stringify(token)
  } });
client.connect();
client.send(2, "hello from chromium").then((m) => (window.result = m), (e) => (window.result = String(e)));
</script>`;
  const js = await Deno.readTextFile(bundle);
  const http = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req) =>
      new URL(req.url).pathname === "/chat_client.js"
        ? new Response(js, { headers: { "content-type": "text/javascript" } })
        : new Response(page, { headers: { "content-type": "text/html" } }),
  );
  const browser = await launchChromium();
  try {
    const bob = await server.connectAs(2);
    const tab = await browser.newPage();
    const errors: string[] = [];
    tab.on("pageerror", (err) => errors.push(err.message));
    await tab.goto(`http://127.0.0.1:${http.addr.port}/`);
    await tab.waitForFunction(() => (globalThis as { result?: unknown }).result !== undefined);
    const sent = await tab.evaluate(() => (globalThis as { result?: unknown }).result);
    assert.deepEqual(errors, []);
    assert.equal((sent as { message_text: string }).message_text, "hello from chromium");
    assert.deepEqual(await bob.next("chat_message"), {
      type: "chat_message",
      ...(sent as object),
      seq: 1, // bob's update number (v1.2)
    });
  } finally {
    await browser.close();
    await http.shutdown();
    await server.close();
  }
}
