/**
 * `deno task pretrain-synth [--steps N] [--batch-size N] [--seed S] [--out PATH]`: trains the
 * embedded tiny CLIP from scratch on SynthMTIL image–caption pairs (contrastive loss) and saves
 * it in fp16 to `data/models/synth-tiny.safetensors` (the model `deno task demo` uses), then
 * prints its zero-shot accuracy on every SynthMTIL attribute.
 *
 * @module
 */
import { requireNumberFlag, runMain } from "../methods/flags.ts";
import { parseArgs } from "./cli.ts";
import { initBackend } from "../clip/backends/backend.ts";
import { EMBEDDED_MODEL_PATH, saveClip } from "../clip/load.ts";
import { pretrainSynthClip, synthPretrainConfig } from "../methods/pretrain.ts";
import { evaluateDataset } from "../methods/evaluate.ts";
import { SYNTH_ATTRIBUTE_NAMES, synthTask } from "../datasets/synth.ts";
import { SYNTH_DOMAIN_TASK_NAMES, synthDomainTask } from "../datasets/synth_domains.ts";
import type { ClipModel } from "../clip/types.ts";

/**
 * Zero-shot top-1 (percent) of a model on each SynthMTIL attribute's test split (pretraining
 * domain) and on each downstream task (held-out concepts and domains).
 */
export async function synthZeroShot(
  model: ClipModel,
  n = 600,
): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const attr of SYNTH_ATTRIBUTE_NAMES) {
    const ds = synthTask(attr, { split: "test", n, size: model.config.imageResolution });
    out[attr] = (await evaluateDataset(model, ds, { batchSize: 200 })).top1;
  }
  for (const name of SYNTH_DOMAIN_TASK_NAMES) {
    const ds = synthDomainTask(name, { split: "test", n, size: model.config.imageResolution });
    out[name] = (await evaluateDataset(model, ds, { batchSize: 200 })).top1;
  }
  return out;
}

/** Entry point. */
export async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      steps: { type: "string", default: String(synthPretrainConfig.steps) },
      "batch-size": { type: "string", default: String(synthPretrainConfig.batchSize) },
      lr: { type: "string", default: String(synthPretrainConfig.lr) },
      seed: { type: "string", default: "0" },
      out: { type: "string", default: EMBEDDED_MODEL_PATH },
      backend: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(
      "deno task pretrain-synth [--steps N] [--batch-size N] [--lr X] [--seed S] [--out PATH]",
    );
    return;
  }
  const opts = {
    steps: requireNumberFlag("steps", values.steps, { integer: true, min: 1 }),
    batchSize: requireNumberFlag("batch-size", values["batch-size"], { integer: true, min: 1 }),
    lr: requireNumberFlag("lr", values.lr, { positive: true }),
    seed: requireNumberFlag("seed", values.seed, { integer: true, min: 0 }),
  };
  const backend = await initBackend({ prefer: values.backend });
  const t0 = performance.now();
  const { model, losses } = pretrainSynthClip(opts);
  const secs = (performance.now() - t0) / 1000;
  const zs = await synthZeroShot(model);
  const tail = losses.slice(-50);
  const meta = {
    name: "synth-tiny",
    pretrain: {
      ...opts,
      backend,
      seconds: Math.round(secs),
      finalLoss: tail.reduce((a, b) => a + b, 0) / tail.length,
    },
    zeroShot: zs,
  };
  await Deno.mkdir(new URL(".", `file://${values.out}`).pathname, { recursive: true });
  await saveClip(values.out!, model, meta, { floatDtype: "float16" });
  console.log(
    `saved ${values.out} (${(await Deno.stat(values.out!)).size} bytes) after ${secs.toFixed(0)} s`,
  );
  console.log(
    "zero-shot top-1 (%):",
    Object.entries(zs).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(", "),
  );
  model.dispose();
}

if (import.meta.main) await runMain(() => main(Deno.args));
