/**
 * Parity of DIKI with its reference code: every `diki*.json` under `../shared/fixtures/` (see
 * their `setup`), on every backend that loads here (only `MTIL_BACKEND` when it is set). Model,
 * design (depths, prefix lengths, pool size) and recipe (lr, schedule floor, weight scale) are
 * read from each file, so a differently configured fixture dropped in is tested too.
 *
 * Bars: learning rates exact (to the last bit, but see {@link lrEqual}); losses and gradient
 * norms 1e-4 relative; pools after each task 1e-4; log-probabilities 1e-4 relative; raw and
 * voted tasks exact; weights 1e-5; features and logits of both paths 1e-4.
 */
import { tf } from "../../clip/backends/tf.ts";
import { readCheckpoint } from "../../clip/formats/checkpoint.ts";
import { buildClip, type Clip } from "../../clip/model.ts";
import { availableBackends } from "../../clip/backends/backend.ts";
import { loadTokenizer, tokenize, type Tokenizer } from "../../clip/tokenizers/tokenizer.ts";
import { readF32, sharedPath, skipWithoutShared } from "../../clip/_testing.ts";
import { train, type TrainTask } from "../train.ts";
import type { StateDict } from "../../clip/formats/state_dict.ts";
import { Diki } from "./diki.ts";
import { TaskGaussian } from "./gaussian.ts";

interface F32Ref {
  file: string;
  shape: number[];
}
interface Design {
  vision_depth: number;
  language_depth: number;
  vision_ctx: number;
  language_ctx: number;
  pool_size: number;
}
interface Setup {
  design_details: Design;
  optimizer?: string;
  schedule?: string;
  selection?: string;
  [k: string]: unknown;
}
interface GradNorms {
  all: number;
  keys: number;
  values: number;
  other_tasks: number;
}
interface TrainFixture {
  model: string;
  setup: Setup;
  classnames: string[][];
  templates: string[];
  train_images: F32Ref[];
  labels: number[][][];
  init_pools: Record<string, F32Ref>;
  tasks: {
    task: number;
    steps: {
      it: number;
      loss: number;
      lr: number;
      logits: number[][];
      labels: number[];
      grad_norms: Record<string, GradNorms>;
    }[];
    final_pools: Record<string, F32Ref>;
  }[];
}
interface PathOut {
  image_features: F32Ref;
  text_features: F32Ref;
  logits: F32Ref;
}
interface InferenceFixture {
  model: string;
  setup: Setup;
  pools: Record<string, F32Ref>;
  gaussians: {
    means: F32Ref;
    covars: F32Ref;
    per_task: { n_images: number; log_det_f64: number }[];
    task_learnt: number;
  };
  test_images: F32Ref;
  frozen_image_features: F32Ref;
  by_classnames: {
    classnames: string[];
    prompts: string[];
    tokens: number[][];
    zero_shot_logits: F32Ref;
    known: PathOut & { task_id: number };
    free: PathOut & {
      log_probs_f32: F32Ref;
      log_probs_f64_recomputed: number[][];
      raw_indices: number[];
      indices: number[][];
      weights: number[];
      text_weight: number;
    };
  }[];
  after_task0_only?: {
    log_probs_f32: number[][];
    raw_indices: number[];
    indices: number[][];
    weights: number[];
    text_weight: number;
    logits: F32Ref;
  };
}

/** Fixture files `diki*.json` in the folders under `../shared/fixtures/`, by folder. */
function fixtureFiles(): string[] {
  if (skipWithoutShared()) return [];
  const out: string[] = [];
  for (const dir of Deno.readDirSync(sharedPath("fixtures"))) {
    if (!dir.isDirectory) continue;
    for (const f of Deno.readDirSync(sharedPath(`fixtures/${dir.name}`))) {
      if (f.isFile && f.name.startsWith("diki") && f.name.endsWith(".json")) {
        out.push(`fixtures/${dir.name}/${f.name}`);
      }
    }
  }
  return out.sort();
}

/** The recipe numbers of a fixture's setup prose, with the reference's values as defaults. */
export function recipe(setup: Setup) {
  const n = "([0-9.]+(?:e[-+]?[0-9]+)?)";
  const num = (text: unknown, re: RegExp, fallback: number) => {
    const m = typeof text === "string" ? text.match(re) : null;
    return m ? Number(m[1]) : fallback;
  };
  const d = setup.design_details;
  return {
    tasks: d.pool_size,
    depthVision: d.vision_depth,
    depthText: d.language_depth,
    prefixLenVision: d.vision_ctx,
    prefixLenText: d.language_ctx,
    lr: num(setup.optimizer, new RegExp(`\\blr=${n}`), 5),
    lrFloorRatio: num(setup.schedule, new RegExp(`f = lr\\s*\\*\\s*${n}`), 1e-3),
    weightScale: num(setup.selection, new RegExp(`sigmoid\\(lp/${n}`), 512),
  };
}

/**
 * Learning rates are compared to the last bit, up to the platform's `cos`. Measured on the
 * fixture: the reference's numpy evaluates `cos(π/4)` with a vectorised float64 `cos` that gave
 * 0.7071067811865477 on the machine that made it, where the correctly rounded value (what
 * `Math.cos` and a scalar libm give) is 0.7071067811865476; the lr of step 1 of 4 differs by one
 * ulp. So equal here means: within one ulp of `cos` (≤ 2⁻⁵² near 1) carried through
 * `½(lr − f)`, plus the two roundings after it.
 */
function lrEqual(got: number, want: number, lr: number, floor: number): boolean {
  if (got === want) return true;
  const ulp = (x: number) => 2 ** (Math.floor(Math.log2(Math.abs(x))) - 52);
  return Math.abs(got - want) <= 0.5 * (lr - floor) * 2 ** -52 + 2 * ulp(want);
}

function backendsToTest(all: string[]): string[] {
  const env = Deno.env.get("MTIL_BACKEND");
  if (env && env !== "auto") return all.includes(env) ? [env] : [];
  return all;
}

/** NCHW float32 file (optionally one leading index of `[k, n, 3, H, W]`) → NHWC tensor. */
function nhwc(data: Float32Array, shape: number[], index?: number): tf.Tensor4D {
  const s = index === undefined ? shape : shape.slice(1);
  const per = s.reduce((a, b) => a * b, 1);
  const part = index === undefined ? data : data.subarray(index * per, (index + 1) * per);
  return tf.tidy(() =>
    tf.transpose(tf.tensor4d(part, s as [number, number, number, number]), [0, 2, 3, 1])
  );
}

function readRef(dir: string, ref: F32Ref): Float32Array {
  return readF32(`${dir}/${ref.file.split("/").pop()}`);
}

function poolsSd(dir: string, refs: Record<string, F32Ref>): StateDict {
  const sd: StateDict = new Map();
  for (const [k, r] of Object.entries(refs)) {
    sd.set(k, { shape: r.shape, dtype: "float32", data: readRef(dir, r) });
  }
  return sd;
}

/** Collects mismatches with their measured errors; `report` lists the largest errors met. */
class Checker {
  fails: string[] = [];
  worst: Record<string, number> = {};
  note(kind: string, e: number) {
    this.worst[kind] = Math.max(this.worst[kind] ?? 0, e);
  }
  rel(kind: string, got: number, want: number, tol: number, what: string) {
    const e = want === 0 ? Math.abs(got) : Math.abs(got - want) / Math.abs(want);
    this.note(kind, e);
    if (!(e <= (want === 0 ? 1e-10 : tol))) {
      this.fails.push(`${what}: ${got} vs ${want} (rel ${e.toExponential(2)} > ${tol})`);
    }
  }
  abs(kind: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string) {
    if (got.length !== want.length) {
      this.fails.push(`${what}: ${got.length} values vs ${want.length}`);
      return;
    }
    let e = 0;
    for (let i = 0; i < got.length; i++) e = Math.max(e, Math.abs(got[i] - want[i]));
    if (!Number.isFinite(e)) e = Infinity;
    this.note(kind, e);
    if (!(e <= tol)) this.fails.push(`${what}: max abs err ${e.toExponential(2)} > ${tol}`);
  }
  exact(got: unknown, want: unknown, what: string) {
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      this.fails.push(`${what}: ${JSON.stringify(got)} vs ${JSON.stringify(want)}`);
    }
  }
  done(what: string) {
    const w = Object.entries(this.worst).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(", ");
    console.log(`  ${what}: worst errors: ${w}`);
    if (this.fails.length) {
      throw new Error(`${what}: ${this.fails.length} mismatches\n${this.fails.join("\n")}`);
    }
  }
}

async function clipOf(model: string): Promise<Clip> {
  const ck = await readCheckpoint(sharedPath(`fixtures/clip/${model}.jit.pt`));
  return buildClip(ck.stateDict);
}

let tokenizerP: Promise<Tokenizer> | undefined;
function bpe(): Promise<Tokenizer> {
  return tokenizerP ??= loadTokenizer({
    vocabPath: sharedPath("clip/bpe_simple_vocab_16e6.txt.gz"),
  });
}

/** The reference's prompt: the template filled, then `_` → space on the whole string. */
function prompt(template: string, classname: string): string {
  return template.replace("{}", classname).replaceAll("_", " ");
}

/** Sorted file names of a pool set (pairs an inference fixture with its training run). */
function poolFiles(refs: Record<string, F32Ref>): string {
  return Object.values(refs).map((r) => r.file.split("/").pop()).sort().join();
}

/**
 * The train-steps fixture whose last task's pools are `pools` (the inference fixture's pools are
 * the pools after the last task of the run that trained them), in the same folder.
 */
function pairedTraining(
  dir: string,
  pools: Record<string, F32Ref>,
): [string, TrainFixture] | undefined {
  for (const f of fixtureFiles().filter((f) => f.startsWith(dir + "/"))) {
    const j = JSON.parse(Deno.readTextFileSync(sharedPath(f)));
    if (!Array.isArray(j.tasks) || j.tasks.length === 0) continue;
    if (poolFiles(j.tasks[j.tasks.length - 1].final_pools) === poolFiles(pools)) return [f, j];
  }
  return undefined;
}

/** Host norm in float64 of selected elements of a pool gradient `[tasks, 2, L, W]`. */
function poolGradNorms(g: tf.Tensor, task: number): GradNorms {
  const d = g.dataSync();
  const [tasks, , l, w] = g.shape;
  const per = l * w;
  let all = 0, keys = 0, values = 0, other = 0;
  for (let t = 0; t < tasks; t++) {
    for (let s = 0; s < 2; s++) {
      for (let i = 0; i < per; i++) {
        const v = d[(t * 2 + s) * per + i] ** 2;
        all += v;
        if (t !== task) other += v;
        else if (s === 0) keys += v;
        else values += v;
      }
    }
  }
  return {
    all: Math.sqrt(all),
    keys: Math.sqrt(keys),
    values: Math.sqrt(values),
    other_tasks: Math.sqrt(other),
  };
}

async function trainParity(rel: string, backend: string) {
  const dir = rel.slice(0, rel.lastIndexOf("/"));
  const fx: TrainFixture = JSON.parse(await Deno.readTextFile(sharedPath(rel)));
  const r = recipe(fx.setup);
  const clip = await clipOf(fx.model);
  const d = new Diki(clip, r);
  const c = new Checker();
  const start = tf.memory().numTensors;
  try {
    d.pools.loadStateDict(poolsSd(dir, fx.init_pools), rel);
    const tok = await bpe();
    for (const [ti, tfx] of fx.tasks.entries()) {
      const t = tfx.task;
      const classnames = fx.classnames[t];
      const textTokens = await tokenize(classnames.map((n) => prompt(fx.templates[t], n)), {
        tokenizer: tok,
        contextLength: clip.config.contextLength,
      });
      const imgRef = fx.train_images[t];
      const images = readRef(dir, imgRef);
      const steps = tfx.steps.length;
      const task: TrainTask = {
        name: `diki-${t}`,
        classnames,
        textTokens,
        batchesPerEpoch: imgRef.shape[0],
        batch: (s) =>
          Promise.resolve({ images: nhwc(images, imgRef.shape, s), labels: fx.labels[t][s] }),
      };
      const logits: number[][][] = [];
      const norms: Record<string, GradNorms>[] = [];
      const setup = d.trainSetup(t);
      const { records } = await train(clip, task, {
        iterations: steps,
        ...setup.options,
        parts: [...setup.parts, {
          name: "record",
          loss(ctx) {
            logits[ctx.step] = ctx.logits().arraySync() as number[][];
            return {};
          },
          transformGrads(_run, step, grads) {
            norms[step] = Object.fromEntries([...grads].map(([k, g]) => [k, poolGradNorms(g, t)]));
          },
        }],
      });
      textTokens.dispose();
      c.exact(records.length, steps, `task ${t} steps`);
      records.forEach((rec, i) => {
        const ex = tfx.steps[i];
        c.note("lr (abs)", Math.abs(rec.lr - ex.lr));
        if (!lrEqual(rec.lr, ex.lr, r.lr, r.lr * r.lrFloorRatio)) {
          c.fails.push(`task ${t} step ${i}: lr ${rec.lr} vs ${ex.lr}`);
        }
        c.rel("loss", rec.losses.ce, ex.loss, 1e-4, `task ${t} step ${i} loss`);
        c.abs("logits", logits[i].flat(), ex.logits.flat(), 1e-4, `task ${t} step ${i} logits`);
        for (const [k, want] of Object.entries(ex.grad_norms)) {
          const got = norms[i][k];
          if (!got) {
            c.fails.push(`task ${t} step ${i}: no gradient for ${k}`);
            continue;
          }
          for (const part of ["all", "keys", "values", "other_tasks"] as const) {
            c.rel("grad norm", got[part], want[part], 1e-4, `task ${t} step ${i} ‖∇${k}‖ ${part}`);
          }
        }
      });
      for (const [k, ref] of Object.entries(tfx.final_pools)) {
        const v = d.pools.pools.get(k);
        if (!v) c.fails.push(`pool ${k} missing`);
        else c.abs("pool", v.dataSync(), readRef(dir, ref), 1e-4, `pool ${k} after task ${t}`);
      }
      c.exact(d.learnt, ti + 1, `Gaussians learnt after task ${t}`);
    }
    // the Gaussians fitted on the training images against the reference's (in the inference
    // fixture of the same folder and model, when there is one)
    for (const other of fixtureFiles().filter((f) => f.startsWith(dir + "/") && f !== rel)) {
      const inf = JSON.parse(Deno.readTextFileSync(sharedPath(other))) as InferenceFixture;
      if (!inf.gaussians || !inf.pools || pairedTraining(dir, inf.pools)?.[0] !== rel) continue;
      const means = readRef(dir, inf.gaussians.means);
      const covs = readRef(dir, inf.gaussians.covars);
      const e = clip.config.embedDim;
      inf.gaussians.per_task.forEach((p, t) => {
        const g = d.gaussians[t];
        if (!g) {
          c.fails.push(`no Gaussian for task ${t}`);
          return;
        }
        c.exact(g.count, p.n_images, `Gaussian ${t} images`);
        c.abs("gauss mean", g.mean, means.subarray(t * e, (t + 1) * e), 1e-5, `mean ${t}`);
        c.abs("gauss cov", g.cov, covs.subarray(t * e * e, (t + 1) * e * e), 1e-6, `cov ${t}`);
        c.rel("log det", g.logDet, p.log_det_f64, 1e-4, `log det ${t}`);
      });
    }
  } finally {
    d.dispose();
    clip.dispose();
  }
  c.exact(
    tf.memory().numTensors <= start,
    true,
    `tensors leaked: ${tf.memory().numTensors - start}`,
  );
  c.done(`${rel} on ${backend}`);
}

async function inferenceParity(rel: string, backend: string) {
  const dir = rel.slice(0, rel.lastIndexOf("/"));
  const fx: InferenceFixture = JSON.parse(await Deno.readTextFile(sharedPath(rel)));
  const r = recipe(fx.setup);
  const clip = await clipOf(fx.model);
  const d = new Diki(clip, r);
  const c = new Checker();
  const start = tf.memory().numTensors;
  const images = nhwc(readRef(dir, fx.test_images), fx.test_images.shape);
  const e = clip.config.embedDim;
  try {
    d.pools.loadStateDict(poolsSd(dir, fx.pools), rel);
    const means = readRef(dir, fx.gaussians.means);
    const covs = readRef(dir, fx.gaussians.covars);
    const gaussians = fx.gaussians.per_task.map((p, t) =>
      new TaskGaussian(
        means.slice(t * e, (t + 1) * e),
        covs.slice(t * e * e, (t + 1) * e * e),
        p.n_images,
      )
    );
    gaussians.forEach((g, t) => {
      d.gaussians[t] = g;
      c.rel("log det", g.logDet, fx.gaussians.per_task[t].log_det_f64, 1e-9, `log det ${t}`);
    });
    // the frozen features, then the float64 log-probabilities of the reference's own features
    const frozenRef = readRef(dir, fx.frozen_image_features);
    c.abs("frozen features", d.frozenFeatures(images), frozenRef, 1e-4, "frozen features");
    const f64 = fx.by_classnames[0].free.log_probs_f64_recomputed;
    gaussians.forEach((g, t) => {
      const lp = g.logProbs(frozenRef);
      lp.forEach((v, i) => c.rel("lp (ref features)", v, f64[i][t], 1e-9, `lp[${i}][${t}] f64`));
    });
    const tok = await bpe();
    for (const [ci, cls] of fx.by_classnames.entries()) {
      const ours = await tokenize(cls.prompts, {
        tokenizer: tok,
        contextLength: clip.config.contextLength,
      });
      c.exact(ours.arraySync(), cls.tokens, `tokens of class set ${ci}`);
      ours.dispose();
      const tokens = tf.tensor2d(cls.tokens, undefined, "int32");
      // zero-shot
      const zs = d.pools.withSelection(clip, null, () => clip.forward(images, tokens));
      c.abs(
        "logits",
        zs.logitsPerImage.dataSync(),
        readRef(dir, cls.zero_shot_logits),
        1e-4,
        `zero-shot logits ${ci}`,
      );
      tf.dispose([zs.logitsPerImage, zs.logitsPerText]);
      // task id known
      const known = d.classify(images, tokens, { taskId: cls.known.task_id });
      c.abs(
        "features",
        known.imageFeatures.dataSync(),
        readRef(dir, cls.known.image_features),
        1e-4,
        `known image features ${ci}`,
      );
      c.abs(
        "features",
        known.textFeatures.dataSync(),
        readRef(dir, cls.known.text_features),
        1e-4,
        `known text features ${ci}`,
      );
      c.abs(
        "logits",
        known.logits.dataSync(),
        readRef(dir, cls.known.logits),
        1e-4,
        `known logits ${ci}`,
      );
      tf.dispose([known.logits, known.imageFeatures, known.textFeatures]);
      // task id free
      const free = d.classify(images, tokens);
      const lp32 = readRef(dir, cls.free.log_probs_f32);
      const nT = d.learnt;
      free.logProbs!.forEach((row, i) =>
        row.forEach((v, t) => {
          c.rel(
            "lp vs f64",
            v,
            cls.free.log_probs_f64_recomputed[i][t],
            1e-4,
            `lp[${i}][${t}] vs f64`,
          );
          c.rel("lp vs f32", v, lp32[i * nT + t], 1e-4, `lp[${i}][${t}] vs f32`);
        })
      );
      c.exact(free.selection!.rawTasks, cls.free.raw_indices, `raw tasks ${ci}`);
      c.exact([[free.task]], cls.free.indices, `voted task ${ci}`);
      c.abs("weights", free.selection!.weights, cls.free.weights, 1e-5, `weights ${ci}`);
      c.abs(
        "weights",
        [free.selection!.textWeight],
        [cls.free.text_weight],
        1e-5,
        `text weight ${ci}`,
      );
      c.abs(
        "features",
        free.imageFeatures.dataSync(),
        readRef(dir, cls.free.image_features),
        1e-4,
        `free image features ${ci}`,
      );
      c.abs(
        "features",
        free.textFeatures.dataSync(),
        readRef(dir, cls.free.text_features),
        1e-4,
        `free text features ${ci}`,
      );
      c.abs(
        "logits",
        free.logits.dataSync(),
        readRef(dir, cls.free.logits),
        1e-4,
        `free logits ${ci}`,
      );
      tf.dispose([free.logits, free.imageFeatures, free.textFeatures, tokens]);
    }
    // after task 0 only: one Gaussian, the pools after task 0 (from the train-steps fixture)
    const a0 = fx.after_task0_only;
    const trainFx = pairedTraining(dir, fx.pools);
    if (a0 && trainFx) {
      const t0 = (trainFx[1] as TrainFixture).tasks[0];
      d.pools.loadStateDict(poolsSd(dir, t0.final_pools), trainFx[0]);
      d.gaussians.length = 1;
      const cls = fx.by_classnames[0];
      const tokens = tf.tensor2d(cls.tokens, undefined, "int32");
      const free = d.classify(images, tokens);
      free.logProbs!.forEach((row, i) =>
        c.rel("lp vs f32", row[0], a0.log_probs_f32[i][0], 1e-4, `task-0-only lp[${i}]`)
      );
      c.exact(free.selection!.rawTasks, a0.raw_indices, "task-0-only raw tasks");
      c.exact([[free.task]], a0.indices, "task-0-only voted task");
      c.abs("weights", free.selection!.weights, a0.weights, 1e-5, "task-0-only weights");
      c.abs(
        "weights",
        [free.selection!.textWeight],
        [a0.text_weight],
        1e-5,
        "task-0-only text weight",
      );
      c.abs("logits", free.logits.dataSync(), readRef(dir, a0.logits), 1e-4, "task-0-only logits");
      tf.dispose([free.logits, free.imageFeatures, free.textFeatures, tokens]);
    } else if (a0) c.fails.push("after_task0_only needs the train-steps fixture beside it");
  } finally {
    images.dispose();
    d.dispose();
    clip.dispose();
  }
  c.exact(
    tf.memory().numTensors <= start,
    true,
    `tensors leaked: ${tf.memory().numTensors - start}`,
  );
  c.done(`${rel} on ${backend}`);
}

const files = fixtureFiles();
Deno.test({
  name: "DIKI parity fixtures are present",
  ignore: skipWithoutShared(),
  fn() {
    if (files.length === 0) throw new Error("no diki*.json under ../shared/fixtures");
  },
});

for (const rel of files) {
  const fx = JSON.parse(Deno.readTextFileSync(sharedPath(rel)));
  const kind = Array.isArray(fx.tasks) ? "train" : fx.by_classnames ? "inference" : undefined;
  Deno.test({
    name: `DIKI parity with the reference: ${rel.split("/").pop()} (${kind ?? "unknown"})`,
    ignore: skipWithoutShared(),
    fn: async () => {
      if (!kind) throw new Error(`${rel}: neither a train-steps nor an inference fixture`);
      await tf.ready();
      const original = tf.getBackend();
      const backends = backendsToTest(await availableBackends());
      if (backends.length === 0) {
        throw new Error(`MTIL_BACKEND ${Deno.env.get("MTIL_BACKEND")} does not load`);
      }
      try {
        for (const b of backends) {
          if (!(await tf.setBackend(b))) throw new Error(`setBackend(${b}) failed`);
          await (kind === "train" ? trainParity(rel, b) : inferenceParity(rel, b));
        }
      } finally {
        await tf.setBackend(original);
      }
    },
  });
}
