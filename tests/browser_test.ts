/**
 * @module browser_test
 * The demo page in a real browser (Debian's chromium, driven by playwright-core): two users chat.
 */

import assert from "node:assert/strict";
import fs from "node:fs";
import type { Browser, Page } from "playwright-core";
import { DEMO_PAGE } from "../src/demo_page.ts";
import { startTestServer, type TestServer } from "./support/server.ts";

const CHROMIUM = "/usr/bin/chromium";
const SCREENSHOT = new URL("./artifacts/browser-chat.png", import.meta.url);
const installed = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();

// playwright-core probes /proc/sys/fs/binfmt_misc/WSLInterop when it loads (is this WSL?), a path
// Deno lets only --allow-all read. We are not on WSL: answer the probe so that the test task's
// permissions suffice, and load playwright-core only after that.
const existsSync = fs.existsSync;
fs.existsSync = (path) => String(path).startsWith("/proc/sys/") ? false : existsSync(path);
const { chromium } = await import("playwright-core");
fs.existsSync = existsSync;

const NAME = "two users chat on the demo page in a real browser: presence, typing, delivery ticks";

Deno.test({
  name: installed ? NAME : `${NAME} (skipped: ${CHROMIUM} is missing; apt-get install -y chromium)`,
  ignore: !installed,
  async fn() {
    const t = await startTestServer({ demoPage: DEMO_PAGE });
    let browser: Browser | undefined;
    try {
      for (const id of [1, 2]) await t.db.addUser(id);
      await t.db.befriend(1, 2);
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
          "--no-first-run",
        ],
      });
      const errors: string[] = [];
      const one = await openAs(browser, t, 1, errors);
      await one.locator("#status.open").waitFor();
      assert.equal(await one.locator("#friends .dot.online").count(), 0, "nobody online yet");

      const two = await openAs(browser, t, 2, errors);
      await one.locator('#friends li[data-user-id="2"] .dot.online').waitFor();
      await two.locator('#friends li[data-user-id="1"] .dot.online').waitFor();

      await one.click('#friends li[data-user-id="2"]');
      await two.click('#friends li[data-user-id="1"]');
      const text = `Hello from two <b>not bold</b> & "quoted"`;
      await two.locator("#text").pressSequentially(text.slice(0, 10), { delay: 20 });
      await one.locator("#typing", { hasText: "User 2 is typing…" }).waitFor();
      await two.locator("#text").pressSequentially(text.slice(10));
      await two.press("#text", "Enter");

      const received = one.locator("#log .msg.theirs .text");
      await received.waitFor();
      assert.equal(await received.textContent(), text);
      assert.equal(await one.locator("#log b").count(), 0, "user text is never parsed as HTML");
      await one.locator("#typing:empty").waitFor();
      const tick = two.locator("#log .msg.mine .tick.sent");
      await tick.waitFor();
      assert.equal(await tick.textContent(), " ✓");
      assert.equal(await two.locator("#log .msg.mine .text").textContent(), text);

      // A reply, and user 1 typing again, so the screenshot shows every state.
      await one.locator("#text").fill("Hi two, nice to meet you!");
      await one.press("#text", "Enter");
      await two.locator("#log .msg.theirs .text", { hasText: "Hi two, nice" }).waitFor();
      await one.locator("#log .msg.mine .tick.sent").waitFor();
      await one.locator("#text").pressSequentially("typing", { delay: 20 });
      await two.locator("#typing", { hasText: "User 1 is typing…" }).waitFor();
      await saveScreenshot(browser, [one, two]);
      assert.deepEqual(errors, []);
    } finally {
      await browser?.close();
      await t.close();
    }
  },
});

async function openAs(browser: Browser, t: TestServer, userId: number, errors: string[]) {
  const page = await browser.newPage({ viewport: { width: 720, height: 440 } });
  page.on("pageerror", (err) => errors.push(`page ${userId}: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") errors.push(`page ${userId}: ${msg.text()}`);
  });
  const token = encodeURIComponent(await t.token(userId));
  await page.goto(`${t.httpUrl}/?user=${userId}&token=${token}`);
  await page.locator("#status.open").waitFor();
  return page;
}

/** Both pages side by side in one PNG. */
async function saveScreenshot(browser: Browser, pages: Page[]): Promise<void> {
  const shots = await Promise.all(pages.map((page) => page.screenshot()));
  const sheet = await browser.newPage({ viewport: { width: 1460, height: 440 } });
  await sheet.setContent(
    `<body style="margin:0;display:flex;gap:20px;background:#555">${
      shots.map((png) => `<img src="data:image/png;base64,${png.toString("base64")}">`).join("")
    }</body>`,
  );
  await Deno.mkdir(new URL(".", SCREENSHOT), { recursive: true });
  await Deno.writeFile(SCREENSHOT, await sheet.screenshot());
}
