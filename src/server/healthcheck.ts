/**
 * @module server/healthcheck
 * `geobeasts-chat --healthcheck`: asks the internal listener of the node
 * running beside it for `GET /healthz` and exits 0 on 200, 1 otherwise. It is
 * the container HEALTHCHECK for images without curl (distroless); it reads
 * the same environment as the server, so it finds the same port.
 */

import { loadConfig } from "../config.ts";

/** How long the probe waits for an answer; a hung node counts as unhealthy. */
const TIMEOUT_MS = 3000;

/** Probes `/healthz` on the internal listener configured by `env`; resolves with the exit code. */
export async function healthcheck(env: Record<string, string | undefined>): Promise<number> {
  let url;
  try {
    const config = loadConfig(env);
    url = `http://${probeHost(config.internalHost)}:${config.internalPort}/healthz`;
  } catch (err) {
    console.error(`healthcheck: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    await response.body?.cancel();
    if (response.status === 200) return 0;
    console.error(`healthcheck: ${url} answered ${response.status}`);
  } catch (err) {
    console.error(`healthcheck: ${url}: ${err instanceof Error ? err.message : String(err)}`);
  }
  return 1;
}

/** A wildcard listen address is reached through loopback. */
function probeHost(host: string): string {
  if (host === "0.0.0.0") return "127.0.0.1";
  if (host === "::") return "[::1]";
  return host.includes(":") ? `[${host}]` : host;
}
