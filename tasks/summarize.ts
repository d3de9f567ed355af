/**
 * `deno task summarize DIR|FILE... [--published] [--order I|II] [--json]`
 * `deno task summarize SWEEP_DIR [--sweep] [--out DIR] [--json]`
 *
 * Recomputes the MTIL scores (Transfer / Avg / Last as the reference summary computes them, plus
 * backward transfer and average forgetting) from saved `accuracy_matrix.json` files (a DIR is
 * searched recursively) and prints one table comparing the runs; `--published` adds the published
 * ViT-B/16 methods of the runs' order (or `--order`).
 *
 * A sweep folder (one holding `sweep.json`, written by `deno task slurm` / `deno task k8s`, or any
 * folder with `--sweep`) is summarized across seeds instead: per method and order, mean ± std of
 * Transfer / Avg / Last / BWT with the seed count, next to the published numbers; unfinished runs
 * are listed, not averaged; `summary.csv`, `summary.json` and `summary.svg`/`.png` are written to
 * `--out` (default: the folder). The logic is `summarizeSweep` in `methods/summary.ts`.
 *
 * @module
 */
import { parseArgs } from "./cli.ts";
import {
  findMatrices,
  formatSweepTable,
  formatTable,
  publishedRows,
  summarizeFiles,
  summarizeSweep,
  writeSweepSummary,
} from "../methods/summary.ts";

export {
  findMatrices,
  formatTable,
  publishedRows,
  summarizeFiles,
  type SummaryRow,
} from "../methods/summary.ts";

const USAGE = `usage: deno task summarize DIR|FILE... [--published] [--order I|II] [--json]
       deno task summarize SWEEP_DIR [--sweep] [--out DIR] [--json]

Finds accuracy_matrix.json files (DIR is searched recursively), recomputes Transfer / Avg / Last
(as the reference summary), BWT and forgetting, and prints a comparison table.
  --published   add the published ViT-B/16 methods of the runs' order (or of --order)
  --json        print the rows as JSON instead of a table
  --sweep       summarize across seeds (automatic when DIR holds sweep.json): mean ± std per
                method and order, published numbers beside, unfinished runs listed; writes
                summary.csv, summary.json, summary.svg/.png to --out (default DIR)`;

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
        sweep: { type: "boolean", default: false },
        out: { type: "string" },
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
    const isSweep = positionals.length === 1 &&
      (values.sweep ||
        await Deno.stat(`${positionals[0]}/sweep.json`).then((i) => i.isFile, () => false));
    if (values.sweep && positionals.length !== 1) {
      console.error("--sweep takes exactly one folder");
      return 2;
    }
    if (isSweep) {
      const s = await summarizeSweep(positionals[0]);
      const written = await writeSweepSummary(s, values.out ?? positionals[0]);
      if (values.json) console.log(JSON.stringify(s, (_k, v) => Number.isNaN(v) ? null : v, 2));
      else console.log(`${formatSweepTable(s)}\n\nwrote ${written.join(", ")}`);
      return 0;
    }
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
