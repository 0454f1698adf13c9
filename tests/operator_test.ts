/**
 * What an operator sees: the status page (in Chromium, during traffic and a
 * database outage), its data behind a bearer, and the Grafana dashboard and
 * alert rules in docs/, which must read only metrics the server exports.
 */

import assert from "node:assert/strict";
import { metricNames } from "./support/metrics.ts";
import { startMemoryServer, withDatabaseProxy } from "./support/server.ts";
import { CHROMIUM, launchChromium, needing, PROMTOOL } from "./support/tools.ts";
import { eventually, sleep } from "./support/wait.ts";

const ROOT = new URL("../", import.meta.url);
const ARTIFACTS = new URL("./artifacts/", import.meta.url);
const SECRET = "status-secret-for-tests";

/** Metric names a PromQL expression reads (Prometheus' own `up` left out). */
function namesIn(expr: string): string[] {
  return [...expr.matchAll(/\b(chat_[a-z_]+|process_[a-z_]+)\b/g)].map((m) => m[1]!);
}

async function exportedNames(): Promise<Set<string>> {
  const t = await startMemoryServer({ users: [1, 2], friends: [[1, 2]] });
  try {
    // One message, so every histogram has samples (a histogram exports its series always;
    // this only makes the scrape look like a working node's).
    const alice = await t.connectAs(1);
    alice.send({ type: "chat_message", recipient_user_id: 2, message_text: "hi" });
    await alice.next("message_sent");
    return metricNames(await (await fetch(`${t.internalUrl}/metrics`)).text());
  } finally {
    await t.close();
  }
}

Deno.test("the dashboard and the alert rules read only metrics the server exports", async () => {
  const exported = await exportedNames();
  const dashboard = JSON.parse(
    await Deno.readTextFile(new URL("docs/grafana/chat.json", ROOT)),
  ) as { panels: { title: string; targets: { expr: string }[] }[] };
  const rules = await Deno.readTextFile(new URL("docs/prometheus/alerts.yml", ROOT));
  const used = new Set<string>();
  for (const panel of dashboard.panels) {
    assert.ok(panel.targets.length > 0, `panel ${panel.title} has a query`);
    for (const target of panel.targets) for (const name of namesIn(target.expr)) used.add(name);
  }
  const exprs = [...rules.matchAll(/^\s*expr: (.+)$/gm)].map((m) => m[1]!);
  assert.ok(exprs.length >= 8, `${exprs.length} alert rules`);
  for (const expr of exprs) for (const name of namesIn(expr)) used.add(name);
  const unknown = [...used].filter((name) => !exported.has(name));
  assert.deepEqual(unknown, [], "every metric used is exported");
  for (
    const wanted of [
      "chat_dependency_up",
      "chat_message_writer_queue",
      "chat_send_ack_seconds_bucket",
      "chat_slow_consumer_closes_total",
      "chat_cluster_oldest_heartbeat_age_seconds",
    ]
  ) assert.ok(used.has(wanted), `${wanted} is used`);
});

Deno.test(needing(PROMTOOL, {
  name: "promtool accepts the alert rules",
  async fn() {
    const out = await new Deno.Command("promtool", {
      args: ["check", "rules", new URL("docs/prometheus/alerts.yml", ROOT).pathname],
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    assert.match(text, /SUCCESS: \d+ rules found/);
  },
}));

Deno.test("the status data needs the status secret; the page itself holds none", async () => {
  const t = await startMemoryServer({ env: { STATUS_SECRET: SECRET } });
  try {
    const page = await fetch(`${t.internalUrl}/status`);
    assert.equal(page.status, 200);
    assert.doesNotMatch(await page.text(), new RegExp(SECRET));
    const anonymous = await fetch(`${t.internalUrl}/status/data`);
    assert.equal(anonymous.status, 401);
    assert.deepEqual(await anonymous.json(), { error: "Unauthorized" });
    const data = await fetch(`${t.internalUrl}/status/data`, {
      headers: { authorization: `Bearer ${SECRET}` },
    });
    assert.equal(data.status, 200);
    const body = await data.json();
    assert.equal(body.cluster.nodes.length, 1);
    assert.equal(body.cluster.nodes[0].self, true);
  } finally {
    await t.close();
  }
  const closed = await startMemoryServer();
  try {
    const res = await fetch(`${closed.internalUrl}/status/data`);
    assert.equal(res.status, 404, "no secret configured: no data");
    await res.body?.cancel();
  } finally {
    await closed.close();
  }
});

Deno.test(needing(CHROMIUM, {
  name: "the status page draws traffic, shows a database outage, and fits a laptop screen",
  async fn() {
    await withDatabaseProxy(
      2000,
      { users: [1, 2], friends: [[1, 2]], env: { STATUS_SECRET: SECRET } },
      async (t, proxy) => {
        const browser = await launchChromium();
        try {
          const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
          const errors: string[] = [];
          page.on("pageerror", (err) => errors.push(String(err)));
          await page.goto(`${t.internalUrl}/status#secret=${SECRET}`);
          const alice = await t.connectAs(1);
          const bob = await t.connectAs(2);
          let sent = 0;
          const traffic = setInterval(() => {
            alice.send({ type: "chat_message", recipient_user_id: 2, message_text: `m${sent++}` });
          }, 50);
          try {
            await eventually(
              "the message chart draws",
              async () => (await page.locator("#chart-msgs polyline").count()) > 0,
              10_000,
            );
            await eventually(
              "a rate shows",
              async () => /\/s$/.test(await page.locator("#msgs").innerText()),
              10_000,
            );
          } finally {
            clearInterval(traffic);
          }
          assert.equal(await page.locator("#state").innerText(), "healthy");
          assert.match(await page.locator("#deps").innerText(), /PostgreSQL\s+up/);
          assert.match(await page.locator("#nodes").innerText(), /this node/);
          const overflow = await page.evaluate(
            "document.documentElement.scrollWidth - window.innerWidth",
          ) as number;
          assert.ok(overflow <= 0, `no horizontal scrolling (${overflow} px too wide)`);
          await Deno.mkdir(ARTIFACTS, { recursive: true });
          await Deno.writeFile(new URL("status_healthy.png", ARTIFACTS), await page.screenshot());

          proxy.cut();
          await eventually(
            "the outage shows",
            async () => (await page.locator("#state").innerText()) === "DATABASE UNAVAILABLE",
            15_000,
          );
          assert.match(await page.locator("#deps").innerText(), /PostgreSQL\s+DOWN/);
          await sleep(2500); // one more poll, so the error table shows the outage's answers
          await Deno.writeFile(new URL("status_outage.png", ARTIFACTS), await page.screenshot());
          assert.deepEqual(errors, [], "no script errors on the page");
          await bob.next("chat_message");
        } finally {
          await browser.close();
        }
      },
    );
  },
}));
