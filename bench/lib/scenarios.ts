/**
 * @module scenarios
 * One run of each scenario against one target. The orchestrator repeats
 * them, alternating the real server and the relay, and summarises.
 */

import { absNow, type ConnectReply, type LatencyReply, type ThroughputReply } from "./commands.ts";
import { backendPids, type BenchDatabase, dbCounters } from "./db.ts";
import { Inspector } from "./inspector.ts";
import { scrape, type ServerView, serverView } from "./scrape.ts";
import { cpuSeconds, machineCpu, rssBytes } from "./proc.ts";
import { latencySummary, percentile } from "./stats.ts";
import type { Target, TargetKind } from "./targets.ts";
import type { LoadWorker } from "./workers.ts";

export interface RunContext {
  workers: LoadWorker[];
  secret: string;
  db: BenchDatabase;
  /**
   * The Redis processes behind each target that has any, for their CPU time: one Redis (not
   * ours: only read) for `cluster`, every node of the bench's Redis Cluster for `redis-cluster`.
   */
  redisPids?: Partial<Record<TargetKind, number[]>> | undefined;
  /**
   * A process the target calls that the bench runs (the `hook` scenario's moderation hook): its
   * CPU is read over the same window as the target's (`sidecarCores`, `sidecarUsPerMsg`).
   */
  sidecarPids?: number[] | undefined;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, ms)));
const sleepUntil = (t: number) => sleep(t - absNow());
const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;

function mergeCounts(records: Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of records) for (const [k, v] of Object.entries(r)) out[k] = (out[k] ?? 0) + v;
  return out;
}

/** Connects `idsPerWorker[i]` in worker i; throws unless every one authenticated. */
export async function connectAll(
  ctx: RunContext,
  target: Target,
  idsPerWorker: number[][],
  concurrency = 50,
  requireAll = true,
): Promise<ConnectReply[]> {
  const replies = await Promise.all(
    idsPerWorker.map((userIds, i) =>
      ctx.workers[i]!.request<ConnectReply>({
        cmd: "connect",
        urls: target.urls,
        userIds,
        concurrency,
        secret: ctx.secret,
        timeoutMs: 20_000,
      }, 120_000)
    ),
  );
  const failed = replies.reduce((sum, r) => sum + r.failed, 0);
  if (requireAll && failed > 0) {
    await closeAll(ctx);
    const why = JSON.stringify(mergeCounts(replies.map((r) => r.failures)));
    throw new Error(`${target.kind}: ${failed} connections failed: ${why}`);
  }
  return replies;
}

export async function closeAll(ctx: RunContext): Promise<void> {
  await Promise.all(
    ctx.workers.map((w) => w.request({ cmd: "closeAll", timeoutMs: 10_000 }, 20_000)),
  );
}

/** Pair users `1..2·pairs`, each pair in one worker, pairs dealt round-robin. */
export function pairsPerWorker(pairs: number, workers: number): number[][] {
  const out: number[][] = Array.from({ length: workers }, () => []);
  for (let p = 0; p < pairs; p++) out[p % workers]!.push(2 * p + 1, 2 * p + 2);
  return out;
}

interface CpuSnapshot {
  t: number;
  target: number;
  workers: number;
  /** CPU seconds per Postgres backend (a backend that ends mid-window drops out of the delta). */
  postgres: Map<number, number>;
  redis: number;
  sidecar: number;
  machineBusy: number;
}

function snapshot(
  target: Target,
  workerPids: number[],
  pgPids: number[],
  redisPids: number[] = [],
  sidecarPids: number[] = [],
): CpuSnapshot {
  const sum = (pids: number[]) =>
    pids.map(cpuSeconds).filter(Number.isFinite).reduce((a, b) => a + b, 0);
  return {
    t: absNow(),
    target: sum(target.children.map((c) => c.pid)),
    workers: sum(workerPids),
    postgres: new Map(pgPids.map((pid) => [pid, cpuSeconds(pid)])),
    redis: sum(redisPids),
    sidecar: sum(sidecarPids),
    machineBusy: machineCpu().busy,
  };
}

/** CPU used between two snapshots, in cores (CPU-seconds per second). */
export interface CpuUse {
  targetCpuS: number;
  targetCores: number;
  generatorCores: number;
  postgresCores: number;
  /** Redis (every process of a Redis Cluster), in cluster runs only. */
  redisCores: number;
  /** The bench's own process the target calls (`RunContext.sidecarPids`); 0 when none. */
  sidecarCores: number;
  machineCores: number;
  /** Busy cores not explained by target, generator and Postgres: other work on the machine. */
  otherCores: number;
}

/** CPU-seconds of the Postgres backends present in both snapshots. */
function postgresCpuS(a: CpuSnapshot, b: CpuSnapshot): number {
  let cpu = 0;
  for (const [pid, before] of a.postgres) {
    const after = b.postgres.get(pid);
    if (after !== undefined && Number.isFinite(before) && Number.isFinite(after)) {
      cpu += after - before;
    }
  }
  return cpu;
}

function cpuUse(a: CpuSnapshot, b: CpuSnapshot): CpuUse {
  const wall = (b.t - a.t) / 1000;
  const targetCores = (b.target - a.target) / wall;
  const generatorCores = (b.workers - a.workers) / wall;
  const postgresCores = postgresCpuS(a, b) / wall;
  const redisCores = (b.redis - a.redis) / wall;
  const sidecarCores = (b.sidecar - a.sidecar) / wall;
  const machineCores = (b.machineBusy - a.machineBusy) / wall;
  return {
    targetCpuS: round(b.target - a.target),
    targetCores: round(targetCores),
    generatorCores: round(generatorCores),
    postgresCores: round(postgresCores),
    redisCores: round(redisCores),
    sidecarCores: round(sidecarCores),
    machineCores: round(machineCores),
    otherCores: round(
      Math.max(
        0,
        machineCores - targetCores - generatorCores - postgresCores - redisCores - sidecarCores,
      ),
    ),
  };
}

/** Samples CPU at t1 and t2 of a run (Postgres backends of the server are found at t1). */
async function measureWindow(
  ctx: RunContext,
  target: Target,
  workers: LoadWorker[],
  t1: number,
  t2: number,
): Promise<{ cpu: CpuUse; commits: number; rows: number; server: ServerView | undefined }> {
  await sleepUntil(t1);
  const metricsBefore = target.internalPorts.length > 0
    ? await scrape(target.internalPorts)
    : undefined;
  const usesDb = target.kind !== "relay" && target.kind !== "node";
  const pgPids = usesDb ? await backendPids(ctx.db) : [];
  const before = usesDb ? await dbCounters(ctx.db) : undefined;
  const redisPids = ctx.redisPids?.[target.kind];
  const a = snapshot(target, workers.map((w) => w.pid), pgPids, redisPids, ctx.sidecarPids);
  await sleepUntil(t2);
  const b = snapshot(target, workers.map((w) => w.pid), pgPids, redisPids, ctx.sidecarPids);
  const after = usesDb ? await dbCounters(ctx.db) : undefined;
  const metricsAfter = metricsBefore ? await scrape(target.internalPorts) : undefined;
  return {
    server: metricsBefore && metricsAfter ? serverView(metricsBefore, metricsAfter) : undefined,
    cpu: cpuUse(a, b),
    commits: before && after ? after.commits - before.commits : NaN,
    rows: before && after ? after.messagesInserted - before.messagesInserted : NaN,
  };
}

/** CPU microseconds per message of the target, the generator and Postgres over a window. */
function perMessage(cpu: CpuUse, seconds: number, messages: number) {
  const us = (cores: number) => round((1e6 * cores * seconds) / messages, 1);
  return {
    targetUsPerMsg: us(cpu.targetCores),
    generatorUsPerMsg: us(cpu.generatorCores),
    postgresUsPerMsg: us(cpu.postgresCores),
    redisUsPerMsg: us(cpu.redisCores),
    sidecarUsPerMsg: us(cpu.sidecarCores),
  };
}

export interface ThroughputResult extends CpuUse {
  /** Messages acknowledged over the whole run (warm-up included), for per-message profiles. */
  ackedTotal: number;
  /** Length of the measured window. */
  windowS: number;
  deliveredPerS: number;
  ackedPerS: number;
  msgsPerTargetCpuS: number;
  /** CPU microseconds per delivered message: the target, the generator, Postgres' backends. */
  targetUsPerMsg: number;
  generatorUsPerMsg: number;
  postgresUsPerMsg: number;
  /** Redis CPU microseconds per delivered message (cluster runs; 0 otherwise). */
  redisUsPerMsg: number;
  dbCommitsPerS: number;
  rowsPerCommit: number;
  errors: Record<string, number>;
  unackedAtEnd: number;
  /** The server's own histograms over the measured window (`/metrics`). */
  server: ServerView | undefined;
}

export interface ThroughputOptions {
  pairs: number;
  window: number;
  warmupMs: number;
  durationMs: number;
  /** How many of the context's workers to use. */
  workers: number;
}

export async function throughputRun(
  ctx: RunContext,
  target: Target,
  o: ThroughputOptions,
): Promise<ThroughputResult> {
  const workers = ctx.workers.slice(0, o.workers);
  const sub = { ...ctx, workers };
  await connectAll(sub, target, pairsPerWorker(o.pairs, workers.length));
  try {
    const t0 = absNow() + 300;
    const t1 = t0 + o.warmupMs;
    const t2 = t1 + o.durationMs;
    const replies = Promise.all(workers.map((w) =>
      w.request<ThroughputReply>(
        { cmd: "throughput", window: o.window, t0, t1, t2, drainMs: 3000 },
        t2 - absNow() + 30_000,
      )
    ));
    // Awaited below; until then a failed worker must not be an unhandled rejection.
    replies.catch(() => {});
    const window = await measureWindow(ctx, target, workers, t1, t2);
    const r = await replies;
    const seconds = o.durationMs / 1000;
    const delivered = r.reduce((s, x) => s + x.delivered, 0);
    return {
      ackedTotal: r.reduce((s, x) => s + x.acked, 0),
      windowS: seconds,
      deliveredPerS: round(delivered / seconds, 0),
      ackedPerS: round(r.reduce((s, x) => s + x.acked, 0) / (seconds + o.warmupMs / 1000), 0),
      msgsPerTargetCpuS: round(delivered / window.cpu.targetCpuS, 0),
      ...perMessage(window.cpu, seconds, delivered),
      ...window.cpu,
      dbCommitsPerS: round(window.commits / seconds, 0),
      rowsPerCommit: round(window.rows / window.commits, 1),
      errors: mergeCounts(r.map((x) => x.errors)),
      unackedAtEnd: r.reduce((s, x) => s + x.unackedAtEnd, 0),
      server: window.server,
    };
  } finally {
    await closeAll(sub);
  }
}

export interface LatencyResult {
  offeredPerS: number;
  /** The measured window: messages scheduled in [t1, t2). */
  t1: number;
  t2: number;
  sentPerS: number;
  recipient: ReturnType<typeof latencySummary>;
  ack: ReturnType<typeof latencySummary>;
  recipientFromSchedule: ReturnType<typeof latencySummary>;
  generatorLagP99: number;
  undelivered: number;
  unacked: number;
  errors: Record<string, number>;
  cpu: CpuUse;
  /** CPU microseconds per message delivered in the window. */
  targetUsPerMsg: number;
  generatorUsPerMsg: number;
  postgresUsPerMsg: number;
  /** The bench's process the target calls (`RunContext.sidecarPids`), per message; 0 when none. */
  sidecarUsPerMsg: number;
  server: ServerView | undefined;
}

export async function latencyRun(
  ctx: RunContext,
  target: Target,
  o: { pairs: number; ratePerS: number; warmupMs: number; durationMs: number },
): Promise<LatencyResult> {
  await connectAll(ctx, target, pairsPerWorker(o.pairs, ctx.workers.length));
  try {
    const t0 = absNow() + 300;
    const t1 = t0 + o.warmupMs;
    const t2 = t1 + o.durationMs;
    const share = o.ratePerS / ctx.workers.length;
    const replies = Promise.all(ctx.workers.map((w) =>
      w.request<LatencyReply>(
        { cmd: "latency", ratePerS: share, t0, t1, t2, drainMs: 5000 },
        t2 - absNow() + 30_000,
      )
    ));
    // Awaited below; until then a failed worker must not be an unhandled rejection.
    replies.catch(() => {});
    const window = await measureWindow(ctx, target, ctx.workers, t1, t2);
    const r = await replies;
    const all = (pick: (x: LatencyReply) => number[]) => r.flatMap(pick);
    return {
      offeredPerS: o.ratePerS,
      t1,
      t2,
      sentPerS: round(r.reduce((s, x) => s + x.sent, 0) / ((o.warmupMs + o.durationMs) / 1000), 0),
      recipient: latencySummary(all((x) => x.recipient)),
      ack: latencySummary(all((x) => x.ack)),
      recipientFromSchedule: latencySummary(all((x) => x.recipientFromSchedule)),
      generatorLagP99: percentile(all((x) => x.lag), 99),
      undelivered: r.reduce((s, x) => s + x.undelivered, 0),
      unacked: r.reduce((s, x) => s + x.unacked, 0),
      errors: mergeCounts(r.map((x) => x.errors)),
      cpu: window.cpu,
      ...perMessage(window.cpu, o.durationMs / 1000, r.reduce((s, x) => s + x.recipient.length, 0)),
      server: window.server,
    };
  } finally {
    await closeAll(ctx);
  }
}

export interface CapacityResult {
  connections: number;
  failed: number;
  failures: Record<string, number>;
  connectPerS: number;
  connectLatencyP50: number;
  connectLatencyP99: number;
  rssBeforeMiB: number;
  rssAfterMiB: number;
  /** (RSS with everyone connected − RSS idle) / connections; no GC forced before the second reading. */
  bytesPerConnection: number;
  /** The same after a forced full GC (inspector), i.e. without garbage awaiting collection. */
  bytesPerConnectionAfterGc: number;
  /** Growth of the used JS heap after a forced GC, per connection (the rest of the RSS is native). */
  heapBytesPerConnection: number;
  targetCpuSPerThousand: number;
  /** The server's Postgres backends' CPU-seconds per 1,000 connects (0 for the relays). */
  postgresCpuSPerThousand: number;
  /** CPU while connecting, in cores. */
  cpu: CpuUse;
  /** The target's CPU profile of the connect phase, when asked for (DevTools format). */
  profile?: unknown;
}

/** RSS as the median of three readings 300 ms apart (a GC in progress skews one). */
async function settledRss(pid: number): Promise<number> {
  const readings: number[] = [];
  for (let i = 0; i < 3; i++) {
    if (i > 0) await sleep(300);
    readings.push(rssBytes(pid));
  }
  return readings.sort((a, b) => a - b)[1]!;
}

/**
 * Connects `connections` idle authenticated users to a fresh target; its
 * RSS growth per connection and the connect+authenticate rate. Idle RSS is
 * read after a forced GC; with everyone connected it is read twice, before
 * and after a forced GC.
 */
export async function capacityRun(
  ctx: RunContext,
  target: Target,
  o: { connections: number; concurrency: number; profile?: boolean },
): Promise<CapacityResult> {
  const n = ctx.workers.length;
  // Warm-up: the first connections pay for lazily compiled code, not for holding a connection.
  await connectAll(ctx, target, Array.from({ length: n }, (_, i) => [2 * i + 1, 2 * i + 2]), 4);
  await closeAll(ctx);
  await sleep(1000);
  const inspector = target.inspectorUrl ? await Inspector.open(target.inspectorUrl) : undefined;
  const pid = target.children[0]!.pid;
  try {
    const heapBefore = (await inspector?.gcAndHeapUsed()) ?? NaN;
    const before = await settledRss(pid);
    const per = Math.ceil(o.connections / n);
    const ids = Array.from(
      { length: n },
      (_, i) =>
        Array.from(
          { length: Math.max(0, Math.min(per, o.connections - i * per)) },
          (_, k) => i * per + k + 1,
        ),
    );
    if (o.profile && inspector) {
      await inspector.call("Profiler.enable");
      await inspector.call("Profiler.setSamplingInterval", { interval: 1000 });
      await inspector.call("Profiler.start");
    }
    // The server's Postgres backends, counted as in the other scenarios; the pool
    // opens more while the logins arrive, and those count from zero.
    const usesDb = target.kind === "server";
    const pgBefore = usesDb ? await backendPids(ctx.db) : [];
    const a = snapshot(target, ctx.workers.map((w) => w.pid), pgBefore);
    const r = await connectAll(ctx, target, ids, o.concurrency, false);
    const pgAfter = usesDb ? await backendPids(ctx.db) : [];
    for (const pid of pgAfter) if (!a.postgres.has(pid)) a.postgres.set(pid, 0);
    const b = snapshot(target, ctx.workers.map((w) => w.pid), [...a.postgres.keys()]);
    const profile = o.profile && inspector
      ? (await inspector.call("Profiler.stop")).profile
      : undefined;
    try {
      const connected = r.reduce((s, x) => s + x.connected, 0);
      const elapsed = (Math.max(...r.map((x) =>
        x.lastDone
      )) - Math.min(...r.map((x) => x.firstStart))) / 1000;
      await sleep(1500);
      const after = await settledRss(pid);
      const heapAfter = (await inspector?.gcAndHeapUsed()) ?? NaN;
      const afterGc = inspector ? await settledRss(pid) : NaN;
      const latencies = r.flatMap((x) => x.latencies);
      return {
        connections: connected,
        failed: r.reduce((s, x) => s + x.failed, 0),
        failures: mergeCounts(r.map((x) => x.failures)),
        connectPerS: round(connected / elapsed, 0),
        connectLatencyP50: percentile(latencies, 50),
        connectLatencyP99: percentile(latencies, 99),
        rssBeforeMiB: round(before / 2 ** 20, 1),
        rssAfterMiB: round(after / 2 ** 20, 1),
        bytesPerConnection: round((after - before) / connected, 0),
        bytesPerConnectionAfterGc: round((afterGc - before) / connected, 0),
        heapBytesPerConnection: round((heapAfter - heapBefore) / connected, 0),
        targetCpuSPerThousand: round((1000 * (b.target - a.target)) / connected, 3),
        postgresCpuSPerThousand: round((1000 * postgresCpuS(a, b)) / connected, 3),
        cpu: cpuUse(a, b),
        profile,
      };
    } finally {
      await closeAll(ctx);
    }
  } finally {
    inspector?.close();
  }
}

/** One message's trace from `traced_server.ts`: send→stored and stored→committed (ms). */
export interface TraceSummary {
  messages: number;
  /** Generator send → handed to storage: loopback, receive, parse, every check. */
  sentToStored: ReturnType<typeof latencySummary>;
  /** Handed to storage → committed and answered: queue wait, insert, commit, earlier batches. */
  storedToCommitted: ReturnType<typeof latencySummary>;
}

/** Reads a trace file, keeping the messages scheduled in [t1, t2). */
export async function readTrace(path: string, t1: number, t2: number): Promise<TraceSummary> {
  const a: number[] = [];
  const b: number[] = [];
  for (const line of (await Deno.readTextFile(path)).split("\n")) {
    const [s, x, y] = line.split(" ").map(Number);
    if (s === undefined || !(s >= t1 && s < t2) || x === undefined || y === undefined) continue;
    a.push(x);
    b.push(y);
  }
  return {
    messages: a.length,
    sentToStored: latencySummary(a),
    storedToCommitted: latencySummary(b),
  };
}
