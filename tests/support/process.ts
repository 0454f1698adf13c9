/**
 * @module process
 * The real server as a child process (`deno run main.ts`, or a `deno task`),
 * for what only a process shows: its memory, its exit code, its log lines,
 * signals.
 */

import { TEST_SECRET } from "./client.ts";
import { createTestDatabase, type Seed, type TestDatabase } from "./db.ts";
import { within } from "./wait.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const MAIN = `${ROOT}main.ts`;

export interface ServerProcess {
  pid: number;
  publicPort: number;
  internalPort: number;
  /** Every stderr line so far (JSON log lines). */
  lines: string[];
  /** Resident set size in bytes, from /proc. */
  rss(): Promise<number>;
  /** Sends `signal` and waits for the exit code (kills after `timeoutMs`). */
  stop(signal?: Deno.Signal, timeoutMs?: number): Promise<number>;
}

/** Starts the server with `env` (ports 0 unless given) and waits for its `listening` line. */
export async function spawnServer(
  env: Record<string, string>,
  denoFlags: string[] = [],
): Promise<ServerProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-env", "--allow-read", "--allow-sys", ...denoFlags, MAIN],
    env: serverEnv(env),
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const { lines, listening, done: reading } = readJsonLog(child.stderr);
  let exit: Promise<Deno.CommandStatus> | undefined = child.status;
  let entry;
  try {
    entry = await within(20_000, listening, () => `server listening:\n${lines.join("\n")}`);
  } catch (err) {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
    await exit;
    await reading;
    throw err;
  }
  return {
    pid: child.pid,
    publicPort: Number(entry.public_port),
    internalPort: Number(entry.internal_port),
    lines,
    async rss() {
      // `ps` rather than /proc: Deno allows reading /proc only with --allow-all.
      const out = await new Deno.Command("ps", { args: ["-o", "rss=", "-p", String(child.pid)] })
        .output();
      const kb = Number(new TextDecoder().decode(out.stdout).trim());
      if (!Number.isFinite(kb) || kb <= 0) throw new Error(`no RSS for pid ${child.pid}`);
      return kb * 1024;
    },
    async stop(signal: Deno.Signal = "SIGTERM", timeoutMs = 15_000) {
      if (exit === undefined) throw new Error("already stopped");
      try {
        child.kill(signal);
      } catch { /* already exited */ }
      const killer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* already exited */ }
      }, timeoutMs);
      const status = await exit;
      exit = undefined;
      clearTimeout(killer);
      await reading;
      return status.code;
    },
  };
}

/**
 * Runs `body` with a server process on a fresh database (seeded as `options` says once the
 * server has migrated it), signing tokens with `TEST_SECRET`; then kills the server, unless
 * `body` stopped it, and drops the database.
 */
export async function withServerProcess(
  options: Seed & { env?: Record<string, string>; denoFlags?: string[] },
  body: (server: ServerProcess, db: TestDatabase) => Promise<void>,
): Promise<void> {
  const db = await createTestDatabase();
  let server: ServerProcess | undefined;
  try {
    server = await spawnServer({
      PATH: Deno.env.get("PATH") ?? "",
      AUTH_SECRET: TEST_SECRET,
      DATABASE_URL: db.url,
      ...options.env,
    }, options.denoFlags);
    await db.seed(options);
    await body(server, db);
  } finally {
    try {
      await server?.stop("SIGKILL");
    } catch { /* stopped by the test */ }
    await db.drop();
  }
}

/** Runs the server expecting it to refuse to start; returns its exit code and stderr. */
export async function runServerExpectingFailure(
  env: Record<string, string>,
): Promise<{ code: number; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-env", "--allow-read", "--allow-sys", MAIN],
    env: serverEnv(env),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: output.code, stderr: new TextDecoder().decode(output.stderr) };
}

/** The environment a server process gets: loopback, ports 0, one node, then `env`. */
function serverEnv(env: Record<string, string>): Record<string, string> {
  return {
    HOST: "127.0.0.1",
    PORT: "0",
    INTERNAL_PORT: "0",
    NO_COLOR: "1",
    // A single node unless a test asks for Redis: no state shared with other runs.
    REDIS_URL: "",
    ...env,
  };
}

/** The `listening` log line's fields (the bound ports among them). */
export interface ListeningEntry {
  public_port: number;
  internal_port: number;
  [field: string]: unknown;
}

/** The lines of a child's output so far, and a way to wait for some. */
export interface Lines {
  lines: string[];
  /** Resolves with the lines once `done(lines)` holds; rejects at end of stream. */
  until(done: (lines: string[]) => boolean): Promise<string[]>;
  done: Promise<void>;
}

/** Collects `stream` line by line. */
export function collectLines(stream: ReadableStream<Uint8Array>): Lines {
  const lines: string[] = [];
  const waiters: {
    done: (lines: string[]) => boolean;
    resolve: (l: string[]) => void;
    reject: (e: Error) => void;
  }[] = [];
  const check = () => {
    for (const waiter of [...waiters]) {
      if (waiter.done(lines)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(lines);
      }
    }
  };
  const done = (async () => {
    let buffered = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      buffered += chunk;
      let newline;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        lines.push(buffered.slice(0, newline));
        buffered = buffered.slice(newline + 1);
      }
      check();
    }
    if (buffered !== "") lines.push(buffered);
    check();
    for (const waiter of waiters.splice(0)) waiter.reject(new Error("stream ended"));
  })();
  return {
    lines,
    done,
    until(predicate) {
      return new Promise((resolve, reject) => {
        waiters.push({ done: predicate, resolve, reject });
        check();
      });
    },
  };
}

/**
 * Collects a server's JSON log lines from `stream`; `listening` resolves with
 * the `listening` line, or rejects if the stream ends first.
 */
export function readJsonLog(stream: ReadableStream<Uint8Array>): {
  lines: string[];
  listening: Promise<ListeningEntry>;
  done: Promise<void>;
} {
  const { lines, until, done } = collectLines(stream);
  const entry = (line: string): ListeningEntry | undefined => {
    try {
      const parsed = JSON.parse(line);
      return parsed?.event === "listening" ? parsed : undefined;
    } catch {
      return undefined; // not JSON: kept in lines for the failure messages
    }
  };
  const listening = until((all) => all.some((line) => entry(line) !== undefined)).then(
    (all) => entry(all.find((line) => entry(line) !== undefined)!)!,
    () => {
      throw new Error(`exited before listening:\n${lines.join("\n")}`);
    },
  );
  listening.catch(() => {}); // observed by the caller
  return { lines, listening, done };
}

/** A port nothing listens on just now (for a child to bind). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/**
 * The caller's environment without what would point a `deno task` at another server or
 * database, with ports 0 and no colours; then `extra`.
 */
export function taskEnv(extra: Record<string, string>): Record<string, string> {
  const env = Deno.env.toObject();
  for (const name of ["DATABASE_URL", "AUTH_SECRET", "REDIS_URL", "HOST", "PORT", "DEMO_PAGE"]) {
    delete env[name];
  }
  return { ...env, NO_COLOR: "1", INTERNAL_PORT: "0", ...extra };
}

/** Runs `deno ...args` in the repository with only `env`; rejects after `timeoutMs`. */
export async function runDeno(
  args: string[],
  env: Record<string, string>,
  timeoutMs = 60_000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await within(
    timeoutMs,
    new Deno.Command(Deno.execPath(), {
      args,
      cwd: ROOT,
      env,
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output(),
    `deno ${args.join(" ")} finishing`,
  );
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
}

/** A `deno task` running in the background, its output collected line by line. */
export interface Background {
  child: Deno.ChildProcess;
  out: Lines;
  err: Lines;
  status: Promise<Deno.CommandStatus>;
  exited(): boolean;
}

/**
 * `deno task ...` in the repository, in a process group of its own (the task and the
 * `deno run` under it stop together).
 */
export function spawnTask(args: string[], env: Record<string, string>): Background {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", ...args],
    cwd: ROOT,
    env,
    clearEnv: true,
    detached: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let exited = false;
  return {
    child,
    out: collectLines(child.stdout),
    err: collectLines(child.stderr),
    status: child.status.finally(() => {
      exited = true;
    }),
    exited: () => exited,
  };
}

/** Sends `signal` to the task's group unless it has exited (SIGKILL after 20 s); its exit code. */
export async function stopTask(task: Background, signal: Deno.Signal): Promise<number> {
  const kill = (signal: Deno.Signal) => {
    try {
      if (!task.exited()) Deno.kill(-task.child.pid, signal);
    } catch { /* already gone */ }
  };
  kill(signal);
  const killer = setTimeout(() => kill("SIGKILL"), 20_000);
  const { code } = await task.status;
  clearTimeout(killer);
  await Promise.all([task.out.done, task.err.done]);
  return code;
}
