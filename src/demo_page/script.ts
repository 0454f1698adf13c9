/**
 * @module demo_page/script
 * The demo page's own script (plain JavaScript, run after the embedded SDK): the friends list with
 * presence dots and unread badges, one conversation at a time with delivery and read ticks,
 * scroll-back history, and typing; the composer is `compose.ts`, editing and deleting a message
 * `message_actions.ts`. It renders user text with `textContent` only. Features of the v1.1 SDK
 * (`history`, `markRead`, receipts, unread counts, catch-up after a reconnect) and of v1.2
 * (catch-up by update `seq`, edit and delete) are used when the embedded SDK has them.
 *
 * Page address: `/?user=1&name=alice&token=TOKEN&friends=2:bob,3:carol` (the links printed by
 * `deno task dev`); the protocol carries no names, so they come from the address ("User 7" for an
 * id without one). The body's `data-max-chars` is the server's `MAX_MESSAGE_CHARS`,
 * `data-token-ttl` its `TOKEN_TTL_SECONDS`, and `data-dev-tokens` is set when the server is
 * `deno task dev` with its dev-only secret, which hands out fresh tokens (`GET /dev/token`): the
 * page then renews its token before it expires or once it was refused. A token that cannot be
 * renewed and is refused stops the page, saying why and how to get a fresh link; any other
 * failure is shown with a live countdown to the next attempt. The open conversation and the draft
 * survive a reload (`sessionStorage`).
 */

export const PAGE_JS: string = String.raw`
const params = new URLSearchParams(location.search);
let token = params.get("token");
const MAX_CHARS = Number(document.body.dataset.maxChars) || 1000;
const TOKEN_TTL_S = Number(document.body.dataset.tokenTtl) || 86400;
const DEV_TOKENS = document.body.dataset.devTokens === "true";
const HISTORY_PAGE = 20;
const $ = (id) => document.getElementById(id);
const el = (tag, className, text) => {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
};
const names = new Map();
const nameOf = (id) => names.get(id) ?? "User " + id;
const toEnd = (log) => (log.scrollTop = log.scrollHeight);
const nearEnd = (log) => log.scrollHeight - log.scrollTop - log.clientHeight < 120;
const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "");

if (!token) {
  $("help").hidden = false;
  $("app").hidden = true;
  $("status").textContent = "no token";
} else {
  const friendIds = [];
  for (const item of (params.get("friends") ?? "").split(",")) {
    const [id, name] = item.split(":");
    if (!(Number(id) > 0)) continue;
    friendIds.push(Number(id));
    if (name) names.set(Number(id), name);
  }
  let me = Number(params.get("user")) || undefined;
  if (me && params.get("name")) names.set(me, params.get("name"));

  // Where catch-up resumes when this page is opened again (the SDK's cursors, kept per user): the
  // last update seq applied (v1.2 server), the last message id seen (v1.1 server).
  const cursorKey = "geobeasts-chat:last-message-id:" + (me ?? "");
  const seqKey = "geobeasts-chat:last-seq:" + (me ?? "");
  const storage = (() => {
    try {
      return window.localStorage;
    } catch {
      return undefined; // storage disabled: catch-up starts from the server's newest message
    }
  })();
  const savedCursor = Number(storage?.getItem(cursorKey)) || 0;
  const savedSeq = storage?.getItem(seqKey) ? Number(storage.getItem(seqKey)) : NaN;

  // The link's token: renewed from deno task dev before it expires (the SDK asks again two minutes
  // before the session ends) and once refused; the renewed one goes into the address too.
  const tokenUser = Number(String(token).split(":")[0]) || me;
  const tokenExpiresAt = (t) => (Number(String(t).split(":")[1]) + TOKEN_TTL_S) * 1000;
  let refusedToken;
  let refusals = 0; // sign-ins refused since the last one that worked
  const renewToken = async () => {
    if (!DEV_TOKENS) return;
    try {
      const response = await fetch("/dev/token?user=" + tokenUser, { cache: "no-store" });
      const fresh = response.ok ? (await response.text()).trim() : "";
      if (!/^[0-9]+:[0-9]+:[0-9a-f]{64}$/.test(fresh)) return;
      token = fresh;
      const address = new URL(location.href);
      address.searchParams.set("token", fresh);
      history.replaceState(history.state, "", address);
    } catch {
      // No dev server (any more): the token is used as it is, and a refusal says what to do.
    }
  };
  const client = new ChatClient({
    url: (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws",
    getToken: async () => {
      if (token === refusedToken || tokenExpiresAt(token) - Date.now() < 300_000) {
        await renewToken();
      }
      return token;
    },
    ...(me && savedCursor > 0 ? { lastMessageId: savedCursor } : {}),
    ...(me && Number.isSafeInteger(savedSeq) && savedSeq >= 0 ? { lastSeq: savedSeq } : {}),
  });
  const v11 = typeof client.history === "function" && typeof client.markRead === "function";
  const saveCursor = () => {
    if (me && client.lastMessageId > 0) storage?.setItem(cursorKey, String(client.lastMessageId));
    if (me && client.lastSeq !== undefined) storage?.setItem(seqKey, String(client.lastSeq));
  };

  const friends = new Map();
  const byClientId = new Map(); // client_message_id -> entry of a message sent from this page
  let selected;
  let connected = false;
  let typingTimer;
  let problem; // the last failure the client reported, shown while not connected
  let stopped = false; // the token cannot work: no more attempts
  let countdown;
  let composer;
  const actions = startMessageActions({
    client,
    entryOf: (m) =>
      friends.get(m.sender_user_id === me ? m.recipient_user_id : m.sender_user_id)?.byId
        .get(m.message_id),
  });

  // The open conversation and the draft, kept across a reload of this tab.
  const pageKey = "geobeasts-chat:page:" + (me ?? "");
  const tabStorage = (() => {
    try {
      return window.sessionStorage;
    } catch {
      return undefined;
    }
  })();
  const remember = () => {
    try {
      tabStorage?.setItem(pageKey, JSON.stringify({ selected, draft: $("text").value }));
    } catch {
      // storage full or disabled: a reload starts afresh
    }
  };
  const remembered = () => {
    try {
      return JSON.parse(tabStorage?.getItem(pageKey) ?? "null") ?? {};
    } catch {
      return {};
    }
  };

  const friend = (id) => {
    let f = friends.get(id);
    if (f) return f;
    const li = el("li", "friend");
    li.dataset.userId = String(id);
    const dot = el("span", "dot unknown");
    const badge = el("span", "unread");
    const seen = el("span", "seen");
    // Mute: no push from the game for this friend's messages for 8 hours (v1.2 settings).
    const mute = el("button", "mute", "🔔");
    mute.type = "button";
    mute.addEventListener("click", (event) => {
      event.stopPropagation();
      const muted = client.settings?.muted[String(id)] !== undefined;
      client.mute(id, muted ? null : new Date(Date.now() + 8 * 3600_000)).catch(() => {});
    });
    li.append(dot, el("span", "name", nameOf(id)), seen, badge, mute);
    li.addEventListener("click", () => select(id));
    const log = el("ol", "log");
    const older = el("li", "older");
    older.hidden = true;
    const olderButton = el("button", "", "Load earlier messages");
    olderButton.type = "button";
    older.append(olderButton);
    log.append(older);
    f = {
      id, li, dot, badge, seen, mute, log, older, olderButton, online: false, unread: 0, byId: new Map(),
      oldest: Infinity, hasMore: v11, loaded: false, loading: false, readUpTo: 0,
      markedUpTo: 0, typingUntil: 0,
    };
    olderButton.addEventListener("click", () => loadOlder(f));
    log.addEventListener("scroll", () => log.scrollTop < 30 && f.loaded && loadOlder(f));
    friends.set(id, f);
    const ids = [...friends.keys()].sort((a, b) => a - b);
    $("friends").insertBefore(li, friends.get(ids[ids.indexOf(id) + 1])?.li ?? null);
    renderDot(f);
    return f;
  };

  // Grey (unknown) while our own connection is down: we cannot know who is online.
  const renderDot = (f) => {
    const state = !connected ? "unknown" : f.online ? "online" : "offline";
    f.dot.className = "dot " + state;
    f.dot.title = state === "unknown" ? "unknown while reconnecting" : state;
    const at = state === "offline" ? client.lastSeen?.get(f.id) : undefined;
    f.seen.textContent = at ? "last seen " + new Date(at).toLocaleString() : "";
    const until = client.settings?.muted[String(f.id)];
    f.mute.textContent = until ? "🔕" : "🔔";
    f.mute.title = until ? "muted until " + new Date(until).toLocaleString() + " (unmute)" : "mute";
  };
  const renderSettings = () => {
    $("appear-offline").checked = client.settings?.appear_offline === true;
    for (const f of friends.values()) renderDot(f);
  };
  $("appear-offline").addEventListener("change", (event) => {
    client.setAppearOffline(event.target.checked).catch(() => renderSettings());
  });
  const renderBadge = (f) => {
    f.badge.textContent = f.unread > 0 ? String(f.unread) : "";
    f.badge.title = f.unread > 0 ? f.unread + " unread" : "";
  };

  const select = (id) => {
    selected = id;
    const f = friend(id);
    for (const [other, g] of friends) g.li.classList.toggle("selected", other === id);
    $("peer").textContent = nameOf(id);
    $("log").replaceWith(f.log);
    f.log.id = "log";
    $("text").disabled = false;
    $("send").disabled = false;
    $("text").focus();
    remember();
    renderTyping();
    toEnd(f.log);
    if (!v11) {
      f.unread = 0;
      renderBadge(f);
    } else if (!f.loaded) {
      loadOlder(f);
    }
    markRead(f);
  };

  const renderTyping = () => {
    const f = selected && friends.get(selected);
    const typing = Boolean(f) && f.typingUntil > Date.now();
    $("typing").textContent = typing ? nameOf(selected) + " is typing…" : "";
    clearTimeout(typingTimer);
    if (typing) typingTimer = setTimeout(renderTyping, f.typingUntil - Date.now());
  };

  // The log stays in message_id order (catch-up and history arrive out of order); messages
  // still waiting for their id stay at the end.
  const place = (f, li, id) => {
    li.dataset.messageId = id === undefined ? "" : String(id);
    let before = null;
    for (const other of f.log.children) {
      if (other === f.older || other === li) continue;
      if (other.dataset.messageId === "" || Number(other.dataset.messageId) > id) {
        before = other;
        break;
      }
    }
    if (id === undefined) before = null;
    f.log.insertBefore(li, before);
  };

  const bubble = (mine, text, peer) => {
    const li = el("li", "msg " + (mine ? "mine" : "theirs"));
    const meta = el("span", "meta");
    const time = el("span", "time");
    const tick = el("span", "tick");
    meta.append(time);
    if (mine) meta.append(tick);
    const textEl = el("span", "text", text);
    li.append(textEl, meta);
    return { li, meta, time, tick, textEl, mine, text, peer, id: undefined };
  };

  // Three states told apart at a glance (one check, two checks, a bright "read" badge), each
  // with a tooltip that says it in words.
  const TICKS = {
    pending: [" …", () => "Sending…"],
    sent: [" ✓", (name) => "Sent: stored by the server, not on " + name + "'s device yet"],
    delivered: [" ✓✓", (name) => "Delivered to " + name + "'s device, not read yet"],
    read: [" ✓✓ read", (name) => "Read by " + name],
  };
  const RANK = { pending: 0, sent: 1, delivered: 2, read: 3 };
  const setTick = (entry, state) => {
    if (entry.tickState && RANK[entry.tickState] >= RANK[state]) return;
    entry.tickState = state;
    entry.tick.textContent = TICKS[state][0];
    entry.tick.title = TICKS[state][1](nameOf(entry.peer));
    entry.tick.className = "tick " + state;
  };

  /** Shows a stored message once (live, caught up or from history); returns its entry. */
  const show = (m) => {
    const mine = m.sender_user_id === me;
    const f = friend(mine ? m.recipient_user_id : m.sender_user_id);
    let entry = f.byId.get(m.message_id) ?? (mine ? byClientId.get(m.client_message_id) : undefined);
    const fresh = entry === undefined;
    if (fresh) entry = bubble(mine, m.message_text, f.id);
    if (entry.id === undefined) {
      entry.id = m.message_id;
      f.byId.set(m.message_id, entry);
      place(f, entry.li, m.message_id);
    }
    entry.time.textContent = clock(m.sent_at);
    f.oldest = Math.min(f.oldest, m.message_id);
    if (mine) {
      setTick(entry, "sent");
      if (m.delivered_at) setTick(entry, "delivered");
      if (m.is_read || m.read_at || m.message_id <= f.readUpTo) setTick(entry, "read");
    }
    actions.render(entry, m);
    return { f, entry, fresh };
  };

  const loadOlder = async (f) => {
    if (!v11 || f.loading || !f.hasMore) return;
    f.loading = true;
    f.olderButton.textContent = "Loading…";
    const log = f.log;
    const fromBottom = log.scrollHeight - log.scrollTop;
    try {
      const page = await client.history(f.id, Number.isFinite(f.oldest) ? f.oldest : undefined,
        HISTORY_PAGE);
      for (const m of page.messages) show(m);
      f.hasMore = page.has_more;
      f.olderButton.textContent = "Load earlier messages";
      if (f.loaded) log.scrollTop = log.scrollHeight - fromBottom; // keep the view where it was
      else toEnd(log);
      f.loaded = true;
    } catch (err) {
      f.olderButton.textContent = "Could not load (" + err.message + "): try again";
    }
    f.loading = false;
    f.older.hidden = !f.hasMore;
    markRead(f);
  };

  // What is on screen counts as read: the open conversation, while the page is visible.
  const markRead = (f) => {
    if (!v11 || selected !== f.id || document.visibilityState !== "visible") return;
    let newest = 0;
    for (const [id, entry] of f.byId) if (!entry.mine && id > newest) newest = id;
    if (newest > f.markedUpTo) {
      f.markedUpTo = newest;
      client.markRead(f.id, newest);
    }
  };
  document.addEventListener("visibilitychange", () => selected && markRead(friend(selected)));

  const renderStatus = (state, text) => {
    $("status").textContent = text;
    $("status").className = "status " + state;
  };
  const showProblem = (text) => {
    $("problem").textContent = text ?? "";
    $("problem").hidden = !text;
  };
  const freshLink = "Get a fresh link: run deno task dev again (it prints new links), or put a " +
    "new token in this address: deno task token --dev " + tokenUser + " (with your own secret: " +
    "AUTH_SECRET=… deno task token " + tokenUser + "), then reload.";
  // Retrying with a token that was refused and cannot be renewed cannot help: stop, say what to do.
  const stop = (status, why) => {
    stopped = true;
    clearInterval(countdown);
    void client.close();
    renderStatus("stopped", status);
    showProblem(why + " " + freshLink);
  };
  client.on("state", (s) => {
    clearInterval(countdown);
    if (s.state !== "open") {
      connected = false;
      for (const f of friends.values()) renderDot(f);
    }
    if (stopped) return;
    if (s.state === "waiting") {
      // A real countdown to the next attempt, and what went wrong.
      const at = Date.now() + (s.delayMs ?? 0);
      const tick = () =>
        renderStatus("waiting", "offline: reconnecting in " +
          (Math.max(0, at - Date.now()) / 1000).toFixed(1) + " s…");
      tick();
      countdown = setInterval(tick, 100);
      showProblem("Not connected: " + (problem ?? s.reason ?? "the connection was lost"));
      return;
    }
    if (s.state === "expired") {
      showProblem("The server ended this session" + (s.reason ? " (" + s.reason + ")" : "") +
        ". " + freshLink);
    }
    const text = {
      connecting: "connecting…",
      authenticating: "signing in…",
      open: "online as " + nameOf(client.userId),
      expired: "signed out (session ended)",
      closed: "closed",
    }[s.state] ?? s.state;
    renderStatus(s.state, text);
  });
  client.on("auth_error", (f) => {
    if (client.state === "open") return; // a refused refresh: the session keeps its expiry
    refusedToken = token;
    if (DEV_TOKENS && ++refusals === 1) {
      // Once: the reconnect asks deno task dev for a fresh token.
      problem = "the server refused this page's token (" + f.message + "); renewing it";
      return;
    }
    if (tokenExpiresAt(token) <= Date.now()) {
      const ttl = TOKEN_TTL_S % 3600 === 0
        ? TOKEN_TTL_S / 3600 + " h"
        : TOKEN_TTL_S % 60 === 0
        ? TOKEN_TTL_S / 60 + " min"
        : TOKEN_TTL_S + " s";
      stop("stopped: link expired", "This link's token has expired: tokens last " + ttl +
        " (TOKEN_TTL_SECONDS).");
    } else {
      stop("stopped: token refused", "The server refused this link's token (" + f.message +
        "): it was signed with another secret, or user " + tokenUser +
        " does not exist or is inactive.");
    }
  });
  client.on("error", (e) => {
    if (e.client_message_id === undefined && e.code) problem = e.message;
  });
  client.on("authenticated", (f) => {
    me = f.user_id;
    problem = undefined;
    refusedToken = undefined;
    refusals = 0;
    showProblem();
    connected = true;
    $("me").textContent = nameOf(me);
    const online = new Set(f.online_friends);
    for (const id of online) friend(id);
    for (const g of friends.values()) {
      g.online = online.has(g.id);
      renderDot(g);
    }
    renderSettings();
    renderStatus("open", "online as " + nameOf(me));
  });
  client.on("settings_updated", renderSettings);
  client.on("presence", (f) => {
    const g = friend(f.user_id);
    g.online = f.status === "online";
    renderDot(g);
  });
  client.on("typing", (f) => {
    friend(f.user_id).typingUntil = f.is_typing ? Date.now() + 6000 : 0;
    renderTyping();
  });
  client.on("chat_message", (m) => {
    const { f, entry, fresh } = show(m);
    if (!entry.mine) f.typingUntil = 0;
    // Follow new messages unless the reader has scrolled back.
    if (fresh && f.id === selected && (entry.mine || nearEnd(f.log))) toEnd(f.log);
    if (!v11 && fresh && !entry.mine && f.id !== selected) {
      f.unread++;
      renderBadge(f);
    }
    markRead(f);
    renderTyping();
    saveCursor();
  });
  client.on("synced", saveCursor);
  client.on("message_updated", saveCursor);
  client.on("unread", (u) => {
    for (const id of Object.keys(u.by_friend)) friend(Number(id));
    for (const f of friends.values()) {
      f.unread = u.by_friend[String(f.id)] ?? 0;
      renderBadge(f);
    }
  });
  client.on("delivered", (d) => {
    saveCursor();
    if (d.user_id === me) return; // our other device showed a message (v1.2): no tick of ours
    const entry = friend(d.user_id).byId.get(d.message_id);
    if (entry?.mine) setTick(entry, "delivered");
  });
  client.on("read", (r) => {
    saveCursor();
    if (r.user_id === me) return; // our other device read: the unread event says it
    const f = friend(r.user_id);
    f.readUpTo = Math.max(f.readUpTo, r.up_to_message_id);
    for (const [id, entry] of f.byId) if (entry.mine && id <= f.readUpTo) setTick(entry, "read");
  });

  composer = startComposer({ client, maxChars: MAX_CHARS, selected: () => selected, select,
    friend, bubble, place, setTick, show, byClientId, remember });

  $("add").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = Number($("add-id").value);
    if (Number.isSafeInteger(id) && id > 0 && id !== me) select(id);
    $("add-id").value = "";
  });

  for (const id of friendIds) friend(id);
  if (me) $("me").textContent = nameOf(me);
  const restored = remembered();
  if (Number.isSafeInteger(restored.selected) && restored.selected > 0) select(restored.selected);
  if (typeof restored.draft === "string") composer.setDraft(restored.draft);
  client.connect();
}
`;
