/**
 * `deno task bench`: speed of every TensorFlow.js backend that loads here, next to PyTorch.
 *
 * One run measures, per backend (each in its own subprocess, so peak memory is per backend):
 * matmul GFLOP/s ([1576×768]·[768×768]); `encodeImage` images/s for ViT-B/32- and RN50-sized
 * random models at batch 8; a full training step (forward, backward, AdamW) of the ViT-B/32 and
 * RN50 vision towers at batch 8 and of the tiny test model (the fixtures' `vit-tiny` CLIP, both towers,
 * contrastive loss); peak RSS. PyTorch runs the same through `tasks/bench_torch.py` when a
 * `python3` with torch is found (`/usr/bin/python3` first: Debian's `python3-torch`), else it is
 * skipped with a note. The headline is the ratio of the best tfjs backend to PyTorch.
 *
 * ```
 * deno task bench [--quick] [--backends cpu-dnnl,cpu-blas,wasm] [--profile] [--no-torch]
 *   [--threads N] [--json FILE]
 * deno run -A tasks/bench.ts --child cpu-dnnl --profile --only "ViT-B/32 train"   # one case
 * ```
 *
 * `--threads N` (default: every core) is the thread count of the native libraries of every
 * backend (OpenBLAS, oneDNN) and of PyTorch (`torch.set_num_threads`), so both sides run with the
 * same count. `--json FILE` also writes the results, the load average and the thread count as
 * JSON (atomically).
 *
 * `--profile` prints where the ViT-B/32 and RN50 training steps spend their time, kernel by kernel.
 * `--methods` adds finetune, ZSCL and DIKI side by side on the tiny CLIP (training-step time,
 * peak memory, trained parameters; `methods/diki/diki_bench.ts`).
 *
 * The pure-JS `cpu` backend (~100× slower) runs only the matmul and the tiny model unless it is
 * named in `--backends`.
 *
 * @module
 */
import { VIT_TINY_CONFIG } from "../clip/_testing.ts";
import { parseArgs } from "./cli.ts";
import { tf } from "../clip/backends/tf.ts";
import { availableBackends, initBackend } from "../clip/backends/backend.ts";
import { buildClip, MODEL_CONFIGS, randomStateDict } from "../clip/model.ts";
import type { ClipConfig, ClipModel } from "../clip/types.ts";
import { AdamW } from "../methods/adamw.ts";
import { runWebGpuChild } from "./_bench_webgpu.ts";
import { writeFileAtomic } from "../clip/formats/safetensors.ts";

/** Measurements of one backend (or PyTorch). */
export interface BenchResult {
  /** Backend name (`pytorch` for the reference). */
  backend: string;
  /** Matmul [1576×768]·[768×768] GFLOP/s. */
  matmulGflops?: number;
  /** ViT-B/32-sized `encodeImage`, batch 8, images/s. */
  vitEncode?: number;
  /** RN50-sized `encodeImage`, batch 8, images/s. */
  rnEncode?: number;
  /** ViT-B/32 vision tower training step at batch 8, seconds. */
  vitTrainStep?: number;
  /** RN50 vision tower training step at batch 8, seconds (BatchNorm in train mode). */
  rnTrainStep?: number;
  /** Tiny CLIP (both towers) training step at batch 8, seconds. */
  tinyTrainStep?: number;
  /** ViT-B/16 vision tower training step at batch 32, seconds (webgpu on a real GPU). */
  vitB16TrainStep32?: number;
  /** Peak resident memory, MiB. */
  peakRssMiB?: number;
  /** Skipped cases and errors. */
  notes: string[];
}

/** The fixtures' tiny ViT CLIP (`../shared/fixtures/clip/vit-tiny.expected.json`). */
export const TINY_CONFIG: ClipConfig = VIT_TINY_CONFIG;

const BATCH = 8;

function peakRssMiB(): number {
  try {
    const status = Deno.readTextFileSync("/proc/self/status");
    const m = status.match(/VmHWM:\s+(\d+) kB/);
    if (m) return Number(m[1]) / 1024;
  } catch {
    // not Linux
  }
  return Deno.memoryUsage().rss / 2 ** 20;
}

/**
 * Seconds per call: the fastest of the timed calls after one warm-up, repeating until
 * `minSeconds` have passed or `maxReps` calls were made (the best-of-N is the most stable number
 * on a machine shared with other work; `bench_torch.py` measures the same way).
 */
function timeIt(fn: () => void, minSeconds: number, maxReps: number, minReps = 1): number {
  fn();
  let reps = 0, best = Infinity;
  const t0 = performance.now();
  while (reps < maxReps && (reps < minReps || (performance.now() - t0) / 1000 < minSeconds)) {
    const t = performance.now();
    fn();
    best = Math.min(best, performance.now() - t);
    reps++;
  }
  return best / 1000;
}

function randomImages(n: number, res: number, seed: number): tf.Tensor4D {
  return tf.randomNormal([n, res, res, 3], 0, 1, "float32", seed) as tf.Tensor4D;
}

function randomTokens(n: number, ctx: number, seed: number): tf.Tensor2D {
  const ids = new Int32Array(n * ctx);
  let s = seed;
  for (let i = 0; i < n; i++) {
    const len = 5 + (i % 10);
    ids[i * ctx] = 49406;
    for (let j = 1; j < len; j++) {
      s = (s * 1103515245 + 12345) >>> 0;
      ids[i * ctx + j] = 1 + (s % 49000);
    }
    ids[i * ctx + len] = 49407;
  }
  return tf.tensor2d(ids, [n, ctx], "int32");
}

/**
 * `config` with a minimal text tower: the vision-only cases then allocate no 63M-parameter text
 * transformer (which matters on wasm's 4 GiB heap, where freed memory is never returned).
 */
function visionOnly(config: ClipConfig): ClipConfig {
  return {
    ...config,
    vocabSize: 8,
    transformerWidth: 64,
    transformerHeads: 1,
    transformerLayers: 1,
  };
}

function build(config: ClipConfig): ClipModel {
  return buildClip(randomStateDict(config, 1), { config });
}

/** Dispose the variables `keep` rejects (e.g. the text tower when only vision trains). */
function dropParams(model: ClipModel, keep: (key: string) => boolean): void {
  for (const [k, v] of model.params) {
    if (!keep(k)) {
      v.dispose();
      model.params.delete(k);
    }
  }
}

function trainableOf(model: ClipModel, prefix = ""): Map<string, tf.Variable> {
  const out = new Map<string, tf.Variable>();
  for (const [k, v] of model.params) if (v.trainable && k.startsWith(prefix)) out.set(k, v);
  return out;
}

function crossEntropy(logits: tf.Tensor2D): tf.Scalar {
  const n = logits.shape[0];
  const labels = tf.oneHot(tf.range(0, n, 1, "int32") as tf.Tensor1D, logits.shape[1]);
  return tf.losses.softmaxCrossEntropy(labels, logits) as tf.Scalar;
}

function l2n(x: tf.Tensor): tf.Tensor {
  return tf.div(x, tf.norm(x, "euclidean", -1, true));
}

/** One AdamW step on `params` for `loss`; returns the loss value. */
function trainStep(opt: AdamW, params: Map<string, tf.Variable>, loss: () => tf.Scalar): number {
  const keys = [...params.keys()];
  const vars = keys.map((k) => params.get(k)!);
  const { value, grads } = tf.variableGrads(loss, vars);
  const byKey = new Map<string, tf.Tensor>();
  for (let i = 0; i < keys.length; i++) {
    const g = grads[vars[i].name];
    if (g) byKey.set(keys[i], g);
  }
  opt.step(params, byKey);
  tf.dispose(Object.values(grads));
  const v = value.dataSync()[0];
  value.dispose();
  return v;
}

interface ChildOptions {
  threads: number;
  quick: boolean;
  profile: boolean;
  full: boolean;
  only?: string;
}

async function profileStep(fn: () => void): Promise<void> {
  const info = await tf.profile(fn);
  const byKernel = new Map<string, { ms: number; n: number }>();
  let total = 0;
  for (const k of info.kernels) {
    const ms = Number(await k.kernelTimeMs) || 0;
    total += ms;
    const e = byKernel.get(k.name) ?? { ms: 0, n: 0 };
    e.ms += ms;
    e.n++;
    byKernel.set(k.name, e);
  }
  const rows = [...byKernel].sort((a, b) => b[1].ms - a[1].ms).slice(0, 20);
  const calls = await Promise.all(
    info.kernels.map(async (k) => ({
      name: k.name,
      ms: Number(await k.kernelTimeMs) || 0,
      shapes: JSON.stringify(k.inputShapes),
    })),
  );
  calls.sort((a, b) => b.ms - a.ms);
  console.error("  slowest calls:");
  for (const c of calls.slice(0, 25)) {
    console.error(`    ${c.name.padEnd(22)} ${c.ms.toFixed(0).padStart(6)} ms  ${c.shapes}`);
  }
  console.error(`profile (${tf.getBackend()}): ${total.toFixed(0)} ms in kernels`);
  for (const [name, e] of rows) {
    console.error(
      `  ${name.padEnd(24)} ${e.ms.toFixed(0).padStart(7)} ms ${
        (100 * e.ms / total).toFixed(1).padStart(5)
      }%  ${e.n} calls`,
    );
  }
}

async function runChild(backend: string, o: ChildOptions): Promise<BenchResult> {
  const r: BenchResult = { backend, notes: [] };
  const active = await initBackend({ prefer: backend, quiet: true, threads: o.threads });
  if (active !== backend) throw new Error(`backend ${backend} did not activate (${active})`);
  if (backend === "webgpu") {
    // asynchronous reads only (tasks/_bench_webgpu.ts)
    const w = await runWebGpuChild({ quick: o.quick, tinyConfig: TINY_CONFIG, batch: BATCH });
    return { ...w, peakRssMiB: peakRssMiB() };
  }
  const slow = backend === "cpu" && !o.full;
  const minS = o.quick ? 0.5 : 2;
  const attempt = async (what: string, f: () => void | Promise<void>) => {
    if (o.only && !what.startsWith(o.only)) return;
    const t0 = performance.now();
    try {
      await f();
      console.error(`  ${backend}: ${what} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    } catch (e) {
      r.notes.push(`${what}: ${(e as Error).message.split("\n")[0]}`);
    }
  };

  await attempt("matmul", () => {
    const a = tf.randomNormal([1576, 768], 0, 1, "float32", 1);
    const b = tf.randomNormal([768, 768], 0, 1, "float32", 2);
    const s = timeIt(
      () => tf.tidy(() => void tf.matMul(a, b).dataSync()),
      slow ? 0 : minS,
      slow ? 1 : 50,
    );
    r.matmulGflops = 2 * 1576 * 768 * 768 / s / 1e9;
    tf.dispose([a, b]);
  });

  await attempt("tiny train step", () => {
    const model = build(TINY_CONFIG);
    model.training = true;
    const params = trainableOf(model);
    const opt = new AdamW({ lr: 1e-5, weightDecay: 0.1 });
    const x = randomImages(BATCH, TINY_CONFIG.imageResolution, 6);
    const tokens = randomTokens(BATCH, TINY_CONFIG.contextLength, 7);
    const loss = () =>
      tf.tidy(() => {
        const { logitsPerImage, logitsPerText } = model.forward(x, tokens);
        return tf.div(
          tf.add(crossEntropy(logitsPerImage), crossEntropy(logitsPerText)),
          2,
        ) as tf.Scalar;
      });
    r.tinyTrainStep = timeIt(
      () => tf.tidy(() => void trainStep(opt, params, loss)),
      minS,
      o.quick ? 3 : 20,
    );
    opt.disposeState();
    tf.dispose([x, tokens]);
    model.dispose();
  });
  if (slow) {
    r.notes.push("cpu: ViT-B/32 and RN50 cases skipped (~100× slower; name it in --backends)");
  } else {
    for (const [name, key] of [["ViT-B/32", "vitEncode"], ["RN50", "rnEncode"]] as const) {
      await attempt(`${name} encodeImage`, () => {
        const config = MODEL_CONFIGS[name];
        const model = build(visionOnly(config));
        dropParams(model, (k) => k.startsWith("visual."));
        const x = randomImages(BATCH, config.imageResolution, 3);
        const s = timeIt(
          () => tf.tidy(() => void model.encodeImage(x).dataSync()),
          minS,
          o.quick ? 1 : 5,
        );
        r[key] = BATCH / s;
        x.dispose();
        model.dispose();
      });
    }
    // Training steps: ViT-B/32 and RN50 vision towers, batch 8 (ResNet: BatchNorm in train mode).
    for (const [name, key] of [["ViT-B/32", "vitTrainStep"], ["RN50", "rnTrainStep"]] as const) {
      await attempt(`${name} train step`, async () => {
        const config = MODEL_CONFIGS[name];
        const model = build(visionOnly(config));
        dropParams(model, (k) => k.startsWith("visual."));
        model.training = true;
        const params = trainableOf(model, "visual.");
        const opt = new AdamW({ lr: 1e-5, weightDecay: 0.1 });
        const x = randomImages(BATCH, config.imageResolution, 4);
        const target = tf.tidy(() =>
          l2n(tf.randomNormal([BATCH, config.embedDim], 0, 1, "float32", 5))
        );
        const loss = () =>
          tf.tidy(() =>
            crossEntropy(
              tf.mul(tf.matMul(l2n(model.encodeImage(x)), target, false, true), 100) as tf.Tensor2D,
            )
          );
        const step = () => tf.tidy(() => void trainStep(opt, params, loss));
        try {
          step();
          const before = tf.memory().numTensors;
          r[key] = timeIt(step, o.quick ? 0 : 5, o.quick ? 1 : 5, o.quick ? 1 : 3);
          const grown = tf.memory().numTensors - before;
          if (grown !== 0) r.notes.push(`${name} train step: tensor count grew by ${grown}`);
          if (o.profile) await profileStep(step);
        } finally {
          opt.disposeState();
          tf.dispose([x, target]);
          model.dispose();
        }
      });
    }
  }

  r.peakRssMiB = peakRssMiB();
  return r;
}

/** Find a python3 that imports torch (Debian's /usr/bin/python3 first). */
async function findTorchPython(): Promise<string | null> {
  for (const py of ["/usr/bin/python3", "python3"]) {
    try {
      const out = await new Deno.Command(py, {
        args: ["-c", "import torch; print(torch.__version__)"],
        stdout: "piped",
        stderr: "null",
      }).output();
      if (out.success) return py;
    } catch {
      // not there
    }
  }
  return null;
}

function lastJsonLine(text: string): unknown {
  const lines = text.trim().split("\n").reverse();
  for (const l of lines) {
    if (l.startsWith("{")) return JSON.parse(l);
  }
  throw new Error("no JSON result in output");
}

/** `OMP_WAIT_POLICY` as this process started (loading oneDNN sets it; PyTorch must not inherit). */
const OMP_WAIT_POLICY_AT_START = Deno.env.get("OMP_WAIT_POLICY");

/** The environment this process started with, for the PyTorch run. */
function startEnv(): Record<string, string> {
  const env = Deno.env.toObject();
  if (OMP_WAIT_POLICY_AT_START === undefined) delete env.OMP_WAIT_POLICY;
  else env.OMP_WAIT_POLICY = OMP_WAIT_POLICY_AT_START;
  return env;
}

async function runSub(
  cmd: string,
  args: string[],
  label: string,
  env?: Record<string, string>,
): Promise<BenchResult> {
  console.error(`bench: ${label} ...`);
  const t0 = performance.now();
  const out = await new Deno.Command(cmd, {
    args,
    stdout: "piped",
    stderr: "inherit",
    ...(env ? { env, clearEnv: true } : {}),
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  console.error(`bench: ${label} done in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  if (!out.success) {
    return { backend: label, notes: [`exited with code ${out.code}`] };
  }
  return lastJsonLine(text) as BenchResult;
}

function fmt(v: number | undefined, digits: number): string {
  return v === undefined ? "—" : v.toFixed(digits);
}

/** Render the results as a Markdown table with ratios to PyTorch. */
export function renderTable(results: BenchResult[]): string {
  const torch = results.find((r) => r.backend === "pytorch");
  const rows: [string, (r: BenchResult) => number | undefined, number, boolean][] = [
    ["matmul 1576×768·768×768 (GFLOP/s)", (r) => r.matmulGflops, 1, true],
    ["ViT-B/32 encodeImage b8 (img/s)", (r) => r.vitEncode, 2, true],
    ["RN50 encodeImage b8 (img/s)", (r) => r.rnEncode, 2, true],
    ["ViT-B/32 vision train step b8 (s)", (r) => r.vitTrainStep, 2, false],
    ["RN50 vision train step b8 (s)", (r) => r.rnTrainStep, 2, false],
    ["tiny CLIP train step b8 (ms)", (r) => r.tinyTrainStep && r.tinyTrainStep * 1000, 1, false],
    ["ViT-B/16 vision train step b32 (s)", (r) => r.vitB16TrainStep32, 3, false],
    ["peak RSS (MiB)", (r) => r.peakRssMiB, 0, false],
  ];
  const head = ["", ...results.map((r) => r.backend)];
  const others = results.filter((r) => r.backend !== "pytorch");
  if (torch) head.push(...others.map((r) => `${r.backend} / torch`));
  const lines = [
    `| ${head.join(" | ")} |`,
    `|${head.map(() => "---").join("|")}|`,
  ];
  for (const [label, get, digits, higherBetter] of rows) {
    const cells = [label, ...results.map((r) => fmt(get(r), digits))];
    if (torch) {
      for (const r of others) {
        const a = get(r), t = get(torch);
        const ratio = a === undefined || t === undefined || label.startsWith("peak")
          ? undefined
          : higherBetter
          ? a / t
          : t / a;
        cells.push(ratio === undefined ? "—" : `${ratio.toFixed(2)}×`);
      }
    }
    lines.push(`| ${cells.join(" | ")} |`);
  }
  return lines.join("\n");
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean", default: false },
      backends: { type: "string" },
      profile: { type: "boolean", default: false },
      "no-torch": { type: "boolean", default: false },
      child: { type: "string" },
      only: { type: "string" },
      threads: { type: "string" },
      json: { type: "string" },
      methods: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(
      "deno task bench [--quick] [--backends webgpu,cpu-dnnl,cpu-blas,wasm,cpu] [--profile] [--no-torch]\n" +
        "  [--threads N] [--json FILE] [--methods]\n" +
        "  [--child BACKEND --only CASE-PREFIX]  (one backend, one case, JSON on stdout)\n" +
        "Per-backend speed (matmul, encodeImage, training steps, peak RSS) next to PyTorch;\n" +
        "--methods adds finetune / ZSCL / DIKI side by side (step time, memory, trained parameters).",
    );
    return;
  }
  const requested = values.backends?.split(",").map((s) => s.trim()).filter(Boolean);
  const threads = values.threads === undefined
    ? Math.max(1, navigator.hardwareConcurrency || 1)
    : Number(values.threads);
  if (!Number.isInteger(threads) || threads < 1) {
    throw new Error(`--threads must be a positive integer (got ${values.threads})`);
  }
  if (values.child) {
    const r = await runChild(values.child, {
      threads,
      quick: values.quick,
      profile: values.profile,
      full: requested?.includes("cpu") ?? false,
      only: values.only,
    });
    console.log(JSON.stringify(r));
    return;
  }
  // a software WebGPU adapter (lavapipe) is benchmarked only when named
  const loadable = await availableBackends({ includeByName: requested?.includes("webgpu") });
  const backends = requested ?? loadable;
  for (const b of backends) {
    if (!loadable.includes(b)) {
      throw new Error(`backend ${b} does not load here (available: ${loadable.join(", ")})`);
    }
  }
  const results: BenchResult[] = [];
  const self = new URL(import.meta.url).pathname;
  const flags = [
    ...(values.quick ? ["--quick"] : []),
    ...(values.profile ? ["--profile"] : []),
    ...(requested ? ["--backends", requested.join(",")] : []),
    "--threads",
    String(threads),
  ];
  for (const b of backends) {
    results.push(
      await runSub(Deno.execPath(), ["run", "-A", self, "--child", b, ...flags], b),
    );
  }
  const notes: string[] = [];
  if (!values["no-torch"]) {
    const py = await findTorchPython();
    if (py) {
      const script = new URL("./bench_torch.py", import.meta.url).pathname;
      const r = await runSub(
        py,
        [script, "--threads", String(threads), ...(values.quick ? ["--quick"] : [])],
        "pytorch",
        {
          ...startEnv(),
          // torch.set_num_threads covers PyTorch's own kernels only; its BLAS (OpenBLAS in
          // Debian's build) and OpenMP read these, so the same count holds for its matmuls too
          OPENBLAS_NUM_THREADS: String(threads),
          OMP_NUM_THREADS: String(threads),
          MKL_NUM_THREADS: String(threads),
        },
      );
      r.backend = "pytorch";
      results.push(r);
    } else {
      notes.push("PyTorch skipped: no python3 imports torch (apt-get install python3-torch)");
    }
  }
  let load = "";
  try {
    load = Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
  } catch {
    // not Linux
  }
  console.log(
    `\nmtil bench${values.quick ? " (quick)" : ""}: ${navigator.hardwareConcurrency} cores, ` +
      `${threads} thread(s)` + (load ? `, load average ${load}` : "") + "\n",
  );
  console.log(renderTable(results));
  for (const r of results) for (const n of r.notes) notes.push(`${r.backend}: ${n}`);
  if (notes.length) console.log("\n" + notes.map((n) => `- ${n}`).join("\n"));
  if (values.methods) {
    // the continual-learning methods on the tiny fixture model: methods/diki/diki_bench.ts
    console.log("\nmethods (tiny CLIP, batch 32; step = median per training step):");
    const script = new URL("../methods/diki/diki_bench.ts", import.meta.url).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", script, ...(values.quick ? ["--steps", "4"] : [])],
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (out.code !== 0) notes.push(`methods bench failed (exit ${out.code})`);
  }
  if (values.json) {
    const doc = {
      date: new Date().toISOString(),
      cores: navigator.hardwareConcurrency,
      threads,
      loadAverage: load,
      quick: values.quick,
      results,
      notes,
    };
    await writeFileAtomic(values.json, new TextEncoder().encode(JSON.stringify(doc, null, 1)));
    console.log(`\nresults written to ${values.json}`);
  }
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    console.error(`bench: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
