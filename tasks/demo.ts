/**
 * `deno task demo`: the embedded default, offline. Takes the bundled tiny CLIP
 * (`data/models/synth-tiny.safetensors`, made by `deno task pretrain-synth`; built first if
 * missing), runs the SynthMTIL downstream sequence (fabrics → sizes → hues: held-out concepts in
 * their own visual domains, see `datasets/synth_domains.ts`) once with plain finetuning and once
 * with ZSCL (distilling from the zero-shot model on SynthMTIL captions, the pretraining data),
 * prints both accuracy matrices and their MTIL scores side by side, and writes plots to
 * `runs/demo/<method>/`.
 *
 * Flags: `--iterations N` per task (default 100), `--out DIR` (default `runs/demo`), `--fresh`
 * (discard earlier results; otherwise a rerun continues or reuses them), `--backend NAME`
 * (default wasm, the fastest for this tiny model),
 * `--eval-limit N` test images per task (default 400).
 *
 * @module
 */
import { parseArgs } from "./cli.ts";
import { initBackend } from "../clip/backends/backend.ts";
import { EMBEDDED_MODEL_PATH } from "../clip/load.ts";
import { SYNTH_DEMO_ORDER } from "../datasets/synth_domains.ts";
import { formatMatrix, formatScores, parseSequenceArgs, runSequenceArgs } from "./sequence.ts";
import { main as pretrain } from "./pretrain_synth.ts";
import type { SequenceMatrix } from "../methods/sequence.ts";
import type { MtilScores } from "../methods/metrics.ts";

/** Sequence arguments of one demo method (shared settings plus the method's own flags). */
export function demoArgs(
  method: "finetune" | "ZSCL",
  opts: { iterations: number; out: string; evalLimit: number; backend?: string },
): string[] {
  const order = SYNTH_DEMO_ORDER.join(",");
  const common = [
    "--model",
    "synth-tiny",
    "--order",
    order,
    "--iterations",
    String(opts.iterations),
    "--batch-size",
    "32",
    "--lr",
    "4e-4",
    "--warmup-length",
    "10",
    "--ls",
    "0.2",
    "--seed",
    "1",
    "--eval-limit",
    String(opts.evalLimit),
    "--save",
    `${opts.out}/${method}`,
    "--title",
    `${method}`,
    "--quiet",
    ...(opts.backend ? ["--backend", opts.backend] : []),
  ];
  if (method === "finetune") return [...common, "--method", "finetune"];
  return [
    ...common,
    "--method",
    "ZSCL",
    "--ref-dataset",
    "Synth-captions",
    "--ref-sentences",
    "Synth-captions",
    "--ref-sentences-limit",
    "256",
    "--image-loss",
    "--text-loss",
    "--T",
    "2",
  ];
}

/** Two accuracy matrices side by side with their scores. */
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

/** Entry point. */
export async function main(
  argv: string[],
): Promise<{ name: string; matrix: SequenceMatrix; scores?: MtilScores }[]> {
  const { values } = parseArgs({
    args: argv,
    options: {
      iterations: { type: "string", default: "100" },
      out: { type: "string", default: "runs/demo" },
      "eval-limit": { type: "string", default: "400" },
      fresh: { type: "boolean", default: false },
      backend: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(
      "deno task demo [--iterations N] [--eval-limit N] [--out DIR] [--fresh] [--backend NAME]",
    );
    return [];
  }
  const t0 = performance.now();
  // The tiny model trains fastest on wasm (per-op overhead dominates; see `deno task bench`),
  // unless a backend is asked for.
  const backend = await initBackend({
    prefer: values.backend ?? (Deno.env.get("MTIL_BACKEND") ? undefined : "wasm"),
  });
  try {
    await Deno.stat(EMBEDDED_MODEL_PATH);
  } catch {
    console.log(`${EMBEDDED_MODEL_PATH} is missing: pretraining it on SynthMTIL captions first`);
    await pretrain(values.backend ? ["--backend", values.backend] : []);
  }
  if (values.fresh) await Deno.remove(values.out!, { recursive: true }).catch(() => {});
  const opts = {
    iterations: Number(values.iterations),
    out: values.out!,
    evalLimit: Number(values["eval-limit"]),
    backend,
  };
  const runs = [];
  for (const method of ["finetune", "ZSCL"] as const) {
    console.log(`\n######## ${method}`);
    const r = await runSequenceArgs(parseSequenceArgs(demoArgs(method, opts)));
    runs.push({ name: method, matrix: r.matrix, scores: r.scores });
    if (!r.finished) break;
  }
  console.log(`\n${"=".repeat(30)} SynthMTIL: top-1 accuracy (%) ${"=".repeat(30)}`);
  console.log(sideBySide(runs));
  console.log(
    `\nplots and results: ${opts.out}/{finetune,ZSCL}/  (${
      ((performance.now() - t0) / 1000).toFixed(0)
    } s)`,
  );
  return runs;
}

if (import.meta.main) await main(Deno.args);
