/**
 * @module storm
 * The reconnect storm (`--only=storm`): thousands of SDK-like users (the Go generator's storm
 * users: reconnect with the SDK's backoff and jitter, authenticate, `sync {after_seq}` from the
 * last seq applied, page until `has_more` is false), a few of them chatting throughout; then a
 * node is stopped and started again (`drain`: SIGTERM; `kill`: SIGKILL), or one of two nodes
 * dies and its users move to the other (`failover`: SIGKILL; `handoff`: SIGTERM, the drain). While the node is down the game's backend
 * writes a few messages to every user (plain inserts, as the game does), so every user has
 * something to catch up on.
 *
 * Measured: when each user is authenticated again and caught up (from the moment the node
 * listens again; for `failover` and `handoff` from the signal), the refusals and close codes
 * the users saw, peak CPU and RSS of the server, its Postgres backends and the generator (sampled every
 * 200 ms, CPU over 1 s windows), the database connections the server held, and the messages
 * chatting users sent from the stop on: each acknowledged one must be a row and must reach its
 * recipient (live or through the catch-up).
 */

import type { BenchDatabase } from "./db.ts";
import { absNow } from "./commands.ts";
import { cpuSeconds, rssBytes } from "./proc.ts";
import { latencySummary, percentile } from "./stats.ts";
import { type StartOptions, startTarget, stopTarget, type Target } from "./targets.ts";
import type { LoadWorker } from "./workers.ts";

export const STORM_CASES = ["drain", "kill", "failover", "handoff"] as const;
export type StormCase = typeof STORM_CASES[number];

/** The client's reconnect behaviour, as the generator implements it (`gen/storm.go`). */
export interface StormPolicy {
  baseMs: number;
  capMs: number;
  honorHint: boolean;
  hintJitterMs: number;
  firstMinFraction: number;
}

/** The SDK's reconnect before the storm work (client/connection.ts at v1.2). */
export const POLICY_V1: StormPolicy = {
  baseMs: 500,
  capMs: 30_000,
  honorHint: false,
  hintJitterMs: 0,
  firstMinFraction: 0,
};

/** The SDK's reconnect now (client/connection.ts): see docs/protocol.md, "Reconnecting". */
export const POLICY_V2: StormPolicy = {
  baseMs: 500,
  capMs: 10_000,
  honorHint: true,
  hintJitterMs: 250,
  firstMinFraction: 0,
};

export const STORM_POLICIES: Record<string, StormPolicy> = { v1: POLICY_V1, v2: POLICY_V2 };

export interface StormOptions {
  users: number;
  /** Chatting pairs (users 1..2·pairs), each user one message every `chatEveryMs`. */
  chatPairs: number;
  chatEveryMs: number;
  /** Messages the backend writes to every pair (both ways) while the node is down. */
  backlog: number;
  policy: string;
  /** `LOGIN_RATE_PER_S` for the servers ("" = the server's default). */
  loginRate: string;
  /** Give up waiting for the users after this long from the node's restart. */
  deadlineMs: number;
  cpus: { target?: string | undefined; generator?: string | undefined };
}

interface StormStatus {
  users: number;
  lost: number;
  authed: number;
  caughtUp: number;
  open: number;
}

interface StormReport {
  markAt: number;
  users: { id: number; lostAt: number; authAt: number; backAt: number; attempts: number }[];
  refusals: Record<string, number>;
  closes: Record<string, number>;
  failures: Record<string, number>;
  acks: {
    messageId: number;
    sender: number;
    recipient: number;
    latencyMs: number;
    sentAt: number;
    resent: boolean;
  }[];
  chatSends: number;
  pending: number;
  unreceived: number[];
}

/** Peaks of one process group over the case. */
export interface Peaks {
  /** Highest CPU over any 1 s window, in cores. */
  peakCores: number;
  /** Mean CPU from the stop to the last user back, in cores. */
  meanCores: number;
  /** Highest RSS of any one process of the group, MiB. */
  peakRssMiB: number;
}

export interface StormCaseResult {
  case: StormCase;
  policy: string;
  policyDetail: StormPolicy;
  loginRate: string;
  nodes: number;
  users: number;
  /** Users that lost their connection (every user on the stopped node). */
  affected: number;
  /** Start of the case: the signal (absolute ms). */
  stopAt: number;
  /** The node listens again (for failover: the kill; handoff: the signal). */
  upAt: number;
  downMs: number;
  /** Ms from `upAt` until that share of the affected users was authenticated / caught up. */
  authed: { p50: number; p99: number; p100: number };
  back: { p50: number; p99: number; p100: number };
  notBack: number;
  /** Seconds from `upAt` at which each affected user was back, sorted (the recovery curve). */
  backCurveS: number[];
  authCurveS: number[];
  attempts: { p50: number; p99: number; max: number };
  refusals: Record<string, number>;
  closes: Record<string, number>;
  failures: Record<string, number>;
  server: Peaks;
  postgres: Peaks & { peakConnections: number; poolSize: string };
  generator: Peaks;
  chat: {
    sent: number;
    acked: number;
    ackMs: { p50: number; p99: number; max: number };
    resent: number;
    /** Acknowledged, yet no row with that id. */
    missingRows: number;
    /** Acknowledged, yet never received by the (chatting) recipient. */
    unreceived: number;
    /** Sent and never acknowledged by the end. */
    pending: number;
  };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;

/** A free TCP port on 127.0.0.1 (released at once: the server binds it next). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** CPU and RSS of process groups, sampled every 200 ms until stopped. */
class Sampler {
  readonly #groups: Record<string, () => Promise<number[]> | number[]>;
  readonly #samples: { t: number; cpu: Map<number, number>; rss: Map<number, number> }[] = [];
  readonly #groupPids: Record<string, Set<number>> = {};
  #connections = 0;
  #running = true;
  #loop: Promise<void>;

  constructor(
    groups: Record<string, () => Promise<number[]> | number[]>,
    private readonly countConnections: () => Promise<number>,
  ) {
    this.#groups = groups;
    for (const name of Object.keys(groups)) this.#groupPids[name] = new Set();
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    while (this.#running) {
      const cpu = new Map<number, number>();
      const rss = new Map<number, number>();
      for (const [name, pidsOf] of Object.entries(this.#groups)) {
        const pids = await Promise.resolve(pidsOf()).catch(() => [] as number[]);
        for (const pid of pids) {
          this.#groupPids[name]!.add(pid);
          cpu.set(pid, cpuSeconds(pid));
          rss.set(pid, rssBytes(pid));
        }
      }
      this.#connections = Math.max(
        this.#connections,
        await this.countConnections().catch(() => 0),
      );
      this.#samples.push({ t: absNow(), cpu, rss });
      await sleep(200);
    }
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#loop;
  }

  get peakConnections(): number {
    return this.#connections;
  }

  /** Peaks of a group between `from` and `to` (absolute ms). */
  peaks(name: string, from: number, to: number): Peaks {
    const pids = this.#groupPids[name]!;
    const s = this.#samples.filter((x) => x.t >= from - 200 && x.t <= to + 200);
    const cpuBetween = (a: typeof s[0], b: typeof s[0]) => {
      let sum = 0;
      for (const pid of pids) {
        const x = a.cpu.get(pid), y = b.cpu.get(pid);
        if (x !== undefined && y !== undefined && Number.isFinite(x) && Number.isFinite(y)) {
          sum += y - x;
        }
      }
      return sum;
    };
    let peakCores = 0;
    for (let i = 0, j = 0; i < s.length; i++) {
      while (j < s.length && s[j]!.t - s[i]!.t < 1000) j++;
      if (j >= s.length) break;
      peakCores = Math.max(peakCores, cpuBetween(s[i]!, s[j]!) / ((s[j]!.t - s[i]!.t) / 1000));
    }
    let total = 0;
    for (let i = 1; i < s.length; i++) total += cpuBetween(s[i - 1]!, s[i]!);
    const wall = s.length > 1 ? (s[s.length - 1]!.t - s[0]!.t) / 1000 : NaN;
    let peakRss = 0;
    for (const x of s) {
      for (const pid of pids) {
        const r = x.rss.get(pid);
        if (r !== undefined && Number.isFinite(r)) peakRss = Math.max(peakRss, r);
      }
    }
    return {
      peakCores: round(peakCores),
      meanCores: round(total / wall),
      peakRssMiB: round(peakRss / 2 ** 20, 1),
    };
  }
}

/** Ms at which `share` (0–1) of `n` users were done, from sorted done-times; Infinity if never. */
function shareAt(sorted: number[], n: number, share: number): number {
  const k = Math.ceil(share * n);
  if (k === 0) return 0;
  return k <= sorted.length ? round(sorted[k - 1]!, 0) : Infinity;
}

/**
 * One storm case against fresh server process(es) on fixed ports (a restarted node must be
 * found where its users look for it). Uses generator worker 0.
 */
export async function stormCase(
  kind: StormCase,
  worker: LoadWorker,
  db: BenchDatabase,
  startOpts: StartOptions,
  opts: StormOptions,
  log: (message: string) => void,
): Promise<StormCaseResult> {
  const twoNodes = kind === "failover" || kind === "handoff";
  const nodes = twoNodes ? 2 : 1;
  const ports = Array.from({ length: nodes }, () => freePort());
  const env = (port: number) => ({
    PORT: String(port),
    LOGIN_RATE_PER_S: opts.loginRate,
    ...(nodes === 2 && startOpts.redis
      ? { REDIS_URL: startOpts.redis.url, REDIS_KEY_PREFIX: startOpts.redis.keyPrefix }
      : {}),
  });
  const start = (i: number) =>
    startTarget("server", { ...startOpts, cpus: opts.cpus.target, env: env(ports[i]!) });
  const targets: (Target | undefined)[] = [];
  const policy = STORM_POLICIES[opts.policy];
  if (policy === undefined) throw new RangeError(`unknown storm policy ${opts.policy}`);
  for (let i = 0; i < nodes; i++) targets.push(await start(i));
  const urls = ports.map((p) => `ws://127.0.0.1:${p}/ws`);
  const userIds = Array.from({ length: opts.users }, (_, i) => i + 1);
  // User id on node (id-1) % nodes first (pair partners on different nodes), the others after.
  const userUrls = userIds.map((id) => {
    const first = (id - 1) % nodes;
    return urls.map((_, k) => urls[(first + k) % nodes]!);
  });
  const chatters = userIds.slice(0, 2 * opts.chatPairs);
  const serverPids = () => targets.flatMap((t) => t?.children.map((c) => c.pid) ?? []);
  const pgPids = async () =>
    (await db.sql<{ pid: number }[]>`
      select pid from pg_stat_activity
      where datname = current_database() and application_name = 'geobeasts-chat'`)
      .map((r) => r.pid);
  const sampler = new Sampler(
    { server: serverPids, postgres: pgPids, generator: () => [worker.pid] },
    async () => {
      const [row] = await db.sql<{ n: number }[]>`
        select count(*)::int as n from pg_stat_activity
        where datname = current_database() and application_name = 'geobeasts-chat'`;
      return row?.n ?? 0;
    },
  );
  try {
    const started = await worker.request<
      { users: number; caughtUp: number; failures: Record<string, number> }
    >({
      cmd: "stormStart",
      userUrls,
      userIds,
      chatters,
      chatEveryMs: opts.chatEveryMs,
      pageSize: 100,
      concurrency: 64,
      secret: startOpts.secret,
      timeoutMs: 20_000,
      startTimeoutMs: 150_000,
      policy,
    }, 180_000);
    if (started.caughtUp < opts.users) {
      throw new Error(
        `storm ${kind}: only ${started.caughtUp}/${opts.users} users connected and caught up ` +
          `(${JSON.stringify(started.failures)})`,
      );
    }
    log(`storm ${kind}: ${opts.users} users connected and caught up; chatting for 2 s`);
    await sleep(2000);
    await worker.request({ cmd: "stormMark" }, 10_000);
    const victim = targets[0]!;
    const stopAt = absNow();
    let upAt: number;
    if (twoNodes) {
      targets[0] = undefined;
      if (kind === "handoff") await stopTarget(victim);
      else await killTarget(victim);
      upAt = stopAt;
      await backendWrites(db, opts);
    } else {
      targets[0] = undefined;
      if (kind === "drain") await stopTarget(victim);
      else await killTarget(victim);
      await backendWrites(db, opts);
      targets[0] = await start(0);
      upAt = absNow();
      log(`storm ${kind}: node up again ${Math.round(upAt - stopAt)} ms after the signal`);
    }
    const affectedExpected = twoNodes ? Math.ceil(opts.users / 2) : opts.users;
    const deadline = upAt + opts.deadlineMs;
    let status: StormStatus | undefined;
    while (absNow() < deadline) {
      status = await worker.request<StormStatus>({ cmd: "stormStatus" }, 10_000);
      if (status.lost >= affectedExpected && status.caughtUp >= status.lost) break;
      await sleep(250);
    }
    const endAt = absNow();
    // A little more chatting with everyone back, then quiet, and the chatters' last answers.
    await sleep(1500);
    await worker.request({ cmd: "stormQuiet" }, 10_000);
    await sleep(1500);
    const report = await worker.request<StormReport>({ cmd: "stormReport" }, 60_000);
    await worker.request({ cmd: "stormStop" }, 30_000);
    await sampler.stop();
    const affected = report.users.length;
    const back = report.users.filter((u) => u.backAt > 0).map((u) => u.backAt - upAt)
      .sort((a, b) => a - b);
    const authed = report.users.filter((u) => u.authAt > 0).map((u) => u.authAt - upAt)
      .sort((a, b) => a - b);
    const attempts = report.users.map((u) => u.attempts);
    const acked = report.acks;
    const ids = acked.map((a) => a.messageId);
    const [rows] = await db.sql<{ n: number }[]>`
      select count(*)::int as n from messages where message_id = any(${ids}::bigint[])`;
    const latencies = acked.filter((a) => a.latencyMs >= 0).map((a) => a.latencyMs);
    const ack = latencySummary(latencies);
    const result: StormCaseResult = {
      case: kind,
      policy: opts.policy,
      policyDetail: policy,
      loginRate: opts.loginRate === "" ? "server default" : opts.loginRate,
      nodes,
      users: opts.users,
      affected,
      stopAt,
      upAt,
      downMs: Math.round(upAt - stopAt),
      authed: {
        p50: shareAt(authed, affected, 0.5),
        p99: shareAt(authed, affected, 0.99),
        p100: shareAt(authed, affected, 1),
      },
      back: {
        p50: shareAt(back, affected, 0.5),
        p99: shareAt(back, affected, 0.99),
        p100: shareAt(back, affected, 1),
      },
      notBack: affected - back.length,
      backCurveS: back.map((ms) => round(ms / 1000, 3)),
      authCurveS: authed.map((ms) => round(ms / 1000, 3)),
      attempts: {
        p50: percentile(attempts, 50),
        p99: percentile(attempts, 99),
        max: Math.max(0, ...attempts),
      },
      refusals: report.refusals,
      closes: report.closes,
      failures: report.failures,
      server: sampler.peaks("server", stopAt, endAt),
      postgres: {
        ...sampler.peaks("postgres", stopAt, endAt),
        peakConnections: sampler.peakConnections,
        poolSize: "DB_POOL_SIZE default per node",
      },
      generator: sampler.peaks("generator", stopAt, endAt),
      chat: {
        sent: report.chatSends,
        acked: acked.length,
        ackMs: { p50: round(ack.p50), p99: round(ack.p99), max: round(ack.max) },
        resent: acked.filter((a) => a.resent).length,
        missingRows: ids.length - (rows?.n ?? 0),
        unreceived: report.unreceived.length,
        pending: report.pending,
      },
    };
    log(
      `storm ${kind}: ${affected} users lost their connection; back (ms after up) p50 ` +
        `${result.back.p50} p99 ${result.back.p99} p100 ${result.back.p100}; not back ` +
        `${result.notBack}; refusals ${JSON.stringify(result.refusals)}; chat ${
          JSON.stringify(result.chat)
        }`,
    );
    return result;
  } finally {
    await worker.request({ cmd: "stormStop" }, 30_000).catch(() => {});
    await sampler.stop();
    for (const t of targets) if (t !== undefined) await stopTarget(t);
  }
}

async function killTarget(target: Target): Promise<void> {
  for (const child of target.children) {
    try {
      Deno.kill(child.pid, "SIGKILL");
    } catch { /* gone */ }
    await child.exited;
  }
}

/**
 * The game's backend writing while the node is down: `backlog` messages each way in every pair
 * (plain inserts: the trigger numbers them in both users' sequences).
 */
async function backendWrites(db: BenchDatabase, opts: StormOptions): Promise<void> {
  if (opts.backlog <= 0) return;
  await db.sql`
    insert into messages (sender_user_id, recipient_user_id, message_text)
    select case when k % 2 = 0 then g else g + 1 end, case when k % 2 = 0 then g + 1 else g end,
           'while you were away ' || k
    from generate_series(1, ${opts.users}::bigint, 2) g, generate_series(1, ${2 * opts.backlog}) k`;
}
