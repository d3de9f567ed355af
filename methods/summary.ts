/**
 * Results of saved runs: per-run scores recomputed from `accuracy_matrix.json` files, and a sweep's
 * results across seeds — per method, order (and learning rate) the mean ± sample standard
 * deviation of Transfer / Avg / Last / BWT / forgetting with the seed count, next to the published
 * ViT-B/16 numbers where they exist; runs that have not finished every task are listed, never
 * averaged. Written as CSV (`datasets/csv.ts`), JSON and a bar chart with error bars (SVG, PNG).
 *
 * @example
 * ```ts
 * import { formatSweepTable, summarizeSweep, writeSweepSummary } from "./summary.ts";
 * const s = await summarizeSweep("runs/sweep");
 * console.log(formatSweepTable(s));
 * await writeSweepSummary(s, "runs/sweep"); // summary.csv, summary.json, summary.svg/.png
 * ```
 *
 * @module
 */
import { writeFileAtomic } from "../clip/formats/safetensors.ts";
import { stringifyCsv } from "../datasets/csv.ts";
import {
  type MtilScores,
  mtilScores,
  parseAccuracyMatrix,
  roundScores,
  zeroShotScores,
} from "./metrics.ts";
import { svgToPng, xmlEscape } from "./plots.ts";
import { type OrderName, orderName, PUBLISHED_METHODS, publishedScores } from "./protocol.ts";
import type { SweepManifest } from "./sweep.ts";

/** One line of the per-run comparison table. */
export interface SummaryRow {
  /** Run label (its folder) or published method. */
  name: string;
  /** `I`, `II`, `custom` or `published I` … */
  order: string;
  /** Number of tasks. */
  tasks: number;
  /** Transfer (rounded to 0.1). */
  transfer: number;
  /** Avg (rounded to 0.1). */
  avg: number;
  /** Last (rounded to 0.1). */
  last: number;
  /** Backward transfer (rounded to 0.1; NaN when unknown). */
  bwt: number;
  /** Average forgetting (rounded to 0.1; NaN when unknown). */
  forgetting: number;
}

const MAX_DEPTH = 8;
const MAX_JSON_BYTES = 16 << 20;

async function readJsonFile(path: string): Promise<unknown> {
  const info = await Deno.stat(path);
  if (info.size > MAX_JSON_BYTES) {
    throw new Error(`${path}: ${info.size} bytes is too large for a results file`);
  }
  const text = await Deno.readTextFile(path);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${path}: not JSON (${(e as Error).message})`);
  }
}

/** Every `accuracy_matrix.json` under `path` (or `path` itself when it is a file), sorted. */
export async function findMatrices(path: string): Promise<string[]> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch {
    throw new Error(`${path}: no such file or directory`);
  }
  if (info.isFile) return [path];
  const out: string[] = [];
  const walk = async (dir: string, depth: number) => {
    for await (const e of Deno.readDir(dir)) {
      const p = `${dir}/${e.name}`;
      if (e.isFile && e.name === "accuracy_matrix.json") out.push(p);
      else if (
        e.isDirectory && depth < MAX_DEPTH && e.name !== "node_modules" && !e.name.startsWith(".")
      ) {
        await walk(p, depth + 1);
      }
    }
  };
  await walk(path.replace(/\/+$/, ""), 0);
  return out.sort();
}

const round1 = (x: number) => Math.round(x * 10) / 10;

/** Score the matrices in `files`; also a zero-shot line for matrices that have a zero-shot row. */
export async function summarizeFiles(files: string[]): Promise<SummaryRow[]> {
  const rows: SummaryRow[] = [];
  for (const file of files) {
    const json = await readJsonFile(file);
    const full = parseAccuracyMatrix(json, file);
    // a running sequence saves `completed` rows so far: score that prefix
    const done = (json as { completed?: unknown }).completed;
    const k = typeof done === "number" && done < full.tasks.length ? done : full.tasks.length;
    const base = file.replace(/\/accuracy_matrix\.json$/, "");
    if (k === 0) {
      console.error(`${file}: no task finished yet; skipped`);
      continue;
    }
    const m = { ...full, tasks: full.tasks.slice(0, k), values: full.values.slice(0, k) };
    const s = mtilScores(m);
    const r = roundScores(s);
    const name = k < full.tasks.length ? `${base} (${k}/${full.tasks.length} tasks)` : base;
    const order = orderName(full.tasks) ?? "custom";
    rows.push({
      name,
      order,
      tasks: m.tasks.length,
      ...r,
      bwt: round1(s.bwt),
      forgetting: round1(s.forgetting),
    });
    if (m.zeroShot) {
      const z = zeroShotScores(m.tasks, m.datasets, m.zeroShot);
      rows.push({
        name: `${name} (zero-shot)`,
        order,
        tasks: m.tasks.length,
        transfer: z.transfer,
        avg: z.avg,
        last: z.last,
        bwt: NaN,
        forgetting: NaN,
      });
    }
  }
  return rows;
}

/** Published rows (ViT-B/16) of an order, including "Zero-shot". */
export function publishedRows(order: OrderName): SummaryRow[] {
  return PUBLISHED_METHODS.map((method) => ({
    name: `published: ${method}`,
    order,
    tasks: 11,
    ...publishedScores(order, method),
    bwt: NaN,
    forgetting: NaN,
  }));
}

function alignTable(head: string[], body: string[][], leftCols: number): string {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i < leftCols ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ")
      .trimEnd();
  return [line(head), widths.map((w) => "-".repeat(w)).join("  "), ...body.map(line)].join("\n");
}

/** Format per-run rows as an aligned text table. */
export function formatTable(rows: SummaryRow[]): string {
  const head = ["run", "order", "tasks", "Transfer", "Avg", "Last", "BWT", "Forgetting"];
  const f = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : "–");
  const body = rows.map((r) => [
    r.name,
    r.order,
    String(r.tasks),
    f(r.transfer),
    f(r.avg),
    f(r.last),
    f(r.bwt),
    f(r.forgetting),
  ]);
  return alignTable(head, body, 2);
}

// ---------------------------------------------------------------------------------------------
// Sweeps: results across seeds.

/** Mean and sample standard deviation (n − 1; NaN for one value) of `n` values. */
export interface MeanStd {
  /** Mean. */
  mean: number;
  /** Sample standard deviation (NaN when n < 2). */
  std: number;
  /** Number of values. */
  n: number;
}

/** Mean ± sample standard deviation of finite values. */
export function meanStd(xs: readonly number[]): MeanStd {
  const v = xs.filter(Number.isFinite);
  const n = v.length;
  if (n === 0) return { mean: NaN, std: NaN, n: 0 };
  const mean = v.reduce((a, b) => a + b, 0) / n;
  const std = n < 2 ? NaN : Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1));
  return { mean, std, n };
}

/** One run found in a sweep folder. */
export interface SweepRunResult {
  /** Run folder. */
  dir: string;
  /** Method. */
  method: string;
  /** Order label (`I`, `II`, `custom` …). */
  order: string;
  /** Seed (NaN when unknown). */
  seed: number;
  /** Swept learning rate (`--lr-per-task`), if any. */
  lr?: string;
  /** Group key: runs that differ only in their seed share it. */
  group: string;
  /** Tasks finished. */
  completed: number;
  /** Tasks of the order. */
  tasks: number;
  /** Scores (unrounded) when every task finished. */
  scores?: MtilScores;
}

/** One configuration of a sweep, aggregated over its finished seeds. */
export interface SweepGroup {
  /** Display label (`ZSCL order I`, with `lr …` when rates are swept). */
  label: string;
  /** Method. */
  method: string;
  /** Order label. */
  order: string;
  /** Swept learning rate, if any. */
  lr?: string;
  /** Seeds of the finished runs that were averaged. */
  seeds: number[];
  /** Transfer over seeds. */
  transfer: MeanStd;
  /** Avg over seeds. */
  avg: MeanStd;
  /** Last over seeds. */
  last: MeanStd;
  /** Backward transfer over seeds. */
  bwt: MeanStd;
  /** Average forgetting over seeds. */
  forgetting: MeanStd;
  /** Published ViT-B/16 Transfer / Avg / Last of the same method and order, where they exist. */
  published?: { method: string; transfer: number; avg: number; last: number };
}

/** A sweep's results across seeds. */
export interface SweepSummary {
  /** The folder summarized. */
  root: string;
  /** One entry per configuration with at least one finished run, in grid order. */
  groups: SweepGroup[];
  /** Every run found (finished or not). */
  runs: SweepRunResult[];
  /** Runs that did not finish every task (listed, not averaged), including runs never started. */
  incomplete: SweepRunResult[];
}

const PUBLISHED_ALIASES: Record<string, string> = {
  finetune: "Continual-FT",
  "continual-ft": "Continual-FT",
  lwf: "LwF",
  icarl: "iCaRL",
  "lwf-vr": "LwF-VR",
  "wise-ft": "WiSE-FT",
  zscl: "ZSCL",
  "zero-shot": "Zero-shot",
};

/** The published method name matching one of ours (`finetune` → `Continual-FT`), if any. */
export function publishedName(method: string): string | undefined {
  const exact = PUBLISHED_METHODS.find((m) => m === method);
  return exact ?? PUBLISHED_ALIASES[method.toLowerCase()];
}

async function readManifestNear(dir: string): Promise<SweepManifest | undefined> {
  try {
    const j = await readJsonFile(`${dir}/sweep.json`) as SweepManifest;
    if (j?.kind !== "mtil-sweep" || !Array.isArray(j.runs)) {
      throw new Error(`${dir}/sweep.json: not an mtil sweep manifest`);
    }
    return j;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

function stableStringify(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableStringify).join(",")}]`;
  if (v && typeof v === "object") {
    return `{${
      Object.keys(v).sort().map((k) =>
        `${JSON.stringify(k)}:${stableStringify((v as Record<string, unknown>)[k])}`
      ).join(",")
    }}`;
  }
  return JSON.stringify(v) ?? "null";
}

async function readRun(
  dir: string,
  meta?: { method: string; order: string; seed: number; lr?: string; tasks: string[] },
): Promise<SweepRunResult> {
  const file = `${dir}/accuracy_matrix.json`;
  let json: unknown;
  try {
    json = await readJsonFile(file);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound) || !meta) throw e;
    // listed in sweep.json but never started
    return {
      dir,
      method: meta.method,
      order: meta.order,
      seed: meta.seed,
      lr: meta.lr,
      group: stableStringify([meta.method, meta.order, meta.lr ?? null]),
      completed: 0,
      tasks: meta.tasks.length,
    };
  }
  const m = parseAccuracyMatrix(json, file);
  const done = (json as { completed?: unknown }).completed;
  const completed = typeof done === "number" ? Math.min(done, m.tasks.length) : m.tasks.length;
  let config: Record<string, unknown> = {};
  try {
    const man = await readJsonFile(`${dir}/manifest.json`) as { config?: Record<string, unknown> };
    config = man?.config && typeof man.config === "object" ? man.config : {};
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const pathSeed = /(?:^|\/)seed[-_]?(\d+)(?:\/|$)/.exec(dir)?.[1];
  const method = meta?.method ?? String(config.method ?? dir.split("/").at(-2) ?? dir);
  const order = meta?.order ?? orderName(m.tasks) ?? "custom";
  const seed = meta?.seed ?? Number(config.seed ?? pathSeed ?? NaN);
  const lr = meta?.lr ?? (config["lr-per-task"] as string | undefined);
  let group: string;
  if (meta) group = stableStringify([meta.method, meta.order, meta.lr ?? null]);
  else if (Object.keys(config).length) {
    const { seed: _s, ...rest } = config;
    group = stableStringify(rest);
  } else group = dir.replace(/\/seed[-_]?\d+$/, "");
  const r: SweepRunResult = {
    dir,
    method,
    order,
    seed,
    ...(lr === undefined ? {} : { lr }),
    group,
    completed,
    tasks: m.tasks.length,
  };
  if (completed === m.tasks.length) r.scores = mtilScores(m);
  return r;
}

/**
 * Summarize a sweep folder across seeds: every run under `dir` (the runs listed in `sweep.json`
 * when the folder holds one, else every `accuracy_matrix.json` below it, grouped by their
 * `manifest.json` configuration without the seed), aggregated per configuration.
 */
export async function summarizeSweep(dir: string): Promise<SweepSummary> {
  const root = dir.replace(/\/+$/, "");
  const manifest = await readManifestNear(root);
  const runs: SweepRunResult[] = [];
  if (manifest) {
    // the runs of the grid, wherever they were saved (absolute paths, or relative to the folder)
    for (const r of manifest.runs) {
      const d = r.saveDir.startsWith("/") ? r.saveDir : `${root}/${r.saveDir}`;
      const moved = r.saveDir.startsWith(manifest.saveRoot)
        ? `${root}${r.saveDir.slice(manifest.saveRoot.length)}`
        : d;
      const exists = async (p: string) => await Deno.stat(p).then(() => true, () => false);
      const where = (await exists(`${moved}/accuracy_matrix.json`)) ? moved : d;
      runs.push(
        await readRun(where, {
          method: r.method,
          order: r.orderLabel,
          seed: r.seed,
          lr: r.lr,
          tasks: r.tasks,
        }),
      );
    }
  } else {
    const files = await findMatrices(root);
    if (files.length === 0) throw new Error(`no accuracy_matrix.json found under ${root}`);
    for (const f of files) runs.push(await readRun(f.replace(/\/accuracy_matrix\.json$/, "")));
  }
  const byGroup = new Map<string, SweepRunResult[]>();
  for (const r of runs) {
    if (!byGroup.has(r.group)) byGroup.set(r.group, []);
    byGroup.get(r.group)!.push(r);
  }
  const groups: SweepGroup[] = [];
  const labels = new Map<string, number>();
  for (const members of byGroup.values()) {
    const done = members.filter((r) => r.scores);
    if (done.length === 0) continue;
    const r0 = done[0];
    let label = `${r0.method} order ${r0.order}${r0.lr === undefined ? "" : ` lr ${r0.lr}`}`;
    const seen = labels.get(label) ?? 0;
    labels.set(label, seen + 1);
    if (seen > 0) label = `${label} #${seen + 1}`;
    const pick = (k: "transfer" | "avg" | "last" | "bwt" | "forgetting") =>
      meanStd(done.map((r) => r.scores![k]));
    const pubName = publishedName(r0.method);
    const g: SweepGroup = {
      label,
      method: r0.method,
      order: r0.order,
      ...(r0.lr === undefined ? {} : { lr: r0.lr }),
      seeds: done.map((r) => r.seed),
      transfer: pick("transfer"),
      avg: pick("avg"),
      last: pick("last"),
      bwt: pick("bwt"),
      forgetting: pick("forgetting"),
    };
    if (pubName && (r0.order === "I" || r0.order === "II") && r0.tasks === 11) {
      g.published = { method: pubName, ...publishedScores(r0.order, pubName) };
    }
    groups.push(g);
  }
  return { root, groups, runs, incomplete: runs.filter((r) => !r.scores) };
}

/** `mean ± std` with one decimal (`–` when unknown; no `±` part for one seed). */
export function formatMeanStd(m: MeanStd): string {
  if (!Number.isFinite(m.mean)) return "–";
  return Number.isFinite(m.std) ? `${m.mean.toFixed(1)} ± ${m.std.toFixed(1)}` : m.mean.toFixed(1);
}

/** A sweep summary as text: one line per configuration, then the incomplete runs. */
export function formatSweepTable(s: SweepSummary): string {
  const head = [
    "method",
    "order",
    "lr",
    "seeds",
    "Transfer",
    "Avg",
    "Last",
    "BWT",
    "published T/A/L",
  ];
  const body = s.groups.map((g) => [
    g.method,
    g.order,
    g.lr ?? "–",
    String(g.seeds.length),
    formatMeanStd(g.transfer),
    formatMeanStd(g.avg),
    formatMeanStd(g.last),
    formatMeanStd(g.bwt),
    g.published
      ? `${g.published.transfer.toFixed(1)} / ${g.published.avg.toFixed(1)} / ${
        g.published.last.toFixed(1)
      } (${g.published.method})`
      : "–",
  ]);
  const lines = [
    `${s.root}: ${s.runs.length} run(s), ${s.runs.length - s.incomplete.length} finished, ` +
    `${s.groups.length} configuration(s); mean ± sample std over seeds`,
    alignTable(head, body, 3),
  ];
  if (s.incomplete.length) {
    lines.push("", `incomplete (not averaged): ${s.incomplete.length}`);
    for (const r of s.incomplete) {
      lines.push(
        `  ${r.dir}  ${r.method} order ${r.order} seed ${r.seed}: ${r.completed}/${r.tasks} tasks`,
      );
    }
  }
  return lines.join("\n");
}

const METRICS = ["transfer", "avg", "last", "bwt", "forgetting"] as const;

/** The summary as CSV rows (header first): one row per configuration. */
export function sweepCsv(s: SweepSummary): string {
  const head = [
    "method",
    "order",
    "lr",
    "seeds",
    "n",
    ...METRICS.flatMap((m) => [`${m}_mean`, `${m}_std`]),
    "published_method",
    "published_transfer",
    "published_avg",
    "published_last",
  ];
  const num = (x: number) => (Number.isFinite(x) ? Number(x.toFixed(4)) : "");
  const rows = s.groups.map((g) => [
    g.method,
    g.order,
    g.lr ?? "",
    g.seeds.join(" "),
    g.seeds.length,
    ...METRICS.flatMap((m) => [num(g[m].mean), num(g[m].std)]),
    g.published?.method ?? "",
    g.published?.transfer ?? "",
    g.published?.avg ?? "",
    g.published?.last ?? "",
  ]);
  return stringifyCsv([head, ...rows]);
}

/** Options of {@linkcode errorBarsSvg}. */
export interface ErrorBarsOptions {
  /** Title above the plot. */
  title?: string;
  /** Y range (default [0, 100]). */
  range?: [number, number];
}

/**
 * Grouped vertical bars with error bars (±1 std) as SVG: one group per metric (Transfer, Avg,
 * Last), one bar per configuration; a hollow diamond marks a published value.
 */
export function errorBarsSvg(s: SweepSummary, opts: ErrorBarsOptions = {}): string {
  const metrics = [["transfer", "Transfer"], ["avg", "Avg"], ["last", "Last"]] as const;
  const [lo, hi] = opts.range ?? [0, 100];
  const n = Math.max(1, s.groups.length);
  const barW = Math.max(10, Math.min(40, 240 / n));
  const groupW = n * barW + 30;
  const left = 50, top = opts.title ? 36 : 14, plotH = 260;
  const legendH = 18 * s.groups.length + 10;
  const width = Math.ceil(left + metrics.length * groupW + 20);
  const height = Math.ceil(top + plotH + 30 + legendH);
  const y = (v: number) => top + plotH * (1 - (Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo));
  const colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"];
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
  ];
  if (opts.title) {
    out.push(
      `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${
        xmlEscape(opts.title)
      }</text>`,
    );
  }
  for (let t = 0; t <= 4; t++) {
    const v = lo + ((hi - lo) * t) / 4;
    out.push(
      `<line x1="${left}" x2="${width - 10}" y1="${y(v)}" y2="${y(v)}" stroke="#dddddd"/>`,
      `<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(0)}</text>`,
    );
  }
  metrics.forEach(([key, name], mi) => {
    const gx = left + mi * groupW + 15;
    s.groups.forEach((g, gi) => {
      const ms = g[key];
      const x = gx + gi * barW;
      const c = colors[gi % colors.length];
      if (Number.isFinite(ms.mean)) {
        out.push(
          `<rect class="bar" x="${x + 1}" y="${y(ms.mean).toFixed(1)}" width="${
            barW - 2
          }" height="${(y(lo) - y(ms.mean)).toFixed(1)}" fill="${c}"><title>${
            xmlEscape(`${g.label} ${name}: ${formatMeanStd(ms)}`)
          }</title></rect>`,
        );
      }
      if (Number.isFinite(ms.std)) {
        const cx = x + barW / 2;
        const y1 = y(ms.mean - ms.std), y2 = y(ms.mean + ms.std);
        out.push(
          `<path class="errorbar" d="M${cx} ${y1.toFixed(1)}V${y2.toFixed(1)}M${cx - 4} ${
            y1.toFixed(1)
          }h8M${cx - 4} ${y2.toFixed(1)}h8" stroke="#000000" stroke-width="1.5" fill="none"/>`,
        );
      }
      const p = g.published?.[key];
      if (p !== undefined) {
        const cx = x + barW / 2, cy = y(p);
        out.push(
          `<path class="published" d="M${cx} ${
            cy - 6
          }l6 6l-6 6l-6 -6z" fill="none" stroke="#000000" stroke-width="1.5"/>`,
        );
      }
    });
    out.push(
      `<text x="${gx + (n * barW) / 2}" y="${
        top + plotH + 18
      }" text-anchor="middle" font-weight="bold">${name}</text>`,
    );
  });
  out.push(
    `<line x1="${left}" x2="${width - 10}" y1="${y(lo)}" y2="${y(lo)}" stroke="#000000"/>`,
  );
  s.groups.forEach((g, gi) => {
    const ly = top + plotH + 34 + gi * 18;
    out.push(
      `<rect x="${left}" y="${ly}" width="12" height="12" fill="${colors[gi % colors.length]}"/>`,
      `<text x="${left + 18}" y="${ly + 10}">${
        xmlEscape(
          `${g.label} (n=${g.seeds.length})${
            g.published ? `  ◇ published ${g.published.method}` : ""
          }`,
        )
      }</text>`,
    );
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}

/**
 * Write `summary.csv`, `summary.json`, `summary.svg` and (where sharp loads) `summary.png` into
 * `outDir`, atomically; returns the written paths.
 */
export async function writeSweepSummary(s: SweepSummary, outDir: string): Promise<string[]> {
  await Deno.mkdir(outDir, { recursive: true });
  const enc = new TextEncoder();
  const written: string[] = [];
  const put = async (name: string, bytes: Uint8Array) => {
    await writeFileAtomic(`${outDir}/${name}`, bytes);
    written.push(`${outDir}/${name}`);
  };
  const finite = (_k: string, v: unknown) =>
    typeof v === "number" && !Number.isFinite(v) ? null : v;
  await put("summary.csv", enc.encode(sweepCsv(s)));
  await put("summary.json", enc.encode(JSON.stringify(s, finite, 2) + "\n"));
  const svg = errorBarsSvg(s, { title: "Transfer / Avg / Last: mean ± std over seeds" });
  await put("summary.svg", enc.encode(svg));
  const png = await svgToPng(svg);
  if (png) await put("summary.png", png);
  return written;
}
