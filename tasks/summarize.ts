/**
 * `deno task summarize DIR|FILE... [--published] [--order I|II] [--json]`
 *
 * Recomputes the MTIL scores (Transfer / Avg / Last as the reference summary computes them, plus
 * backward transfer and average forgetting) from saved `accuracy_matrix.json` files (a DIR is
 * searched recursively) and prints one table comparing the runs; `--published` adds the published
 * ViT-B/16 methods of the runs' order (or `--order`).
 *
 * @module
 */
import { parseArgs } from "./cli.ts";
import {
  mtilScores,
  parseAccuracyMatrix,
  roundScores,
  zeroShotScores,
} from "../methods/metrics.ts";
import { orderName, PUBLISHED_METHODS, publishedScores } from "../methods/protocol.ts";

/** One line of the comparison table. */
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

const MAX_DEPTH = 6;

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

/** Score the matrices in `files`; also a zero-shot line for matrices that have a zero-shot row. */
export async function summarizeFiles(files: string[]): Promise<SummaryRow[]> {
  const rows: SummaryRow[] = [];
  for (const file of files) {
    const text = await Deno.readTextFile(file);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new Error(`${file}: not JSON (${(e as Error).message})`);
    }
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
    const round1 = (x: number) => Math.round(x * 10) / 10;
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
export function publishedRows(order: "I" | "II"): SummaryRow[] {
  return PUBLISHED_METHODS.map((method) => ({
    name: `published: ${method}`,
    order,
    tasks: 11,
    ...publishedScores(order, method),
    bwt: NaN,
    forgetting: NaN,
  }));
}

/** Format rows as an aligned text table. */
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
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ").trimEnd();
  return [line(head), widths.map((w) => "-".repeat(w)).join("  "), ...body.map(line)].join("\n");
}

const USAGE = `usage: deno task summarize DIR|FILE... [--published] [--order I|II] [--json]

Finds accuracy_matrix.json files (DIR is searched recursively), recomputes Transfer / Avg / Last
(as the reference summary), BWT and forgetting, and prints a comparison table.
  --published   add the published ViT-B/16 methods of the runs' order (or of --order)
  --json        print the rows as JSON instead of a table`;

/** Entry point (exported for tests); returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        published: { type: "boolean", default: false },
        order: { type: "string" },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (e) {
    console.error(`${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values.order && !/^(I|II)$/i.test(values.order)) {
    console.error(`--order must be I or II, got ${values.order}`);
    return 2;
  }
  if (positionals.length === 0 && !(values.published && values.order)) {
    console.error(`give at least one run folder or accuracy_matrix.json\n\n${USAGE}`);
    return 2;
  }
  try {
    const files = (await Promise.all(positionals.map(findMatrices))).flat();
    if (positionals.length > 0 && files.length === 0) {
      console.error(`no accuracy_matrix.json found under ${positionals.join(", ")}`);
      return 1;
    }
    const rows = await summarizeFiles(files);
    if (values.published) {
      const orders = new Set<string>(
        values.order ? [values.order.toUpperCase()] : rows.map((r) => r.order),
      );
      for (const o of ["I", "II"] as const) if (orders.has(o)) rows.push(...publishedRows(o));
      if (!orders.has("I") && !orders.has("II")) {
        console.error(
          "--published: the runs use a custom order; give --order I or II to compare anyway",
        );
      }
    }
    console.log(values.json ? JSON.stringify(rows, null, 2) : formatTable(rows));
    return 0;
  } catch (e) {
    console.error((e as Error).message);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
