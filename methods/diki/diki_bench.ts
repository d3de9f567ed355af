/**
 * DIKI next to finetune and ZSCL on a tiny CLIP: training-step time, tensor-memory peak, peak
 * RSS, trained parameters. Each method runs in its own subprocess (so peak RSS is its own):
 *
 * ```sh
 * deno run -A methods/diki/diki_bench.ts [--steps 8] [--batch 32] [--backend wasm]
 * ```
 *
 * The model is the `vit-tiny` fixture of `../shared` when present (else a random model of the
 * same shape). Every method goes through the training engine, so a step includes the batch, the
 * forward and backward passes and the optimizer; ZSCL adds its reference batch and frozen
 * teacher, DIKI its prefixes (the Gaussian pass before the first step is reported apart).
 *
 * @module
 */
import { baseParts, zsclPart } from "../presets.ts";
import { parseArgs } from "node:util";
import { tf } from "../../clip/backends/tf.ts";
import { initBackend } from "../../clip/backends/backend.ts";
import { buildClip, randomStateDict } from "../../clip/model.ts";
import { readCheckpoint } from "../../clip/formats/checkpoint.ts";
import type { ClipConfig } from "../../clip/types.ts";
import { HAS_SHARED, sharedPath, VIT_TINY_CONFIG } from "../../clip/_testing.ts";
import { createRun, disposeRun, runSteps, type TrainOptions, type TrainTask } from "../train.ts";
import "../presets.ts";
import { diki } from "./diki.ts";

const VIT_TINY: ClipConfig = VIT_TINY_CONFIG;

const { values: a } = parseArgs({
  args: Deno.args,
  options: {
    steps: { type: "string", default: "8" },
    batch: { type: "string", default: "32" },
    backend: { type: "string", default: "wasm" },
    child: { type: "string" },
  },
});
const steps = Number(a.steps), batch = Number(a.batch);

function peakRssMiB(): number {
  const m = Deno.readTextFileSync("/proc/self/status").match(/VmHWM:\s+(\d+) kB/);
  return m ? Number(m[1]) / 1024 : NaN;
}

function tokens(n: number, seed: number): tf.Tensor2D {
  const rows = new Int32Array(n * 77);
  for (let i = 0; i < n; i++) {
    rows[i * 77] = 49406;
    for (let j = 1; j < 8; j++) rows[i * 77 + j] = 300 + ((i * 131 + j * 17 + seed) % 40000);
    rows[i * 77 + 8] = 49407;
  }
  return tf.tensor2d(rows, [n, 77], "int32");
}

async function child(method: string) {
  const backend = await initBackend({ prefer: a.backend, quiet: true });
  const sd = HAS_SHARED
    ? (await readCheckpoint(sharedPath("fixtures/clip/vit-tiny.jit.pt"))).stateDict
    : randomStateDict(VIT_TINY, 1);
  const model = buildClip(sd);
  const classes = 10;
  const textTokens = tokens(classes, 1);
  const refTexts = tokens(20, 2);
  const imgs = (s: number) =>
    tf.randomNormal([batch, 32, 32, 3], 0, 1, "float32", 1000 + s) as tf.Tensor4D;
  const task: TrainTask = {
    name: "bench",
    classnames: Array.from({ length: classes }, (_, i) => `c${i}`),
    textTokens,
    batchesPerEpoch: steps,
    batch: (s) =>
      Promise.resolve({
        images: imgs(s),
        labels: Array.from({ length: batch }, (_, i) => (i + s) % classes),
      }),
  };
  let options: TrainOptions = { iterations: steps, finalStep: false };
  const d = method === "DIKI" ? diki(model, { tasks: 11 }) : undefined;
  if (d) {
    const setup = d.trainSetup(0);
    options = { ...options, ...setup.options, parts: setup.parts };
  } else {
    options = {
      ...options,
      lr: 1e-5,
      weightDecay: 0.1,
      warmupLength: 0,
      parts: [
        ...baseParts({ labelSmoothing: 0.2 }),
        ...(method === "ZSCL"
          ? [zsclPart({ refTexts, refImages: (s: number) => Promise.resolve(imgs(5000 + s)) })]
          : []),
      ],
    };
  }
  const times: number[] = [];
  let last = 0;
  let initMs = 0;
  const prof = await tf.profile(async () => {
    const t0 = performance.now();
    const run = await createRun(model, task, {
      ...options,
      onStep: () => {
        const now = performance.now();
        times.push(now - last);
        last = now;
      },
    });
    initMs = performance.now() - t0;
    last = performance.now();
    await runSteps(run);
    const trained = run.trainable.reduce((s, n) => s + run.params.get(n)!.size, 0);
    disposeRun(run);
    (globalThis as Record<string, unknown>).trained = trained;
    return tf.scalar(0);
  });
  const rest = times.slice(1).sort((x, y) => x - y);
  console.log(JSON.stringify({
    method,
    backend,
    batch,
    stepMs: rest[Math.floor(rest.length / 2)],
    initMs,
    tfPeakMiB: prof.peakBytes / 2 ** 20,
    peakRssMiB: peakRssMiB(),
    trained: (globalThis as Record<string, unknown>).trained,
    model: HAS_SHARED ? "vit-tiny fixture" : "random vit-tiny",
  }));
  d?.dispose();
  tf.dispose([textTokens, refTexts]);
  model.dispose();
}

if (a.child) await child(a.child);
else {
  const load = () => Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
  console.log(`load average before: ${load()}`);
  const rows = [];
  for (const method of ["finetune", "ZSCL", "DIKI"]) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", import.meta.filename!, ...Deno.args, "--child", method],
      stderr: "inherit",
    }).output();
    const line = new TextDecoder().decode(out.stdout).trim().split("\n").pop()!;
    rows.push(JSON.parse(line));
  }
  console.table(rows.map((r) => ({
    method: r.method,
    "step (ms)": r.stepMs.toFixed(1),
    "init (ms)": r.initMs.toFixed(0),
    "tf peak (MiB)": r.tfPeakMiB.toFixed(1),
    "peak RSS (MiB)": r.peakRssMiB.toFixed(0),
    "trained params": r.trained,
  })));
  console.log(
    `${rows[0].model}, backend ${rows[0].backend}, batch ${batch}; load average after: ${load()}`,
  );
}
