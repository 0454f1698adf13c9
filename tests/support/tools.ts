/**
 * @module tools
 * The programs some tests need besides Deno, which `.ci/run` installs: Chromium (Debian's
 * package) for the browser tests, PHP with its curl module for the interop tests, and
 * Prometheus' promtool for the alert rules. Where one
 * is missing, its tests are skipped and say so in their names; with CI=true they fail instead,
 * for a CI run that skipped them would pass without having tested anything.
 */

import fs from "node:fs";
import type { Browser } from "playwright-core";

export interface Tool {
  present: boolean;
  /** What is missing, and how to install it. */
  missing: string;
}

export const CHROMIUM_PATH = "/usr/bin/chromium";

export const CHROMIUM: Tool = {
  present: fs.existsSync(CHROMIUM_PATH) && fs.statSync(CHROMIUM_PATH).isFile(),
  missing: `${CHROMIUM_PATH} is missing; apt-get install -y chromium`,
};

export const PHP: Tool = {
  present: phpModules().includes("curl"),
  missing: "php with its curl module is missing; apt-get install -y php-cli php-curl",
};

export const PROMTOOL: Tool = {
  present: onPath("promtool"),
  missing: "promtool is missing; apt-get install -y prometheus",
};

function onPath(program: string): boolean {
  const dirs = (Deno.env.get("PATH") ?? "").split(":").filter((d) => d !== "");
  return dirs.some((dir) => fs.existsSync(`${dir}/${program}`));
}

/** Whether this run is CI's (`CI=true`, which `.ci/run` and CI services set). */
export const IN_CI = Deno.env.get("CI") === "true";

/** A test or a step. */
interface Definition {
  name: string;
  ignore?: boolean;
  fn: (t: Deno.TestContext) => void | Promise<void>;
}

/**
 * `test` as it runs here: unchanged where `tool` is present; else ignored, saying why in its
 * name, or, with CI=true, failing with that reason.
 */
export function needing<T extends Definition>(tool: Tool, test: T): T {
  if (tool.present) return test;
  if (IN_CI) {
    return {
      ...test,
      fn() {
        throw new Error(`CI=true, and ${tool.missing}`);
      },
    };
  }
  return { ...test, name: `${test.name} (skipped: ${tool.missing})`, ignore: true };
}

/** Headless Chromium at `CHROMIUM_PATH`, driven by playwright-core; the caller closes it. */
export async function launchChromium(): Promise<Browser> {
  // playwright-core probes /proc/sys/fs/binfmt_misc/WSLInterop when it loads (is this WSL?), a
  // path only --allow-all may read: answer the probe (we are not on WSL) while it loads, so that
  // the test task's permissions suffice.
  const existsSync = fs.existsSync;
  fs.existsSync = (path) => String(path).startsWith("/proc/sys/") ? false : existsSync(path);
  let playwright: typeof import("playwright-core");
  try {
    playwright = await import("playwright-core");
  } finally {
    fs.existsSync = existsSync;
  }
  return await playwright.chromium.launch({
    executablePath: CHROMIUM_PATH,
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
}

/** The modules `php -m` lists; none where `php` does not run. */
function phpModules(): string[] {
  try {
    const out = new Deno.Command("php", { args: ["-m"], stdout: "piped", stderr: "null" })
      .outputSync();
    return out.success ? new TextDecoder().decode(out.stdout).split("\n").map((m) => m.trim()) : [];
  } catch {
    return [];
  }
}
