/**
 * @module profile
 * Summarises a V8 `.cpuprofile` (what `deno run --cpu-prof` writes): self
 * time by function and by area (our `src/` files, npm packages, Deno's Node
 * compatibility layer, the runtime, GC, idle), and inclusive time of the
 * functions that matter for the message path.
 *
 * CLI: `deno run --allow-read bench/lib/profile.ts FILE.cpuprofile [TOP]`.
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileRow {
  name: string;
  ms: number;
  /** Share of the non-idle time, in percent. */
  percent: number;
}

export interface ProfileSummary {
  file: string;
  /** Wall time covered by the profile. */
  totalMs: number;
  /** Time the main thread was busy (not idle). */
  busyMs: number;
  topSelf: ProfileRow[];
  areas: ProfileRow[];
  topInclusive: ProfileRow[];
}

/** The npm package a URL belongs to (Deno's global cache or a local `node_modules`). */
function npmPackage(url: string): { name: string; path: string } | undefined {
  const m = /^.*\/node_modules\/((?:@[^/]+\/)?[^/]+)\/(.*)$/.exec(url) ??
    /\/npm\/registry\.npmjs\.org\/((?:@[^/]+\/)?[^/]+)\/[^/]+\/(.*)$/.exec(url);
  return m ? { name: m[1]!, path: m[2]! } : undefined;
}

/** A short location: `src/session/session.ts:123`, `npm:ws/lib/receiver.js:45`, `ext:deno_node/...`. */
function location(frame: CallFrame): string {
  const url = frame.url;
  if (url === "") return "";
  const line = frame.lineNumber + 1;
  const npm = npmPackage(url);
  if (npm) return `npm:${npm.name}/${npm.path}:${line}`;
  const local = /\/(src|bench|main\.ts)(\/.*)?$/.exec(url);
  if (local && url.startsWith("file://")) return `${local[1]}${local[2] ?? ""}:${line}`;
  return `${url}:${line}`;
}

/** Which part of the stack a frame belongs to. */
function area(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (url === "") {
    if (functionName.startsWith("(")) return functionName;
    return "(V8 builtins / native)";
  }
  const npm = npmPackage(url);
  if (npm) return `npm:${npm.name}`;
  if (url.startsWith("file://")) {
    const src = /\/(src\/[^/]+|main\.ts|bench\/.+)$/.exec(url);
    return src ? src[1]! : "file (other)";
  }
  if (url.startsWith("node:") || url.includes("ext:deno_node") || url.includes("ext:node")) {
    return "Deno node compat (node:*)";
  }
  if (url.startsWith("ext:")) return `Deno runtime (${url.split("/")[0]!.slice(4)})`;
  return url;
}

function key(frame: CallFrame): string {
  const where = location(frame);
  return `${frame.functionName || "(anonymous)"}${where ? ` ${where}` : ""}`;
}

function rows(map: Map<string, number>, busyMs: number, top: number): ProfileRow[] {
  return [...map.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, ms]) => ({ name, ms: round(ms), percent: round((100 * ms) / busyMs) }));
}

const round = (x: number) => Math.round(x * 10) / 10;

/** Summarises `profile` (parsed JSON of a `.cpuprofile`). */
export function summariseProfile(profile: CpuProfile, file: string, top = 25): ProfileSummary {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  // Sample i lasts until sample i+1; the last one gets the mean interval.
  const deltas = profile.timeDeltas;
  const mean = (profile.endTime - profile.startTime) / Math.max(1, profile.samples.length);
  const selfByNode = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const us = deltas[i + 1] ?? mean;
    const id = profile.samples[i]!;
    selfByNode.set(id, (selfByNode.get(id) ?? 0) + us / 1000);
  }
  const self = new Map<string, number>();
  const areas = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let idleMs = 0;
  let totalMs = 0;
  for (const [id, ms] of selfByNode) {
    const node = byId.get(id)!;
    totalMs += ms;
    if (node.callFrame.functionName === "(idle)") {
      idleMs += ms;
      continue;
    }
    const k = key(node.callFrame);
    self.set(k, (self.get(k) ?? 0) + ms);
    const a = area(node.callFrame);
    areas.set(a, (areas.get(a) ?? 0) + ms);
    // Inclusive: every distinct function on the stack gets the sample once.
    const seen = new Set<string>();
    for (let n: number | undefined = id; n !== undefined; n = parent.get(n)) {
      const frame = byId.get(n)!.callFrame;
      if (frame.functionName === "(root)") break;
      const name = key(frame);
      if (seen.has(name)) continue;
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + ms);
    }
  }
  const busyMs = totalMs - idleMs;
  return {
    file,
    totalMs: round(totalMs),
    busyMs: round(busyMs),
    topSelf: rows(self, busyMs, top),
    areas: rows(areas, busyMs, 40),
    topInclusive: rows(inclusive, busyMs, top),
  };
}

/** Reads and summarises a `.cpuprofile` file. */
export async function summariseProfileFile(path: string, top = 25): Promise<ProfileSummary> {
  return summariseProfile(JSON.parse(await Deno.readTextFile(path)), path, top);
}

/** Markdown tables of a summary. */
export function profileMarkdown(summary: ProfileSummary, top = 15): string {
  const table = (title: string, list: ProfileRow[]) =>
    [
      `| ${title} | ms | % of busy |`,
      "|---|---:|---:|",
      ...list.slice(0, top).map((r) =>
        `| \`${r.name.replaceAll("|", "\\|")}\` | ${r.ms} | ${r.percent} |`
      ),
    ].join("\n");
  return [
    `Profile: ${summary.totalMs} ms sampled, main thread busy ${summary.busyMs} ms ` +
    `(${round((100 * summary.busyMs) / summary.totalMs)} %).`,
    "",
    table("Area (self time)", summary.areas),
    "",
    table("Function (self time)", summary.topSelf),
    "",
    table("Function (inclusive time)", summary.topInclusive),
  ].join("\n");
}

if (import.meta.main) {
  const [file, top] = Deno.args;
  if (file === undefined) {
    console.error("usage: deno run --allow-read bench/lib/profile.ts FILE.cpuprofile [TOP]");
    Deno.exit(2);
  }
  const summary = await summariseProfileFile(file, Number(top ?? 25));
  console.log(profileMarkdown(summary, Number(top ?? 25)));
}
