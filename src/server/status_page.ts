/**
 * @module server/status_page
 * The status page of the internal listener (`GET /status`): one
 * self-contained HTML document, no outside assets, that asks for the status
 * secret once, then polls `GET /status/data` every two seconds and draws this
 * node and the cluster: rates and latencies over the last minutes as small
 * SVG charts (computed from the counters' differences between polls),
 * dependency health, error codes, and the cluster's nodes. The page itself
 * holds no data, so it needs no secret; the data does.
 */

const STYLE = `
*{box-sizing:border-box}body{margin:0;font:14px/1.4 system-ui,sans-serif;background:#f4f5f7;color:#1d2330}
header{display:flex;gap:12px;align-items:center;padding:10px 16px;background:#1d2330;color:#fff}
header h1{font-size:16px;margin:0;flex:1}#state{font-weight:600}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:12px;padding:12px;max-width:1400px}
section{background:#fff;border-radius:8px;padding:10px 12px;box-shadow:0 1px 2px #0002;min-width:0}
h2{font-size:13px;margin:0 0 6px;color:#556;text-transform:uppercase;letter-spacing:.04em}
.big{font-size:24px;font-weight:600}.row{display:flex;justify-content:space-between;gap:8px}
.ok{color:#1a7f37}.bad{color:#c62828}.muted{color:#778}svg{width:100%;height:70px;display:block}
table{width:100%;border-collapse:collapse}td{padding:2px 4px;border-bottom:1px solid #eee}
#login{padding:24px}#login input{font:inherit;padding:6px;width:320px;max-width:100%}
`;

const SCRIPT = `
const KEY = "chat-status-secret";
const WINDOW = 150; // samples kept: 5 minutes at one every 2 s
const seen = [];
let previous;
const $ = (id) => document.getElementById(id);
if (location.hash.startsWith("#secret=")) {
  sessionStorage.setItem(KEY, decodeURIComponent(location.hash.slice(8)));
  window.history.replaceState(null, "", location.pathname);
}
function sum(o) { return Object.values(o || {}).reduce((a, b) => a + b, 0); }
function quantile(now, before, q) {
  // cumulative buckets [[le, count], ...]; the delta since the last poll
  const d = now.map(([le, n], i) => [le, n - (before && before[i] ? before[i][1] : 0)]);
  const all = d.length ? d[d.length - 1][1] : 0;
  if (all <= 0) return null;
  const want = all * q;
  for (const [le, n] of d) if (n >= want) return le;
  return null;
}
function chart(id, series, unit) {
  const svg = $(id);
  const values = series.flatMap((s) => s.values).filter((v) => v !== null && isFinite(v));
  const max = Math.max(1e-9, ...values);
  const w = 300, h = 70;
  let out = "";
  for (const s of series) {
    const pts = s.values.map((v, i) => v === null || !isFinite(v) ? null :
      (i * w / Math.max(29, s.values.length - 1)).toFixed(1) + "," + (h - 4 - (v / max) * (h - 14)).toFixed(1));
    const path = pts.filter((p) => p !== null).join(" ");
    if (path) out += '<polyline fill="none" stroke="' + s.color + '" stroke-width="1.5" points="' + path + '"/>';
  }
  out += '<text x="2" y="10" font-size="9" fill="#778">max ' + fmt(max) + unit + '</text>';
  svg.innerHTML = out;
}
function fmt(v) { return v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(3); }
function setState(text, good) { const s = $("state"); s.textContent = text; s.className = good ? "ok" : "bad"; }
function dep(name, d) {
  if (!d) return '<tr><td>' + name + '</td><td class="muted">not used</td><td></td></tr>';
  const lat = d.latency_s === null ? "" : (d.latency_s * 1000).toFixed(1) + " ms";
  return '<tr><td>' + name + '</td><td class="' + (d.up ? "ok" : "bad") + '">' + (d.up ? "up" : "DOWN") + '</td><td>' + lat + '</td></tr>';
}
function text(id, value) { $(id).textContent = value; }
function rows(id, entries, empty) {
  const el = $(id);
  el.innerHTML = "";
  if (!entries.length) { el.innerHTML = '<tr><td class="muted">' + empty + '</td></tr>'; return; }
  for (const cells of entries) {
    const tr = document.createElement("tr");
    for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); }
    el.appendChild(tr);
  }
}
async function poll() {
  const secret = sessionStorage.getItem(KEY);
  if (!secret) { $("login").hidden = false; $("board").hidden = true; return; }
  let data;
  try {
    const res = await fetch("/status/data", { headers: { authorization: "Bearer " + secret } });
    if (res.status === 401 || res.status === 404) {
      sessionStorage.removeItem(KEY);
      $("login-error").textContent = "That secret was refused.";
      return poll();
    }
    data = await res.json();
  } catch (err) {
    setState("node unreachable", false);
    return;
  }
  $("login").hidden = true; $("board").hidden = false;
  const dt = previous ? (data.time_ms - previous.time_ms) / 1000 : 0;
  const rate = (now, before) => dt > 0 ? Math.max(0, now - before) / dt : null;
  const sample = {
    msgs: previous ? rate(data.messages_stored, previous.messages_stored) : null,
    p50: previous ? quantile(data.send_ack_buckets, previous.send_ack_buckets, 0.5) : null,
    p99: previous ? quantile(data.send_ack_buckets, previous.send_ack_buckets, 0.99) : null,
    conns: data.connections.authenticated || 0,
    presence: previous ? rate(data.frames_out.presence || 0, previous.frames_out.presence || 0) : null,
    typing: previous ? rate(data.frames_in.typing || 0, previous.frames_in.typing || 0) : null,
    batch: previous ? quantile(data.batch_size_buckets, previous.batch_size_buckets, 0.5) : null,
    pg: data.dependencies.postgres && data.dependencies.postgres.latency_s !== null ? data.dependencies.postgres.latency_s * 1000 : null,
  };
  seen.push(sample);
  while (seen.length > WINDOW) seen.shift();
  const col = (k) => seen.map((s) => s[k]);
  const pgUp = !data.dependencies.postgres || data.dependencies.postgres.up;
  const redisUp = !data.dependencies.redis || data.dependencies.redis.up;
  setState(pgUp && redisUp ? "healthy" : !pgUp ? "DATABASE UNAVAILABLE" : "REDIS UNAVAILABLE", pgUp && redisUp);
  text("conns", data.connections.authenticated || 0);
  text("unauth", (data.connections.unauthenticated || 0) + " unauthenticated, " + data.pending_connections + " pending");
  text("users", data.users + " users on this node");
  text("msgs", sample.msgs === null ? "…" : fmt(sample.msgs) + " /s");
  text("ack", sample.p50 === null ? "no messages in the last poll" : "p50 ≤ " + (sample.p50 * 1000) + " ms, p99 ≤ " + (sample.p99 === Infinity ? "∞" : sample.p99 * 1000) + " ms");
  text("stored", data.messages_stored + " stored since start");
  text("batch", sample.batch === null ? "idle" : "median batch ≤ " + sample.batch + " rows");
  text("lag", (data.event_loop_lag_s * 1000).toFixed(1) + " ms event-loop lag, " + (data.memory_bytes / 1048576).toFixed(0) + " MiB RSS");
  $("deps").innerHTML = dep("PostgreSQL", data.dependencies.postgres) + dep("Redis", data.dependencies.redis);
  text("build", "v" + data.build.version + ", protocol " + data.build.protocol);
  text("rates", "presence " + fmt(sample.presence || 0) + " /s out, typing " + fmt(sample.typing || 0) + " /s in, " + data.frames_dropped + " shed, " + data.slow_consumer_closes + " slow-consumer closes");
  const errs = Object.entries(data.errors).sort((a, b) => b[1] - a[1]).map(([c, n]) => {
    const before = previous && previous.errors[c] || 0;
    return [c, String(n), n > before ? "+" + (n - before) : ""];
  });
  rows("errors", errs, "no error frames sent");
  const nodes = data.cluster.nodes.map((n) => [n.nodeId + (n.self ? " (this node)" : ""), ((data.time_ms - n.lastHeartbeatAt) / 1000).toFixed(1) + " s ago"]);
  rows("nodes", nodes, data.cluster.error ? "cluster unknown: " + data.cluster.error : "no nodes");
  text("bus", "bus publishes: " + (data.bus_publishes.ok || 0) + " ok, " + (data.bus_publishes.failed || 0) + " failed");
  chart("chart-msgs", [{ values: col("msgs"), color: "#2962ff" }], "/s");
  chart("chart-ack", [{ values: col("p50").map((v) => v === null ? null : v * 1000), color: "#1a7f37" }, { values: col("p99").map((v) => v === null || v === Infinity ? null : v * 1000), color: "#c62828" }], " ms");
  chart("chart-conns", [{ values: col("conns"), color: "#6a1b9a" }], "");
  chart("chart-pg", [{ values: col("pg"), color: "#ef6c00" }], " ms");
  previous = data;
}
$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(KEY, $("secret").value);
  $("login-error").textContent = "";
  poll();
});
poll();
setInterval(poll, 2000);
`;

const BODY = `
<header><h1>GeoBeasts chat: node status</h1><span id="build" class="muted"></span><span id="state">…</span></header>
<form id="login" hidden><p>This page shows the node's counters. Enter the status secret
(<code>STATUS_SECRET</code>, or <code>NOTIFY_SECRET</code> when that is unset):</p>
<input id="secret" type="password" autocomplete="off" aria-label="status secret"> <button>Show</button>
<p id="login-error" class="bad"></p></form>
<main id="board" hidden>
<section><h2>Connections</h2><div class="big" id="conns">…</div><div id="unauth" class="muted"></div>
<div id="users" class="muted"></div><svg id="chart-conns" viewBox="0 0 300 70" preserveAspectRatio="none"></svg></section>
<section><h2>Messages</h2><div class="big" id="msgs">…</div><div id="stored" class="muted"></div>
<svg id="chart-msgs" viewBox="0 0 300 70" preserveAspectRatio="none"></svg></section>
<section><h2>Send → stored</h2><div id="ack" class="muted">…</div><div class="muted">
<span class="ok">p50</span> / <span class="bad">p99</span>, bucket bounds</div>
<svg id="chart-ack" viewBox="0 0 300 70" preserveAspectRatio="none"></svg></section>
<section><h2>Dependencies</h2><table id="deps"></table><div id="batch" class="muted"></div>
<div class="muted">PostgreSQL probe latency</div><svg id="chart-pg" viewBox="0 0 300 70" preserveAspectRatio="none"></svg></section>
<section><h2>Errors sent</h2><table id="errors"></table></section>
<section><h2>Presence, typing, backpressure</h2><div id="rates"></div><div id="lag" class="muted"></div></section>
<section><h2>Cluster</h2><table id="nodes"></table><div id="bus" class="muted"></div></section>
<section><h2>Moderation hook, events webhook</h2><div class="muted">not configured on this server</div></section>
</main>`;

/** The whole page. */
export const STATUS_PAGE = `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>Chat status</title>
<style>${STYLE}</style></head><body>${BODY}<script>${SCRIPT}</script></body></html>`;
