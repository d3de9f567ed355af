/**
 * The linear probe of the reference (`--freeze-encoder` with `--cache-dir`): the frozen image
 * encoder's features of a training set are computed once, cached on disk, and the linear head
 * trains on them — no image is encoded again, in this run or the next.
 *
 * @module
 */
import { tf } from "../clip/backends/tf.ts";
import { readableOnHost } from "../clip/backends/webgpu.ts";
import { checkpointFingerprint } from "./fingerprint.ts";
import { readSafetensors, writeSafetensorsFile } from "../clip/formats/safetensors.ts";
import type { ClipModel } from "../clip/types.ts";
import { batches } from "../datasets/loader.ts";
import { Rng } from "../datasets/rng.ts";
import { evalTransform } from "../datasets/transforms.ts";
import type { Dataset } from "../datasets/types.ts";
import type { LogLevel } from "./method.ts";
import type { TrainBatch } from "./train.ts";

/** A training set's image features. */
export interface CachedFeatures {
  /** Raw (not normalised) image features, row-major `[n, dim]`. */
  features: Float32Array;
  /** Labels, one per row. */
  labels: Int32Array;
  /** Feature width. */
  dim: number;
  /** The cache file. */
  path: string;
  /** Whether it was read from the cache (false: computed now). */
  cached: boolean;
}

/**
 * The features of `dataset` under `model`'s image encoder (eval transform, eval mode), read from
 * `dir` when a file for the same model weights and dataset exists, else computed and written
 * atomically. The file name carries a fingerprint of the encoder's weights.
 */
export async function cachedFeatures(
  model: ClipModel,
  dataset: Dataset,
  dir: string,
  options: { batchSize?: number; workers?: number; log?: LogLevel } = {},
): Promise<CachedFeatures> {
  await readableOnHost(model.params.values()); // webgpu: one asynchronous read first
  const key = checkpointFingerprint(model, (k) => k.startsWith("visual."));
  const path = `${dir}/${
    dataset.name.replaceAll("/", "_")
  }.${dataset.split}.${key}.features.safetensors`;
  try {
    const f = readSafetensors(await Deno.readFile(path), path);
    const feats = f.stateDict.get("features"), labels = f.stateDict.get("labels");
    if (!feats || !labels || feats.shape.length !== 2 || labels.shape[0] !== feats.shape[0]) {
      throw new Error(`${path}: not a feature cache (delete it to recompute)`);
    }
    return {
      features: Float32Array.from(feats.data as ArrayLike<number>),
      labels: Int32Array.from(labels.data as ArrayLike<number>),
      dim: feats.shape[1],
      path,
      cached: true,
    };
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const dim = model.config.embedDim;
  const features = new Float32Array(dataset.length * dim);
  const labels = new Int32Array(dataset.length);
  const prev = model.training;
  model.training = false;
  let n = 0;
  try {
    for await (
      const b of batches(dataset, {
        batchSize: options.batchSize ?? 128,
        transform: evalTransform(model.config.imageResolution),
        workers: options.workers ?? 0,
      })
    ) {
      const f = tf.tidy(() => model.encodeImage(b.images));
      features.set((await f.data()) as Float32Array, n * dim);
      labels.set(b.labels.dataSync() as Int32Array, n);
      n += b.labels.shape[0];
      tf.dispose([f, b.images, b.labels]);
    }
  } finally {
    model.training = prev;
  }
  await Deno.mkdir(dir, { recursive: true });
  await writeSafetensorsFile(
    path,
    new Map([
      ["features", { shape: [n, dim], dtype: "float32", data: features.subarray(0, n * dim) }],
      ["labels", { shape: [n], dtype: "int32", data: labels.subarray(0, n) }],
    ]),
    { dataset: dataset.name, split: dataset.split, fingerprint: key },
  );
  if (options.log && options.log !== "silent") console.log(`cached ${n} feature rows in ${path}`);
  return { features, labels, dim, path, cached: false };
}

/**
 * Step-addressed batches over cached features (seeded reshuffle per epoch, like the image
 * batches): `batch(step)` gives the rows' features and labels and a placeholder image tensor.
 */
export function featureBatches(
  cache: CachedFeatures,
  batchSize: number,
  seed: number,
): { batch(step: number): Promise<TrainBatch>; perEpoch: number } {
  const n = cache.labels.length;
  const perEpoch = Math.floor(n / batchSize) || 1;
  const orders = new Map<number, Int32Array>();
  const order = (epoch: number) => {
    let o = orders.get(epoch);
    if (!o) {
      o = new Rng(seed * 1000003 + epoch).permutation(n);
      orders.clear();
      orders.set(epoch, o);
    }
    return o;
  };
  return {
    perEpoch,
    batch(step) {
      const o = order(Math.floor(step / perEpoch));
      const start = (step % perEpoch) * batchSize;
      const rows = o.subarray(start, Math.min(n, start + batchSize));
      const d = cache.dim;
      const f = new Float32Array(rows.length * d);
      rows.forEach((r, i) => f.set(cache.features.subarray(r * d, (r + 1) * d), i * d));
      return Promise.resolve({
        images: tf.zeros([rows.length, 1, 1, 3]) as tf.Tensor4D,
        labels: Array.from(rows, (r) => cache.labels[r]),
        features: tf.tensor2d(f, [rows.length, d]),
      });
    },
  };
}
