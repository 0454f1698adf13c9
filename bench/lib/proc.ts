/**
 * @module proc
 * Child processes of the benchmark and what `/proc` says about them.
 *
 * Every child is registered when spawned and killed by its PID by
 * `killAll()` (SIGTERM, then SIGKILL after a grace period), which the
 * orchestrator calls on every exit path. Children run through `sh` only to
 * raise the open-files limit to the hard limit and redirect output to a log
 * file; `exec` keeps the PID the child's own.
 */

export interface Child {
  readonly name: string;
  readonly pid: number;
  readonly logPath: string;
  readonly process: Deno.ChildProcess;
  /** Resolves with the exit code. */
  readonly exited: Promise<number>;
}

const children = new Set<Child>();
/** Set by `killAll`: nothing new is started while the benchmark is being torn down. */
let closing = false;

export interface SpawnOptions {
  args: string[];
  env: Record<string, string>;
  logPath: string;
  /** Keep stdin/stdout as pipes (the load generators' control channel). */
  control?: boolean;
  /** CPU list for `taskset -c` (e.g. "0"); unset: the process may run on any CPU. */
  cpus?: string | undefined;
}

/** Spawns `deno <args>` (see `spawnProcess`). */
export function spawnDeno(name: string, options: SpawnOptions): Child {
  return spawnProcess(name, Deno.execPath(), options);
}

/**
 * Spawns `program <args>` with the open-files limit raised and, when asked,
 * pinned to `cpus` (`taskset` execs the program, so the PID stays the
 * program's own); registers it for `killAll`.
 */
export function spawnProcess(name: string, program: string, options: SpawnOptions): Child {
  if (closing) throw new Error(`not starting ${name}: the benchmark is shutting down`);
  const redirect = options.control ? '2>>"$BENCH_LOG"' : '>>"$BENCH_LOG" 2>&1';
  const pin = options.cpus === undefined ? "" : 'taskset -c "$BENCH_CPUS" ';
  const script = `ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec ${pin}"$0" "$@" ${redirect}`;
  const process = new Deno.Command("sh", {
    args: ["-c", script, program, ...options.args],
    env: {
      NO_COLOR: "1",
      ...options.env,
      BENCH_LOG: options.logPath,
      ...(options.cpus === undefined ? {} : { BENCH_CPUS: options.cpus }),
    },
    stdin: options.control ? "piped" : "null",
    stdout: options.control ? "piped" : "null",
    stderr: "null",
  }).spawn();
  const exited = process.status.then((status) => status.code);
  const child: Child = { name, pid: process.pid, logPath: options.logPath, process, exited };
  children.add(child);
  exited.finally(() => children.delete(child));
  return child;
}

/** Sends `signal`, waits up to `graceMs`, then SIGKILLs; resolves with the exit code. */
export async function stopChild(child: Child, graceMs = 10_000, signal: Deno.Signal = "SIGTERM") {
  try {
    Deno.kill(child.pid, signal);
  } catch { /* already gone */ }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const killed = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      try {
        Deno.kill(child.pid, "SIGKILL");
      } catch { /* already gone */ }
      resolve();
    }, graceMs);
  });
  await Promise.race([child.exited, killed]);
  clearTimeout(timer);
  return await child.exited;
}

/** Kills every child still running, by PID. */
export async function killAll(graceMs = 3000): Promise<void> {
  closing = true;
  await Promise.all([...children].map((child) => stopChild(child, graceMs)));
}

/** The children still running (for the exit check). */
export function running(): string[] {
  return [...children].map((c) => `${c.name}(${c.pid})`);
}

/** Waits until a line of `logPath` matches `pattern`; returns the line parsed as JSON. */
export async function waitForLogLine(
  child: Child,
  pattern: RegExp,
  timeoutMs: number,
): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  child.exited.then(() => exited = true);
  while (Date.now() < deadline) {
    const text = await Deno.readTextFile(child.logPath).catch(() => "");
    for (const line of text.split("\n")) {
      if (pattern.test(line)) return JSON.parse(line);
    }
    if (exited) throw new Error(`${child.name} exited before it was ready:\n${text.slice(-2000)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${child.name} not ready within ${timeoutMs} ms`);
}

let clkTck: number | undefined;

/** Clock ticks per second of `/proc` CPU times (`getconf CLK_TCK`, read once). */
function clockTicks(): number {
  if (clkTck !== undefined) return clkTck;
  clkTck = 100;
  try {
    const out = new Deno.Command("getconf", { args: ["CLK_TCK"], stdout: "piped" }).outputSync();
    const n = Number(new TextDecoder().decode(out.stdout).trim());
    if (n > 0) clkTck = n;
  } catch { /* keep the Linux default */ }
  return clkTck;
}

/** User + system CPU seconds of `pid` (all threads), or `NaN` when it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // Fields after the command name, which is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / clockTicks();
  } catch {
    return NaN;
  }
}

/** Resident set size of `pid` in bytes (`VmRSS`), or `NaN`. */
export function rssBytes(pid: number): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) * 1024;
  } catch {
    return NaN;
  }
}

/** Busy and total CPU seconds of the whole machine since boot (`/proc/stat`). */
export function machineCpu(): { busy: number; total: number } {
  const line = Deno.readTextFileSync("/proc/stat").split("\n")[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: (total - idle) / clockTicks(), total: total / clockTicks() };
}

/** The 1-, 5- and 15-minute load averages. */
export function loadAverage(): number[] {
  try {
    return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).map(Number);
  } catch {
    return [NaN, NaN, NaN];
  }
}

/** Pins every thread of process `pid` to `cpus` (`taskset -a -p -c`); false when that failed. */
export async function pin(pid: number, cpus: string): Promise<boolean> {
  try {
    const out = await new Deno.Command("taskset", {
      args: ["-a", "-p", "-c", cpus, String(pid)],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false;
  }
}

/** The open-files limit children get (soft limit after raising it to the hard one). */
export async function openFilesLimit(): Promise<{ soft: number; hard: number }> {
  const out = await new Deno.Command("sh", {
    args: ["-c", 'echo "$(ulimit -Sn) $(ulimit -Hn)"'],
    stdout: "piped",
  }).output();
  const [soft, hard] = new TextDecoder().decode(out.stdout).trim().split(" ").map(Number);
  return { soft: soft ?? NaN, hard: hard ?? NaN };
}
