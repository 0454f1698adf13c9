/**
 * @module storm_report
 * The storm scenario's tables and its recovery chart: % of the affected users back (signed in
 * and caught up) over the seconds since the node was up again, one line per case, written as
 * SVG text by hand (no dependencies).
 */

import type { StormCaseResult } from "./storm.ts";

export interface StormResults {
  cases: StormCaseResult[];
  skipped: string[];
}

const LABEL: Record<string, string> = {
  drain: "drain (SIGTERM), restart",
  kill: "kill (SIGKILL), restart",
  failover: "two nodes, one killed",
  handoff: "two nodes, one drained (SIGTERM)",
};

const ms = (x: number) => (Number.isFinite(x) ? `${(x / 1000).toFixed(2)} s` : "never");
const counts = (r: Record<string, number>) =>
  Object.entries(r).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(", ") || "none";
const n = (x: number) => Number.isFinite(x) ? x.toLocaleString("en-US") : "–";

function cell(row: string[]): string {
  return `| ${row.join(" | ")} |`;
}

/** The markdown section (empty when the storm was not run). */
export function stormSection(storm: StormResults | undefined, svgName: string): string {
  if (storm === undefined || storm.cases.length === 0) {
    return storm?.skipped.length ? `Storm not run: ${storm.skipped.join("; ")}` : "";
  }
  const cases = storm.cases;
  const header = ["", ...cases.map((c) => LABEL[c.case] ?? c.case)];
  const rows: [string, (c: StormCaseResult) => string][] = [
    ["users / of them lost their connection", (c) => `${n(c.users)} / ${n(c.affected)}`],
    ["client backoff / `LOGIN_RATE_PER_S`", (c) => `${c.policy} / ${c.loginRate}`],
    ["signal → node listening again", (c) => (c.nodes === 2 ? "–" : ms(c.downMs))],
    [
      "50 / 99 / 100 % signed in again (from up)",
      (c) => `${ms(c.authed.p50)} / ${ms(c.authed.p99)} / ${ms(c.authed.p100)}`,
    ],
    [
      "**50 / 99 / 100 % signed in and caught up** (from up)",
      (c) => `${ms(c.back.p50)} / **${ms(c.back.p99)}** / ${ms(c.back.p100)}`,
    ],
    ["not back by the deadline", (c) => n(c.notBack)],
    [
      "connection attempts per user p50 / p99 / max",
      (c) => `${c.attempts.p50} / ${c.attempts.p99} / ${c.attempts.max}`,
    ],
    ["refusals (error codes on `authenticate`)", (c) => counts(c.refusals)],
    ["closes seen by users (code)", (c) => counts(c.closes)],
    ["failed attempts (dial, HTTP status, timeouts)", (c) => counts(c.failures)],
    [
      "server peak cores (1 s) / mean / peak RSS MiB",
      (c) => `${c.server.peakCores} / ${c.server.meanCores} / ${c.server.peakRssMiB}`,
    ],
    [
      "Postgres backends peak cores / mean / peak RSS MiB (one backend)",
      (c) => `${c.postgres.peakCores} / ${c.postgres.meanCores} / ${c.postgres.peakRssMiB}`,
    ],
    ["database connections held by the server (peak)", (c) => n(c.postgres.peakConnections)],
    [
      "generator peak cores / peak RSS MiB",
      (c) => `${c.generator.peakCores} / ${c.generator.peakRssMiB}`,
    ],
    [
      "messages sent by chatting users from the signal on / acknowledged",
      (c) => `${n(c.chat.sent)} / ${n(c.chat.acked)}`,
    ],
    [
      "send → acknowledgement p50 / p99 / max (ms)",
      (c) => `${c.chat.ackMs.p50} / ${c.chat.ackMs.p99} / ${c.chat.ackMs.max}`,
    ],
    [
      "lost: acknowledged without a row / never received by the recipient",
      (c) => `${c.chat.missingRows} / ${c.chat.unreceived}`,
    ],
    [
      "sent again after a reconnect (same id) / never acknowledged",
      (c) => `${c.chat.resent} / ${c.chat.pending}`,
    ],
  ];
  const table = [
    cell(header),
    cell(header.map((_, i) => (i === 0 ? "---" : "---:"))),
    ...rows.map(([name, f]) => cell([name, ...cases.map(f)])),
  ].join("\n");
  return [
    table,
    "",
    `![Recovery: % of users signed in and caught up over time](${svgName})`,
    ...(storm.skipped.length ? ["", `Not run: ${storm.skipped.join("; ")}.`] : []),
  ].join("\n");
}

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];

function escape(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

/** The recovery curves as an SVG document. */
export function stormSvg(storm: StormResults, title: string): string {
  const W = 720, H = 420, left = 60, right = 20, top = 40, bottom = 50;
  const pw = W - left - right, ph = H - top - bottom;
  const lastS = Math.max(
    1,
    ...storm.cases.flatMap((c) =>
      c.backCurveS.length ? [c.backCurveS[c.backCurveS.length - 1]!] : []
    ),
  );
  const step = lastS <= 10 ? 1 : lastS <= 30 ? 5 : lastS <= 120 ? 10 : 30;
  const xMax = Math.ceil(lastS / step) * step;
  const x = (s: number) => left + (Math.max(0, s) / xMax) * pw;
  const y = (pct: number) => top + ph - (pct / 100) * ph;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
    `font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${escape(title)}</text>`,
  ];
  for (let pct = 0; pct <= 100; pct += 25) {
    out.push(
      `<line x1="${left}" x2="${left + pw}" y1="${y(pct)}" y2="${y(pct)}" stroke="#ddd"/>`,
      `<text x="${left - 6}" y="${y(pct) + 4}" text-anchor="end">${pct} %</text>`,
    );
  }
  for (let s = 0; s <= xMax; s += step) {
    out.push(
      `<line x1="${x(s)}" x2="${x(s)}" y1="${top}" y2="${top + ph}" stroke="#eee"/>`,
      `<text x="${x(s)}" y="${top + ph + 16}" text-anchor="middle">${s}</text>`,
    );
  }
  // The target: 99 % within 15 s.
  if (15 <= xMax) {
    out.push(
      `<line x1="${x(15)}" x2="${x(15)}" y1="${top}" y2="${top + ph}" stroke="#999" ` +
        `stroke-dasharray="4 3"/>`,
      `<line x1="${left}" x2="${left + pw}" y1="${y(99)}" y2="${y(99)}" stroke="#999" ` +
        `stroke-dasharray="4 3"/>`,
      `<text x="${x(15) + 4}" y="${top + 12}" fill="#666">target: 99 % by 15 s</text>`,
    );
  }
  out.push(
    `<line x1="${left}" x2="${left + pw}" y1="${top + ph}" y2="${top + ph}" stroke="black"/>`,
    `<line x1="${left}" x2="${left}" y1="${top}" y2="${top + ph}" stroke="black"/>`,
    `<text x="${left + pw / 2}" y="${H - 12}" text-anchor="middle">seconds since the node ` +
      `was up again (two nodes: since the signal)</text>`,
  );
  storm.cases.forEach((c, i) => {
    const color = COLORS[i % COLORS.length]!;
    const total = c.affected || 1;
    // A step curve, thinned to at most ~400 points.
    const pts: string[] = [`${x(0).toFixed(1)},${y(0).toFixed(1)}`];
    const stride = Math.max(1, Math.floor(c.backCurveS.length / 400));
    for (let k = 0; k < c.backCurveS.length; k += stride) {
      pts.push(`${x(c.backCurveS[k]!).toFixed(1)},${y((100 * (k + 1)) / total).toFixed(1)}`);
    }
    if (c.backCurveS.length > 0) {
      const last = c.backCurveS[c.backCurveS.length - 1]!;
      pts.push(`${x(last).toFixed(1)},${y((100 * c.backCurveS.length) / total).toFixed(1)}`);
      pts.push(`${x(xMax).toFixed(1)},${y((100 * c.backCurveS.length) / total).toFixed(1)}`);
    }
    out.push(
      `<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.join(" ")}"/>`,
      `<rect x="${left + pw - 250}" y="${top + ph - 20 - 18 * (storm.cases.length - i)}" ` +
        `width="12" height="3" fill="${color}"/>`,
      `<text x="${left + pw - 232}" y="${top + ph - 15 - 18 * (storm.cases.length - i)}">${
        escape(`${LABEL[c.case] ?? c.case}: 99 % at ${ms(c.back.p99)}`)
      }</text>`,
    );
  });
  out.push("</svg>", "");
  return out.join("\n");
}
