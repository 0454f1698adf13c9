/**
 * @module compare
 * Before → after of one change (every performance change is reported that
 * way, measured the same way on both sides): the server at two git
 * revisions, measured by this working tree's bench, alternating (before,
 * after; after, before; ...), medians of the runs.
 *
 * Each revision is exported with `git archive` into a temporary directory
 * (its `main.ts`, `src/`, migrations and lock file), this tree's `bench/`
 * is copied over it, its dependencies come from Deno's cache
 * (`deno install --frozen`), and `bench/main.ts --targets=server` runs
 * there with its own fresh database, so each side gets its own migrations.
 *
 * Run: `deno run --allow-all bench/compare.ts --before=REV --after=REV
 * [--runs=3] [--rates=1000,5000] [--duration=S] [--only=throughput,openloop,capacity,cluster]`;
 * prints a markdown table (the load generator's own CPU per message or login
 * beside every rate, so a change in it would show; `cluster`: two nodes on
 * one Redis in the same throughput runs, and their ratio to one node)
 * and writes `bench/results/compare.{md,json}`.
 */

import { spread } from "./lib/stats.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const RESULTS = `${ROOT}bench/results/`;

interface Flags {
  before: string;
  after: string;
  runs: number;
  rates: string;
  duration: string | undefined;
  only: string;
}

function parse(args: string[]): Flags {
  const f = new Map<string, string>();
  for (const a of args) {
    const m = /^--([a-z]+)=(.+)$/.exec(a);
    if (!m || !["before", "after", "runs", "rates", "duration", "only"].includes(m[1]!)) {
      throw new RangeError(`compare: unknown argument '${a}'`);
    }
    f.set(m[1]!, m[2]!);
  }
  const before = f.get("before");
  const after = f.get("after");
  if (!before || !after) throw new RangeError("compare: --before=REV and --after=REV are required");
  const runs = Number(f.get("runs") ?? "3");
  if (!Number.isInteger(runs) || runs < 1 || runs > 9) {
    throw new RangeError("compare: --runs from 1 to 9");
  }
  const only = f.get("only") ?? "throughput,openloop";
  if (
    !only.split(",").every((o) => ["throughput", "openloop", "capacity", "cluster"].includes(o))
  ) {
    throw new RangeError("compare: --only takes throughput, openloop, capacity and cluster");
  }
  return {
    before,
    after,
    runs,
    rates: f.get("rates") ?? "1000,5000",
    duration: f.get("duration"),
    only,
  };
}

async function sh(script: string, cwd: string): Promise<string> {
  const out = await new Deno.Command("sh", {
    args: ["-c", script],
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`compare: '${script}' failed:\n${text.slice(-3000)}`);
  return text;
}

/** A tree of `rev` with this tree's bench, ready to run; returns its directory and commit. */
async function prepare(rev: string): Promise<{ dir: string; commit: string }> {
  const commit = (await sh(`git rev-parse --short ${JSON.stringify(rev)}`, ROOT)).trim();
  const dir = await Deno.makeTempDir({ prefix: `gb-compare-${commit}-` });
  await sh(`git archive ${commit} | tar -x -C ${JSON.stringify(dir)}`, ROOT);
  await sh(
    `rm -rf ${JSON.stringify(`${dir}/bench`)} && mkdir ${JSON.stringify(`${dir}/bench`)} && ` +
      `tar -C ${
        JSON.stringify(`${ROOT}bench`)
      } --exclude=./node/node_modules --exclude=./results ` +
      `-cf - . | tar -C ${JSON.stringify(`${dir}/bench`)} -xf -`,
    ROOT,
  );
  await sh("deno install --frozen >/dev/null 2>&1 || deno install", dir);
  return { dir, commit };
}

type Json = Record<string, unknown>;

/** The figures of one run of one tree. */
function figures(result: Json, rates: string[]): Record<string, number> {
  const r = result.results as Json;
  const out: Record<string, number> = {};
  const tp = ((r.throughput as Json | undefined)?.server as Json[] | undefined)?.[0];
  if (tp) {
    out["saturated: delivered msgs/s"] = tp.deliveredPerS as number;
    out["saturated: server µs CPU/msg"] = tp.targetUsPerMsg as number;
    out["saturated: Postgres µs CPU/msg"] = tp.postgresUsPerMsg as number;
    out["saturated: generator µs CPU/msg"] = tp.generatorUsPerMsg as number;
  }
  const two = ((r.throughput as Json | undefined)?.cluster as Json[] | undefined)?.[0];
  if (two) {
    out["two nodes + Redis: delivered msgs/s"] = two.deliveredPerS as number;
    if (tp) {
      out["two nodes / one node"] = (two.deliveredPerS as number) / (tp.deliveredPerS as number);
    }
    out["two nodes: servers µs CPU/msg"] = two.targetUsPerMsg as number;
    out["two nodes: Postgres µs CPU/msg"] = two.postgresUsPerMsg as number;
    out["two nodes: Redis µs CPU/msg"] = two.redisUsPerMsg as number;
    out["two nodes: generator µs CPU/msg"] = two.generatorUsPerMsg as number;
  }
  const cap = ((r.capacity as Json | undefined)?.server as Json[] | undefined)?.[0];
  if (cap) {
    out["capacity: KiB RSS per idle connection"] = (cap.bytesPerConnection as number) / 1024;
    out["capacity: KiB per connection after GC"] = (cap.bytesPerConnectionAfterGc as number) / 1024;
    out["capacity: connect+auth per s"] = cap.connectPerS as number;
    const cpu = cap.cpu as Json;
    const perLogin = (cores: number) => (1e6 * cores) / (cap.connectPerS as number);
    out["capacity: server µs CPU/login"] = perLogin(cpu.targetCores as number);
    out["capacity: Postgres µs CPU/login"] = perLogin(cpu.postgresCores as number);
    out["capacity: generator µs CPU/login"] = perLogin(cpu.generatorCores as number);
  }
  for (const rate of rates) {
    const x = (((r.openloop as Json | undefined)?.[rate] as Json | undefined)?.server as
      | Json[]
      | undefined)?.[0];
    if (!x) continue;
    const rec = x.recipient as Json;
    out[`${rate}/s: p50 ms`] = rec.p50 as number;
    out[`${rate}/s: p99 ms`] = rec.p99 as number;
    out[`${rate}/s: p99.9 ms`] = rec.p999 as number;
    out[`${rate}/s: server µs CPU/msg`] = x.targetUsPerMsg as number;
    out[`${rate}/s: Postgres µs CPU/msg`] = x.postgresUsPerMsg as number;
    out[`${rate}/s: generator µs CPU/msg`] = x.generatorUsPerMsg as number;
  }
  return out;
}

const fmt = (x: number) =>
  !Number.isFinite(x)
    ? "–"
    : Math.abs(x) >= 100
    ? Math.round(x).toLocaleString("en-US")
    : x.toFixed(2);

if (import.meta.main) {
  const flags = parse(Deno.args);
  const rates = flags.rates.split(",");
  const sides = { before: await prepare(flags.before), after: await prepare(flags.after) };
  const runs: Record<"before" | "after", Record<string, number>[]> = { before: [], after: [] };
  const loads: number[] = [];
  try {
    for (let i = 0; i < flags.runs; i++) {
      const order = i % 2 === 0 ? (["before", "after"] as const) : (["after", "before"] as const);
      for (const side of order) {
        const { dir } = sides[side];
        const args = [
          "--targets=server",
          `--only=${flags.only}`,
          `--rates=${flags.rates}`,
          "--runs=1",
          "--out=compare",
          ...(flags.duration ? [`--duration=${flags.duration}`] : []),
        ];
        loads.push(Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]));
        console.error(`[compare] run ${i + 1}/${flags.runs} ${side} (${sides[side].commit})`);
        await sh(`deno run --allow-all bench/main.ts ${args.join(" ")}`, dir);
        const json = JSON.parse(await Deno.readTextFile(`${dir}/bench/results/compare.json`));
        runs[side].push(figures(json, rates));
      }
    }
  } finally {
    for (const { dir } of Object.values(sides)) await Deno.remove(dir, { recursive: true });
  }
  const names = Object.keys(runs.before[0] ?? {});
  const rows = names.map((n) => {
    const b = spread(runs.before.map((r) => r[n]!));
    const a = spread(runs.after.map((r) => r[n]!));
    const cell = (s: typeof a) => `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`;
    return `| ${n} | ${cell(b)} | ${cell(a)} | ${fmt(a.median / b.median)} |`;
  });
  const md = [
    `Before \`${sides.before.commit}\` → after \`${sides.after.commit}\`, ${flags.runs} alternating ` +
    `runs each (${new Date().toISOString()}), load average before the runs ${loads.join(", ")}.`,
    "",
    "| figure | before median (min–max) | after median (min–max) | after / before |",
    "|---|---:|---:|---:|",
    ...rows,
    "",
  ].join("\n");
  await Deno.mkdir(RESULTS, { recursive: true });
  await Deno.writeTextFile(`${RESULTS}compare.md`, md);
  await Deno.writeTextFile(
    `${RESULTS}compare.json`,
    JSON.stringify({ flags, sides, runs, loads }, null, 2),
  );
  console.log(md);
}
