/**
 * `deno task bench:lora [--model ViT-B/32] [--batch 8] [--steps 3] [--dropout 0.1] [--backend NAME]`:
 * training
 * step time and memory of LoRA against full fine-tuning on a random model of a released shape.
 * Each mode runs in its own subprocess so that peak memory (VmHWM) is its own. Prints a table.
 *
 * @module
 */
import { requireNumberFlag, runMain } from "../methods/flags.ts";
import { parseArgs } from "./cli.ts";
import { initBackend } from "../clip/backends/backend.ts";
import { buildClip, MODEL_CONFIGS, randomStateDict } from "../clip/model.ts";
import { tf } from "../clip/backends/tf.ts";
import { ceLoss, createRun, disposeRun, runSteps, type TrainTask } from "../methods/train.ts";
import { injectLora, loraParameterCounts } from "../lora/lora.ts";

/** One measured configuration. */
export interface LoraBenchRow {
  /** `full` or `lora`. */
  mode: string;
  /** Trainable parameters. */
  trainable: number;
  /** Mean seconds per step (after one warm-up step). */
  secondsPerStep: number;
  /** Peak resident memory of the process (MiB). */
  peakRssMiB: number;
  /** tfjs bytes held after the steps (MiB). */
  tensorMiB: number;
}

function peakRss(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
    if (m) return Number(m[1]) / 1024;
  } catch { /* not Linux */ }
  return Deno.memoryUsage().rss / 2 ** 20;
}

/** Measure one mode in this process. */
export async function measure(
  mode: "full" | "lora",
  model: string,
  batch: number,
  steps: number,
  dropout = 0.1,
): Promise<LoraBenchRow> {
  const config = MODEL_CONFIGS[model];
  if (!config) throw new Error(`unknown model ${model}`);
  const clip = buildClip(randomStateDict(config, 0));
  const classes = 10;
  const res = config.imageResolution;
  const textTokens = tf.tidy(() => {
    const t = tf.buffer([classes, config.contextLength], "int32");
    for (let c = 0; c < classes; c++) {
      t.set(49406, c, 0);
      t.set(100 + c, c, 1);
      t.set(49407, c, 2);
    }
    return t.toTensor() as tf.Tensor2D;
  });
  const task: TrainTask = {
    name: "bench",
    classnames: Array.from({ length: classes }, (_, i) => `c${i}`),
    textTokens,
    batch: (s) =>
      Promise.resolve({
        images: tf.randomNormal([batch, res, res, 3], 0, 1, "float32", s) as tf.Tensor4D,
        labels: Array.from({ length: batch }, (_, i) => (i + s) % classes),
      }),
  };
  let trainable: number;
  const options: Parameters<typeof createRun>[2] = {
    iterations: steps + 1,
    lr: 1e-5,
    warmupLength: 1,
    parts: [ceLoss({ labelSmoothing: 0.2 })],
  };
  const lora = mode === "lora" ? injectLora(clip, { dropout }) : undefined;
  if (lora) {
    options.extraParams = new Map([...lora.variables].map(([k, v]) => [`lora.${k}`, v]));
    options.onlyExtra = true;
    trainable = loraParameterCounts(clip, lora).trainable;
  } else {
    trainable = 0;
    for (const [k, v] of clip.params) if (v.trainable && k !== "logit_scale") trainable += v.size;
  }
  const times: number[] = [];
  let t = performance.now();
  options.onStep = () => {
    const now = performance.now();
    times.push((now - t) / 1000);
    t = now;
  };
  const run = await createRun(clip, task, options);
  t = performance.now();
  await runSteps(run);
  const tensorMiB = tf.memory().numBytes / 2 ** 20;
  disposeRun(run);
  const measured = times.slice(1);
  return {
    mode,
    trainable,
    secondsPerStep: measured.reduce((a, b) => a + b, 0) / measured.length,
    peakRssMiB: peakRss(),
    tensorMiB,
  };
}

/** Entry point: runs each mode in a subprocess and prints the table. */
export async function main(argv: string[]): Promise<LoraBenchRow[]> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: "string", default: "ViT-B/32" },
      batch: { type: "string", default: "8" },
      steps: { type: "string", default: "3" },
      backend: { type: "string" },
      child: { type: "string" },
      dropout: { type: "string", default: "0.1" },
    },
    strict: true,
  });
  const model = values.model!;
  const batch = requireNumberFlag("batch", values.batch, { integer: true, min: 1 });
  const steps = requireNumberFlag("steps", values.steps, { integer: true, min: 1 });
  const dropout = requireNumberFlag("dropout", values.dropout, { min: 0, below: 1 });
  if (values.child) {
    await initBackend({ prefer: values.backend, quiet: true });
    const row = await measure(
      values.child as "full" | "lora",
      model,
      batch,
      steps,
      dropout,
    );
    console.log(JSON.stringify(row));
    return [row];
  }
  const backend = await initBackend({ prefer: values.backend, quiet: true });
  const rows: LoraBenchRow[] = [];
  for (const mode of ["full", "lora"]) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL(import.meta.url).pathname,
        "--child",
        mode,
        "--model",
        model,
        "--batch",
        String(batch),
        "--steps",
        String(steps),
        "--backend",
        backend,
      ],
      stderr: "inherit",
    }).output();
    const line = new TextDecoder().decode(out.stdout).trim().split("\n").pop()!;
    rows.push(JSON.parse(line));
  }
  console.log(
    `\nLoRA (dropout ${values.dropout}) vs full fine-tuning, ${model} (random weights), ` +
      `batch ${batch}, ${backend}`,
  );
  console.log("| mode | trainable params | s/step | peak RSS (MiB) | tfjs tensors (MiB) |");
  console.log("| --- | ---: | ---: | ---: | ---: |");
  for (const r of rows) {
    console.log(
      `| ${r.mode} | ${r.trainable.toLocaleString("en-US")} | ${r.secondsPerStep.toFixed(2)} | ` +
        `${r.peakRssMiB.toFixed(0)} | ${r.tensorMiB.toFixed(0)} |`,
    );
  }
  return rows;
}

if (import.meta.main) await runMain(() => main(Deno.args));
