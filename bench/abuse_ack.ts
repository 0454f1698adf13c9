/**
 * @module abuse_ack
 * What two accounts' attacks cost everyone else: an unrelated pair's chat
 * acknowledgement latency with the server quiet, then while an attack of
 * `../shared/repros/two-accounts/` runs, alternating, with the ratio of the two. The server is
 * `main.ts` as a child process with every limit at its default (as the repros start it), on a
 * database of its own holding user 1's 400,000 unread messages (r3) and 500 messages of 1,000
 * control characters each for user 3 (r7).
 *
 * - `r3`, sign-in loops: 30 loops signing user 1 (400k unread) in and out again from one address
 *   as fast as the server answers.
 * - `r7`, large frames: 10 sockets of user 3 each asking for `sync` from the start again as soon
 *   as a page arrives (each page as large as `PAGE_MAX_BYTES` lets it be; a `rate_limited`
 *   answer is honoured by waiting its `retry_after_ms`).
 *
 * The probe: 4 unrelated pairs of friends, each sending a message every 250 ms (open loop: sent
 * when due, whatever the answers do); the latency is send → `message_sent`. Attacks run in a
 * child process of their own (this file with `--attack`), so their parsing does not delay the
 * probe's event loop; they share the machine's CPUs with the server as a real attacker's traffic
 * shares its network. Writes nothing but its own database, dropped at the end, and a log
 * directory under /tmp.
 *
 *   flock /tmp/repro.lock deno run -A bench/abuse_ack.ts [--rounds=2] [--window=15]
 *
 * bench/README.md ("Attacks and an unrelated pair") holds a run of it.
 */

import { parseArgs } from "node:util";
import { TEST_SECRET, testToken } from "../tests/support/client.ts";
import { createTestDatabase, type TestDatabase } from "../tests/support/db.ts";
import {
  type Child,
  cpuSeconds,
  killAll,
  machineCpu,
  spawnDeno,
  waitForLogLine,
} from "./lib/proc.ts";
import { latencySummary } from "./lib/stats.ts";
import { carriedSettingsReset, serverEnv } from "./lib/targets.ts";

const ATTACKS = ["r3", "r7"] as const;
type Attack = typeof ATTACKS[number];

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const SELF = new URL(import.meta.url).pathname;
const BACKLOG = 400_000;
/** Senders of the probe; each sends to the next id, its friend. */
const PROBE_SENDERS = [1001, 1003, 1005, 1007];
const PROBE_INTERVAL_MS = 250;
const SIGN_IN_LOOPS = 30;
const SYNC_SOCKETS = 10;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Opens a WebSocket and signs in with `token`; resolves with the socket and the answer's type. */
async function signIn(url: string, token: string): Promise<{ ws: WebSocket; answer: string }> {
  const ws = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = () => reject(new Error(`could not connect to ${url}`));
  });
  const answer = await new Promise<string>((resolve) => {
    ws.onmessage = (event) => {
      const frame = JSON.parse(String(event.data));
      resolve(frame.type === "error" ? `error ${frame.code}` : frame.type);
    };
    ws.onclose = () => resolve("closed");
    ws.send(JSON.stringify({ type: "authenticate", auth_token: token }));
  });
  return { ws, answer };
}

// ---------------------------------------------------------------- the attacks (child process)

/** 30 loops: sign user 1 in, close at the answer, again. Counts the answers. */
async function signInLoops(url: string, until: number): Promise<Record<string, number>> {
  const token = await testToken(1);
  const answers: Record<string, number> = {};
  await Promise.all(Array.from({ length: SIGN_IN_LOOPS }, async () => {
    while (Date.now() < until) {
      const { ws, answer } = await signIn(url, token).catch(() => ({
        ws: undefined,
        answer: "connect failed",
      }));
      answers[answer] = (answers[answer] ?? 0) + 1;
      ws?.close();
      await sleep(5);
    }
  }));
  return answers;
}

/** 10 sockets of user 3 asking for the first page again at each answer. Counts pages and bytes. */
async function syncLoops(url: string, until: number): Promise<Record<string, number>> {
  const counts: Record<string, number> = { pages: 0, bytes: 0, refused: 0, closed: 0 };
  const ask = { type: "sync", after_message_id: 0, limit: 500 };
  await Promise.all(Array.from({ length: SYNC_SOCKETS }, async () => {
    while (Date.now() < until) {
      const { ws, answer } = await signIn(url, await testToken(3));
      if (answer !== "authenticated") {
        counts[answer] = (counts[answer] ?? 0) + 1;
        ws.close();
        await sleep(1000);
        continue;
      }
      await new Promise<void>((resolve) => {
        const stop = setTimeout(() => ws.close(), until - Date.now());
        ws.onclose = () => {
          clearTimeout(stop);
          counts.closed!++;
          resolve();
        };
        ws.onmessage = (event) => {
          const text = String(event.data);
          if (text.length > 1000) {
            counts.pages!++;
            counts.bytes! += text.length;
            ws.send(JSON.stringify(ask));
            return;
          }
          const frame = JSON.parse(text);
          if (frame.type === "error" && frame.code === "rate_limited") {
            counts.refused!++;
            setTimeout(
              () => ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify(ask)),
              frame.retry_after_ms ?? 100,
            );
          } else if (frame.type === "sync_result") {
            counts.pages!++;
            ws.send(JSON.stringify(ask));
          }
        };
        ws.send(JSON.stringify(ask));
      });
    }
  }));
  return counts;
}

async function runAttack(attack: Attack, url: string, ms: number): Promise<void> {
  const until = Date.now() + ms;
  const counts = attack === "r3" ? await signInLoops(url, until) : await syncLoops(url, until);
  console.log(JSON.stringify({ attack, counts }));
}

// ---------------------------------------------------------------- the probe and the run

interface Window {
  label: string;
  p50: number;
  p99: number;
  max: number;
  acks: number;
  /** Every acknowledgement's latency (ms), for pooling windows. */
  samples: number[];
  /** Answers other than `message_sent`, and messages unanswered 5 s after the window. */
  failures: Record<string, number>;
  /** CPU cores used over the window: the server, its Postgres backends, the attacker, the machine. */
  cpu: { server: number; postgres: number; attacker: number; machine: number };
}

/** What the window's CPU figures are read from. */
interface Watched {
  server: Child;
  attacker?: Child | undefined;
  /** Process ids of this database's Postgres backends. */
  postgres(): Promise<number[]>;
}

async function cpuSnapshot(watched: Watched) {
  const backends = await watched.postgres();
  return {
    at: performance.now(),
    server: cpuSeconds(watched.server.pid),
    attacker: watched.attacker === undefined ? 0 : cpuSeconds(watched.attacker.pid),
    backends: new Map(backends.map((pid) => [pid, cpuSeconds(pid)])),
    machine: machineCpu().busy,
  };
}

async function cpuUsed(watched: Watched, before: Awaited<ReturnType<typeof cpuSnapshot>>) {
  const after = await cpuSnapshot(watched);
  const s = (after.at - before.at) / 1000;
  let postgres = 0;
  for (const [pid, cpu] of after.backends) {
    const was = before.backends.get(pid) ?? 0;
    if (Number.isFinite(cpu)) postgres += cpu - was;
  }
  return {
    server: (after.server - before.server) / s,
    postgres: postgres / s,
    attacker: (after.attacker - before.attacker) / s,
    machine: (after.machine - before.machine) / s,
  };
}

/** The probe pairs chat for `ms`; the acknowledgement latency of every message. */
async function probe(
  senders: WebSocket[],
  label: string,
  ms: number,
  watched: Watched,
): Promise<Window> {
  const cpuBefore = await cpuSnapshot(watched);
  const latencies: number[] = [];
  const failures: Record<string, number> = {};
  const pending = new Map<string, number>();
  for (const ws of senders) {
    ws.onmessage = (event) => {
      const frame = JSON.parse(String(event.data));
      const id = frame.type === "message_sent"
        ? frame.data?.client_message_id
        : frame.client_message_id;
      const sent = pending.get(id);
      if (sent === undefined) return;
      pending.delete(id);
      if (frame.type === "message_sent") latencies.push(performance.now() - sent);
      else {
        const what = `${frame.type} ${frame.code ?? ""}`.trim();
        failures[what] = (failures[what] ?? 0) + 1;
      }
    };
  }
  const start = performance.now();
  for (let k = 0; performance.now() - start < ms; k++) {
    const due = start + k * PROBE_INTERVAL_MS;
    if (due > performance.now()) await sleep(due - performance.now());
    senders.forEach((ws, i) => {
      const id = `${label}-${k}-${i}`;
      pending.set(id, performance.now());
      ws.send(JSON.stringify({
        type: "chat_message",
        recipient_user_id: PROBE_SENDERS[i]! + 1,
        message_text: "probe",
        client_message_id: id,
      }));
    });
  }
  const cpu = await cpuUsed(watched, cpuBefore);
  for (let waited = 0; pending.size > 0 && waited < 5000; waited += 50) await sleep(50);
  if (pending.size > 0) failures.unanswered = pending.size;
  const summary = latencySummary(latencies);
  return {
    label,
    p50: summary.p50,
    p99: summary.p99,
    max: summary.max,
    acks: summary.count,
    samples: latencies,
    failures,
    cpu,
  };
}

async function seed(db: TestDatabase): Promise<void> {
  await db.sql`insert into users (user_id) select g from generate_series(1, 5000) g`;
  await db.sql`insert into friendships (requester_user_id, recipient_user_id, status)
               select 2 * g - 1, 2 * g, 'approved' from generate_series(1, 2500) g`;
  // Inserted as the game backend would in bulk: one transaction holding the message-id lock.
  await db.sql.begin(async (tx) => {
    await tx`select set_config('chat.message_ids_locked', 'on', true)`;
    await tx`insert into messages (sender_user_id, recipient_user_id, message_text)
             select 2, 1, 'backlog ' || g from generate_series(1, ${BACKLOG}) g`;
    await tx`insert into messages (sender_user_id, recipient_user_id, message_text,
                                   client_message_id)
             select 4, 3, repeat(chr(1), 1000), 'c' || g || repeat(chr(1), 60)
             from generate_series(1, 500) g`;
  });
  await db.sql`vacuum analyze messages`;
}

const f1 = (n: number) => n.toFixed(1);
const f2 = (n: number) => n.toFixed(2);

const HEADER = [
  "| attack | quiet p50 / p99 (ms) | under attack p50 / p99 (ms) | ratio p50 / p99 | acks quiet / attack | cores quiet: server, Postgres, machine | cores under attack: server, Postgres, attacker, machine |",
  "|---|---|---|---|---|---|---|",
];

function row(attack: string, quiet: Window, loud: Window): string {
  const failures = Object.keys(loud.failures).length === 0
    ? ""
    : ` (failures under attack: ${JSON.stringify(loud.failures)})`;
  const q = quiet.cpu, l = loud.cpu;
  return [
    attack,
    `${f1(quiet.p50)} / ${f1(quiet.p99)}`,
    `${f1(loud.p50)} / ${f1(loud.p99)}`,
    `${f2(loud.p50 / quiet.p50)} × / ${f2(loud.p99 / quiet.p99)} ×`,
    `${quiet.acks} / ${loud.acks}${failures}`,
    `${f2(q.server)}, ${f2(q.postgres)}, ${f2(q.machine)}`,
    `${f2(l.server)}, ${f2(l.postgres)}, ${f2(l.attacker)}, ${f2(l.machine)}`,
  ].join(" | ").replace(/^/, "| ") + " |";
}

/** Windows taken together: percentiles over all their samples, CPU averaged. */
function pool(label: string, windows: Window[]): Window {
  const samples = windows.flatMap((w) => w.samples);
  const summary = latencySummary(samples);
  const mean = (pick: (w: Window) => number) =>
    windows.reduce((a, w) => a + pick(w), 0) / windows.length;
  return {
    label,
    p50: summary.p50,
    p99: summary.p99,
    max: summary.max,
    acks: summary.count,
    samples,
    failures: Object.assign({}, ...windows.map((w) => w.failures)),
    cpu: {
      server: mean((w) => w.cpu.server),
      postgres: mean((w) => w.cpu.postgres),
      attacker: mean((w) => w.cpu.attacker),
      machine: mean((w) => w.cpu.machine),
    },
  };
}

async function main(rounds: number, windowMs: number): Promise<void> {
  const logDir = await Deno.makeTempDir({ prefix: "abuse_ack_" });
  const db = database = await createTestDatabase();
  try {
    // Every limit at its default, whatever the environment carries, as the repros run it.
    const reset = Object.fromEntries(Object.keys(serverEnv("", "")).map((k) => [k, ""]));
    const server = spawnDeno("server", {
      args: ["run", "--allow-net", "--allow-env", "--allow-read", "--allow-sys", MAIN],
      env: {
        ...reset,
        ...carriedSettingsReset(),
        LOG_LEVEL: "info",
        AUTH_SECRET: TEST_SECRET,
        HOST: "127.0.0.1",
        PORT: "0",
        INTERNAL_PORT: "0",
        DATABASE_URL: db.url,
      },
      logPath: `${logDir}/server.log`,
    });
    const listening = await waitForLogLine(server, /"event":"listening"/, 60_000);
    const url = `ws://127.0.0.1:${Number(listening.public_port)}/ws`;
    const seeding = performance.now();
    await seed(db);
    console.log(`seeded in ${f1((performance.now() - seeding) / 1000)} s; logs in ${logDir}`);
    const watched: Watched = {
      server,
      async postgres() {
        const rows = await db.sql<{ pid: number }[]>`
          select pid from pg_stat_activity
          where datname = current_database() and pid <> pg_backend_pid()`;
        return rows.map((r) => r.pid);
      },
    };

    const senders: WebSocket[] = [];
    for (const id of PROBE_SENDERS) {
      const { ws, answer } = await signIn(url, await testToken(id));
      if (answer !== "authenticated") throw new Error(`probe user ${id}: ${answer}`);
      senders.push(ws);
    }
    await probe(senders, "warmup", 3000, watched);

    console.log(HEADER.join("\n"));
    const results: { attack: Attack; round: number; quiet: Window; loud: Window }[] = [];
    for (let round = 1; round <= rounds; round++) {
      for (const attack of ATTACKS) {
        const quiet = await probe(senders, `quiet-${attack}-${round}`, windowMs, watched);
        const logPath = `${logDir}/${attack}-${round}.log`;
        const attacker = spawnDeno(attack, {
          args: [
            "run",
            "-A",
            SELF,
            `--attack=${attack}`,
            `--url=${url}`,
            `--ms=${windowMs + 1500}`,
          ],
          env: {},
          logPath,
        });
        await sleep(1000); // the attack under way before the window opens
        const loud = await probe(senders, `${attack}-${round}`, windowMs, { ...watched, attacker });
        await attacker.exited;
        const counts = (await Deno.readTextFile(logPath)).trim().split("\n").at(-1) ?? "";
        results.push({ attack, round, quiet, loud });
        console.log(row(`${attack} (round ${round})`, quiet, loud));
        console.log(`    attacker's answers: ${counts}`);
        await sleep(2000);
      }
    }
    senders.forEach((ws) => ws.close());

    console.log("");
    console.log(
      `Ack latency of ${PROBE_SENDERS.length} unrelated pairs, each sending every ` +
        `${PROBE_INTERVAL_MS} ms; ${
          windowMs / 1000
        } s windows, a quiet one before each attack's, ` +
        `${rounds} round(s) pooled:`,
    );
    console.log("");
    console.log(HEADER.join("\n"));
    for (const attack of ATTACKS) {
      const of = results.filter((r) => r.attack === attack);
      console.log(row(
        attack,
        pool("quiet", of.map((r) => r.quiet)),
        pool(attack, of.map((r) => r.loud)),
      ));
    }
  } finally {
    await cleanup();
  }
}

let database: TestDatabase | undefined;

/** Kills the server and any attacker by PID, then drops the database. */
async function cleanup(): Promise<void> {
  await killAll();
  const db = database;
  database = undefined;
  await db?.drop();
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    attack: { type: "string" },
    url: { type: "string" },
    ms: { type: "string" },
    rounds: { type: "string", default: "2" },
    window: { type: "string", default: "15" },
  },
});
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => {
    cleanup().finally(() => Deno.exit(130));
  });
}
if (values.attack !== undefined) {
  if (!(ATTACKS as readonly string[]).includes(values.attack)) {
    throw new RangeError(`--attack must be one of ${ATTACKS.join(", ")}`);
  }
  await runAttack(values.attack as Attack, values.url!, Number(values.ms));
  Deno.exit(0);
}
const rounds = Number(values.rounds);
const windowS = Number(values.window);
if (!Number.isInteger(rounds) || rounds < 1 || !(windowS >= 1)) {
  throw new RangeError("--rounds must be a positive integer and --window at least 1 (seconds)");
}
await main(rounds, windowS * 1000);
Deno.exit(0);
