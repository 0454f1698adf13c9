/** The logger: one JSON object per line, control characters escaped, levels filtered. */

import assert from "node:assert/strict";
import { createLogger } from "../src/log.ts";

Deno.test("a log field with newlines and control characters stays on one escaped line", () => {
  const lines: string[] = [];
  const log = createLogger("info", (line) => lines.push(line), () => 0);
  log.info("auth_failed", { reason: 'x\n{"level":"error","event":"forged"}\u0000\u001b[31m' });
  log.debug("hidden");
  assert.equal(lines.length, 1);
  assert.ok(!lines[0]!.includes("\n") && !lines[0]!.includes("\u001b"));
  assert.deepEqual(JSON.parse(lines[0]!), {
    level: "info",
    time: "1970-01-01T00:00:00.000Z",
    event: "auth_failed",
    reason: 'x\n{"level":"error","event":"forged"}\u0000\u001b[31m',
  });
});
