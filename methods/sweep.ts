/**
 * Sweeps: a grid of task-sequence runs (methods × task orders × learning rates × seeds), described
 * once, expanded into numbered runs. Run `i` of the grid is what array element `i` of a SLURM job
 * array ({@linkcode planSlurm}) or completion index `i` of a Kubernetes Indexed Job
 * ({@linkcode planK8s}) executes; each run is one `deno task sequence` in its own folder,
 * restricted to one task position per job (`--stop-after TASK`), so the task positions of a run
 * chain from job to job while the sequence command itself skips finished tasks and resumes an
 * interrupted one.
 *
 * Grid index order: method (outermost), order, learning rate, seed (innermost), so the seeds of
 * one configuration are neighbours.
 *
 * @example
 * ```ts
 * import { expandGrid } from "./sweep.ts";
 * const runs = expandGrid({ methods: ["finetune", "ZSCL"], orders: ["I"], seeds: [1, 2] }, "/runs");
 * runs[3].saveDir; // "/runs/order-I/ZSCL/seed2"
 * ```
 *
 * @module
 */
import { resolveOrder } from "./protocol.ts";

/** A sweep grid (also the format of a `--grid` JSON file). */
export interface SweepGrid {
  /** Methods (`--method`), in grid order. */
  methods: string[];
  /** Task orders (`--order`: `I`, `II` or a comma list of datasets); all of the same length. */
  orders: string[];
  /** Seeds (`--seed`); default `[1]`. */
  seeds?: number[];
  /**
   * Learning rates, each passed as `--lr-per-task VALUE` (one number for every task, a comma list
   * per task, or `Name=lr` pairs); absent or empty: the sequence's own rates (the protocol's for
   * orders I and II, `--lr` otherwise).
   */
  lrs?: string[];
  /** Extra flags for every run (training flags of `deno task sequence`). */
  args?: string[];
  /** Extra flags per method (e.g. ZSCL's `--ref-dataset …`), appended after `args`. */
  methodArgs?: Record<string, string[]>;
}

/** One run of a sweep: grid element `index`. */
export interface SweepRun {
  /** Grid index (SLURM array index, Kubernetes completion index). */
  index: number;
  /** Method. */
  method: string;
  /** Order as given (`I`, `II` or a comma list). */
  order: string;
  /** Order label used in names and folders (`I`, `II`, `custom`, `custom2` …). */
  orderLabel: string;
  /** The order's tasks. */
  tasks: string[];
  /** Seed. */
  seed: number;
  /** Learning-rate value (`--lr-per-task`), if the grid sweeps it. */
  lr?: string;
  /** A short unique name (`ZSCL-orderI-seed1`, with `-lr<lr>` when the grid sweeps rates). */
  name: string;
  /** The run's folder (`--save`). */
  saveDir: string;
  /** Flags appended to the run's command (lr, grid args, method args). */
  extraArgs: string[];
}

/** Most runs in one sweep (SLURM's default `MaxArraySize` is 1001: indexes 0–1000). */
export const MAX_SWEEP_RUNS = 1001;

/**
 * The default per-task command; placeholders `{order} {method} {seed} {save} {task} {index}
 * {run}` are substituted in each word (`{index}`: 1-based task position; `{run}`: grid index).
 */
export const DEFAULT_SEQUENCE_COMMAND: readonly string[] = Object.freeze([
  "deno",
  "task",
  "sequence",
  "--order",
  "{order}",
  "--method",
  "{method}",
  "--seed",
  "{seed}",
  "--save",
  "{save}",
  "--stop-after",
  "{task}",
]);

/** Quote a word for bash (single quotes unless it is plainly safe). */
export function shellQuote(s: string): string {
  if (s !== "" && /^[A-Za-z0-9_\/.,=:+@%-]+$/.test(s)) return s;
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** A file-name-safe version of a label. */
export function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]+/g, "_").replace(/^_+|_+$/g, "") || "x";
}

function bad(m: string): never {
  throw new Error(`sweep: ${m}`);
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;

/** Check a grid; throws a message naming the field and what to do. */
export function validateGrid(g: SweepGrid): void {
  if (typeof g !== "object" || g === null) bad("the grid must be an object");
  if (!Array.isArray(g.methods) || g.methods.length === 0) {
    bad('no method given (--method/--methods or "methods" in the grid file)');
  }
  for (const m of g.methods) {
    if (typeof m !== "string" || !NAME_RE.test(m)) {
      bad(`method name ${JSON.stringify(m)} must be 1–64 letters, digits, . _ + -`);
    }
  }
  if (new Set(g.methods).size !== g.methods.length) bad("a method appears twice");
  if (!Array.isArray(g.orders) || g.orders.length === 0) {
    bad('no order given (--order or "orders" in the grid file)');
  }
  let len = -1;
  for (const o of g.orders) {
    if (typeof o !== "string") bad(`order ${JSON.stringify(o)} is not a string`);
    const t = resolveOrder(o);
    if (len >= 0 && t.length !== len) {
      bad(
        `orders must have the same number of tasks (one job array per task position); ` +
          `"${o}" has ${t.length}, the first has ${len}: sweep them separately`,
      );
    }
    len = t.length;
  }
  if (new Set(g.orders.map((o) => resolveOrder(o).join(","))).size !== g.orders.length) {
    bad("an order appears twice");
  }
  const seeds = g.seeds ?? [1];
  if (!Array.isArray(seeds) || seeds.length === 0) bad("seeds must be a non-empty list");
  for (const s of seeds) {
    if (!Number.isSafeInteger(s) || s < 0) bad(`seed ${s} is not a non-negative integer`);
  }
  if (new Set(seeds).size !== seeds.length) bad("a seed appears twice");
  for (const lr of g.lrs ?? []) {
    if (typeof lr !== "string" || !/^[A-Za-z0-9_.,=+-]{1,400}$/.test(lr)) {
      bad(`learning rate ${JSON.stringify(lr)}: expected a number, a comma list or Name=lr pairs`);
    }
  }
  if (g.lrs && new Set(g.lrs).size !== g.lrs.length) bad("a learning rate appears twice");
  const words = (w: unknown, what: string) => {
    if (!Array.isArray(w) || w.some((x) => typeof x !== "string" || x.length > 4096)) {
      bad(`${what} must be a list of strings (flags)`);
    }
  };
  if (g.args !== undefined) words(g.args, "args");
  if (g.methodArgs !== undefined) {
    if (typeof g.methodArgs !== "object" || g.methodArgs === null) bad("methodArgs: not an object");
    for (const [m, w] of Object.entries(g.methodArgs)) {
      if (!g.methods.includes(m)) bad(`methodArgs: "${m}" is not a method of the grid`);
      words(w, `methodArgs.${m}`);
    }
  }
  const n = g.methods.length * g.orders.length * seeds.length * Math.max(1, g.lrs?.length ?? 0);
  if (n > MAX_SWEEP_RUNS) {
    bad(`${n} runs is more than ${MAX_SWEEP_RUNS} (SLURM's default MaxArraySize); split the sweep`);
  }
}

/** Parse and check a grid JSON file's text (unknown fields are errors). */
export function parseGrid(text: string, source = "grid"): SweepGrid {
  if (text.length > 1 << 20) throw new Error(`${source}: larger than 1 MiB; not a grid file`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${source}: not JSON (${(e as Error).message})`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new Error(
      `${source}: expected an object {methods, orders, seeds, lrs, args, methodArgs}`,
    );
  }
  const known = new Set(["methods", "orders", "seeds", "lrs", "args", "methodArgs"]);
  for (const k of Object.keys(json)) {
    if (!known.has(k)) {
      throw new Error(`${source}: unknown field "${k}" (known: ${[...known].join(", ")})`);
    }
  }
  const g = json as SweepGrid;
  try {
    validateGrid(g);
  } catch (e) {
    throw new Error(`${source}: ${(e as Error).message}`);
  }
  return g;
}

function orderLabels(orders: string[]): string[] {
  const custom = orders.filter((o) => !/^(i|ii)$/i.test(o.trim())).length;
  let k = 0;
  return orders.map((o) => {
    if (/^(i|ii)$/i.test(o.trim())) return o.trim().toUpperCase();
    k++;
    return custom > 1 ? `custom${k}` : "custom";
  });
}

/** Expand a grid into its runs (pure). Run folders: `<saveRoot>/order-<o>/<method>[/lr-<lr>]/seed<s>`. */
export function expandGrid(g: SweepGrid, saveRoot: string): SweepRun[] {
  validateGrid(g);
  const root = saveRoot.replace(/\/+$/, "");
  const labels = orderLabels(g.orders);
  const lrs: (string | undefined)[] = g.lrs?.length ? g.lrs : [undefined];
  const runs: SweepRun[] = [];
  for (const method of g.methods) {
    g.orders.forEach((order, oi) => {
      for (const lr of lrs) {
        for (const seed of g.seeds ?? [1]) {
          const lrPart = lr === undefined ? "" : `-lr${safeName(lr)}`;
          runs.push({
            index: runs.length,
            method,
            order,
            orderLabel: labels[oi],
            tasks: resolveOrder(order),
            seed,
            lr,
            name: safeName(`${method}-order${labels[oi]}${lrPart}-seed${seed}`),
            saveDir: `${root}/order-${labels[oi]}/${safeName(method)}${
              lr === undefined ? "" : `/lr-${safeName(lr)}`
            }/seed${seed}`,
            extraArgs: [
              ...(lr === undefined ? [] : ["--lr-per-task", lr]),
              ...(g.args ?? []),
              ...(g.methodArgs?.[method] ?? []),
            ],
          });
        }
      }
    });
  }
  return runs;
}

function substitute(word: string, vars: Record<string, string>): string {
  return word.replace(
    /\{(order|method|seed|save|task|index|run)\}/g,
    (_, k: string) => vars[k],
  );
}

/** The argv of run `run` at task position `position` (0-based). */
export function runArgv(
  run: SweepRun,
  position: number,
  command: readonly string[] = DEFAULT_SEQUENCE_COMMAND,
): string[] {
  const task = run.tasks[position];
  if (task === undefined) throw new Error(`run ${run.name} has no task position ${position + 1}`);
  const vars = {
    order: run.order,
    method: run.method,
    seed: String(run.seed),
    save: run.saveDir,
    task,
    index: String(position + 1),
    run: String(run.index),
  };
  return [...command.map((w) => substitute(w, vars)), ...run.extraArgs];
}

/**
 * A bash `case` on `$var` setting `RUN` (the run's name), `TASK` and the array `ARGV` for every
 * grid element at task position `position` (shared by the SLURM and Kubernetes scripts).
 */
export function renderRunCase(
  runs: SweepRun[],
  position: number,
  command: readonly string[] = DEFAULT_SEQUENCE_COMMAND,
  variable = "I",
): string {
  const lines = runs.map((r) =>
    `  ${r.index}) RUN=${shellQuote(r.name)}; TASK=${shellQuote(r.tasks[position])}; ARGV=(${
      runArgv(r, position, command).map(shellQuote).join(" ")
    }) ;;`
  );
  return `case "$${variable}" in\n${
    lines.join("\n")
  }\n  *) echo "[mtil] no grid element $${variable} (0-${runs.length - 1})" >&2; exit 2 ;;\nesac`;
}

/** The sweep manifest (`sweep.json`) written beside the scripts and into the runs' root. */
export interface SweepManifest {
  /** Format marker. */
  kind: "mtil-sweep";
  /** The grid. */
  grid: SweepGrid;
  /** Root of the run folders. */
  saveRoot: string;
  /** Number of task positions (job arrays / Indexed Jobs). */
  positions: number;
  /** Every run. */
  runs: {
    index: number;
    name: string;
    method: string;
    order: string;
    orderLabel: string;
    seed: number;
    lr?: string;
    saveDir: string;
    tasks: string[];
  }[];
}

/** Build the manifest of a sweep. */
export function sweepManifest(g: SweepGrid, runs: SweepRun[], saveRoot: string): SweepManifest {
  return {
    kind: "mtil-sweep",
    grid: g,
    saveRoot,
    positions: runs[0]?.tasks.length ?? 0,
    runs: runs.map((r) => ({
      index: r.index,
      name: r.name,
      method: r.method,
      order: r.order,
      orderLabel: r.orderLabel,
      seed: r.seed,
      ...(r.lr === undefined ? {} : { lr: r.lr }),
      saveDir: r.saveDir,
      tasks: r.tasks,
    })),
  };
}

/** One generated file. */
export interface GeneratedFile {
  /** Path relative to the output folder. */
  path: string;
  /** Content. */
  content: string;
  /** Whether it is executable. */
  executable?: boolean;
}

/** Write generated files under `dir` atomically (temp file + rename); returns absolute paths. */
export async function writeGenerated(dir: string, files: GeneratedFile[]): Promise<string[]> {
  const written: string[] = [];
  for (const f of files) {
    const path = `${dir}/${f.path}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    const tmp = `${path}.tmp-${Deno.pid}`;
    await Deno.writeTextFile(tmp, f.content, { mode: f.executable ? 0o755 : 0o644 });
    await Deno.rename(tmp, path);
    written.push(path);
  }
  return written;
}

/** The grid flags shared by `deno task slurm` and `deno task k8s`, as `parseArgs` returns them. */
export interface GridFlags {
  /** `--order` (repeatable). */
  order?: string[];
  /** `--method`. */
  method?: string;
  /** `--methods a,b`. */
  methods?: string;
  /** `--seeds 1,2` (default 1). */
  seeds?: string;
  /** `--lrs a,b`. */
  lrs?: string;
  /** `--grid FILE.json` (exclusive with the flags above). */
  grid?: string;
}

/**
 * The sweep grid the flags describe: `--grid FILE` (read and checked by {@link parseGrid}), or
 * `--order`, `--method(s)`, `--seeds`, `--lrs`. `extraArgs` (after `--`) go to every run. Throws
 * an error naming the flag for a missing or conflicting one.
 */
export async function gridFromFlags(f: GridFlags, extraArgs: string[] = []): Promise<SweepGrid> {
  const list = (s: string | undefined) =>
    (s ?? "").split(",").map((x) => x.trim()).filter((x) => x !== "");
  if (f.grid) {
    const clash = (["order", "method", "methods", "seeds", "lrs"] as const).filter((k) =>
      f[k] !== undefined
    );
    if (clash.length) throw new Error(`--grid describes the grid: drop --${clash.join(", --")}`);
    let text: string;
    try {
      text = await Deno.readTextFile(f.grid);
    } catch (e) {
      throw new Error(`--grid ${f.grid}: ${(e as Error).message}`);
    }
    const grid = parseGrid(text, f.grid);
    return extraArgs.length ? { ...grid, args: [...(grid.args ?? []), ...extraArgs] } : grid;
  }
  const methods = [...new Set([...list(f.method), ...list(f.methods)])];
  const missing = [
    !f.order?.length && "--order",
    methods.length === 0 && "--method/--methods",
  ].filter(Boolean);
  if (missing.length) throw new Error(`missing ${missing.join(", ")} (or --grid FILE)`);
  const seeds = list(f.seeds ?? "1").map((s) => {
    if (!/^\d+$/.test(s)) throw new Error(`--seeds: "${s}" is not a whole number`);
    return Number(s);
  });
  return {
    methods,
    orders: f.order!,
    seeds,
    ...(f.lrs ? { lrs: list(f.lrs) } : {}),
    args: extraArgs,
  };
}
