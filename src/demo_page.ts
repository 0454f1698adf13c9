/**
 * @module demo_page
 * The demo chat page served at `GET /` when `DEMO_PAGE=true`: one HTML document, no build step.
 *
 * The page's inline module script starts with the SDK itself: `ChatClient.toString()` is the
 * JavaScript Deno compiled from client/chat_client.ts (types removed), so the page runs the same
 * code as every TypeScript user of the SDK and cannot drift from it. This works because all of
 * the SDK's runtime code lives inside its classes, `SDK_CLASSES` (see client/README.md).
 *
 * URL: `/?user=1&token=USER_ID:TIMESTAMP:SIGNATURE` (links printed by `deno task dev`);
 * optional `&friends=2,3` lists friends before they come online.
 */

import { SDK_CLASSES } from "../client/chat_client.ts";

/** The SDK's JavaScript: its classes as declarations, no imports or exports. */
export const SDK_JS: string = `${SDK_CLASSES.join("\n")}\n`;

/** The SDK as an ES module (`export { ChatClient, ChatSendError }`), e.g. for a `/client.js`. */
export const CLIENT_JS: string = `${SDK_JS}export { ChatClient, ChatSendError };\n`;

/** The page's own script; plain JavaScript, renders user text with `textContent` only. */
const PAGE_JS = String.raw`
const params = new URLSearchParams(location.search);
const token = params.get("token");
const $ = (id) => document.getElementById(id);
const el = (tag, className, text) => {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
};
const nameOf = (id) => "User " + id;

if (!token) {
  $("help").hidden = false;
  $("app").hidden = true;
  $("status").textContent = "no token";
} else {
  const friends = new Map(); // user id -> { li, dot, unread, log, typingUntil }
  let me = Number(params.get("user")) || undefined;
  let selected;
  let typingTimer;
  let typingSentAt = 0;
  let typingStop;
  let authError;

  const client = new ChatClient({
    url: (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws",
    getToken: async () => token,
  });

  const friend = (id) => {
    let f = friends.get(id);
    if (f) return f;
    const li = el("li", "friend");
    li.dataset.userId = String(id);
    const dot = el("span", "dot offline");
    dot.title = "offline";
    const unread = el("span", "unread");
    li.append(dot, el("span", "name", nameOf(id)), unread);
    li.addEventListener("click", () => select(id));
    f = { li, dot, unread, log: el("ol", "log"), typingUntil: 0 };
    friends.set(id, f);
    const items = [...friends.keys()].sort((a, b) => a - b);
    $("friends").insertBefore(li, friends.get(items[items.indexOf(id) + 1])?.li ?? null);
    return f;
  };

  const setOnline = (id, online) => {
    const { dot } = friend(id);
    dot.className = "dot " + (online ? "online" : "offline");
    dot.title = online ? "online" : "offline";
  };

  const select = (id) => {
    selected = id;
    const f = friend(id);
    for (const [other, g] of friends) g.li.classList.toggle("selected", other === id);
    f.unread.textContent = "";
    $("peer").textContent = nameOf(id);
    $("log").replaceWith(f.log);
    f.log.id = "log";
    $("text").disabled = false;
    $("send").disabled = false;
    $("text").focus();
    renderTyping();
    f.log.lastElementChild?.scrollIntoView();
  };

  const renderTyping = () => {
    const f = selected && friends.get(selected);
    const typing = Boolean(f) && f.typingUntil > Date.now();
    $("typing").textContent = typing ? nameOf(selected) + " is typing…" : "";
    clearTimeout(typingTimer);
    if (typing) typingTimer = setTimeout(renderTyping, f.typingUntil - Date.now());
  };

  const addMessage = (peer, mine, text, sentAt) => {
    const f = friend(peer);
    const li = el("li", "msg " + (mine ? "mine" : "theirs"));
    li.append(el("span", "text", text));
    const time = el("span", "time", sentAt ? new Date(sentAt).toLocaleTimeString() : "");
    const meta = el("span", "meta");
    meta.append(time);
    li.append(meta);
    f.log.append(li);
    li.scrollIntoView();
    if (peer !== selected && !mine) f.unread.textContent = String(Number(f.unread.textContent) + 1);
    return { li, meta, time };
  };

  client.on("state", (s) => {
    const text = {
      connecting: "connecting…",
      authenticating: "signing in…",
      open: "online as " + nameOf(client.userId),
      waiting: (authError ? "token refused (" + authError + "), " : "") + "reconnecting in " +
        ((s.delayMs ?? 0) / 1000).toFixed(1) + " s…",
      closed: "closed",
    }[s.state] ?? s.state;
    $("status").textContent = text;
    $("status").className = "status " + s.state;
  });
  client.on("auth_error", (f) => (authError = f.message));
  client.on("authenticated", (f) => {
    me = f.user_id;
    authError = undefined;
    $("me").textContent = nameOf(me);
    for (const id of friends.keys()) setOnline(id, false);
    for (const id of f.online_friends) setOnline(id, true);
  });
  client.on("presence", (f) => setOnline(f.user_id, f.status === "online"));
  client.on("typing", (f) => {
    friend(f.user_id).typingUntil = f.is_typing ? Date.now() + 6000 : 0;
    renderTyping();
  });
  client.on("chat_message", (m) => {
    const mine = m.sender_user_id === me;
    const peer = mine ? m.recipient_user_id : m.sender_user_id;
    if (!mine) friend(peer).typingUntil = 0;
    const { meta } = addMessage(peer, mine, m.message_text, m.sent_at);
    if (mine) meta.append(el("span", "tick", " ✓"));
    renderTyping();
  });

  $("compose").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("text").value.trim();
    if (!text || !selected) return;
    $("text").value = "";
    stopTyping();
    const { li, meta, time } = addMessage(selected, true, text);
    const tick = el("span", "tick pending", " …");
    tick.title = "sending";
    meta.append(tick);
    client.send(selected, text).then(
      (m) => {
        time.textContent = new Date(m.sent_at).toLocaleTimeString();
        tick.textContent = " ✓";
        tick.className = "tick sent";
        tick.title = "delivered to the server";
      },
      (err) => {
        li.classList.add("failed");
        tick.textContent = " ✗ " + err.message;
        tick.className = "tick failed";
      },
    );
  });

  const stopTyping = () => {
    clearTimeout(typingStop);
    if (typingSentAt && selected) client.typing(selected, false);
    typingSentAt = 0;
  };
  $("text").addEventListener("input", () => {
    if (!selected) return;
    if (Date.now() - typingSentAt > 2000 && client.typing(selected, true)) typingSentAt = Date.now();
    clearTimeout(typingStop);
    typingStop = setTimeout(stopTyping, 3000);
  });

  $("add").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = Number($("add-id").value);
    if (Number.isSafeInteger(id) && id > 0 && id !== me) select(id);
    $("add-id").value = "";
  });

  for (const id of (params.get("friends") ?? "").split(",")) if (Number(id) > 0) friend(Number(id));
  if (me) $("me").textContent = nameOf(me);
  client.connect();
}
`;

const STYLE = `
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; font: 15px/1.4 system-ui, sans-serif; color: #1d2330; background: #eef1f6; }
header { display: flex; gap: 1rem; align-items: baseline; padding: .7rem 1.2rem; background: #27344f; color: #fff; }
header h1 { font-size: 1.1rem; margin: 0; }
.status { margin-left: auto; font-size: .85rem; opacity: .85; }
.status.open::before { content: "● "; color: #4cd37b; }
main { display: grid; grid-template-columns: 220px 1fr; gap: 1rem; padding: 1rem; height: calc(100vh - 48px); }
aside, section { background: #fff; border-radius: 10px; padding: .8rem; box-shadow: 0 1px 3px #0002; }
section { display: flex; flex-direction: column; min-height: 0; }
h2 { font-size: 1rem; margin: 0 0 .6rem; }
ul { list-style: none; margin: 0 0 1rem; padding: 0; }
.friend { display: flex; gap: .5rem; align-items: center; padding: .4rem .5rem; border-radius: 6px; cursor: pointer; }
.friend:hover { background: #f0f3f8; }
.friend.selected { background: #dde6f7; }
.dot { width: .65rem; height: .65rem; border-radius: 50%; background: #b9c0cc; }
.dot.online { background: #2fb463; }
.unread { margin-left: auto; background: #d9453b; color: #fff; border-radius: 9px; padding: 0 .4rem; font-size: .75rem; }
.unread:empty { display: none; }
#add { display: flex; gap: .3rem; }
#add input { width: 6rem; }
.log { flex: 1; overflow-y: auto; list-style: none; margin: 0; padding: .2rem; display: flex; flex-direction: column; gap: .4rem; }
.msg { max-width: 70%; padding: .4rem .7rem; border-radius: 12px; white-space: pre-wrap; overflow-wrap: anywhere; }
.msg.theirs { align-self: flex-start; background: #eef1f6; }
.msg.mine { align-self: flex-end; background: #2f6fde; color: #fff; }
.msg.failed { background: #b3261e; }
.meta { display: block; font-size: .7rem; opacity: .75; text-align: right; }
#typing { min-height: 1.4em; margin: .3rem 0; font-size: .85rem; color: #5a6475; font-style: italic; }
#compose { display: flex; gap: .5rem; }
#text { flex: 1; padding: .5rem; }
input, button { font: inherit; }
#help { max-width: 40rem; margin: 2rem auto; background: #fff; padding: 1rem 1.5rem; border-radius: 10px; }
code { background: #eef1f6; padding: 0 .25rem; border-radius: 4px; }
`;

/** The whole page. */
export const DEMO_PAGE: string = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>GeoBeasts chat demo</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<header><h1>GeoBeasts chat</h1><span id="me"></span><span id="status" class="status">starting…</span></header>
<div id="help" hidden>
  <h2>Demo chat</h2>
  <p>This page needs a user and a token in its address:
  <code>/?user=1&amp;token=USER_ID:TIMESTAMP:SIGNATURE</code>, optionally
  <code>&amp;friends=2,3</code> to list friends before they come online.</p>
  <p><code>deno task dev</code> seeds demo users and prints one such link per user;
  <code>AUTH_SECRET=… deno task token 1</code> prints a token for user 1.</p>
</div>
<main id="app">
  <aside>
    <h2>Friends</h2>
    <ul id="friends"></ul>
    <form id="add"><input id="add-id" inputmode="numeric" placeholder="user id" aria-label="user id"><button>Chat</button></form>
  </aside>
  <section>
    <h2 id="peer">Pick a friend</h2>
    <ol id="log" class="log"></ol>
    <p id="typing" aria-live="polite"></p>
    <form id="compose"><input id="text" autocomplete="off" placeholder="Message" aria-label="message" disabled><button id="send" disabled>Send</button></form>
  </section>
</main>
<script type="module">
${SDK_JS.replaceAll("</script", "<\\/script")}
${PAGE_JS}
</script>
</body>
</html>
`;
