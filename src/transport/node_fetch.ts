/** @module transport/node_fetch Serves a Fetch-style handler (`Request` → `Response`) on a `node:http` server. */

import { Buffer } from "node:buffer";
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";

/**
 * Largest request body read into memory (bytes). The only bodies this server
 * expects are `POST /notify` (at most 1000 ids plus one frame-sized event), so
 * 1 MiB is generous; a larger one is answered 413 without being buffered.
 */
export const MAX_BODY_BYTES = 1024 * 1024;

/** The URL of a request target, on `scheme://host`; never throws (a bad Host becomes `localhost`). */
export function requestUrl(scheme: string, host: string | undefined, target = "/"): URL {
  // Origin-form targets only: an absolute-form or `*` target is read as a path.
  const path = target.startsWith("/") ? target : `/${target}`;
  for (const authority of [host ?? "localhost", "localhost"]) {
    try {
      return new URL(`${scheme}://${authority}${path}`);
    } catch {
      // Try the next authority; the last resort below cannot throw.
    }
  }
  return new URL(`${scheme}://localhost/`);
}

/** Fetch `Headers` from node's raw header list, keeping repeated headers. */
export function toHeaders(raw: readonly string[], parsed: IncomingHttpHeaders): Headers {
  const headers = new Headers();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    try {
      headers.append(raw[i]!, raw[i + 1]!);
    } catch {
      // A value node accepted but Fetch refuses: drop it rather than the request.
    }
  }
  if (raw.length === 0) {
    for (const [name, value] of Object.entries(parsed)) {
      for (const v of Array.isArray(value) ? value : [value ?? ""]) headers.append(name, v);
    }
  }
  return headers;
}

/**
 * Answers one node request with `fetch`: the body (up to `MAX_BODY_BYTES`)
 * is read first, the response body is streamed with backpressure, and the
 * request's `signal` aborts when the client goes away before the answer.
 */
export async function serveFetch(
  req: IncomingMessage,
  res: ServerResponse,
  scheme: string,
  fetch: (request: Request) => Response | Promise<Response>,
): Promise<void> {
  const controller = new AbortController();
  res.once("close", () => {
    if (!res.writableFinished) controller.abort();
  });
  const method = req.method ?? "GET";
  let body: Uint8Array<ArrayBuffer> | undefined;
  if (method !== "GET" && method !== "HEAD") {
    const read = await readBody(req, MAX_BODY_BYTES);
    if (read === "too_large") {
      res.writeHead(413, { "content-type": "text/plain", connection: "close" }).end(
        "Payload Too Large",
      );
      return;
    }
    if (read === "aborted") return;
    body = read;
  }
  let response: Response;
  try {
    const url = requestUrl(scheme, req.headers.host, req.url);
    const headers = toHeaders(req.rawHeaders, req.headers);
    response = await fetch(
      new Request(url, { method, headers, signal: controller.signal, ...(body ? { body } : {}) }),
    );
  } catch {
    // The handler is expected to turn its own errors into responses (Hono's
    // onError); this only keeps a bug from leaving the client hanging.
    response = new Response("Internal Server Error", { status: 500 });
  }
  await writeResponse(res, response);
}

type BodyResult = Uint8Array<ArrayBuffer> | "too_large" | "aborted";

function readBody(req: IncomingMessage, limit: number): Promise<BodyResult> {
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > limit) return Promise.resolve("too_large");
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (result: BodyResult) => {
      req.off("data", onData).off("end", onEnd).off("error", onAbort).off("close", onAbort);
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.pause();
        done("too_large");
      } else chunks.push(chunk);
    };
    const onEnd = () => done(new Uint8Array(Buffer.concat(chunks)));
    const onAbort = () => done("aborted");
    req.on("data", onData).on("end", onEnd).on("error", onAbort).on("close", onAbort);
  });
}

async function writeResponse(res: ServerResponse, response: Response): Promise<void> {
  const headers: Record<string, string | string[]> = {};
  response.headers.forEach((value, name) => {
    if (name !== "set-cookie") headers[name] = value;
  });
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) headers["set-cookie"] = cookies;
  res.writeHead(response.status, headers);
  if (!response.body) {
    res.end();
    return;
  }
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (res.destroyed) {
        await reader.cancel();
        return;
      }
      if (!res.write(value)) await drained(res);
    }
    res.end();
  } catch {
    res.destroy();
    await reader.cancel().catch(() => {});
  }
}

/** Resolves on `drain`, or on `close` so a vanished client cannot leave it pending. */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done).off("close", done);
      resolve();
    };
    res.on("drain", done).on("close", done);
  });
}
