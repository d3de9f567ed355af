/**
 * Plain-text reports of a sequence: the accuracy matrix as an aligned table, the MTIL scores on
 * one line, and several runs side by side.
 *
 * @module
 */
import { type MtilScores, roundScores } from "./metrics.ts";
import type { SequenceMatrix } from "./sequence.ts";

/** The accuracy matrix as an aligned text table (rows: zero-shot and each task; percent). */
export function formatMatrix(m: SequenceMatrix): string {
  const short = (s: string) => s.replace(/^Synth-/, "");
  const cols = m.datasets.map(short);
  const w0 = Math.max(10, ...m.tasks.map((t) => short(t).length + 3));
  const cw = Math.max(7, ...cols.map((c) => c.length + 1));
  const f = (v: number | undefined) =>
    (v === undefined || !Number.isFinite(v) ? "–" : v.toFixed(1)).padStart(cw);
  const lines = ["".padEnd(w0) + cols.map((c) => c.padStart(cw)).join("")];
  if (m.zeroShot) lines.push("zero-shot".padEnd(w0) + m.zeroShot.map(f).join(""));
  m.tasks.forEach((t, i) => {
    const row = i < m.completed ? m.values[i] : m.values[i].map(() => NaN);
    lines.push(`${i + 1}. ${short(t)}`.padEnd(w0) + row.map(f).join(""));
  });
  return lines.join("\n");
}

/** The MTIL scores on one line. */
export function formatScores(s: MtilScores): string {
  const r = roundScores(s);
  return `Transfer ${r.transfer.toFixed(1)}  Avg ${r.avg.toFixed(1)}  Last ${r.last.toFixed(1)}  ` +
    `BWT ${s.bwt.toFixed(1)}  Forgetting ${s.forgetting.toFixed(1)}`;
}

/** Several runs' accuracy matrices side by side, each with its scores. */
export function sideBySide(
  runs: { name: string; matrix: SequenceMatrix; scores?: MtilScores }[],
): string {
  const blocks = runs.map((r) => {
    const lines = formatMatrix(r.matrix).split("\n");
    return [r.name, ...lines, r.scores ? formatScores(r.scores) : "(unfinished)"];
  });
  const width = Math.max(...blocks.flat().map((l) => l.length)) + 4;
  const n = Math.max(...blocks.map((b) => b.length));
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    out.push(blocks.map((b) => (b[i] ?? "").padEnd(width)).join("").trimEnd());
  }
  return out.join("\n");
}
