/**
 * @module build
 * What `deno task bench` builds before it measures anything: the Go load
 * generator (`bench/gen/`, compiled against Debian's packaged
 * gorilla/websocket, offline) and the Node relay's `ws` dependency
 * (`bench/node/`, `npm ci` from its lock file). Each fails with one line
 * that says what to install.
 */

const GEN_DIR = new URL("../gen/", import.meta.url).pathname;
const NODE_DIR = new URL("../node/", import.meta.url).pathname;
/** Where Debian's `golang-*-dev` packages put Go sources (GOPATH layout). */
const DEBIAN_GOPATH = "/usr/share/gocode";

async function run(
  program: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<{ ok: boolean; output: string }> {
  try {
    const out = await new Deno.Command(program, {
      args,
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
      ...(options.env === undefined ? {} : { env: options.env }),
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    return { ok: out.success, output: text.trim() };
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return { ok: false, output: `${program}: not found` };
    throw err;
  }
}

/**
 * Builds the load generator into `outDir`; returns the binary's path. GOPATH
 * mode (`GO111MODULE=off`) with Debian's source tree and `GOPROXY=off`, so it
 * never touches the network.
 */
export async function buildGenerator(outDir: string): Promise<string> {
  const version = await run("go", ["version"]);
  if (!version.ok) {
    throw new Error(
      "bench: the load generator is written in Go and `go` is not installed " +
        "(apt-get install golang golang-github-gorilla-websocket-dev)",
    );
  }
  const binary = `${outDir}/loadgen`;
  const built = await run("go", ["build", "-o", binary, "."], {
    cwd: GEN_DIR,
    env: {
      GO111MODULE: "off",
      GOPATH: DEBIAN_GOPATH,
      GOPROXY: "off",
      GOFLAGS: "",
      GOCACHE: `${Deno.env.get("TMPDIR") ?? "/tmp"}/geobeasts-bench-gocache`,
    },
  });
  if (!built.ok) {
    const hint = built.output.includes("gorilla/websocket")
      ? " (apt-get install golang-github-gorilla-websocket-dev)"
      : "";
    throw new Error(`bench: building bench/gen failed${hint}:\n${built.output}`);
  }
  return binary;
}

/** Makes sure `node` runs and `bench/node/node_modules` matches its lock; returns node's version. */
export async function prepareNodeRelay(): Promise<string> {
  const version = await run("node", ["--version"]);
  if (!version.ok) {
    throw new Error("bench: the Node relay needs `node` (Node 20) on PATH");
  }
  const installed = await Deno.stat(`${NODE_DIR}node_modules/ws/package.json`).then(
    () => true,
    () => false,
  );
  if (!installed) {
    const ci = await run("npm", ["ci", "--prefer-offline", "--no-audit", "--no-fund"], {
      cwd: NODE_DIR,
      env: { NO_UPDATE_NOTIFIER: "1" },
    });
    if (!ci.ok) throw new Error(`bench: npm ci in bench/node failed:\n${ci.output}`);
  }
  return version.output;
}
