/**
 * The architecture as a test: which folder of `src/` may import which, so
 * arrows point down only, and every import from outside a folder goes through
 * its `mod.ts`. The README's "Layout" describes the same layers.
 */

import assert from "node:assert/strict";
import { dirname, join, normalize, relative } from "node:path";

/**
 * What each part may import besides itself, lowest first. A part is a folder
 * of `src/` or one of its root modules; `client` is the SDK (its own package).
 */
const ALLOWED: Record<string, readonly string[]> = {
  "client": [],
  "src/log.ts": [],
  "src/token.ts": [],
  "src/webhook_signature.ts": [],
  "src/build_info.ts": [],
  "src/transport": [],
  "src/config.ts": ["src/log.ts"],
  "src/store": ["src/log.ts", "src/config.ts"],
  "src/bus": ["src/log.ts"],
  "src/events": ["src/log.ts", "src/store", "src/webhook_signature.ts"],
  "src/protocol": ["client", "src/store"],
  "src/metrics.ts": ["src/build_info.ts", "src/protocol"],
  "src/moderation": ["src/log.ts", "src/metrics.ts", "src/protocol", "src/webhook_signature.ts"],
  "src/demo_page": ["client"],
  "src/hub": ["src/bus", "src/log.ts", "src/protocol", "src/store"],
  "src/session": [
    "src/config.ts",
    "src/hub",
    "src/log.ts",
    "src/metrics.ts",
    "src/moderation",
    "src/protocol",
    "src/store",
    "src/token.ts",
    "src/transport",
  ],
  "src/server": [
    "src/build_info.ts",
    "src/bus",
    "src/config.ts",
    "src/events",
    "src/hub",
    "src/log.ts",
    "src/metrics.ts",
    "src/moderation",
    "src/protocol",
    "src/session",
    "src/store",
    "src/token.ts",
    "src/transport",
  ],
  "main.ts": [
    "src/bus",
    "src/config.ts",
    "src/demo_page",
    "src/log.ts",
    "src/metrics.ts",
    "src/server",
    "src/store",
    "src/transport",
  ],
  "src/dev": ["main.ts", "src/config.ts", "src/log.ts", "src/server", "src/store", "src/token.ts"],
};

/** The part a file belongs to, or undefined outside the checked tree. */
function partOf(file: string): string | undefined {
  if (file.startsWith("client/")) return "client";
  if (file === "main.ts") return file;
  const parts = file.split("/");
  if (parts[0] !== "src") return undefined;
  return parts.length === 2 ? file : `src/${parts[1]}`;
}

const IMPORT =
  /(?:import|export)\s[^'"]*?from\s*["']([^"']+)["']|import\s*\(\s*["']([^"']+)["']\s*\)|import\s*["']([^"']+)["']/g;

/** Every rule an import of `files` (path → text) breaks, one line each. */
export function layeringViolations(files: ReadonlyMap<string, string>): string[] {
  const found: string[] = [];
  for (const [file, text] of files) {
    const from = partOf(file);
    if (from === undefined) continue;
    for (const m of text.matchAll(IMPORT)) {
      const spec = m[1] ?? m[2] ?? m[3];
      if (spec === undefined || !spec.startsWith(".")) continue;
      const target = normalize(join(dirname(file), spec));
      const to = partOf(target);
      if (to === undefined || to === from) continue;
      const allowed = ALLOWED[from];
      if (allowed === undefined) {
        found.push(`${file}: ${from} is not a known part (add it to ALLOWED)`);
      } else if (!allowed.includes(to)) {
        found.push(`${file} imports ${target}: ${from} may not import ${to}`);
      } else if (to.startsWith("src/") && !to.endsWith(".ts") && target !== `${to}/mod.ts`) {
        found.push(`${file} imports ${target}: outside ${to}, import ${to}/mod.ts`);
      }
    }
  }
  return found;
}

async function readTree(): Promise<Map<string, string>> {
  const root = new URL("..", import.meta.url).pathname;
  const files = new Map<string, string>();
  async function walk(dir: string): Promise<void> {
    for await (const entry of Deno.readDir(join(root, dir))) {
      const path = join(dir, entry.name);
      if (entry.isDirectory && entry.name !== "dist" && entry.name !== "node_modules") {
        await walk(path);
      } else if (entry.isFile && path.endsWith(".ts")) {
        files.set(relative(".", path), await Deno.readTextFile(join(root, path)));
      }
    }
  }
  await walk("src");
  await walk("client");
  files.set("main.ts", await Deno.readTextFile(join(root, "main.ts")));
  return files;
}

Deno.test("every import in src/, client/ and main.ts points down the layers, through mod.ts", async () => {
  const files = await readTree();
  assert.ok(files.size > 50, `read ${files.size} files`);
  assert.deepEqual(layeringViolations(files), []);
});

Deno.test("the layering check refuses an upward import and one that bypasses mod.ts", () => {
  const files = new Map([
    ["src/store/memory.ts", `import { Session } from "../session/mod.ts";`],
    ["src/session/session.ts", `import type { Hub } from "../hub/hub.ts";`],
    ["src/hub/hub.ts", `import type { Bus } from "../bus/mod.ts";`],
  ]);
  assert.deepEqual(layeringViolations(files), [
    "src/store/memory.ts imports src/session/mod.ts: src/store may not import src/session",
    "src/session/session.ts imports src/hub/hub.ts: outside src/hub, import src/hub/mod.ts",
  ]);
});

Deno.test("the allowed imports point down only: no part reaches itself through others", () => {
  const visiting = new Set<string>();
  const done = new Set<string>();
  const visit = (part: string, path: string[]): void => {
    assert.ok(!visiting.has(part), `cycle among parts: ${[...path, part].join(" -> ")}`);
    if (done.has(part)) return;
    visiting.add(part);
    for (const next of ALLOWED[part] ?? []) visit(next, [...path, part]);
    visiting.delete(part);
    done.add(part);
  };
  for (const part of Object.keys(ALLOWED)) visit(part, []);
});
