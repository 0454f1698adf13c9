/**
 * @module demo_page/page
 * The demo chat page served at `GET /` when `DEMO_PAGE=true`: one HTML document, no build step.
 *
 * The page's inline module script starts with the SDK itself: `ChatClient.toString()` is the
 * JavaScript Deno compiled from client/chat_client.ts (types removed), so the page runs the same
 * code as every TypeScript user of the SDK and cannot drift from it. This works because all of
 * the SDK's runtime code lives inside its classes, `SDK_CLASSES` (see client/README.md).
 *
 * URL: `/?user=1&name=alice&token=USER_ID:TIMESTAMP:SIGNATURE` (links printed by `deno task dev`);
 * optional `&friends=2:bob,3:carol` lists friends (with their names) before they come online.
 * The script is `script.ts` (with the composer from `compose.ts` and the message actions from
 * `message_actions.ts`), the stylesheet `style.ts`.
 */

import * as sdk from "../../client/chat_client.ts";
import { COMPOSE_JS } from "./compose.ts";
import { MESSAGE_ACTIONS_JS } from "./message_actions.ts";
import { PAGE_JS } from "./script.ts";
import { STYLE } from "./style.ts";

/** Each of `SDK_CLASSES` under the name client/chat_client.ts exports it as. */
const SDK_NAMES = new Map<unknown, string>(
  Object.entries(sdk).map(([name, value]) => [value, name]),
);

/**
 * The SDK's JavaScript: its classes bound to their exported names, no imports or exports. Each
 * class's source is used as an expression, not a declaration, and named after its export rather
 * than its own `name`, because a bundler (`deno bundle`) may print a class without its name
 * (`class extends Error {...}`) or under another one (`class _ChatClient {...}`, which still
 * names itself inside); bound like this, both work.
 */
export const SDK_JS: string = sdk.SDK_CLASSES.map((cls) => {
  const name = SDK_NAMES.get(cls);
  if (name === undefined) throw new Error(`client/chat_client.ts does not export ${cls.name}`);
  return `const ${name} = (${cls});`;
}).join("\n") + "\n";

/** The SDK as an ES module (`export { ChatClient, ChatSendError }`), e.g. for a `/client.js`. */
export const CLIENT_JS: string = `${SDK_JS}export { ChatClient, ChatSendError };\n`;

export interface DemoPageOptions {
  /** The server's `MAX_MESSAGE_CHARS`: longer texts are not sent (the page says so). */
  maxMessageChars: number;
  /** The server's `TOKEN_TTL_SECONDS` (default 86400): the page tells an expired link by it. */
  tokenTtlSeconds?: number;
  /** The server answers `GET /dev/token` (`deno task dev` with its dev-only secret). */
  devTokens?: boolean;
}

/** The whole page, for a server with these settings. */
export function renderDemoPage(options: DemoPageOptions): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>GeoBeasts chat demo</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body data-max-chars="${Math.trunc(options.maxMessageChars)}" data-token-ttl="${
    Math.trunc(options.tokenTtlSeconds ?? 86400)
  }"${options.devTokens ? ' data-dev-tokens="true"' : ""}>
<header><h1>GeoBeasts chat</h1><span id="me"></span><span id="status" class="status">starting…</span></header>
<div id="problem" role="alert" hidden></div>
<div id="help" hidden>
  <h2>Demo chat</h2>
  <p>This page needs a user and a token in its address:
  <code>/?user=1&amp;name=alice&amp;token=USER_ID:TIMESTAMP:SIGNATURE</code>, optionally
  <code>&amp;friends=2:bob,3:carol</code> to list friends before they come online.</p>
  <p><code>deno task dev</code> seeds demo users and prints one such link per user;
  <code>deno task token --dev 1</code> prints a token for user 1 for it
  (<code>AUTH_SECRET=… deno task token 1</code> for a server with your own secret).</p>
</div>
<main id="app">
  <aside>
    <h2>Friends</h2>
    <label class="switch"><input type="checkbox" id="appear-offline"> Appear offline</label>
    <ul id="friends"></ul>
    <form id="add"><input id="add-id" inputmode="numeric" placeholder="user id" aria-label="user id"><button>Chat</button></form>
  </aside>
  <section>
    <h2 id="peer">Pick a friend</h2>
    <ol id="log" class="log"></ol>
    <p id="typing" aria-live="polite"></p>
    <form id="compose"><input id="text" autocomplete="off" placeholder="Message" aria-label="message" disabled><span id="count" aria-live="polite"></span><button id="send" disabled>Send</button></form>
    <p id="notice" aria-live="polite"></p>
  </section>
</main>
<script type="module">
${SDK_JS.replaceAll("</script", "<\\/script")}
${COMPOSE_JS.replaceAll("</script", "<\\/script")}
${MESSAGE_ACTIONS_JS.replaceAll("</script", "<\\/script")}
${PAGE_JS.replaceAll("</script", "<\\/script")}
</script>
</body>
</html>
`;
}

/** The page with the default settings (`MAX_MESSAGE_CHARS` 1000). */
export const DEMO_PAGE: string = renderDemoPage({ maxMessageChars: 1000 });
