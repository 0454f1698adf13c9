/**
 * @module traced_server
 * The real server (`main.ts`, unchanged) with one observation added from
 * outside `src/`: the repository's `storeMessage` is wrapped so that, for
 * every open-loop benchmark message (text `lat <scheduled> <sent> ...`), the
 * time it was handed to storage (every check passed) and the time storage
 * answered (its batch committed, earlier batches answered) are written to
 * `BENCH_TRACE_FILE` as `scheduled sent→stored stored→committed` (ms) lines.
 * Together with the generator's send→recipient this splits a message's
 * time into receive + checks, queue + commit, and fan-out + delivery. Used
 * only by the bench's `breakdown` scenario: the wrapper costs a `then` per
 * message, so the headline figures come from `main.ts` itself.
 */

import { PostgresRepository } from "../src/store/postgres/repository.ts";
import { main } from "../main.ts";

const path = Deno.env.get("BENCH_TRACE_FILE");
if (!path) {
  console.error("traced_server: BENCH_TRACE_FILE is required");
  Deno.exit(2);
}
const file = await Deno.open(path, { write: true, create: true, append: true });
const encoder = new TextEncoder();
let lines: string[] = [];
const flush = () => {
  if (lines.length === 0) return;
  const text = lines.join("");
  lines = [];
  file.writeSync(encoder.encode(text));
};
const flusher = setInterval(flush, 200);
const now = () => performance.timeOrigin + performance.now();
const LAT = /^lat (\d+(?:\.\d+)?) (\d+(?:\.\d+)?) /;

const store = PostgresRepository.prototype.storeMessage;
PostgresRepository.prototype.storeMessage = function (message) {
  const stored = now();
  const result = store.call(this, message);
  const m = LAT.exec(message.messageText);
  if (m !== null) {
    const sent = Number(m[2]);
    result.then(() => {
      lines.push(`${m[1]} ${(stored - sent).toFixed(3)} ${(now() - stored).toFixed(3)}\n`);
    }, () => {});
  }
  return result;
};

const code = await main();
clearInterval(flusher);
flush();
file.close();
Deno.exit(code);
