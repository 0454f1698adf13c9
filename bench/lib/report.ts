/**
 * @module report
 * Turns the raw runs into the summary table (median, min–max, ratio against
 * the relay, target met or the gap), and writes `results/*.json`,
 * `results/*.md` and, after a full run, the figures section of
 * `bench/README.md` (between the `bench:latest` markers).
 */

import type { QueryPlan } from "./db.ts";
import { profileMarkdown, type ProfileSummary } from "./profile.ts";
import type {
  CapacityResult,
  LatencyResult,
  PresenceResult,
  ThroughputResult,
} from "./scenarios.ts";
import { ratios, type Spread, spread } from "./stats.ts";
import type { TargetKind } from "./targets.ts";

type Runs<T> = Partial<Record<TargetKind, T[]>>;
/** A profiled process and how many units of work (messages, connections) it did. */
export interface ProfiledRun {
  units: number;
  run: unknown;
  summary: ProfileSummary;
}
type Profiles = Record<"throughput" | "connect", Partial<Record<TargetKind, ProfiledRun>>>;

export interface Row {
  scenario: string;
  metric: string;
  unit: string;
  /** The real server, or in the two-node rows the cluster. */
  server: Spread;
  relay: Spread | undefined;
  /** server / relay, per run pair (runs alternate). */
  ratio: Spread | undefined;
  target?: { text: string; met: boolean; gap: string; cause: string };
}

const RESULTS = new URL("../results/", import.meta.url).pathname;
const README = new URL("../README.md", import.meta.url).pathname;

function row<T>(
  scenario: string,
  metric: string,
  unit: string,
  runs: Runs<T>,
  pick: (r: T) => number,
  withRelay = true,
  of: "server" | "cluster" = "server",
): Row {
  const server = (runs[of] ?? []).map(pick);
  const relay = (runs.relay ?? []).map(pick);
  return {
    scenario,
    metric,
    unit,
    server: spread(server),
    relay: withRelay ? spread(relay) : undefined,
    ratio: withRelay ? ratios(server, relay) : undefined,
  };
}

const fmt = (x: number) =>
  !Number.isFinite(x)
    ? "–"
    : Math.abs(x) >= 100
    ? Math.round(x).toLocaleString("en-US")
    : Math.abs(x) >= 10
    ? x.toFixed(1)
    : x.toFixed(2);
const cell = (s: Spread | undefined) =>
  s === undefined || !Number.isFinite(s.median)
    ? "–"
    : `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`;

/** The rows of the summary table, with the four targets evaluated. */
export function summarise(results: Record<string, unknown>): Row[] {
  const profile = (results.profile as Profiles | undefined)?.throughput.server?.summary;
  const rows: Row[] = [];
  const topArea = profile?.areas.find((a) => !a.name.startsWith("("))?.name ?? "see profile";
  const tp = results.throughput as Runs<ThroughputResult> | undefined;
  if (tp) {
    const r = row("throughput", "delivered msgs/s", "msg/s", tp, (x) => x.deliveredPerS);
    const ratio = r.ratio!.median;
    const cores = spread((tp.server ?? []).map((x) => x.targetCores)).median;
    const pg = spread((tp.server ?? []).map((x) => x.postgresCores)).median;
    r.target = {
      text: "full/bare ≥ 0.6",
      met: ratio >= 0.6,
      gap: ratio >= 0.6 ? "" : `${fmt(ratio)} (needs ×${fmt(0.6 / ratio)})`,
      cause: (() => {
        const med = (pick: (x: ThroughputResult) => number) =>
          spread((tp.server ?? []).map(pick)).median;
        const perMsg = (k: TargetKind) =>
          1e6 / spread((tp[k] ?? []).map((x) => x.msgsPerTargetCpuS)).median;
        const machine = med((x) => x.machineCores);
        return `server ${fmt(perMsg("server"))} µs CPU/msg vs relay ${fmt(perMsg("relay"))} ` +
          `(heaviest area beyond V8 natives: ${topArea}); server at ${fmt(cores)} cores, Postgres ${
            fmt(pg)
          }, ` +
          `machine ${
            fmt(machine)
          } of ${navigator.hardwareConcurrency} cores busy; writer: batches of ` +
          `${fmt(med((x) => x.server?.batchRowsMean ?? NaN))} rows, commit mean ` +
          `${fmt(med((x) => x.server?.commitMsMean ?? NaN))} ms, accept→ack ` +
          `${fmt(med((x) => x.server?.ackMsMean ?? NaN))} ms`;
      })(),
    };
    rows.push(
      r,
      row("throughput", "msgs per target CPU-second", "msg/CPU-s", tp, (x) => x.msgsPerTargetCpuS),
      row("throughput", "target CPU (cores)", "cores", tp, (x) => x.targetCores),
      row("throughput", "generator CPU (cores)", "cores", tp, (x) => x.generatorCores),
      row("throughput", "Postgres CPU (cores)", "cores", tp, (x) => x.postgresCores, false),
      row("throughput", "other load on the machine (cores)", "cores", tp, (x) => x.otherCores),
      row("throughput", "rows per Postgres commit", "rows", tp, (x) => x.rowsPerCommit, false),
      row(
        "throughput",
        "server: rows per batch (mean)",
        "rows",
        tp,
        (x) => x.server?.batchRowsMean ?? NaN,
        false,
      ),
      row(
        "throughput",
        "server: batch commit mean",
        "ms",
        tp,
        (x) => x.server?.commitMsMean ?? NaN,
        false,
      ),
      row(
        "throughput",
        "server: accept→ack mean",
        "ms",
        tp,
        (x) => x.server?.ackMsMean ?? NaN,
        false,
      ),
    );
  }
  const lat = results.latency as Runs<LatencyResult> | undefined;
  if (lat) {
    const p99 = row("latency @5k/s", "send→recipient p99", "ms", lat, (x) => x.recipient.p99);
    const m = p99.server.median;
    p99.target = {
      text: "≤ 10 ms",
      met: m <= 10,
      gap: m <= 10 ? "" : `+${fmt(m - 10)} ms`,
      cause: (() => {
        const med = (pick: (x: LatencyResult) => number) =>
          spread((lat.server ?? []).map(pick)).median;
        return `delivery waits for the commit (server accept→ack mean ${
          fmt(med((x) => x.server?.ackMsMean ?? NaN))
        } ms, ` +
          `batch commit mean ${fmt(med((x) => x.server?.commitMsMean ?? NaN))} ms but p99 bucket ` +
          `${
            fmt(med((x) => x.server?.commitMsP99 ?? NaN))
          } ms): the tail is main-thread and CPU stalls ` +
          `(server ${
            fmt(med((x) => x.cpu.targetCores))
          } cores for 5k msgs/s, GC, a shared 2-core machine)`;
      })(),
    };
    rows.push(
      row("latency @5k/s", "send→recipient p50", "ms", lat, (x) => x.recipient.p50),
      p99,
      row("latency @5k/s", "send→recipient p99.9", "ms", lat, (x) => x.recipient.p999),
      row("latency @5k/s", "send→message_sent p50", "ms", lat, (x) => x.ack.p50),
      row("latency @5k/s", "send→message_sent p99", "ms", lat, (x) => x.ack.p99),
      row("latency @5k/s", "send→message_sent p99.9", "ms", lat, (x) => x.ack.p999),
      row(
        "latency @5k/s",
        "scheduled→recipient p99",
        "ms",
        lat,
        (x) => x.recipientFromSchedule.p99,
      ),
      row("latency @5k/s", "generator send lag p99", "ms", lat, (x) => x.generatorLagP99),
      row(
        "latency @5k/s",
        "server: rows per batch (mean)",
        "rows",
        lat,
        (x) => x.server?.batchRowsMean ?? NaN,
        false,
      ),
      row(
        "latency @5k/s",
        "server: batch commit mean",
        "ms",
        lat,
        (x) => x.server?.commitMsMean ?? NaN,
        false,
      ),
      row(
        "latency @5k/s",
        "server: batch commit p99 (bucket)",
        "ms",
        lat,
        (x) => x.server?.commitMsP99 ?? NaN,
        false,
      ),
      row(
        "latency @5k/s",
        "server: accept→ack mean",
        "ms",
        lat,
        (x) => x.server?.ackMsMean ?? NaN,
        false,
      ),
      row("latency @5k/s", "achieved send rate", "msg/s", lat, (x) => x.sentPerS),
      row("latency @5k/s", "target CPU (cores)", "cores", lat, (x) => x.cpu.targetCores),
    );
  }
  const cap = results.capacity as Runs<CapacityResult> | undefined;
  if (cap) {
    const mem = row(
      "capacity 10k idle",
      "RSS per connection",
      "KiB",
      cap,
      (x) => x.bytesPerConnection / 1024,
    );
    const kib = mem.server.median;
    mem.target = {
      text: "≤ 16 KiB",
      met: kib <= 16,
      gap: kib <= 16 ? "" : `+${fmt(kib - 16)} KiB`,
      cause:
        `transport alone (relay) ${
          fmt(mem.relay!.median)
        } KiB; after a forced GC the server holds ` +
        `${
          fmt(spread((cap.server ?? []).map((x) => x.bytesPerConnectionAfterGc / 1024)).median)
        } KiB: the rest is ` +
        "garbage of the authentications not yet collected",
    };
    const rate = row(
      "capacity 10k idle",
      "connect+authenticate per s",
      "conn/s",
      cap,
      (x) => x.connectPerS,
    );
    const r = rate.server.median;
    rate.target = {
      text: "≥ 3,000/s",
      met: r >= 3000,
      gap: r >= 3000 ? "" : `−${fmt(3000 - r)}/s`,
      cause: `server CPU ${
        fmt(spread((cap.server ?? []).map((x) => x.targetCpuSPerThousand)).median)
      } s per 1,000 ` +
        `connections vs relay ${
          fmt(
            spread((cap.relay ?? []).map((x) =>
              x.targetCpuSPerThousand
            )).median,
          )
        } s (the transport's handshake alone); the server adds the token's HMAC (WebCrypto), ` +
        "the user and friends lookups, presence and a log line per authentication",
    };
    rows.push(
      mem,
      row("capacity 10k idle", "RSS per connection after forced GC", "KiB", cap, (x) =>
        x.bytesPerConnectionAfterGc / 1024),
      row("capacity 10k idle", "JS heap per connection after forced GC", "KiB", cap, (x) =>
        x.heapBytesPerConnection / 1024),
      rate,
      row("capacity 10k idle", "generator CPU while connecting", "cores", cap, (x) =>
        x.cpu.generatorCores),
      row("capacity 10k idle", "other load while connecting", "cores", cap, (x) =>
        x.cpu.otherCores),
      row("capacity 10k idle", "connections held", "conn", cap, (x) =>
        x.connections),
      row("capacity 10k idle", "RSS idle before", "MiB", cap, (x) =>
        x.rssBeforeMiB),
      row("capacity 10k idle", "RSS with all connected", "MiB", cap, (x) =>
        x.rssAfterMiB),
      row("capacity 10k idle", "connect→authenticated p99", "ms", cap, (x) =>
        x.connectLatencyP99),
      row("capacity 10k idle", "target CPU-s per 1,000 connects", "CPU-s", cap, (x) =>
        x.targetCpuSPerThousand),
    );
  }
  const cl = "two nodes + Redis";
  if (tp?.cluster) {
    rows.push(
      row(cl, "cross-node delivered msgs/s", "msg/s", tp, (x) => x.deliveredPerS, true, "cluster"),
      row(
        cl,
        "msgs per CPU-second of both nodes",
        "msg/CPU-s",
        tp,
        (x) => x.msgsPerTargetCpuS,
        true,
        "cluster",
      ),
      row(cl, "both nodes' CPU (cores)", "cores", tp, (x) => x.targetCores, true, "cluster"),
      row(cl, "Redis CPU (cores)", "cores", tp, (x) => x.redisCores, false, "cluster"),
      row(
        cl,
        "bus publishes per delivered message",
        "publishes",
        tp,
        (x) => (x.server?.busPublishes ?? NaN) / (x.deliveredPerS * x.windowS),
        false,
        "cluster",
      ),
      row(
        cl,
        "server: accept→ack mean",
        "ms",
        tp,
        (x) => x.server?.ackMsMean ?? NaN,
        false,
        "cluster",
      ),
      row(cl, "Postgres CPU (cores)", "cores", tp, (x) => x.postgresCores, false, "cluster"),
    );
  }
  if (lat?.cluster) {
    rows.push(
      row(cl, "@5k/s send→recipient p50", "ms", lat, (x) => x.recipient.p50, true, "cluster"),
      row(cl, "@5k/s send→recipient p99", "ms", lat, (x) => x.recipient.p99, true, "cluster"),
      row(cl, "@5k/s send→recipient p99.9", "ms", lat, (x) => x.recipient.p999, true, "cluster"),
      row(cl, "@5k/s send→message_sent p99", "ms", lat, (x) => x.ack.p99, true, "cluster"),
    );
  }
  const pr = results.presence as Runs<PresenceResult> | undefined;
  if (pr) {
    rows.push(
      row("presence 50 friends", "online: all 50 told p50", "ms", pr, (x) => x.online.p50),
      row("presence 50 friends", "online: all 50 told p99", "ms", pr, (x) => x.online.p99),
      row("presence 50 friends", "offline: all 50 told p50", "ms", pr, (x) => x.offline.p50),
      row("presence 50 friends", "offline: all 50 told p99", "ms", pr, (x) => x.offline.p99),
      row(
        "presence 50 friends",
        "connect→all 50 told online p99",
        "ms",
        pr,
        (x) => x.onlineFromConnect.p99,
      ),
      row("presence 50 friends", "presence frames/s", "frames/s", pr, (x) => x.framesPerS),
      row("presence 50 friends", "target CPU (cores)", "cores", pr, (x) => x.cpu.targetCores),
    );
  }
  return rows;
}

function table(rows: Row[]): string {
  const lines = [
    "| scenario | metric | server median (min–max) | bare relay median (min–max) | server/relay median (min–max) | target | met? |",
    "|---|---|---:|---:|---:|---|---|",
  ];
  for (const r of rows) {
    const target = r.target ? r.target.text : "";
    const met = r.target ? (r.target.met ? "**met**" : `**not met**: ${r.target.gap}`) : "";
    lines.push(
      `| ${r.scenario} | ${r.metric} (${r.unit}) | ${cell(r.server)} | ${cell(r.relay)} | ${
        cell(r.ratio)
      } | ${target} | ${met} |`,
    );
  }
  return lines.join("\n");
}

function targetsTable(rows: Row[]): string {
  const lines = [
    "| target | measured (server median) | met? | likely cause |",
    "|---|---:|---|---|",
  ];
  for (const r of rows.filter((x) => x.target)) {
    const value = r.metric.startsWith("delivered")
      ? `${fmt(r.ratio!.median)} × bare`
      : `${fmt(r.server.median)} ${r.unit}`;
    lines.push(
      `| ${r.metric}: ${r.target!.text} | ${value} | ${
        r.target!.met ? "met" : `not met (${r.target!.gap})`
      } | ${r.target!.cause} |`,
    );
  }
  return lines.join("\n");
}

function generatorSection(results: Record<string, unknown>): string {
  const out: string[] = [];
  const clients = results.clients as Record<string, ThroughputResult> | undefined;
  if (clients) {
    out.push(
      "Client library against the relay (3 s each):",
      "",
      "| client | delivered msgs/s | generator cores | generator CPU-ms per msg | relay cores |",
      "|---|---:|---:|---:|---:|",
      ...Object.entries(clients).map(([name, r]) =>
        `| ${name} | ${fmt(r.deliveredPerS)} | ${
          fmt(r.generatorCores)
        } | ${r.generatorCpuMsPerMsg} | ${fmt(r.targetCores)} |`
      ),
      "",
    );
  }
  const ceiling = results.ceiling as Record<string, ThroughputResult> | undefined;
  if (ceiling) {
    out.push(
      "Generator ceiling: the bare relay driven as hard as possible (3 s each):",
      "",
      "| generator processes | delivered msgs/s | relay cores | generator cores | machine busy cores | other load cores |",
      "|---:|---:|---:|---:|---:|---:|",
      ...Object.entries(ceiling).map(([n, r]) =>
        `| ${n} | ${fmt(r.deliveredPerS)} | ${fmt(r.targetCores)} | ${fmt(r.generatorCores)} | ${
          fmt(r.machineCores)
        } | ${fmt(r.otherCores)} |`
      ),
      "",
    );
  }
  return out.join("\n");
}

/** Main-thread time per unit of work by area, server against relay, then the server's detail. */
function profileSection(profiles: Profiles | undefined): string {
  if (!profiles) return "";
  const out: string[] = [];
  for (const [load, unit] of [["throughput", "msg"], ["connect", "connection"]] as const) {
    const server = profiles[load].server;
    if (!server) continue;
    const relay = profiles[load].relay;
    const cluster = profiles[load].cluster;
    const per = (p: ProfiledRun | undefined, ms: number | undefined) =>
      p ? (1000 * (ms ?? 0)) / p.units : NaN;
    const areaMs = (p: ProfiledRun | undefined, area: string) =>
      p?.summary.areas.find((a) => a.name === area)?.ms;
    const all = [server, relay, cluster].flatMap((p) => p?.summary.areas ?? []);
    const areas = [...new Set(all.map((a) => a.name))]
      .map((a) => ({
        a,
        sv: per(server, areaMs(server, a)),
        rv: per(relay, areaMs(relay, a)),
        cv: per(cluster, areaMs(cluster, a)),
      }))
      .sort((x, y) => Math.max(y.sv, y.rv || 0, y.cv || 0) - Math.max(x.sv, x.rv || 0, x.cv || 0));
    const title = load === "throughput"
      ? "the throughput load (whole process, `--cpu-prof`)"
      : `a storm of ${fmt(server.units)} connects (connect phase only, through the inspector)`;
    const busy = (name: string, p: ProfiledRun | undefined) =>
      p ? `, ${name} ${fmt(per(p, p.summary.busyMs))} µs/${unit}` : "";
    out.push(
      `CPU profile under ${title}: main-thread time per ${unit}. ` +
        `Server busy ${fmt(per(server, server.summary.busyMs))} µs/${unit}` +
        busy("relay", relay) + busy("one cluster node (per message it handled)", cluster) + ".",
      "",
      `| area (self time) | server µs/${unit} | relay µs/${unit} | server − relay |` +
        (cluster ? " cluster node µs/msg |" : ""),
      "|---|---:|---:|---:|" + (cluster ? "---:|" : ""),
      ...areas.slice(0, 18).map(({ a, sv, rv, cv }) =>
        `| \`${a}\` | ${fmt(sv)} | ${fmt(rv)} | ${fmt(sv - (Number.isFinite(rv) ? rv : 0))} |` +
        (cluster ? ` ${fmt(cv)} |` : "")
      ),
      "",
      `Server detail (${load}):`,
      "",
      profileMarkdown(server.summary, 15),
      "",
    );
  }
  return out.join("\n");
}

function explainSection(plans: QueryPlan[] | undefined): string {
  if (!plans) return "";
  return [
    "| repository statement | execution ms (median of 5) | planning ms |",
    "|---|---:|---:|",
    ...plans.map((p) => `| ${p.name} | ${p.executionMs} | ${p.planningMs} |`),
  ].join("\n");
}

/** The markdown report: figures, targets, generator, profile, queries. */
export function markdown(
  meta: Record<string, unknown>,
  results: Record<string, unknown>,
  rows: Row[],
): string {
  return [
    `Run of ${meta.date} (${meta.mode}, ${meta.runs} runs per figure, ${meta.workers} generator processes, ` +
    `client \`${meta.client}\`, ${meta.cpus} CPUs, Deno ${meta.deno}, took ${meta.elapsedS} s; ` +
    `load average ${meta.loadAverageBefore} before, ${meta.loadAverageAfter} after; ` +
    `source ${(meta.source as { commit?: string } | undefined)?.commit} + working tree ` +
    `${(meta.source as { srcSha256?: string } | undefined)?.srcSha256}).`,
    "",
    table(rows),
    "",
    meta.cluster && String(meta.cluster).startsWith("pending")
      ? `Two nodes + Redis: **${meta.cluster}**.\n`
      : "",
    "Targets:",
    "",
    targetsTable(rows),
    "",
    generatorSection(results),
    profileSection(results.profile as Profiles | undefined),
    explainSection(results.explain as QueryPlan[] | undefined),
    "",
  ].join("\n");
}

/** Writes the JSON and markdown results (and the README section after a full run). */
export async function writeReports(
  input: { meta: Record<string, unknown>; results: Record<string, unknown>; full: boolean },
): Promise<string[]> {
  const rows = summarise(input.results);
  const md = markdown(input.meta, input.results, rows);
  const base = input.full ? "latest" : "quick";
  await Deno.mkdir(RESULTS, { recursive: true });
  const json = `${RESULTS}${base}.json`;
  const mdPath = `${RESULTS}${base}.md`;
  await Deno.writeTextFile(json, JSON.stringify({ ...input, summary: rows }, null, 2) + "\n");
  await Deno.writeTextFile(mdPath, md);
  const written = [json, mdPath];
  if (input.full) {
    const readme = await Deno.readTextFile(README).catch(() => undefined);
    const start = "<!-- bench:latest:start -->";
    const end = "<!-- bench:latest:end -->";
    if (readme?.includes(start) && readme.includes(end)) {
      const updated = readme.slice(0, readme.indexOf(start) + start.length) + "\n\n" + md + "\n" +
        readme.slice(readme.indexOf(end));
      await Deno.writeTextFile(README, updated);
      written.push(README);
    }
  }
  return written;
}
