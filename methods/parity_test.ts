/**
 * Step-level parity with the PyTorch reference loop: `../shared/fixtures/clip/<model>.train-steps.json`
 * (4 steps of finetune and ZSCL from the same start weights; recipe in the file's `setup`).
 */
import { tf } from "../clip/backends/tf.ts";
import { readCheckpoint } from "../clip/formats/checkpoint.ts";
import { buildClip } from "../clip/model.ts";
import { initBackend } from "../clip/backends/backend.ts";
import { loadTokenizer, tokenize } from "../clip/tokenizers/tokenizer.ts";
import { parityBackends, readF32, sharedPath, skipWithoutShared } from "../clip/_testing.ts";
import { assert } from "./_testing.ts";
import { baseParts, zsclPart } from "./presets.ts";
import { torchNormF32 } from "./_torch_norm.ts";
import { disposeRun, train, type TrainTask, weightsToSave } from "./train.ts";

interface StepFixture {
  it: number;
  lr: number;
  grad_norms: Record<string, number>;
  [k: string]: unknown;
}
interface CaseFixture {
  steps: StepFixture[];
  final_params: Record<string, number[]>;
  final_param_norms: Record<string, number>;
  we_final_params: Record<string, number[]>;
  we_final_param_norms: Record<string, number>;
}
interface Fixture {
  model: string;
  setup: {
    steps: number;
    batch: number;
    ref_batch: number;
    prompts: string[];
    ref_prompts: string[];
    optimizer?: string;
    schedule?: string;
    label_smoothing?: number;
    l2?: string;
    ZSCL?: string;
    weight_ensemble?: string;
  };
  images: { file: string; shape: number[] };
  ref_images: { file: string; shape: number[] };
  labels: number[][];
  cases: Record<string, CaseFixture>;
}

/** The numbers of the file's `setup` (written as prose there), with the fixtures' values as defaults. */
function recipe(setup: Fixture["setup"]) {
  const num = (text: unknown, re: RegExp, fallback: number) => {
    const m = typeof text === "string" ? text.match(re) : null;
    return m ? Number(m[1]) : fallback;
  };
  const n = "([0-9.]+(?:e[-+]?[0-9]+)?)";
  return {
    lr: num(setup.optimizer, new RegExp(`\\blr=${n}`), 1e-3),
    weightDecay: num(setup.optimizer, new RegExp(`weight_decay=${n}`), 0.1),
    beta2: num(setup.optimizer, new RegExp(`betas=\\(\\s*[0-9.]+\\s*,\\s*${n}`), 0.999),
    warmup: num(setup.schedule, /warmup=(\d+)/, 2),
    labelSmoothing: setup.label_smoothing ?? 0.2,
    l2: num(setup.l2, new RegExp(`^\\s*${n}\\s*\\*`), 1),
    T: num(setup.ZSCL, new RegExp(`\\bT=${n}`), 2),
    avgFreq: num(setup.weight_ensemble, /it % (\d+) == 0/, 2),
  };
}

/** Step `s` of an NCHW `[steps, n, 3, H, W]` file as an NHWC tensor. */
function stepImages(data: Float32Array, shape: number[], s: number): tf.Tensor4D {
  const [, n, c, h, w] = shape;
  const per = n * c * h * w;
  return tf.tidy(() =>
    tf.transpose(tf.tensor4d(data.subarray(s * per, (s + 1) * per), [n, c, h, w]), [0, 2, 3, 1])
  );
}

const TERMS: Record<string, string> = {
  loss_ce: "ce",
  loss_l2: "l2",
  loss_image_distill: "image_distill",
  loss_text_distill: "text_distill",
  loss_total: "total",
};

/**
 * Norms are compared the way the reference computed them: PyTorch's float32 CPU `norm()`
 * (8 AVX2 lanes). It is not the exact norm: on the token-embedding gradient, from step 2 on,
 * millions of tiny L2-to-start terms on rows no prompt uses are swamped in float32 and the
 * reference records 76.762 where the exact norm of the same gradient is 76.805 (5.6e-4). Our
 * gradient reproduces the reference's number to 8e-7 under this reduction (and under PyTorch
 * itself, checked by hand); `l2NormF64` stays the library's reporting norm.
 */
const norm = async (t: tf.Tensor) => torchNormF32(await t.data(), 8);
/** Relative tolerance on gradient norms (the bar). */
const GRAD_TOL = 1e-3;
/** Relative tolerance on final parameter norms. */
const NORM_TOL = 1e-4;

/** Tolerances of one step (`step` = number of steps for the final weights). */
interface Tolerances {
  loss: number;
  grad: number;
  finalAbs: number;
  finalNorm: number;
}

/** The bar: losses 1e-4 relative, gradient norms 1e-3, final parameters 1e-4. */
const STRICT: Tolerances = { loss: 1e-4, grad: GRAD_TOL, finalAbs: 1e-4, finalNorm: NORM_TOL };

/**
 * The one measured exception: rn-tiny `finetune` from step 3 on (gradient norm of
 * `visual.conv1.weight` 2.5e-3 off, two BatchNorm-bias norms 1.3e-4).
 *
 * - The gradient is right: float64 PyTorch evaluated at *our* step-3 weights gives our numbers
 *   to 1e-5. The weights differ, by one element: `visual.layer4.0.downsample.0.weight[27186]`.
 * - Its true step-0 gradient is +2.5e-8 against a largest entry of 0.12, below float32
 *   resolution: our float32 gives −1.9e-8, PyTorch's +2.0e-8 (rms errors over the tensor 4.4e-8
 *   and 3.2e-8). Adam's first step moves it by ±0.7·lr accordingly, and putting just that element
 *   of our step-1 weights into a float64 PyTorch run reproduces the 2.5e-3 at step 3.
 * - This tiny ResNet (BatchNorm over 2×2 maps of 3–4 images) is chaotic at float32 resolution:
 *   its reference trajectory has ReLU inputs within 1e-6 of zero at every step. PyTorch itself
 *   misses the rn-tiny ZSCL reference by 1.4e-3 at step 1 and 1.4e-2 at step 3 when it uses its
 *   native convolutions instead of oneDNN (`torch.backends.mkldnn.enabled = False`).
 * - oneDNN's BatchNorm statistics (float32 sums) missed it the same way (1.4e-3 at step 1): the
 *   extra noise flipped the sign of a step-0 gradient entry (`visual.layer3.0.conv2.weight[4734]`,
 *   +1.5e-6 in float64) and so Adam's move. `cpu-dnnl` sums them in float64 (`batchStatistics`).
 *
 * ViT runs and rn-tiny ZSCL meet the bar everywhere here.
 */
function tolerances(model: string, method: string, step: number): Tolerances {
  if (model === "rn-tiny" && method === "finetune" && step >= 3) {
    return { ...STRICT, grad: 4e-3, finalNorm: 3e-4 };
  }
  return STRICT;
}

// wasm has the fast scatter-add gradient of the token embedding; cpu/cpu-blas take minutes.
// cpu-dnnl (where libdnnl2 is installed, as in CI) runs the oneDNN convolutions and fused
// BatchNorm that the ResNet cases check. webgpu (any adapter, lavapipe included) is added
// whenever it loads; MTIL_BACKEND picks one.
const BACKENDS = await parityBackends(["wasm", "cpu-dnnl"]);

async function parity(file: string, method: string, backend: string) {
  await initBackend({ prefer: backend, quiet: true });
  if (tf.getBackend() !== backend) throw new Error(`backend ${backend} did not activate`);
  const dir = "fixtures/clip";
  const fx: Fixture = JSON.parse(await Deno.readTextFile(sharedPath(`${dir}/${file}`)));
  const model = fx.model;
  const r = recipe(fx.setup);
  const expected = fx.cases[method];
  const ckpt = await readCheckpoint(sharedPath(`${dir}/${model}.jit.pt`));
  const clip = buildClip(ckpt.stateDict);
  const tokenizer = await loadTokenizer({
    vocabPath: sharedPath("clip/bpe_simple_vocab_16e6.txt.gz"),
  });
  const textTokens = await tokenize(fx.setup.prompts, { tokenizer });
  const refTexts = await tokenize(fx.setup.ref_prompts, { tokenizer });
  const images = readF32(`${dir}/${fx.images.file.split("/").pop()}`);
  const refImages = readF32(`${dir}/${fx.ref_images.file.split("/").pop()}`);
  const task: TrainTask = {
    name: "parity",
    classnames: fx.setup.prompts,
    textTokens,
    batch: (s) =>
      Promise.resolve({ images: stepImages(images, fx.images.shape, s), labels: fx.labels[s] }),
  };
  const names = Object.keys(expected.steps[0].grad_norms);
  const start = tf.memory().numTensors;
  const refNorms: Record<string, number>[] = [];
  // gradients copied inside the (synchronous) hook, read asynchronously after the step
  const pending = new Map<number, Map<string, tf.Tensor>>();
  const { records, run } = await train(clip, task, {
    iterations: fx.setup.steps,
    lr: r.lr,
    weightDecay: r.weightDecay,
    beta2: r.beta2,
    warmupLength: r.warmup,
    finalStep: false, // the fixture runs exactly its four steps
    trainMode: "whole",
    parts: [
      ...baseParts({ labelSmoothing: r.labelSmoothing, l2: r.l2, we: true, avgFreq: r.avgFreq }),
      ...(method === "ZSCL"
        ? [zsclPart({
          T: r.T,
          refTexts,
          refImages: (s: number) => Promise.resolve(stepImages(refImages, fx.ref_images.shape, s)),
        })]
        : []),
      // record the reference-style norms of the step's gradients
      {
        name: "reference-norms",
        transformGrads(_run, step, grads) {
          pending.set(step, new Map(names.map((n) => [n, tf.keep(grads.get(n)!.clone())])));
        },
      },
    ],
    onStep: async (rec) => {
      const copies = pending.get(rec.step)!;
      const out: Record<string, number> = {};
      for (const [n, g] of copies) out[n] = await norm(g);
      refNorms[rec.step] = out;
      tf.dispose([...copies.values()]);
      pending.delete(rec.step);
    },
  });
  try {
    assert(records.length === expected.steps.length, "step count");
    // every comparison is made; failures are reported together with their measured errors
    const fails: string[] = [];
    const lrSum = expected.steps.reduce((a, s) => a + s.lr, 0);
    const rel = (got: number, want: number) => Math.abs(got - want) / Math.abs(want);
    const expect = (ok: boolean, what: string) => {
      if (!ok) fails.push(what);
    };
    records.forEach((rec, i) => {
      const ex = expected.steps[i];
      const tol = tolerances(model, method, i);
      expect(rec.lr === ex.lr, `step ${i}: lr ${rec.lr} vs ${ex.lr}`);
      for (const [fk, ok] of Object.entries(TERMS)) {
        if (!(fk in ex)) continue;
        const want = ex[fk] as number;
        const got = rec.losses[ok];
        if (want === 0) expect(Math.abs(got) <= 1e-7, `step ${i} ${fk}: ${got} vs 0`);
        else {
          const e = rel(got, want);
          expect(e <= tol.loss, `step ${i} ${fk}: rel err ${e.toExponential(2)} > ${tol.loss}`);
        }
      }
      for (const n of names) {
        const e = rel(refNorms[i][n], ex.grad_norms[n]);
        expect(e <= tol.grad, `step ${i} grad ‖${n}‖: rel err ${e.toExponential(2)} > ${tol.grad}`);
      }
    });
    const check = async (
      got: ReadonlyMap<string, tf.Tensor>,
      values: Record<string, number[]>,
      norms: Record<string, number>,
      what: string,
    ) => {
      const tol = tolerances(model, method, expected.steps.length);
      for (const [k, v] of Object.entries(values)) {
        const d = await got.get(k)!.data();
        assert(d.length >= v.length, `${what} ${k} size`);
        v.forEach((x, j) => {
          const e = Math.abs(d[j] - x);
          expect(e <= tol.finalAbs, `${what} ${k}[${j}]: abs err ${e.toExponential(2)}`);
        });
      }
      for (const [k, nv] of Object.entries(norms)) {
        const p = got.get(k)!;
        let e: number, t: number;
        if (k.endsWith("k_proj.bias")) {
          // a key bias cannot change the attention (softmax is shift-invariant), so its gradient
          // is rounding noise in any implementation and Adam turns it into ±lr moves of random
          // sign: its value carries no information. Bound: the total movement Adam allows.
          e = Math.abs(await norm(p) - nv);
          t = lrSum * Math.sqrt(p.size);
        } else if (k.endsWith("in_proj_bias")) {
          // a third of it is the key bias (above): compare absolutely
          e = Math.abs(await norm(p) - nv);
          t = 1e-4;
        } else {
          e = rel(await norm(p), nv);
          t = tol.finalNorm;
        }
        expect(e <= t, `${what} ‖${k}‖: err ${e.toExponential(2)} > ${t.toExponential(2)}`);
      }
    };
    await check(clip.params, expected.final_params, expected.final_param_norms, "trained");
    await check(weightsToSave(run), expected.we_final_params, expected.we_final_param_norms, "WE");
    if (fails.length) {
      throw new Error(
        `${model} ${method} on ${backend}: ${fails.length} mismatches\n${fails.join("\n")}`,
      );
    }
  } finally {
    disposeRun(run);
    clip.dispose();
    textTokens.dispose();
    refTexts.dispose();
  }
  assert(tf.memory().numTensors <= start, `leaked ${tf.memory().numTensors - start} tensors`);
}

/** Every `<model>.train-steps.json` under the fixtures (held-out ones dropped in included). */
function fixtureFiles(): string[] {
  if (skipWithoutShared()) return ["vit-tiny.train-steps.json", "rn-tiny.train-steps.json"];
  return [...Deno.readDirSync(sharedPath("fixtures/clip"))]
    .map((e) => e.name)
    .filter((n) => n.endsWith(".train-steps.json"))
    .sort();
}

for (const file of fixtureFiles()) {
  const cases = skipWithoutShared() ? ["finetune", "ZSCL"] : Object.keys(
    (JSON.parse(Deno.readTextFileSync(sharedPath(`fixtures/clip/${file}`))) as Fixture).cases,
  );
  for (const method of cases) {
    for (const backend of BACKENDS) {
      Deno.test({
        name: `step parity with the reference: ${
          file.replace(".train-steps.json", "")
        } ${method} on ${backend}`,
        ignore: skipWithoutShared(),
        fn: () => parity(file, method, backend),
      });
    }
  }
}

Deno.test("recipe: the numbers of a fixture's setup prose are read, not defaulted", () => {
  const r = recipe({
    steps: 4,
    batch: 4,
    ref_batch: 3,
    prompts: [],
    ref_prompts: [],
    optimizer: "AdamW lr=5e-4 weight_decay=0.2 betas=(0.9,0.98) eps=1e-8 over every parameter",
    schedule: "warm-up cosine, warmup=3, total=steps, lr(it) set before each step",
    label_smoothing: 0.1,
    l2: "0.5 * sum over parameters of squared difference to the start-of-task copy",
    ZSCL: "reference model = frozen copy of the start model; image and text distillation, T=3",
    weight_ensemble: "after the optimizer step when it % 4 == 0: we_n += 1",
  });
  assert(
    JSON.stringify(r) === JSON.stringify({
      lr: 5e-4,
      weightDecay: 0.2,
      beta2: 0.98,
      warmup: 3,
      labelSmoothing: 0.1,
      l2: 0.5,
      T: 3,
      avgFreq: 4,
    }),
    JSON.stringify(r),
  );
});
