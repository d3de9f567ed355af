/**
 * DIKI on the SynthMTIL sequence through the library API alone (no CLI): the embedded `synth-tiny`
 * CLIP, the demo's order, batch size, iterations and evaluation size, {@link runDikiSequence}.
 * Prints the accuracy matrix, the MTIL scores and the task-vote accuracies.
 *
 * ```sh
 * deno run -A methods/diki/synth_example.ts [--out runs/diki-synth] [--iterations 80]
 *   [--eval-limit 400] [--weight-scale 512] [--backend wasm]
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { initBackend } from "../../clip/backends/backend.ts";
import { loadClip } from "../../clip/load.ts";
import { loadDataset } from "../../datasets/registry.ts";
import { SYNTH_ORDER } from "../../datasets/synth.ts";
import { trainTransform } from "../../datasets/transforms.ts";
import { StepBatches } from "../data.ts";
import { tokenizeFor } from "../evaluate.ts";
import { roundScores } from "../metrics.ts";
import { dikiPrompts } from "./evaluate.ts";
import { runDikiSequence } from "./sequence.ts";
import type { TrainTask } from "../train.ts";

const { values: a } = parseArgs({
  args: Deno.args,
  options: {
    out: { type: "string", default: "runs/diki-synth" },
    iterations: { type: "string", default: "80" },
    "eval-limit": { type: "string", default: "400" },
    "weight-scale": { type: "string", default: "512" },
    backend: { type: "string", default: "wasm" },
  },
});

await initBackend({ prefer: a.backend, quiet: true });
const { model } = await loadClip("synth-tiny");
const order = SYNTH_ORDER.map((s) => `Synth-${s}`);
const streams: StepBatches[] = [];
const t0 = performance.now();
const r = await runDikiSequence({
  model,
  order,
  saveDir: a.out!,
  config: { iterations: Number(a.iterations), batch: 32, seed: 1, weightScale: a["weight-scale"] },
  diki: { weightScale: Number(a["weight-scale"]) },
  trainOptions: { iterations: Number(a.iterations) },
  evaluate: { limit: Number(a["eval-limit"]), batchSize: 256 },
  testDataset: (name) => loadDataset(name, { split: "test" }),
  async trainTask(_i, name): Promise<TrainTask> {
    const ds = await loadDataset(name, { split: "train" });
    const stream = new StepBatches(ds, {
      batchSize: 32,
      seed: 1,
      transform: trainTransform(model.config.imageResolution),
    });
    streams.push(stream);
    return {
      name,
      classnames: ds.classnames,
      textTokens: await tokenizeFor(model, dikiPrompts(ds.classnames, ds.templates[0])),
      batch: (s) => stream.batch(s),
      // the Gaussian is fitted on the images the run trains on (one pass, as the reference)
      batchesPerEpoch: Math.min(stream.perEpoch, Number(a.iterations)),
    };
  },
  onRow(m, row) {
    const label = row === "zero-shot" ? "zero-shot" : `after ${order[row]}`;
    const vals = row === "zero-shot" ? m.zeroShot! : m.values[row];
    console.log(`${label.padEnd(22)} ${vals.map((v) => v.toFixed(1).padStart(6)).join(" ")}`);
  },
});
for (const s of streams) await s.close();
if (r.scores) console.log(JSON.stringify(roundScores(r.scores)));
console.log(await Deno.readTextFile(`${a.out}/diki_votes.json`));
console.log(`${((performance.now() - t0) / 1000).toFixed(0)} s`);
model.dispose();
