/**
 * @module browser_test
 * The demo page in a real browser (Debian's chromium, driven by playwright-core): two users chat;
 * the page on a phone-sized screen; a refused message kept and retried; the input limit, a blank
 * send and a reload; grey presence, what failed and a live countdown while the page itself is
 * reconnecting; the v1.1 mailbox: unread badges, delivered and read ticks, scroll-back history,
 * and what was missed while closed or offline; an expired link (stopped, or renewed by deno task
 * dev); a quick burst paced to the server's limits; and (v1.2) editing and deleting a message,
 * seen on the other page, and after a reopen; "last seen" for offline friends, the mute toggle
 * and the "appear offline" switch.
 */

import assert from "node:assert/strict";
import type { Browser, BrowserContext, Locator, Page } from "playwright-core";
import { DEMO_PAGE, renderDemoPage } from "../src/demo_page/page.ts";
import type { SeedUser } from "./support/db.ts";
import { answers, startFakeHook } from "./support/fake_hook.ts";
import { startTcpProxy } from "./support/tcp_proxy.ts";
import { startTestServer, type TestServer } from "./support/server.ts";
import { CHROMIUM, launchChromium, needing } from "./support/tools.ts";
import { eventually } from "./support/wait.ts";

const ARTIFACTS = new URL("./artifacts/", import.meta.url);
const nameOf = (id: number): string => ["alice", "bob", "carol"][id - 1] ?? `user${id}`;
/** Users with the names the pages show. */
const named = (ids: number[]): SeedUser[] => ids.map((id) => ({ id, username: nameOf(id) }));

/**
 * A browser test: where chromium is missing, skipped and saying so in its name (failed under
 * CI=true).
 */
function browserTest(name: string, fn: (browser: Browser, errors: string[]) => Promise<void>) {
  Deno.test(needing(CHROMIUM, {
    name,
    async fn() {
      const browser = await launchChromium();
      const errors: string[] = [];
      try {
        await fn(browser, errors);
        assert.deepEqual(errors, [], "no script errors on the pages");
      } finally {
        await browser.close();
      }
    },
  }));
}

interface OpenOptions {
  viewport?: { width: number; height: number };
  /** Where the page is loaded from (a proxy in front of the server, say). */
  baseUrl?: string;
  friends?: number[];
  /** Open in this browser context (its storage kept across pages) instead of a new one. */
  context?: BrowserContext;
  /** The token in the link (a fresh one by default). */
  token?: string;
  /** Script run in the page before its own (e.g. a fixed `Math.random`). */
  init?: string;
  /** Wait until the page is online (default true). */
  waitOpen?: boolean;
}

async function openAs(
  browser: Browser,
  t: TestServer,
  userId: number,
  errors: string[],
  options: OpenOptions = {},
): Promise<Page> {
  const viewport = options.viewport ?? { width: 720, height: 440 };
  const page = options.context
    ? await options.context.newPage()
    : await browser.newPage({ viewport });
  await page.setViewportSize(viewport);
  if (options.init !== undefined) await page.addInitScript(options.init);
  page.on("pageerror", (err) => errors.push(`page ${userId}: ${err.message}`));
  page.on("console", (msg) => {
    // Chromium logs every failed WebSocket attempt itself; the tests that cut the connection
    // expect those, and check that the page recovers.
    if (msg.type() === "error" && !msg.text().startsWith("WebSocket connection to ")) {
      errors.push(`page ${userId}: ${msg.text()}`);
    }
  });
  const token = encodeURIComponent(options.token ?? await t.token(userId));
  const friends = (options.friends ?? [1, 2, 3].filter((id) => id !== userId))
    .map((id) => `${id}:${nameOf(id)}`).join(",");
  await page.goto(
    `${options.baseUrl ?? t.httpUrl}/?user=${userId}&name=${
      nameOf(userId)
    }&token=${token}&friends=${friends}`,
  );
  if (options.waitOpen ?? true) await page.locator("#status.open").waitFor();
  return page;
}

interface Rect {
  left: number;
  right: number;
  top: number;
  bottom: number;
}

const dot = (page: Page, userId: number, state: string) =>
  page.locator(`#friends li[data-user-id="${userId}"] .dot.${state}`);

browserTest(
  "two users chat on the demo page in a real browser: names, presence, typing, delivery ticks",
  async (browser, errors) => {
    const t = await startTestServer({
      demoPage: DEMO_PAGE,
      users: named([1, 2]),
      friends: [[1, 2]],
    });
    const proxy = startTcpProxy({ hostname: "127.0.0.1", port: t.server.publicPort });
    try {
      // Alice's page goes through a proxy that the test can cut; its reconnect delays are the
      // longest the jitter allows, so that a countdown has time to count.
      const one = await openAs(browser, t, 1, errors, {
        baseUrl: `http://127.0.0.1:${proxy.port}`,
        friends: [2],
        init: "Math.random = () => 0.99;",
      });
      assert.equal(await one.locator("#me").textContent(), "alice");
      assert.equal(await one.locator("#status").textContent(), "online as alice");
      await dot(one, 2, "offline").waitFor();
      assert.equal(await one.locator('#friends li[data-user-id="2"] .name').textContent(), "bob");

      const two = await openAs(browser, t, 2, errors, { friends: [1] });
      await dot(one, 2, "online").waitFor();
      await dot(two, 1, "online").waitFor();

      await one.click('#friends li[data-user-id="2"]');
      await two.click('#friends li[data-user-id="1"]');
      assert.equal(await one.locator("#peer").textContent(), "bob");
      const text = `Hello from two <b>not bold</b> & "quoted"`;
      await two.locator("#text").pressSequentially(text.slice(0, 10), { delay: 20 });
      await one.locator("#typing", { hasText: "bob is typing…" }).waitFor();
      await two.locator("#text").pressSequentially(text.slice(10));
      await two.press("#text", "Enter");

      const received = one.locator("#log .msg.theirs .text");
      await received.waitFor();
      assert.equal(await received.textContent(), text);
      assert.equal(await one.locator("#log b").count(), 0, "user text is never parsed as HTML");
      await one.locator("#typing:empty").waitFor();
      const tick = two.locator("#log .msg.mine .tick:not(.pending)");
      await tick.waitFor();
      assert.match((await tick.textContent())!, /^ ✓/);
      assert.equal(await two.locator("#log .msg.mine .text").textContent(), text);

      // A reply, and alice typing again, so the screenshot shows every state.
      await one.locator("#text").fill("Hi bob, nice to meet you!");
      await one.press("#text", "Enter");
      await two.locator("#log .msg.theirs .text", { hasText: "Hi bob, nice" }).waitFor();
      await one.locator("#log .msg.mine .tick:not(.pending)").waitFor();
      await one.locator("#text").pressSequentially("typing", { delay: 20 });
      await two.locator("#typing", { hasText: "alice is typing…" }).waitFor();
      await saveScreenshot(browser, [one, two], "browser-chat.png");

      // Alice's own connection drops: bob's dot turns grey (unknown), not a stale green, until
      // her page is back.
      proxy.cut();
      await dot(one, 2, "unknown").waitFor();
      assert.equal(await dot(one, 2, "online").count(), 0);
      assert.match((await one.locator("#status").textContent())!, /reconnecting/);
      // It says what failed, and the countdown to the next attempt counts down.
      const host = `127.0.0.1:${proxy.port}`;
      await one.locator("#problem", { hasText: `cannot connect to ${host}` }).waitFor();
      assert.match((await one.locator("#problem").textContent())!, /^Not connected: /);
      const seconds = async () =>
        Number(
          /reconnecting in (\d+\.\d) s/.exec(await one.locator("#status").textContent() ?? "")?.[1],
        );
      let first = NaN;
      for (let i = 0; i < 300 && !(first >= 1.5); i++) {
        first = await seconds();
        if (!(first >= 1.5)) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.ok(first >= 1.5, `a wait of 1.5 s or more: ${first}`);
      await new Promise((resolve) => setTimeout(resolve, 500));
      const later = await seconds();
      assert.ok(later < first && later >= first - 1.5, `counts down: ${first} s, then ${later} s`);
      await saveScreenshot(browser, [one], "browser-offline.png");
      proxy.restore();
      await dot(one, 2, "online").waitFor({ timeout: 60_000 });
      await one.locator("#status.open").waitFor();
      assert.ok(await one.locator("#problem").isHidden(), "no problem shown once online");
    } finally {
      await closePages(browser);
      await proxy.close();
      await t.close();
    }
  },
);

browserTest(
  "on a 390×844 phone screen the page fits, keeps a refused message to retry and caps the input",
  async (browser, errors) => {
    // No relation cache, so that a friendship made during the test counts at once.
    const t = await startTestServer({
      demoPage: renderDemoPage({ maxMessageChars: 1000 }),
      env: { RELATION_CACHE_MS: "0" },
      users: named([1, 2, 3]),
      friends: [[1, 2]], // carol is not (yet) alice's friend
    });
    try {
      const phone = { width: 390, height: 844 };
      const page = await openAs(browser, t, 1, errors, { viewport: phone });
      await page.click('#friends li[data-user-id="2"]');

      // Layout: nothing wider than the screen, one header row, friends above the conversation,
      // Send inside the screen.
      // A string, run in the page (the test's own type-check has no DOM types).
      const layout = await page.evaluate(`(() => {
        const box = (selector) => document.querySelector(selector).getBoundingClientRect().toJSON();
        const header = [...document.querySelectorAll("header > *")].map((e) =>
          e.getBoundingClientRect().top
        );
        return {
          scrollWidth: Math.max(document.documentElement.scrollWidth, document.body.scrollWidth),
          headerRows: new Set(header.map((top) => Math.round(top / 8))).size,
          aside: box("aside"),
          section: box("section"),
          send: box("#send"),
          text: box("#text"),
        };
      })()`) as {
        scrollWidth: number;
        headerRows: number;
        aside: Rect;
        section: Rect;
        send: Rect;
        text: Rect;
      };
      assert.ok(layout.scrollWidth <= phone.width, `page is ${layout.scrollWidth} px wide`);
      assert.equal(layout.headerRows, 1, "the header does not wrap");
      assert.ok(layout.aside.bottom <= layout.section.top, "friends list above the conversation");
      for (const [name, r] of [["Send", layout.send], ["input", layout.text]] as const) {
        assert.ok(
          r.left >= 0 && r.right <= phone.width && r.top >= 0 && r.bottom <= phone.height,
          `${name} is on screen: ${JSON.stringify(r)}`,
        );
      }
      assert.ok(await page.locator("#send").isVisible());

      // A 5,000-character paste is kept whole and marked, not cut: the page says it is over the
      // limit, and Send says by how much to shorten it instead of sending it.
      await page.locator("#text").fill("y".repeat(5000));
      assert.equal((await page.locator("#text").inputValue()).length, 5000);
      assert.equal(await page.locator("#count.over").textContent(), "5000 / 1000");
      assert.equal(
        await page.locator("#notice").textContent(),
        "5,000 characters: 4,000 over the limit of 1,000. Shorten it before sending.",
      );
      await page.press("#text", "Enter");
      assert.equal(
        await page.locator("#notice").textContent(),
        "Too long to send: 5,000 characters, the limit is 1,000. Shorten it by 4,000.",
      );
      assert.equal(await page.locator("#log .msg").count(), 0, "nothing sent");
      assert.equal((await page.locator("#text").inputValue()).length, 5000, "the text is kept");
      // Code points, as the server counts them, with a counter from 90 % of the limit.
      await page.locator("#text").fill("😀".repeat(1001));
      assert.equal(await page.locator("#count.over").textContent(), "1001 / 1000");
      await page.locator("#text").fill("x".repeat(899));
      assert.equal(await page.locator("#count").textContent(), "", "no counter far from the limit");
      assert.equal(await page.locator("#notice").textContent(), "", "back under the limit");
      await page.locator("#text").fill("x".repeat(900));
      assert.equal(await page.locator("#count").textContent(), "900 / 1000");
      // A blank send says so.
      await page.locator("#text").fill("   ");
      await page.press("#text", "Enter");
      assert.equal(
        await page.locator("#notice").textContent(),
        "Nothing to send: type a message first.",
      );
      assert.equal(await page.locator("#log .msg").count(), 0);
      await page.locator("#text").fill("😀".repeat(1000));
      await page.press("#text", "Enter");
      await page.locator("#log .msg.mine .tick:not(.pending)").waitFor();
      assert.equal(await page.locator("#count").textContent(), "");
      assert.equal(await page.locator("#notice").textContent(), "");

      // Carol is no friend yet: the message is refused, kept on screen with the reason and a Retry.
      await page.click('#friends li[data-user-id="3"]');
      await page.locator("#text").fill("carol, are we friends?");
      await page.press("#text", "Enter");
      const failed = page.locator("#log .msg.mine.failed");
      await failed.locator(".tick.failed", { hasText: "You can only message friends" }).waitFor();
      assert.equal(await failed.locator(".text").textContent(), "carol, are we friends?");
      await saveScreenshot(browser, [page], "browser-phone.png");

      // Now they are: Retry sends the same message, stored once.
      await t.db.befriend(3, 1);
      await failed.locator("button.retry").click();
      await page.locator("#log .msg.mine .tick.sent").waitFor();
      assert.equal(await page.locator("#log .msg.failed").count(), 0);
      const rows = await t.db.sql`select message_text from messages where recipient_user_id = 3`;
      assert.deepEqual(rows.map((r) => r.message_text), ["carol, are we friends?"]);

      // Edit puts a refused text back into the input.
      await t.db.sql`update friendships set status = 'declined' where recipient_user_id = 1
                     and requester_user_id = 3`;
      await page.locator("#text").fill("still friends?");
      await page.press("#text", "Enter");
      await page.locator("#log .msg.mine.failed button.edit").click();
      assert.equal(await page.locator("#text").inputValue(), "still friends?");
      assert.equal(await page.locator("#log .msg.failed").count(), 0);

      // A reload keeps the open conversation and the draft.
      await page.locator("#text").fill("a half-written reply");
      await page.reload();
      await page.locator("#status.open").waitFor();
      assert.equal(await page.locator("#peer").textContent(), "carol");
      assert.ok(await page.locator('#friends li[data-user-id="3"].selected').isVisible());
      assert.equal(await page.locator("#text").inputValue(), "a half-written reply");
      await page.locator("#log .msg", { hasText: "carol, are we friends?" }).waitFor();
    } finally {
      await closePages(browser);
      await t.close();
    }
  },
);

browserTest(
  "the mailbox on the page: unread badges, receipts, history, and messages missed while closed or offline arrive in order",
  async (browser, errors) => {
    const t = await startTestServer({
      demoPage: DEMO_PAGE,
      users: named([1, 2]),
      friends: [[1, 2]],
    });
    const proxy = startTcpProxy({ hostname: "127.0.0.1", port: t.server.publicPort });
    try {
      // An older conversation, read long ago: 45 messages, more than two history pages.
      for (let i = 1; i <= 45; i++) {
        const [from, to] = i % 2 ? [2, 1] : [1, 2];
        await t.db.sql`insert into messages (sender_user_id, recipient_user_id, message_text,
                         is_read) values (${from}, ${to}, ${"old " + i}, true)`;
      }
      // Alice's page goes through the proxy, in one browser context (its storage survives a
      // closed page, as a browser's does).
      const alice = await browser.newContext();
      const viaProxy = { baseUrl: `http://127.0.0.1:${proxy.port}`, context: alice };
      let a = await openAs(browser, t, 1, errors, viaProxy);
      const b = await openAs(browser, t, 2, errors);
      await b.click('#friends li[data-user-id="1"]');
      const texts = (page: Page) => page.locator("#log .msg .text").allTextContents();

      // Scroll-back: the newest page first, then older pages on demand, always in order.
      await b.locator("#log .msg .text", { hasText: /^old 45$/ }).waitFor();
      assert.equal((await texts(b)).length, 20);
      // Scrolled to the top, the log loads the page before and keeps the view where it was.
      const scrollUp = () => b.evaluate(`document.querySelector("#log").scrollTop = 0`);
      await scrollUp();
      await b.locator("#log .msg .text", { hasText: /^old 6$/ }).waitFor();
      await scrollUp();
      await b.locator("#log .msg .text", { hasText: /^old 1$/ }).waitFor();
      const old = Array.from({ length: 45 }, (_, i) => `old ${i + 1}`);
      assert.deepEqual(await texts(b), old);
      assert.ok(await b.locator("#log .older").isHidden(), "nothing more to load");

      // Bob writes while alice looks elsewhere: a badge on her side, ✓✓ delivered on his.
      const send = async (text: string) => {
        await b.locator("#text").fill(text);
        await b.press("#text", "Enter");
        await b.locator("#log .msg.mine", { hasText: text }).locator(".tick:not(.pending)")
          .waitFor();
      };
      await send("hello alice");
      const badge = () => a.locator('#friends li[data-user-id="2"] .unread');
      await badge().filter({ hasText: /^1$/ }).waitFor();
      const bobTick = (text: string, state: string) =>
        b.locator("#log .msg.mine", { hasText: text }).locator(`.tick.${state}`);
      await bobTick("hello alice", "delivered").waitFor();
      const delivered = await tickLook(bobTick("hello alice", "delivered"));
      // She opens the conversation: it is read, the badge goes, bob's tick turns "read".
      await a.click('#friends li[data-user-id="2"]');
      await a.locator("#log .msg", { hasText: "hello alice" }).waitFor();
      await textIs(badge(), "");
      await bobTick("hello alice", "read").waitFor();
      const read = await tickLook(bobTick("hello alice", "read"));

      // Alice closes her page; bob sends three; she opens it again: the three are there, in order.
      await a.close();
      for (const text of ["one", "two", "three"]) await send(text);
      const sent = await tickLook(bobTick("one", "sent"));
      // Sent, delivered and read differ at a glance (not by a faint tint), each with a tooltip.
      assert.deepEqual([sent.text, delivered.text, read.text], ["✓", "✓✓", "✓✓ read"]);
      assert.deepEqual([sent.title, delivered.title, read.title], [
        "Sent: stored by the server, not on alice's device yet",
        "Delivered to alice's device, not read yet",
        "Read by alice",
      ]);
      assert.notEqual(sent.color, delivered.color);
      assert.notEqual(read.background, delivered.background, "read stands out by its background");
      assert.equal(delivered.background, "rgba(0, 0, 0, 0)");
      a = await openAs(browser, t, 1, errors, viaProxy);
      await badge().filter({ hasText: /^3$/ }).waitFor();
      for (const text of ["one", "two", "three"]) await bobTick(text, "delivered").waitFor();
      await a.click('#friends li[data-user-id="2"]');
      await a.locator("#log .msg", { hasText: "three" }).waitFor();
      const newest = (await texts(a)).slice(-4);
      assert.deepEqual(newest, ["hello alice", "one", "two", "three"]);
      for (const text of ["one", "two", "three"]) await bobTick(text, "read").waitFor();

      // Her connection drops while bob sends two more: after the reconnect they appear, in order,
      // after the others, each once.
      proxy.cut();
      await dot(a, 2, "unknown").waitFor();
      await send("four");
      await send("five");
      proxy.restore();
      await a.locator("#log .msg", { hasText: "five" }).waitFor({ timeout: 60_000 });
      const all = await texts(a);
      assert.deepEqual(all.slice(-6), ["hello alice", "one", "two", "three", "four", "five"]);
      assert.equal(new Set(all).size, all.length, "no message shown twice");
      await bobTick("five", "read").waitFor();
      await saveScreenshot(browser, [a, b], "browser-mailbox.png");
    } finally {
      await closePages(browser);
      await proxy.close();
      await t.close();
    }
  },
);

browserTest(
  "a link whose token expired says so and how to get a fresh one, and stops retrying; from deno task dev it renews itself",
  async (browser, errors) => {
    const old = Math.floor(Date.now() / 1000) - 86400 - 60; // a day and a minute ago
    // A server with a real secret hands out no tokens.
    const t = await startTestServer({ demoPage: renderDemoPage({ maxMessageChars: 1000 }) });
    // deno task dev, with tokens that last 125 s: the SDK refreshes 2 minutes before the end.
    const dev = await startTestServer({
      demoPage: renderDemoPage({ maxMessageChars: 1000, devTokens: true, tokenTtlSeconds: 125 }),
      devTokens: true,
      env: { TOKEN_TTL_SECONDS: "125" },
    });
    try {
      for (const server of [t, dev]) {
        for (const id of [1, 2]) await server.db.addUser(id, { username: nameOf(id) });
        await server.db.befriend(1, 2);
      }
      const expired = await openAs(browser, t, 1, errors, {
        token: await t.token(1, old),
        waitOpen: false,
      });
      let sockets = 0;
      expired.on("websocket", () => sockets++);
      await expired.locator("#status.stopped").waitFor();
      assert.equal(await expired.locator("#status").textContent(), "stopped: link expired");
      const help = (await expired.locator("#problem").textContent())!;
      assert.match(
        help,
        /^This link's token has expired: tokens last 24 h \(TOKEN_TTL_SECONDS\)\. /,
      );
      assert.match(help, /run deno task dev again/);
      assert.match(help, /deno task token --dev 1/);
      await saveScreenshot(browser, [expired], "browser-expired.png");
      // No more attempts: the status stays, and no socket opens for three reconnect delays' worth.
      const opened = sockets;
      await new Promise((resolve) => setTimeout(resolve, 2000));
      assert.equal(sockets, opened, "no new connection attempts");
      assert.equal(await expired.locator("#status").textContent(), "stopped: link expired");

      // A token signed with another secret, not expired: refused, said so, stopped.
      const { importTokenKey, signToken } = await import("../src/token.ts");
      const foreign = await signToken(
        await importTokenKey("another-secret-of-thirty-two-bytes!"),
        1,
        Math.floor(Date.now() / 1000),
      );
      const refused = await openAs(browser, t, 1, errors, { token: foreign, waitOpen: false });
      await refused.locator("#status.stopped").waitFor();
      assert.match(
        (await refused.locator("#problem").textContent())!,
        /^The server refused this link's token \(Invalid auth token\): it was signed with another secret/,
      );

      // The same expired link on deno task dev: the page fetches a fresh token and goes online,
      // and the address carries it for a reload.
      const devOld = Math.floor(Date.now() / 1000) - 125 - 60;
      const renewed = await openAs(browser, dev, 1, errors, { token: await dev.token(1, devOld) });
      assert.ok(await renewed.locator("#problem").isHidden());
      const tokenTime = () => {
        const [user, time] = new URL(renewed.url()).searchParams.get("token")!.split(":");
        assert.equal(user, "1");
        return Number(time);
      };
      const first = tokenTime();
      assert.ok(first > devOld + 125, `a fresh token, signed at ${first}`);
      // And while open, before the session ends, it renews again: the page stays online.
      for (let i = 0; i < 200 && tokenTime() === first; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.ok(tokenTime() > first, "renewed again while open");
      assert.equal(await renewed.locator("#status").textContent(), "online as alice");
    } finally {
      await closePages(browser);
      await t.close();
      await dev.close();
    }
  },
);

browserTest(
  "fifteen messages sent in one go are paced to the server's limits, not refused: each arrives once, in order",
  async (browser, errors) => {
    const t = await startTestServer({
      demoPage: DEMO_PAGE,
      env: { CHAT_RATE_BURST: "3", CHAT_RATE_PER_S: "4" },
    });
    try {
      for (const id of [1, 2]) await t.db.addUser(id, { username: nameOf(id) });
      await t.db.befriend(1, 2);
      const a = await openAs(browser, t, 1, errors);
      const b = await openAs(browser, t, 2, errors);
      await a.click('#friends li[data-user-id="2"]');
      await b.click('#friends li[data-user-id="1"]');
      const texts = Array.from({ length: 15 }, (_, i) => `quick ${i + 1}`);
      // All fifteen submitted in one go, faster than the server's burst and rate allow.
      await a.evaluate(`(() => {
        for (const text of ${JSON.stringify(texts)}) {
          document.getElementById("text").value = text;
          document.getElementById("compose").requestSubmit();
        }
      })()`);
      await b.locator("#log .msg.theirs .text", { hasText: "quick 15" }).waitFor();
      assert.deepEqual(await b.locator("#log .msg.theirs .text").allTextContents(), texts);
      // Matched on the text alone: a bubble's whole text also holds its time ("quick 1" then
      // "5:18 PM" reads "quick 15:18 PM").
      await a.locator("#log .msg.mine", { has: a.locator(".text", { hasText: /^quick 15$/ }) })
        .locator(".tick:not(.pending)").waitFor();
      assert.equal(await a.locator("#log .msg.failed").count(), 0, "no message refused");
      const rows = await t.db.sql`select message_text from messages order by message_id`;
      assert.deepEqual(rows.map((r) => r.message_text), texts);
    } finally {
      await closePages(browser);
      await t.close();
    }
  },
);

browserTest(
  "a message edited or deleted on one page changes on the other, and a deletion made while a page was closed shows after it reopens",
  async (browser, errors) => {
    const t = await startTestServer({
      demoPage: DEMO_PAGE,
      users: named([1, 2]),
      friends: [[1, 2]],
    });
    try {
      // Alice's pages share one browser context (her storage, and so her lastSeq, survives a
      // closed page); what her pages send and receive on their socket is kept.
      const alice = await browser.newContext();
      const frames: { sent: boolean; frame: Record<string, unknown> }[] = [];
      alice.on("page", (page) =>
        page.on("websocket", (ws) => {
          ws.on("framesent", (f) =>
            frames.push({ sent: true, frame: JSON.parse(String(f.payload)) }));
          ws.on(
            "framereceived",
            (f) =>
              frames.push({ sent: false, frame: JSON.parse(String(f.payload)) }),
          );
        }));
      let a = await openAs(browser, t, 1, errors, { context: alice });
      const b = await openAs(browser, t, 2, errors);
      await a.click('#friends li[data-user-id="2"]');
      await b.click('#friends li[data-user-id="1"]');
      const send = async (page: Page, text: string) => {
        await page.locator("#text").fill(text);
        await page.press("#text", "Enter");
        await message(page, text).locator(".tick:not(.pending)").waitFor();
      };
      /** The message on `page` whose text is `text`. */
      const message = (page: Page, text: string) =>
        page.locator("#log .msg").filter({ has: page.locator(".text", { hasText: text }) });
      const byId = (page: Page, id: string) => page.locator(`#log .msg[data-message-id="${id}"]`);
      /** Opens a message's "⋯" menu and picks `action`. */
      const choose = async (page: Page, text: string, action: string) => {
        await message(page, text).locator("button.more").click();
        await message(page, text).locator(".msg-menu button", { hasText: action }).click();
      };
      for (const text of ["first draft", "to be deleted", "deleted while alice is away"]) {
        await send(b, text);
      }
      await message(a, "deleted while alice is away").waitFor();
      const ids = new Map<string, string>();
      for (const text of ["first draft", "to be deleted", "deleted while alice is away"]) {
        ids.set(text, (await message(a, text).getAttribute("data-message-id"))!);
      }

      // Only "Delete for me" on a friend's message; all three on your own.
      await message(a, "first draft").locator("button.more").click();
      assert.deepEqual(
        await message(a, "first draft").locator(".msg-menu button").allTextContents(),
        [
          "Delete for me",
        ],
      );
      await message(a, "first draft").locator("button.more").click(); // closes it again
      await message(b, "first draft").locator("button.more").click();
      assert.deepEqual(
        await message(b, "first draft").locator(".msg-menu button").allTextContents(),
        ["Edit", "Delete for me", "Delete for everyone"],
      );
      await message(b, "first draft").locator("button.more").click();

      // Bob edits: the text changes in place on both pages, marked "edited".
      await choose(b, "first draft", "Edit");
      await b.locator(".edit-form input").fill("second draft");
      await b.press(".edit-form input", "Enter");
      const edited = ids.get("first draft")!;
      for (const page of [a, b]) {
        await byId(page, edited).locator(".edited").waitFor();
        await textIs(byId(page, edited).locator(".text"), "second draft");
      }

      // Bob deletes for everyone: "message deleted" in its place on both, the text erased.
      await choose(b, "to be deleted", "Delete for everyone");
      const deleted = ids.get("to be deleted")!;
      for (const page of [a, b]) {
        await textIs(byId(page, deleted).locator(".text"), "message deleted");
        assert.ok(await byId(page, deleted).locator("button.more").count() === 0);
      }
      const [erased] = await t.db.sql`select message_text from messages
                                        where message_id = ${Number(deleted)}`;
      assert.equal(erased!.message_text, "", "the text is erased in the database");

      // Alice deletes bob's edited message for herself: gone on her page only.
      await choose(a, "second draft", "Delete for me");
      await textIs(byId(a, edited).locator(".text"), "message deleted");
      assert.equal(await byId(b, edited).locator(".text").textContent(), "second draft");
      await saveScreenshot(browser, [a, b], "browser-edit.png");

      // Alice closes her page; bob deletes a message for everyone; she opens it again.
      await a.close();
      const framesBefore = frames.length;
      await choose(b, "deleted while alice is away", "Delete for everyone");
      const away = ids.get("deleted while alice is away")!;
      await textIs(byId(b, away).locator(".text"), "message deleted");
      a = await openAs(browser, t, 1, errors, { context: alice });
      // Her page caught up by seq from where it stopped, and the deletion came with it.
      await eventually(
        "the deletion through sync",
        () =>
          frames.slice(framesBefore).some(({ sent, frame }) =>
            !sent && frame.type === "sync_result" && Array.isArray(frame.updates) &&
            frame.updates.some((u: Record<string, unknown>) =>
              u.type === "message_updated" &&
              String((u.message as Record<string, unknown>).message_id) === away
            )
          ),
      );
      const syncs = frames.slice(framesBefore).filter(({ sent, frame }) =>
        sent && frame.type === "sync"
      );
      assert.ok(
        syncs.length > 0 && syncs.every(({ frame }) => Number(frame.after_seq) > 0),
        `sync from a known seq: ${JSON.stringify(syncs)}`,
      );
      await a.click('#friends li[data-user-id="2"]');
      await textIs(byId(a, away).locator(".text"), "message deleted");
      await textIs(byId(a, deleted).locator(".text"), "message deleted");
      assert.equal(await byId(a, edited).count(), 0, "deleted for her: not in her history");
    } finally {
      await closePages(browser);
      await t.close();
    }
  },
);

browserTest(
  "settings on the page: last seen for offline friends, a mute toggle per friend kept in chat_mutes, and appear offline that a friend's page sees as offline, then online again",
  async (browser, errors) => {
    // No grace: a closed page is offline at once.
    const t = await startTestServer({
      demoPage: DEMO_PAGE,
      users: named([1, 2, 3]),
      friends: [[1, 2], [1, 3]],
      env: { PRESENCE_GRACE_S: "0" },
    });
    const seen = (page: Page, userId: number) =>
      page.locator(`#friends li[data-user-id="${userId}"] .seen`);
    const lastSeenAt = async (userId: number): Promise<Date | undefined> => {
      const [row] = await t.db.sql<{ at: Date | null }[]>`
        select last_seen_at as at from chat_user_settings where user_id = ${userId}`;
      return row?.at ?? undefined;
    };
    /** The page's own words for `at`, in its locale and time zone. */
    const shown = (page: Page, at: Date) =>
      page.evaluate((iso) => "last seen " + new Date(iso).toLocaleString(), at.toISOString());
    try {
      // Bob was here and left: alice's page, opened later, says when (from `authenticated`).
      const bobsVisit = await openAs(browser, t, 2, errors, { friends: [1] });
      await bobsVisit.close();
      let bobLeft: Date | undefined;
      await eventually(
        "bob's last seen stored",
        async () => (bobLeft = await lastSeenAt(2)) !== undefined,
      );
      const a = await openAs(browser, t, 1, errors, { friends: [2, 3] });
      await dot(a, 2, "offline").waitFor();
      await textIs(seen(a, 2), await shown(a, bobLeft!));
      assert.equal(await seen(a, 3).textContent(), "", "carol was never seen: nothing shown");

      // Carol comes and goes while alice watches: the offline presence brings the time.
      const c = await openAs(browser, t, 3, errors, { friends: [1] });
      await dot(a, 3, "online").waitFor();
      assert.equal(await seen(a, 3).textContent(), "", "no last seen while online");
      await c.close();
      await dot(a, 3, "offline").waitFor();
      let carolLeft: Date | undefined;
      await eventually(
        "carol's last seen stored",
        async () => (carolLeft = await lastSeenAt(3)) !== undefined,
      );
      await textIs(seen(a, 3), await shown(a, carolLeft!));

      // Alice mutes bob for 8 hours with the bell, then unmutes him.
      const bell = a.locator('#friends li[data-user-id="2"] .mute');
      assert.equal(await bell.textContent(), "🔔");
      const clicked = Date.now();
      await bell.click();
      await textIs(bell, "🔕");
      const mutes = () =>
        t.db.sql<{ friend: number; until: Date }[]>`
          select friend_user_id::int as friend, until from chat_mutes where user_id = 1`;
      const [mute, ...others] = await mutes();
      assert.deepEqual(others, []);
      assert.equal(mute!.friend, 2);
      const hours = (mute!.until.getTime() - clicked) / 3600_000;
      assert.ok(hours > 7.9 && hours < 8.1, `muted for ${hours} h`);
      assert.match((await bell.getAttribute("title"))!, /^muted until .* \(unmute\)$/);
      assert.equal(
        await a.locator('#friends li[data-user-id="2"]').getAttribute("class"),
        "friend",
        "the click on the bell does not open the conversation",
      );
      await bell.click();
      await textIs(bell, "🔔");
      assert.equal((await mutes()).length, 0, "unmuted: no row left");

      // Alice appears offline: bob's page sees her go offline, as if she had left, and back.
      const b = await openAs(browser, t, 2, errors, { friends: [1] });
      await dot(b, 1, "online").waitFor();
      await dot(a, 2, "online").waitFor();
      const appearOffline = a.locator("#appear-offline");
      assert.equal(await appearOffline.isChecked(), false);
      await appearOffline.check();
      await dot(b, 1, "offline").waitFor();
      assert.match((await seen(b, 1).textContent())!, /^last seen /);
      const [stored] = await t.db
        .sql`select appear_offline from chat_user_settings where user_id = 1`;
      assert.equal(stored!.appear_offline, true);
      // Her own page stays online and still sees bob.
      await a.locator("#status.open").waitFor();
      await dot(a, 2, "online").waitFor();
      // Reopened, her page shows the switch on, and bob still sees her offline.
      await a.reload();
      await a.locator("#status.open").waitFor();
      assert.equal(await appearOffline.isChecked(), true);
      assert.equal(await dot(b, 1, "online").count(), 0);
      await saveScreenshot(browser, [a, b], "browser-settings.png");
      await appearOffline.uncheck();
      await dot(b, 1, "online").waitFor();
      await textIs(seen(b, 1), "");
      const [after] = await t.db
        .sql`select appear_offline from chat_user_settings where user_id = 1`;
      assert.equal(after!.appear_offline, false);
    } finally {
      await closePages(browser);
      await t.close();
    }
  },
);

/** What a tick looks like: its text, tooltip, colour and background. */
async function tickLook(locator: Locator): Promise<TickLook> {
  // Run in the page, written as text (the test's own type-check has no DOM types).
  const look = new Function(
    "tick",
    `const style = getComputedStyle(tick);
     return { text: tick.textContent.trim(), title: tick.title, color: style.color,
              background: style.backgroundColor };`,
  ) as (tick: unknown) => TickLook;
  return await locator.evaluate(look);
}

interface TickLook {
  text: string;
  title: string;
  color: string;
  background: string;
}

/** Waits until `locator`'s text is `text` (also for an element that is hidden when empty). */
async function textIs(locator: Locator, text: string): Promise<void> {
  let seen: string | null = null;
  await eventually(
    () => `text ${JSON.stringify(seen)}, expected ${JSON.stringify(text)}`,
    async () => (seen = await locator.textContent()) === text,
    30_000,
  );
}

/** Closes every page before its server stops, so that no page logs a failed reconnect. */
async function closePages(browser: Browser): Promise<void> {
  for (const context of browser.contexts()) await context.close();
}

/** The pages side by side in one PNG under tests/artifacts. */
async function saveScreenshot(browser: Browser, pages: Page[], file: string): Promise<void> {
  const shots = await Promise.all(pages.map((page) => page.screenshot()));
  const sizes = pages.map((page) => page.viewportSize()!);
  const sheet = await browser.newPage({
    viewport: {
      width: sizes.reduce((sum, s) => sum + s.width + 20, 0),
      height: Math.max(...sizes.map((s) => s.height)),
    },
  });
  await sheet.setContent(
    `<body style="margin:0;display:flex;gap:20px;background:#555">${
      shots.map((png) => `<img src="data:image/png;base64,${png.toString("base64")}">`).join("")
    }</body>`,
  );
  await Deno.mkdir(ARTIFACTS, { recursive: true });
  await Deno.writeFile(new URL(file, ARTIFACTS), await sheet.screenshot());
  await sheet.close();
}

browserTest(
  "with a moderation hook: a rejected message shows the hook's reason, a replaced one shows as stored, and a friend's message can be reported",
  async (browser, errors) => {
    const secret = "browser-moderation-hook-secret-0123456789";
    const hook = startFakeHook(secret);
    hook.answer = (call) =>
      call.body.message_text.includes("http")
        ? answers.reject("No links, please")
        : answers.replace(call.body.message_text.replaceAll("darn", "****"));
    const t = await startTestServer({
      demoPage: DEMO_PAGE,
      users: named([1, 2]),
      friends: [[1, 2]],
      env: { MODERATION_URL: hook.url, MODERATION_SECRET: secret },
    });
    try {
      const one = await openAs(browser, t, 1, errors, { friends: [2] });
      const two = await openAs(browser, t, 2, errors, { friends: [1] });
      await one.click('#friends li[data-user-id="2"]');
      await two.click('#friends li[data-user-id="1"]');
      await one.locator("#text").fill("see http://cheats.example");
      await one.press("#text", "Enter");
      await one.locator("#log .msg.mine.failed .tick.failed", { hasText: "No links, please" })
        .waitFor();
      await one.locator("#text").fill("oh darn, lost again");
      await one.press("#text", "Enter");
      await one.locator("#log .msg.mine .text", { hasText: "oh ****, lost again" }).waitFor();
      assert.equal(await one.locator("#log .msg.mine .text", { hasText: "darn" }).count(), 0);
      const received = two.locator("#log .msg.theirs", { hasText: "oh ****, lost again" });
      await received.waitFor();
      await received.locator("button.report").click();
      await received.locator("select.report-reason").selectOption("harassment");
      await received.locator("button.report-send").click();
      await received.locator(".reported", { hasText: "Reported" }).waitFor();
      const reports = await t.db.sql<{ reporter_user_id: string; reason: string }[]>`
        select reporter_user_id, reason from chat_reports`;
      assert.deepEqual(reports.map((r) => [Number(r.reporter_user_id), r.reason]), [
        [2, "harassment"],
      ]);
      assert.equal(await one.locator("#log .msg.mine button.report").count(), 0, "not on mine");
    } finally {
      await t.close();
      await hook.close();
    }
  },
);
