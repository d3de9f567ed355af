/**
 * `deno task demo`: the embedded default, offline. Takes the bundled tiny CLIP
 * (`data/models/synth-tiny.safetensors`, made by `deno task pretrain-synth`; built first if
 * missing), runs the SynthMTIL downstream sequence (fabrics → sizes → hues: held-out classes in visual
 * domains the model never saw) once per method (finetune and ZSCL by default),
 * prints the accuracy matrices and MTIL scores side by side, and writes plots to
 * `runs/demo/<method>/`. A thin wrapper around `runDemo`.
 *
 * Flags: `--iterations N` per task (default 100), `--eval-limit N` test images per task (default
 * 400), `--methods a,b` (default finetune,ZSCL; also lwf, DIKI), `--out DIR` (default `runs/demo`), `--fresh`
 * (discard earlier results; otherwise a rerun continues or reuses them), `--backend NAME`
 * (default wasm, the fastest for this tiny model).
 *
 * @module
 */
import { parseArgs } from "./cli.ts";
import { initBackend } from "../clip/backends/backend.ts";
import { EMBEDDED_MODEL_PATH } from "../clip/load.ts";
import { DEMO_METHOD_CHOICES, DEMO_METHODS, type DemoRun, runDemo } from "../methods/demo.ts";
import { sideBySide } from "../methods/report.ts";
import { learningGains } from "../methods/metrics.ts";
import { numberFlag } from "./train_flags.ts";
import { FlagError, runMain } from "../methods/flags.ts";
import { main as pretrain } from "./pretrain_synth.ts";

const USAGE =
  "deno task demo [--iterations N] [--eval-limit N] [--methods a,b] [--out DIR] [--fresh] [--backend NAME]";

/** Entry point: returns each method's run. */
export async function main(argv: string[]): Promise<DemoRun[]> {
  const { values } = parseArgs({
    args: argv,
    options: {
      iterations: { type: "string", default: "100" },
      out: { type: "string", default: "runs/demo" },
      "eval-limit": { type: "string", default: "400" },
      methods: { type: "string", default: DEMO_METHODS.join(",") },
      fresh: { type: "boolean", default: false },
      backend: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    return [];
  }
  // Every value is checked before any work starts.
  const iterations = numberFlag(values, "iterations", { integer: true, positive: true })!;
  const evalLimit = numberFlag(values, "eval-limit", { integer: true, positive: true })!;
  const methods = values.methods!.split(",").map((s) => s.trim()).filter((s) => s);
  for (const m of methods) {
    if (!DEMO_METHOD_CHOICES.includes(m)) {
      throw new FlagError(
        "methods",
        `--methods: unknown "${m}"; use ${DEMO_METHOD_CHOICES.join(", ")}`,
      );
    }
  }
  const t0 = performance.now();
  // The tiny model trains fastest on wasm (per-op overhead dominates; see `deno task bench`),
  // unless a backend is asked for.
  await initBackend({
    prefer: values.backend ?? (Deno.env.get("MTIL_BACKEND") ? undefined : "wasm"),
  });
  try {
    await Deno.stat(EMBEDDED_MODEL_PATH);
  } catch {
    console.log(`${EMBEDDED_MODEL_PATH} is missing: pretraining it on SynthMTIL captions first`);
    await pretrain(values.backend ? ["--backend", values.backend] : []);
  }
  const out = values.out!;
  if (values.fresh) await Deno.remove(out, { recursive: true }).catch(() => {});
  const runs = await runDemo({
    methods,
    iterations,
    evalLimit,
    out,
    log: "progress",
    onRow: (_m, _matrix, row) => {
      if (row === "zero-shot") console.log("zero-shot row done");
    },
  });
  console.log(`\n${"=".repeat(30)} SynthMTIL: top-1 accuracy (%) ${"=".repeat(30)}`);
  console.log(sideBySide(runs));
  // what each method learnt: accuracy right after training on a task minus its zero-shot accuracy
  for (const r of runs) {
    if (!r.finished) continue;
    const gains = learningGains(r.matrix).map((g) => `${g >= 0 ? "+" : ""}${g.toFixed(1)}`);
    const votes = r.matrix.details?.[r.matrix.tasks.length - 1]
      ?.map((d, i) =>
        d?.voteAccuracy === undefined ? "" : `${r.matrix.datasets[i]} ${d.voteAccuracy.toFixed(0)}%`
      )
      .filter((s) => s);
    console.log(
      `${r.name.padEnd(9)} learning (diagonal − zero-shot): ${gains.join(" ")}` +
        (votes?.length ? `; task vote right: ${votes.join(", ")}` : ""),
    );
  }
  const secs = ((performance.now() - t0) / 1000).toFixed(0);
  console.log(`\nplots and results: ${out}/{${methods.join(",")}}/  (${secs} s)`);
  return runs;
}

if (import.meta.main) await runMain(() => main(Deno.args).then(() => 0));
