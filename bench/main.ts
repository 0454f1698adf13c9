/**
 * @module bench
 * `deno task bench`: the benchmark suite. Builds the Go load generator and
 * installs the Node relay's `ws`, creates a benchmark database, starts the
 * real server, the bare relay on our transport and the bare Node + `ws`
 * relay as child processes (pinned to one core, the generator to the other),
 * runs every scenario `--runs` times alternating the targets, profiles the
 * server, explains the repository's queries, and writes
 * `bench/results/latest.{json,md}` (quick or partial runs:
 * `quick.{json,md}`, or `--out=NAME`; the raw JSON is not committed) and the
 * figures section of `bench/README.md`. Every child is killed by PID and the database dropped
 * on every exit path.
 *
 * Flags: `--quick`, `--runs=N`, `--workers=N`,
 * `--only=ceiling,throughput,openloop,breakdown,cluster,events,hook,capacity,profile,explain,storm`
 * (`events`: the events webhook's outbox per message and a 100,000-event backlog's drain; `hook`:
 * the moderation hook's cost per message against `bench/hook.ts`, answering allow at once; `cluster` adds two server nodes on one Redis, and two on a local Redis Cluster of 3
 * primaries and 3 replicas that the bench starts, to the throughput runs),
 * `--targets=server,relay,node`, `--rates=100,1000,5000`, `--duration=S`,
 * `--connections=N`, `--pin=auto|off`, `--out=NAME`.
 */

import { DEFAULT_DATABASE_URL } from "../src/config.ts";
import { absNow } from "./lib/commands.ts";
import { buildGenerator, prepareNodeRelay } from "./lib/build.ts";
import {
  type BenchDatabase,
  createBenchDatabase,
  explainRepositoryQueries,
  pgStatStatementsAvailable,
  postgresSettings,
  type QueryPlan,
} from "./lib/db.ts";
import { killAll, loadAverage, openFilesLimit, pin, running } from "./lib/proc.ts";
import { deleteKeys, redisPid } from "./lib/redis.ts";
import { LocalRedisCluster, redisClusterSkip } from "../tests/support/redis_cluster.ts";
import { probeDiskSync } from "./lib/disk.ts";
import { summariseProfileFile } from "./lib/profile.ts";
import { type ProfiledRun, writeReports } from "./lib/report.ts";
import {
  type CapacityResult,
  capacityRun,
  type LatencyResult,
  latencyRun,
  readTrace,
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
import { CountingReceiver, drainRun, outboxCostRuns } from "./lib/events.ts";
import { BenchHook, hookCostRuns } from "./lib/hook.ts";
import { PAIR_USERS } from "./lib/layout.ts";
import { STORM_CASES, STORM_POLICIES, type StormCase, stormCase } from "./lib/storm.ts";

const SCENARIOS = [
  "ceiling",
  "throughput",
  "openloop",
  "breakdown",
  "cluster",
  "events",
  "hook",
  "capacity",
  "profile",
  "explain",
  "storm",
] as const;
type Scenario = typeof SCENARIOS[number];
const SINGLE_TARGETS = ["server", "relay", "node"] as const;

export interface Options {
  quick: boolean;
  runs: number;
  workers: number;
  only: Set<Scenario>;
  targets: TargetKind[];
  rates: number[];
  warmupMs: number;
  throughputMs: number;
  ceilingMs: number;
  /** Open-loop window per rate: low rates need longer for enough samples. */
  openLoopMs: (rate: number) => number;
  connections: number;
  pairs: number;
  window: number;
  pin: boolean;
  out: string | undefined;
  /** Profile the open loop at this rate instead of the saturating load (`--profile-rate`). */
  profileRate: number | undefined;
  storm: {
    users: number;
    cases: StormCase[];
    policy: string;
    loginRate: string;
    backlog: number;
  };
}

function parseOptions(args: string[]): Options {
  const flags = new Map<string, string>();
  for (const arg of args) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (!m) throw new RangeError(`unknown argument '${arg}'`);
    flags.set(m[1]!, m[2] ?? "true");
  }
  const known = [
    "quick",
    "runs",
    "workers",
    "only",
    "targets",
    "rates",
    "duration",
    "connections",
    "pin",
    "out",
    "profile-rate",
    "storm-users",
    "storm-cases",
    "storm-policy",
    "storm-login-rate",
    "storm-backlog",
  ];
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
  const list = <T extends string>(name: string, allowed: readonly T[], fallback: readonly T[]) => {
    const out: T[] = [];
    for (const item of (flags.get(name) ?? fallback.join(",")).split(",")) {
      if (!allowed.includes(item as T)) throw new RangeError(`--${name}: unknown '${item}'`);
      out.push(item as T);
    }
    return out;
  };
  const only = new Set(list("only", SCENARIOS, SCENARIOS));
  const targets = list("targets", SINGLE_TARGETS, SINGLE_TARGETS);
  const rates = (flags.get("rates") ?? "100,1000,5000").split(",").map((r) => {
    const n = Number(r);
    if (!Number.isInteger(n) || n < 10 || n > 50_000) {
      throw new RangeError("--rates: whole messages per second from 10 to 50000, comma-separated");
    }
    return n;
  });
  const pinFlag = flags.get("pin") ?? "auto";
  if (pinFlag !== "auto" && pinFlag !== "off") throw new RangeError("--pin must be auto or off");
  const out = flags.get("out");
  if (out !== undefined && !/^[a-z0-9_-]{1,40}$/.test(out)) {
    throw new RangeError("--out: 1–40 characters a–z, 0–9, _ or -");
  }
  const stormPolicy = flags.get("storm-policy") ?? "v2";
  if (!(stormPolicy in STORM_POLICIES)) {
    throw new RangeError(`--storm-policy: one of ${Object.keys(STORM_POLICIES).join(", ")}`);
  }
  const stormLoginRate = flags.get("storm-login-rate") ?? "";
  if (stormLoginRate !== "" && !/^\d{1,7}$/.test(stormLoginRate)) {
    throw new RangeError("--storm-login-rate: sign-ins per second, 0 (off) to 1000000");
  }
  const duration = flags.has("duration") ? int("duration", 10, 1, 120) * 1000 : undefined;
  return {
    quick,
    runs: int("runs", quick ? 1 : 3, 1, 20),
    workers: int("workers", 1, 1, 8),
    only,
    targets,
    rates,
    warmupMs: quick ? 500 : 1000,
    throughputMs: duration ?? (quick ? 2000 : 8000),
    ceilingMs: duration ?? (quick ? 2000 : 4000),
    openLoopMs: (rate) => duration ?? (quick ? 2000 : rate < 1000 ? 6000 : 5000),
    connections: int("connections", quick ? 3000 : 10_000, 10, 10_000),
    pairs: 100,
    window: 32,
    pin: pinFlag === "auto" && navigator.hardwareConcurrency >= 2,
    out,
    profileRate: flags.has("profile-rate") ? int("profile-rate", 1000, 10, 50_000) : undefined,
    storm: {
      users: int("storm-users", quick ? 2000 : 10_000, 10, PAIR_USERS),
      cases: list("storm-cases", STORM_CASES, STORM_CASES),
      policy: stormPolicy,
      loginRate: stormLoginRate,
      backlog: int("storm-backlog", 2, 0, 100),
    },
  };
}

/** PostgreSQL's data directory (the disk its WAL syncs on), as the server reports it. */
async function dataDirectory(db: BenchDatabase): Promise<string> {
  const [row] = await db.sql<{ dir: string }[]>`select current_setting('data_directory') as dir`;
  return row!.dir;
}

/** The hard stop: well past the budget something is wrong; clean up and fail. */
const WATCHDOG_MS = 20 * 60_000;
/** Generator processes in the ceiling runs: adding one must not raise the measured rate. */
const CEILING_WORKERS = [1, 2];
/** The events scenario: the open loop's rate for the outbox's cost, and the backlog drained. */
const EVENTS_RATE = 1000;
const EVENTS_BACKLOG = 100_000;
/** The hook scenario's open-loop rate. */
const HOOK_RATE = 1000;
/** With pinning: the targets on the first core, generators (and this process) on the rest. */
const TARGET_CPUS = "0";
const generatorCpus = () =>
  navigator.hardwareConcurrency === 2 ? "1" : `1-${navigator.hardwareConcurrency - 1}`;

const log = (message: string) =>
  console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}`);

let db: BenchDatabase | undefined;
let workers: LoadWorker[] = [];
let redisCleanup: (() => Promise<unknown>) | undefined;
let redisCluster: LocalRedisCluster | undefined;
let cleaning: Promise<void> | undefined;
/** What a run has measured so far: written as `results/partial.*` when a later scenario fails. */
const partial: { meta?: Record<string, unknown> } = {};
const results: Record<string, unknown> = {};

function cleanup(): Promise<void> {
  return cleaning ??= (async () => {
    await Promise.all(workers.map((w) => w.stop().catch(() => {})));
    await killAll();
    await db?.drop().catch((err) => log(`could not drop ${db?.name}: ${err}`));
    await redisCleanup?.().catch((err) => log(`could not delete this run's Redis keys: ${err}`));
    await redisCluster?.stop().catch((err) => log(`could not stop the Redis Cluster: ${err}`));
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

/**
 * `ANALYZE messages` before every run: a long-running database has statistics that match its
 * table (autovacuum sees to it within a minute), but the bench's runs are shorter than that, and
 * plans made from the statistics of a table analysed while far smaller can cost several times
 * more per batch (bench/README.md, "The cost of commit-ordered ids").
 */
async function freshStatistics(): Promise<void> {
  if (db !== undefined) await db.sql`analyze messages`;
}

/** What every run result carries besides its figures: the machine's load when it started. */
type Stamped<T> = T & { loadAvgBefore: number };

/** Runs that failed once and were run again (reported in the results' meta). */
const retriedRuns: string[] = [];

/** Runs `fn` `runs` times for each target, rotating which target goes first. */
async function alternate<T extends object>(
  runs: number,
  name: string,
  kinds: TargetKind[],
  fn: (kind: TargetKind) => Promise<T>,
): Promise<Partial<Record<TargetKind, Stamped<T>[]>>> {
  const out: Partial<Record<TargetKind, Stamped<T>[]>> = {};
  for (let i = 0; i < runs; i++) {
    const order = [...kinds.slice(i % kinds.length), ...kinds.slice(0, i % kinds.length)];
    for (const kind of order) {
      await freshStatistics();
      const started = performance.now();
      const loadAvgBefore = loadAverage()[0]!;
      let result: T;
      try {
        result = await fn(kind);
      } catch (err) {
        // One retry: a run that met a transient outage (this machine's disk has
        // stalled every statement for seconds, and the server then rightly
        // answers `unavailable`) is run again, and the report counts it.
        log(`${name} run ${i + 1}/${runs} ${kind} failed, retrying once: ${err}`);
        retriedRuns.push(`${name} run ${i + 1} ${kind}: ${err}`);
        await new Promise((resolve) => setTimeout(resolve, 3000));
        result = await fn(kind);
      }
      (out[kind] ??= []).push({ ...result, loadAvgBefore });
      log(
        `${name} run ${i + 1}/${runs} ${kind}: ${
          ((performance.now() - started) / 1000).toFixed(1)
        } s (load ${loadAvgBefore})`,
      );
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
  }
  return out;
}

/**
 * Two server nodes on a local Redis Cluster (3 primaries, 3 replicas) the bench starts, in the
 * same throughput runs as one Redis: cross-node msgs/s and Redis CPU per message on both.
 * Says what was run, or why not.
 */
async function startOnRedisCluster(
  live: Partial<Record<TargetKind, Target>>,
  startOpts: Parameters<typeof startTarget>[1],
  redisPids: NonNullable<RunContext["redisPids"]>,
): Promise<string> {
  const skip = redisClusterSkip();
  if (skip !== undefined) return `pending: ${skip}`;
  try {
    redisCluster = await LocalRedisCluster.start();
    redisPids["redis-cluster"] = redisCluster.nodes.flatMap((n) => n.process?.pid ?? []);
    live["redis-cluster"] = await startTarget("redis-cluster", {
      ...startOpts,
      redisCluster: { seeds: redisCluster.seeds, keyPrefix: "bench:" },
    });
    return "two server nodes on a Redis Cluster of 3 primaries + 3 replicas (its CPU: all six)";
  } catch (err) {
    return `pending: ${err instanceof Error ? err.message.split("\n")[0] : err}`;
  }
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
  const generator = await buildGenerator(logDir);
  const nodeVersion = opts.targets.includes("node") ? await prepareNodeRelay() : "not run";
  const targetCpus = opts.pin ? TARGET_CPUS : undefined;
  const genCpus = opts.pin ? generatorCpus() : undefined;
  if (genCpus !== undefined && !(await pin(Deno.pid, genCpus))) {
    throw new Error("bench: taskset could not pin the orchestrator (use --pin=off)");
  }
  log(
    `logs in ${logDir}; ${opts.quick ? "quick" : "full"} run, ${opts.runs} runs, ${opts.workers} ` +
      `generator processes; ${
        opts.pin ? `targets on CPU ${targetCpus}, generators on ${genCpus}` : "not pinned"
      }`,
  );
  const adminUrl = Deno.env.get("DATABASE_URL") || DEFAULT_DATABASE_URL;
  db = await createBenchDatabase(adminUrl);
  log(`database ${db.name} created and seeded`);
  const workerCount = Math.max(opts.workers, ...(opts.only.has("ceiling") ? CEILING_WORKERS : []));
  workers = await Promise.all(
    Array.from(
      { length: workerCount },
      (_, i) => LoadWorker.start(i, generator, `${logDir}/loadgen-${i}.log`, genCpus),
    ),
  );
  const redisUrl = Deno.env.get("REDIS_URL") || "redis://127.0.0.1:6379";
  const keyPrefix = `bench:${crypto.randomUUID().slice(0, 8)}:`;
  const needRedis = opts.only.has("cluster") ||
    (opts.only.has("storm") &&
      (opts.storm.cases.includes("failover") || opts.storm.cases.includes("handoff")));
  const pidOfRedis = needRedis ? await redisPid(redisUrl) : undefined;
  if (pidOfRedis !== undefined) redisCleanup = () => deleteKeys(redisUrl, keyPrefix);
  const startOpts = {
    secret,
    databaseUrl: db.url,
    logDir,
    redis: { url: redisUrl, keyPrefix },
    cpus: targetCpus,
  };
  const meta = partial.meta = {
    date: new Date().toISOString(),
    mode: opts.quick ? "quick" : "full",
    runs: opts.runs,
    workers: opts.workers,
    cpus: navigator.hardwareConcurrency,
    deno: Deno.version.deno,
    node: nodeVersion,
    generator: "bench/gen (Go, gorilla/websocket)",
    pinning: opts.pin
      ? `targets on CPU ${targetCpus} (both cluster nodes too), generators and the orchestrator ` +
        `on CPU ${genCpus}; PostgreSQL and Redis are not ours and float over all CPUs`
      : "none",
    openFiles: nofile,
    loadAverageBefore: loadAverage(),
    postgres: await postgresSettings(db),
    diskSync: await probeDiskSync(
      [await dataDirectory(db), logDir],
      opts.quick ? 3000 : 10_000,
    ),
    pgStatStatements: await pgStatStatementsAvailable(db),
    options: { ...opts, only: [...opts.only], openLoopMs: opts.rates.map(opts.openLoopMs) },
    cluster: "not run" as string,
    redisCluster: "not run" as string,
    /** Which code was measured: the working tree changes while people work. */
    source: await sourceFingerprint(),
  };
  const redisPids: RunContext["redisPids"] = {};
  if (pidOfRedis !== undefined) redisPids.cluster = [pidOfRedis];
  const ctx = (n = opts.workers): RunContext => ({
    workers: workers.slice(0, n),
    secret,
    db: db!,
    redisPids,
  });
  const throughputOpts = (durationMs: number, n = opts.workers) => ({
    pairs: opts.pairs,
    window: opts.window,
    warmupMs: opts.warmupMs,
    durationMs,
    workers: n,
  });

  // The long-lived targets, for every scenario but capacity and profile.
  const live: Partial<Record<TargetKind, Target>> = {};
  for (const kind of opts.targets) live[kind] = await startTarget(kind, startOpts);
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
    meta.redisCluster = await startOnRedisCluster(live, startOpts, redisPids);
    log(`redis-cluster: ${meta.redisCluster}`);
  }
  const targets = opts.targets;
  const withCluster: TargetKind[] = [
    ...targets,
    ...(["cluster", "redis-cluster"] as const).filter((kind) => live[kind] !== undefined),
  ];

  if (opts.only.has("ceiling")) {
    // The same saturating load from 1 and from 2 generator processes: if the generator were the
    // bottleneck, the second process would raise the measured rate. Every round runs each target
    // with 1 and with 2 processes (the order rotating), so both counts see the same machine.
    const kinds = targets.filter((k) => k !== "node");
    const ceiling: Record<string, Partial<Record<TargetKind, unknown[]>>> = {};
    const combos = CEILING_WORKERS.flatMap((n) => kinds.map((kind) => ({ n, kind })));
    for (let i = 0; i < opts.runs; i++) {
      const order = [...combos.slice(i % combos.length), ...combos.slice(0, i % combos.length)];
      for (const { n, kind } of order) {
        await freshStatistics();
        const loadAvgBefore = loadAverage()[0]!;
        const run = await throughputRun(ctx(n), live[kind]!, throughputOpts(opts.ceilingMs, n));
        ((ceiling[`${n}`] ??= {})[kind] ??= []).push({ ...run, loadAvgBefore });
        log(`ceiling run ${i + 1}/${opts.runs} ${kind} ×${n}: ${run.deliveredPerS} msgs/s`);
      }
    }
    results.ceiling = ceiling;
  }
  if (opts.only.has("throughput")) {
    results.throughput = await alternate(
      opts.runs,
      "throughput",
      withCluster,
      (k) => throughputRun(ctx(), live[k]!, throughputOpts(opts.throughputMs)),
    );
  }
  if (opts.only.has("openloop")) {
    const byRate: Record<string, unknown> = {};
    for (const rate of opts.rates) {
      byRate[`${rate}`] = await alternate(
        opts.runs,
        `open loop ${rate}/s`,
        targets,
        (k) =>
          latencyRun(ctx(), live[k]!, {
            pairs: opts.pairs,
            ratePerS: rate,
            warmupMs: opts.warmupMs,
            durationMs: opts.openLoopMs(rate),
          }),
      );
    }
    results.openloop = byRate;
  }
  for (const t of Object.values(live)) await stopTarget(t);
  for (const kind of withCluster) {
    const problems = await logProblems(live[kind]!);
    if (problems.count > 0) {
      log(`${kind} logged ${problems.count} warnings/errors, last: ${problems.last.join(" ")}`);
    }
  }

  if (opts.only.has("breakdown") && targets.includes("server")) {
    // The open loop once more per rate against `traced_server.ts`: where a message's time goes.
    const breakdown: Record<string, unknown> = {};
    for (const rate of opts.rates) {
      const trace = `${logDir}/trace-${rate}.txt`;
      await freshStatistics();
      const traced = await startTarget("server", { ...startOpts, trace });
      let latency;
      try {
        latency = await latencyRun(ctx(), traced, {
          pairs: opts.pairs,
          ratePerS: rate,
          warmupMs: opts.warmupMs,
          durationMs: opts.openLoopMs(rate),
        });
      } finally {
        await stopTarget(traced); // the trace is complete once the server has exited
      }
      breakdown[`${rate}`] = { latency, trace: await readTrace(trace, latency.t1, latency.t2) };
      log(`breakdown at ${rate}/s done`);
    }
    results.breakdown = breakdown;
  }

  if (opts.only.has("events") && targets.includes("server")) {
    const receiver = new CountingReceiver();
    try {
      const cost = await outboxCostRuns(ctx(), startOpts, receiver, {
        ratePerS: EVENTS_RATE,
        pairs: opts.pairs,
        // Past the pollers' lag (DB_STATEMENT_TIMEOUT_MS + 1 s): the window sees them at work.
        warmupMs: 8000,
        durationMs: opts.quick ? 4000 : 10_000,
        // Pairs of runs, with and without EVENTS_URL, the order alternating.
        runs: opts.runs,
      }, log);
      const drains = [];
      for (let i = 0; i < (opts.quick ? 1 : opts.runs); i++) {
        const run = await drainRun(ctx(), startOpts, receiver, EVENTS_BACKLOG);
        log(
          `events: backlog of ${EVENTS_BACKLOG} drained in ${run.drainS} s ` +
            `(${run.eventsPerS} events/s, ${run.received} distinct ids)`,
        );
        drains.push(run);
      }
      results.events = { ratePerS: EVENTS_RATE, cost, drains };
    } finally {
      await receiver.close();
    }
  }

  if (opts.only.has("hook") && targets.includes("server")) {
    // The bench's hook runs beside the generators (not on the target's CPU): a studio's hook
    // is another service; its own CPU is read apart.
    const hook = await BenchHook.start(logDir, genCpus);
    try {
      const cost = await hookCostRuns(ctx(), startOpts, hook, {
        ratePerS: HOOK_RATE,
        pairs: opts.pairs,
        warmupMs: opts.quick ? 1000 : 2000,
        durationMs: opts.quick ? 4000 : 10_000,
        // Pairs of runs, with and without MODERATION_URL, the order alternating.
        runs: opts.runs,
      }, log);
      results.hook = { ratePerS: HOOK_RATE, cost };
    } finally {
      await hook.stop();
    }
  }

  if (opts.only.has("capacity")) {
    // A fresh process per run, so "RSS before" is an idle target and not the last run's heap.
    results.capacity = await alternate(opts.runs, "capacity", targets, async (kind) => {
      const fresh = await startTarget(kind, { ...startOpts, inspect: true });
      try {
        return await capacityRun(ctx(), fresh, { connections: opts.connections, concurrency: 64 });
      } finally {
        await stopTarget(fresh);
      }
    });
  }

  if (opts.only.has("profile")) {
    // Throughput: `--cpu-prof` over the whole process (the run dominates it). Connect storm: a
    // profile of the connect phase only, through the inspector, so closing and shutdown stay out.
    const profiles: Record<string, Record<string, ProfiledRun>> = { throughput: {}, connect: {} };
    for (const kind of targets.filter((k) => k !== "node")) {
      await freshStatistics();
      const dir = await Deno.makeTempDir({ dir: logDir, prefix: `cpuprof-${kind}-` });
      const profiled = await startTarget(kind, { ...startOpts, cpuProfDir: dir });
      let run: ThroughputResult | LatencyResult;
      let units: number;
      try {
        if (opts.profileRate === undefined) {
          run = await throughputRun(ctx(), profiled, throughputOpts(opts.ceilingMs));
          units = run.ackedTotal;
        } else {
          const o = { warmupMs: opts.warmupMs, durationMs: opts.openLoopMs(opts.profileRate) };
          run = await latencyRun(ctx(), profiled, {
            pairs: opts.pairs,
            ratePerS: opts.profileRate,
            ...o,
          });
          // Every message of the run, warm-up included: the profile covers the whole process.
          units = Math.round(opts.profileRate * (o.warmupMs + o.durationMs) / 1000);
        }
      } finally {
        await stopTarget(profiled);
      }
      const files = [...Deno.readDirSync(dir)].filter((e) => e.name.endsWith(".cpuprofile"))
        .map((e) => e.name).sort();
      if (files.length === 0) throw new Error(`no .cpuprofile written in ${dir}`);
      const path = `${dir}/${files[0]}`;
      profiles.throughput![kind] = {
        units,
        run,
        summary: await summariseProfileFile(path, 40),
      };
      log(`profile of the ${kind} (throughput): ${path}`);

      const inspected = await startTarget(kind, { ...startOpts, inspect: true });
      let storm: CapacityResult;
      try {
        storm = await capacityRun(ctx(), inspected, {
          // Per-connection figures: 3,000 connects give a steady profile in a third of the time.
          connections: Math.min(opts.connections, 3000),
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

  if (opts.only.has("storm")) {
    // One run per case (each takes a minute or two with 10,000 users): see lib/storm.ts.
    const cases: unknown[] = [];
    const skipped: string[] = [];
    for (const kind of opts.storm.cases) {
      if ((kind === "failover" || kind === "handoff") && pidOfRedis === undefined) {
        skipped.push(`${kind}: no Redis answering at ${redisUrl}`);
        continue;
      }
      await freshStatistics();
      cases.push(
        await stormCase(kind, workers[0]!, db, startOpts, {
          users: opts.storm.users,
          chatPairs: 20,
          chatEveryMs: 500,
          backlog: opts.storm.backlog,
          policy: opts.storm.policy,
          loginRate: opts.storm.loginRate,
          deadlineMs: 90_000,
          cpus: { target: targetCpus, generator: genCpus },
        }, log),
      );
    }
    results.storm = { cases, skipped };
  }

  let plans: QueryPlan[] | undefined;
  if (opts.only.has("explain")) {
    plans = await explainRepositoryQueries(db);
    results.explain = plans;
  }

  const elapsedS = Math.round((absNow() - startedAt) / 100) / 10;
  const full = !opts.quick && opts.only.size === SCENARIOS.length && opts.runs >= 3 &&
    targets.length === SINGLE_TARGETS.length && opts.out === undefined;
  const written = await writeReports({
    meta: { ...meta, elapsedS, loadAverageAfter: loadAverage(), retriedRuns },
    results,
    full,
    name: opts.out ?? (full ? "latest" : "quick"),
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
  // The bench's own one-line messages (a missing tool) need no stack.
  const known = err instanceof Error && err.message.startsWith("bench:");
  log(`failed: ${err instanceof Error ? (known ? err.message : err.stack ?? err.message) : err}`);
  if (partial.meta !== undefined && Object.keys(results).length > 0) {
    const meta = { ...partial.meta, loadAverageAfter: loadAverage(), failed: String(err) };
    await writeReports({ meta, results, full: false, name: "partial" })
      .then((written) => log(`what was measured before the failure: ${written.join(", ")}`))
      .catch(() => {});
  }
} finally {
  await cleanup();
  clearTimeout(watchdog);
}
Deno.exit(code);
