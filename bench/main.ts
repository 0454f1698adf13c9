/**
 * @module bench
 * `deno task bench`: the benchmark suite. Creates a benchmark database,
 * starts the real server and the bare relay as child processes and several
 * load-generator processes, runs every scenario at least three times
 * alternating server and relay, profiles the server, explains the
 * repository's queries, and writes `bench/results/latest.{json,md}` (quick or
 * partial runs: `quick.{json,md}`) and the figures section of
 * `bench/README.md`. Every child is killed by PID and the database dropped
 * on every exit path.
 *
 * Flags: `--quick`, `--runs=N`, `--workers=N`, `--client=auto|native|ws`,
 * `--only=clients,ceiling,throughput,latency,cluster,presence,capacity,profile,explain`
 * (`cluster` adds two server nodes on Redis to the throughput and latency
 * runs), `--duration=S` (throughput, latency and presence), `--connections=N`.
 */

import { DEFAULT_DATABASE_URL } from "../src/config.ts";
import { absNow, type ClientKind } from "./lib/commands.ts";
import {
  type BenchDatabase,
  createBenchDatabase,
  explainRepositoryQueries,
  pgStatStatementsAvailable,
  postgresSettings,
  type QueryPlan,
} from "./lib/db.ts";
import { killAll, loadAverage, openFilesLimit, running } from "./lib/proc.ts";
import { deleteKeys, redisPid } from "./lib/redis.ts";
import { summariseProfileFile } from "./lib/profile.ts";
import { type ProfiledRun, writeReports } from "./lib/report.ts";
import {
  type CapacityResult,
  capacityRun,
  latencyRun,
  presenceRun,
  type RunContext,
  type ThroughputResult,
  throughputRun,
} from "./lib/scenarios.ts";
import {
  logProblems,
  startTarget,
  stopTarget,
  type Target,
  type TargetKind,
} from "./lib/targets.ts";
import { LoadWorker } from "./lib/workers.ts";

const SCENARIOS = [
  "clients",
  "ceiling",
  "throughput",
  "latency",
  "cluster",
  "presence",
  "capacity",
  "profile",
  "explain",
] as const;
type Scenario = typeof SCENARIOS[number];

export interface Options {
  quick: boolean;
  runs: number;
  workers: number;
  client: ClientKind | "auto";
  only: Set<Scenario>;
  warmupMs: number;
  throughputMs: number;
  latencyMs: number;
  presenceMs: number;
  connections: number;
  pairs: number;
  window: number;
  latencyRate: number;
  hubs: number;
}

function parseOptions(args: string[]): Options {
  const flags = new Map<string, string>();
  for (const arg of args) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (!m) throw new RangeError(`unknown argument '${arg}'`);
    flags.set(m[1]!, m[2] ?? "true");
  }
  const known = ["quick", "runs", "workers", "client", "only", "duration", "connections"];
  for (const name of flags.keys()) {
    if (!known.includes(name)) throw new RangeError(`unknown flag --${name}`);
  }
  const quick = flags.has("quick");
  const int = (name: string, fallback: number, min: number, max: number) => {
    const value = flags.get(name);
    if (value === undefined) return fallback;
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new RangeError(`--${name} must be a whole number from ${min} to ${max}`);
    }
    return n;
  };
  const client = flags.get("client") ?? "auto";
  if (!["auto", "native", "ws"].includes(client)) {
    throw new RangeError("--client must be auto, native or ws");
  }
  const only = new Set<Scenario>();
  for (const name of (flags.get("only") ?? SCENARIOS.join(",")).split(",")) {
    if (!SCENARIOS.includes(name as Scenario)) {
      throw new RangeError(`--only: unknown scenario '${name}'`);
    }
    only.add(name as Scenario);
  }
  const durationS = int("duration", quick ? 3 : 10, 1, 120);
  return {
    quick,
    runs: int("runs", 3, 1, 20),
    workers: int("workers", 2, 1, 8),
    client: client as ClientKind | "auto",
    only,
    warmupMs: quick ? 500 : 1000,
    throughputMs: durationS * 1000,
    latencyMs: (flags.has("duration") ? durationS : quick ? 3 : 8) * 1000,
    presenceMs: (flags.has("duration") ? durationS : quick ? 3 : 6) * 1000,
    connections: int("connections", quick ? 3000 : 10_000, 10, 10_000),
    pairs: 100,
    window: 32,
    latencyRate: 5000,
    hubs: 20,
  };
}

/** The hard stop: well past the 10-minute budget something is wrong; clean up and fail. */
const WATCHDOG_MS = 15 * 60_000;
/** Load-generator processes started; the ceiling sweep uses up to this many. */
const CEILING_WORKERS = [1, 2, 3];

const log = (message: string) =>
  console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}`);

let db: BenchDatabase | undefined;
let workers: LoadWorker[] = [];
let redisCleanup: (() => Promise<unknown>) | undefined;
let cleaning: Promise<void> | undefined;

function cleanup(): Promise<void> {
  return cleaning ??= (async () => {
    await Promise.all(workers.map((w) => w.stop().catch(() => {})));
    await killAll();
    await db?.drop().catch((err) => log(`could not drop ${db?.name}: ${err}`));
    await redisCleanup?.().catch((err) => log(`could not delete this run's Redis keys: ${err}`));
    const left = running();
    if (left.length > 0) log(`still running after cleanup: ${left.join(", ")}`);
  })();
}

/** The git commit and a hash of `main.ts` + `src/*.ts` as they are now (uncommitted edits included). */
async function sourceFingerprint(): Promise<{ commit: string; srcSha256: string }> {
  const root = new URL("../", import.meta.url).pathname;
  const names = [...Deno.readDirSync(`${root}src`)].filter((e) => e.name.endsWith(".ts"))
    .map((e) => `src/${e.name}`).sort();
  const bytes = new TextEncoder().encode(
    (await Promise.all(["main.ts", ...names].map((n) => Deno.readTextFile(`${root}${n}`)))).join(
      "\0",
    ),
  );
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  let commit = "unknown";
  try {
    const out = await new Deno.Command("git", {
      args: ["-C", root, "rev-parse", "--short", "HEAD"],
      stdout: "piped",
    })
      .output();
    if (out.success) commit = new TextDecoder().decode(out.stdout).trim();
  } catch { /* no git */ }
  return {
    commit,
    srcSha256: Array.from(hash.slice(0, 8), (b) => b.toString(16).padStart(2, "0")).join(""),
  };
}

/** Runs `fn` `runs` times for each target, rotating which target goes first. */
async function alternate<T>(
  runs: number,
  name: string,
  kinds: TargetKind[],
  target: (kind: TargetKind) => Target,
  fn: (target: Target) => Promise<T>,
): Promise<Partial<Record<TargetKind, T[]>>> {
  const out: Partial<Record<TargetKind, T[]>> = {};
  for (let i = 0; i < runs; i++) {
    const order = [...kinds.slice(i % kinds.length), ...kinds.slice(0, i % kinds.length)];
    for (const kind of order) {
      const started = performance.now();
      (out[kind] ??= []).push(await fn(target(kind)));
      log(
        `${name} run ${i + 1}/${runs} ${kind}: ${
          ((performance.now() - started) / 1000).toFixed(1)
        } s`,
      );
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
  }
  return out;
}

async function main(): Promise<number> {
  const opts = parseOptions(Deno.args);
  const startedAt = absNow();
  const secret = `bench-${crypto.randomUUID()}`;
  const logDir = await Deno.makeTempDir({ prefix: "gb-bench-" });
  const nofile = await openFilesLimit();
  const needFiles = opts.connections + 1000;
  if (nofile.hard < needFiles) {
    log(
      `open-files hard limit ${nofile.hard} < ${needFiles}: capacity runs may fail (raise ulimit -n)`,
    );
  }
  log(
    `logs in ${logDir}; ${
      opts.quick ? "quick" : "full"
    } run, ${opts.runs} runs, ${opts.workers} workers`,
  );
  const adminUrl = Deno.env.get("DATABASE_URL") || DEFAULT_DATABASE_URL;
  db = await createBenchDatabase(adminUrl);
  log(`database ${db.name} created and seeded`);
  const workerCount = Math.max(opts.workers, ...(opts.only.has("ceiling") ? CEILING_WORKERS : []));
  workers = await Promise.all(
    Array.from(
      { length: workerCount },
      (_, i) => LoadWorker.start(i, `${logDir}/loadgen-${i}.log`),
    ),
  );
  const redisUrl = Deno.env.get("REDIS_URL") || "redis://127.0.0.1:6379";
  const keyPrefix = `bench:${crypto.randomUUID().slice(0, 8)}:`;
  const pidOfRedis = opts.only.has("cluster") ? await redisPid(redisUrl) : undefined;
  if (pidOfRedis !== undefined) redisCleanup = () => deleteKeys(redisUrl, keyPrefix);
  const startOpts = { secret, databaseUrl: db.url, logDir, redis: { url: redisUrl, keyPrefix } };
  const results: Record<string, unknown> = {};
  const meta = {
    date: new Date().toISOString(),
    mode: opts.quick ? "quick" : "full",
    runs: opts.runs,
    workers: opts.workers,
    cpus: navigator.hardwareConcurrency,
    deno: Deno.version.deno,
    openFiles: nofile,
    loadAverageBefore: loadAverage(),
    postgres: await postgresSettings(db),
    pgStatStatements: await pgStatStatementsAvailable(db),
    options: { ...opts, only: [...opts.only] },
    client: opts.client as ClientKind | "auto",
    cluster: "not run" as string,
    /** Which code was measured: the working tree changes while people work. */
    source: await sourceFingerprint(),
  };
  const ctx = (client: ClientKind, n = opts.workers): RunContext => ({
    workers: workers.slice(0, n),
    client,
    secret,
    db: db!,
    redisPid: pidOfRedis,
  });
  const throughputOpts = (durationMs: number, n = opts.workers) => ({
    pairs: opts.pairs,
    window: opts.window,
    warmupMs: opts.warmupMs,
    durationMs,
    workers: n,
  });

  // The long-lived targets, for every scenario but capacity and profile.
  const live: Partial<Record<TargetKind, Target>> = {
    server: await startTarget("server", startOpts),
    relay: await startTarget("relay", startOpts),
  };
  if (opts.only.has("cluster")) {
    if (pidOfRedis === undefined) {
      meta.cluster = `pending: no Redis answering at ${redisUrl}`;
    } else {
      try {
        live.cluster = await startTarget("cluster", startOpts);
        meta.cluster = "two server nodes on one Redis; pair partners on different nodes";
      } catch (err) {
        meta.cluster = `pending: the server did not start with REDIS_URL (${
          err instanceof Error ? err.message.split("\n")[0] : err
        })`;
      }
    }
    log(`cluster: ${meta.cluster}`);
  }
  const get = (kind: TargetKind) => live[kind]!;
  const mainKinds: TargetKind[] = [
    "server",
    "relay",
    ...(live.cluster ? ["cluster" as const] : []),
  ];

  if (opts.only.has("clients") && opts.client === "auto") {
    const compare: Record<string, ThroughputResult> = {};
    for (const client of ["native", "ws"] as const) {
      compare[client] = await throughputRun(ctx(client), get("relay"), throughputOpts(3000));
      log(`client ${client}: ${compare[client].deliveredPerS} msgs/s against the relay`);
    }
    // The cheaper client per message wins: on two cores the generator's CPU is the scarce resource.
    meta.client = compare.native!.generatorCpuMsPerMsg <= compare.ws!.generatorCpuMsPerMsg
      ? "native"
      : "ws";
    results.clients = compare;
  }
  const client: ClientKind = meta.client === "auto" ? "native" : meta.client;
  meta.client = client;

  if (opts.only.has("ceiling")) {
    const ceiling: Record<string, ThroughputResult> = {};
    for (const n of CEILING_WORKERS) {
      ceiling[`${n}`] = await throughputRun(ctx(client, n), get("relay"), throughputOpts(3000, n));
      log(`ceiling with ${n} workers: ${ceiling[`${n}`]!.deliveredPerS} msgs/s`);
    }
    results.ceiling = ceiling;
  }
  if (opts.only.has("throughput")) {
    results.throughput = await alternate(
      opts.runs,
      "throughput",
      mainKinds,
      get,
      (t) => throughputRun(ctx(client), t, throughputOpts(opts.throughputMs)),
    );
  }
  if (opts.only.has("latency")) {
    results.latency = await alternate(
      opts.runs,
      "latency",
      mainKinds,
      get,
      (t) =>
        latencyRun(ctx(client), t, {
          pairs: opts.pairs,
          ratePerS: opts.latencyRate,
          warmupMs: opts.warmupMs,
          durationMs: opts.latencyMs,
        }),
    );
  }
  if (opts.only.has("presence")) {
    results.presence = await alternate(
      opts.runs,
      "presence",
      ["server", "relay"],
      get,
      (t) =>
        presenceRun(ctx(client), t, {
          hubs: opts.hubs,
          warmupMs: opts.warmupMs,
          durationMs: opts.presenceMs,
        }),
    );
  }
  for (const t of Object.values(live)) await stopTarget(t);
  for (const kind of mainKinds) {
    const problems = await logProblems(live[kind]!);
    if (problems.count > 0) {
      log(`${kind} logged ${problems.count} warnings/errors, last: ${problems.last.join(" ")}`);
    }
  }

  if (opts.only.has("capacity")) {
    // A fresh process per run, so "RSS before" is an idle server and not the last run's heap.
    results.capacity = await alternate(
      opts.runs,
      "capacity",
      ["server", "relay"],
      get,
      async (t) => {
        const fresh = await startTarget(t.kind, { ...startOpts, inspect: true });
        try {
          return await capacityRun(ctx(client), fresh, {
            connections: opts.connections,
            concurrency: 64,
          });
        } finally {
          await stopTarget(fresh);
        }
      },
    );
  }

  if (opts.only.has("profile")) {
    // Throughput: `--cpu-prof` over the whole process (the run dominates it). Connect storm: a
    // profile of the connect phase only, through the inspector, so closing and shutdown stay out.
    const profiles: Record<string, Record<string, ProfiledRun>> = { throughput: {}, connect: {} };
    const profileKinds: TargetKind[] = [
      "server",
      "relay",
      ...(live.cluster ? ["cluster" as const] : []),
    ];
    for (const kind of profileKinds) {
      const dir = await Deno.makeTempDir({ dir: logDir, prefix: `cpuprof-${kind}-` });
      const profiled = await startTarget(kind, { ...startOpts, cpuProfDir: dir });
      let run: ThroughputResult;
      try {
        run = await throughputRun(ctx(client), profiled, throughputOpts(opts.throughputMs));
      } finally {
        await stopTarget(profiled);
      }
      // One file per process; for the cluster, node 1's, which did half of the work.
      const files = [...Deno.readDirSync(dir)].filter((e) => e.name.endsWith(".cpuprofile"))
        .map((e) => e.name).sort();
      if (files.length === 0) throw new Error(`no .cpuprofile written in ${dir}`);
      const path = `${dir}/${files[0]}`;
      const units = kind === "cluster" ? run.ackedTotal / 2 : run.ackedTotal;
      profiles.throughput![kind] = { units, run, summary: await summariseProfileFile(path, 40) };
      log(`profile of the ${kind} (throughput): ${path}`);
      if (kind === "cluster") continue;

      const inspected = await startTarget(kind, { ...startOpts, inspect: true });
      let storm: CapacityResult;
      try {
        storm = await capacityRun(ctx(client), inspected, {
          connections: opts.connections,
          concurrency: 64,
          profile: true,
        });
      } finally {
        await stopTarget(inspected);
      }
      const connectPath = `${logDir}/connect-${kind}.cpuprofile`;
      await Deno.writeTextFile(connectPath, JSON.stringify(storm.profile));
      const { profile: _, ...stormRun } = storm;
      profiles.connect![kind] = {
        units: storm.connections,
        run: stormRun,
        summary: await summariseProfileFile(connectPath, 40),
      };
      log(`profile of the ${kind} (connect): ${connectPath}`);
    }
    results.profile = profiles;
  }

  let plans: QueryPlan[] | undefined;
  if (opts.only.has("explain")) {
    plans = await explainRepositoryQueries(db);
    results.explain = plans;
  }

  const elapsedS = Math.round((absNow() - startedAt) / 100) / 10;
  const full = !opts.quick && opts.only.size === SCENARIOS.length && opts.runs >= 3;
  const written = await writeReports({
    meta: { ...meta, elapsedS, loadAverageAfter: loadAverage() },
    results,
    full,
  });
  log(`done in ${elapsedS} s; wrote ${written.join(", ")}`);
  return 0;
}

// A rejection nobody awaited yet (a worker killed mid-run) must not end the process before cleanup.
globalThis.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  log(
    `unhandled rejection: ${
      event.reason instanceof Error ? event.reason.message : String(event.reason)
    }`,
  );
});
const watchdog = setTimeout(() => {
  log(`watchdog: still running after ${WATCHDOG_MS / 60_000} min, giving up`);
  cleanup().finally(() => Deno.exit(1));
}, WATCHDOG_MS);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => {
    log(`${signal}: cleaning up`);
    cleanup().finally(() => Deno.exit(130));
  });
}
let code = 1;
try {
  code = await main();
} catch (err) {
  log(`failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
} finally {
  await cleanup();
  clearTimeout(watchdog);
}
Deno.exit(code);
