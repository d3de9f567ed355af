/**
 * The batch loader: turns a {@linkcode Dataset} into an async stream of NHWC float32 image
 * batches and int32 labels, decoding and transforming in a pool of Web Workers while the
 * training loop runs, with a few batches prefetched.
 *
 * - Order: with `shuffle`, epoch `e` visits the items in the permutation drawn by
 *   `Rng(hashSeed(seed, e))`, so the same seed gives the same order, every epoch reshuffles,
 *   and a run can resume at any `(epoch, step)` without saved generator state. The random crop
 *   of the item at position `p` of epoch `e` uses its own seed `hashSeed(seed, e, p, 1)`: the
 *   output does not depend on the number of workers or on scheduling.
 * - `endless`: epochs follow each other forever (reference streams); stop with `break`.
 * - Bad input: an image that fails to decode or transform is an error naming its file, or with
 *   `skipBad` it is dropped (that batch is smaller) with a warning and counted in `stats`.
 *   A label outside `[0, classnames.length)` is always an error.
 * - The caller owns and disposes every batch's tensors. Leaving the loop (`break`, an
 *   exception, or the end) closes the pool the loader created. Starting workers costs a few
 *   hundred milliseconds and their JIT warms up over the first images: for several epochs, use
 *   `endless` (with `startEpoch`/`startStep` to resume) or pass one long-lived `pool`.
 * - Datasets whose images are small and already decoded (SynthMTIL, CIFAR, MNIST) gain little
 *   from workers: `workers: 0` avoids the copies.
 *
 * @example
 * ```ts ignore
 * import { batches } from "./loader.ts";
 * import { trainTransform } from "./transforms.ts";
 * for await (const b of batches(ds, { batchSize: 32, shuffle: true, seed: 1, transform: trainTransform(224) })) {
 *   // ... train on b.images, b.labels
 *   b.images.dispose();
 *   b.labels.dispose();
 * }
 * ```
 *
 * @module
 */
import { tf } from "../clip/backends/tf.ts";
import { defaultWorkerCount, WorkerPool } from "./pool.ts";
import { hashSeed, Rng } from "./rng.ts";
import { normalizeTransform, type TransformSpec } from "./transforms.ts";
import type { Dataset, DecodedImage, Example } from "./types.ts";
import { type ChunkItem, type ChunkResponse, type ChunkResult, processChunk } from "./worker.ts";

/** Counters a loader updates while it runs (pass your own object to read them). */
export interface LoaderStats {
  /** Images dropped by `skipBad`. */
  skipped: number;
  /** Batches yielded. */
  batches: number;
  /** Images yielded. */
  images: number;
}

/** Options of {@linkcode batches}. */
export interface BatchOptions {
  /** Images per batch (required, ≥ 1). */
  batchSize: number;
  /** Visit items in a seeded random order, reshuffled every epoch (default false). */
  shuffle?: boolean;
  /** Seed of the order and of the random crops (default 0). */
  seed?: number;
  /** Drop the last, incomplete batch of each epoch (default false). */
  dropLast?: boolean;
  /** Transform spec (default: normalise only; images must then share one size). */
  transform?: TransformSpec;
  /** Iterate epochs forever (default false: one epoch). */
  endless?: boolean;
  /**
   * Worker threads; 0 processes on the main thread (fine for tiny images such as SynthMTIL).
   * Default `navigator.hardwareConcurrency`. Ignored when `pool` is given.
   */
  workers?: number;
  /** A pool to use instead of creating one (the loader then does not close it). */
  pool?: WorkerPool;
  /** Drop images that fail to decode, with a counted warning, instead of throwing. */
  skipBad?: boolean;
  /** Batches prepared ahead of the consumer (default 2). */
  prefetch?: number;
  /** First epoch (default 0), to resume a run. */
  startEpoch?: number;
  /** First batch index within the first epoch (default 0), to resume a run. */
  startStep?: number;
  /** Counters updated while iterating. */
  stats?: LoaderStats;
  /** Called for every skipped image (default: `console.warn`). */
  onSkip?: (info: { index: number; path: string; error: string; skipped: number }) => void;
}

/** One batch. Dispose `images` and `labels` when done. */
export interface Batch {
  /** `[n, H, W, 3]` float32, normalised. */
  images: tf.Tensor4D;
  /** `[n]` int32 class indices. */
  labels: tf.Tensor1D;
  /** Dataset indices of the images, in batch order. */
  indices: number[];
  /** Epoch of this batch (counting from 0). */
  epoch: number;
  /** Batch index within its epoch (resume with `startEpoch: epoch, startStep: step + 1`). */
  step: number;
}

/** Batches per epoch for a dataset of `length` items. */
export function batchesPerEpoch(length: number, batchSize: number, dropLast = false): number {
  return dropLast ? Math.floor(length / batchSize) : Math.ceil(length / batchSize);
}

/** The visiting order of epoch `epoch` (identity without `shuffle`). */
export function epochOrder(length: number, epoch: number, shuffle: boolean, seed = 0): Int32Array {
  if (!shuffle) {
    const p = new Int32Array(length);
    for (let i = 0; i < length; i++) p[i] = i;
    return p;
  }
  return new Rng(hashSeed(seed, epoch)).permutation(length);
}

interface Prepared {
  data: Float32Array;
  labels: Int32Array;
  indices: number[];
  height: number;
  width: number;
  epoch: number;
  step: number;
}

function describe(ds: Dataset, index: number, ex?: Example): string {
  return ex?.path ?? `${ds.name} (${ds.split}) item ${index}`;
}

function checkLabel(ds: Dataset, index: number, ex: Example): void {
  const k = ds.classnames.length;
  if (!Number.isInteger(ex.label) || ex.label < 0 || ex.label >= k) {
    throw new RangeError(
      `${ds.name}: label ${ex.label} of ${describe(ds, index, ex)} is outside [0, ${k}) ` +
        `(${k} class names): the dataset files and its class list disagree`,
    );
  }
}

/**
 * A private copy of an image's bytes for a worker: the copy is transferred (moved), so the
 * dataset's own buffers are never detached, and a view into a large buffer (an archive, an
 * in-memory dataset) never drags the whole buffer through the message.
 */
function ownCopy(image: DecodedImage | Uint8Array): DecodedImage | Uint8Array {
  if (image instanceof Uint8Array) return image.slice();
  return { data: image.data.slice(), width: image.width, height: image.height };
}

function bufferOf(image: DecodedImage | Uint8Array): ArrayBuffer {
  return (image instanceof Uint8Array ? image : image.data).buffer as ArrayBuffer;
}

/**
 * Iterate over `dataset` in batches (see the module doc). The iterator must be finished or
 * left (`break`) to release its worker pool.
 */
export async function* batches(
  dataset: Dataset,
  opts: BatchOptions,
): AsyncGenerator<Batch, void, undefined> {
  const bs = opts.batchSize;
  if (!Number.isInteger(bs) || bs < 1) {
    throw new RangeError(`batches: batchSize must be a positive integer, got ${bs}`);
  }
  const n = dataset.length;
  const seed = opts.seed ?? 0;
  const shuffle = opts.shuffle ?? false;
  const dropLast = opts.dropLast ?? false;
  const transform = opts.transform ?? normalizeTransform();
  const prefetch = Math.max(1, opts.prefetch ?? 2);
  const perEpoch = batchesPerEpoch(n, bs, dropLast);
  const stats = opts.stats;
  if (dataset.classnames.length === 0) {
    throw new RangeError(`batches: ${dataset.name} has no class names`);
  }
  let epoch = opts.startEpoch ?? 0;
  let step = opts.startStep ?? 0;
  if (!Number.isInteger(epoch) || epoch < 0 || !Number.isInteger(step) || step < 0) {
    throw new RangeError(`batches: startEpoch/startStep must be non-negative integers`);
  }
  if (perEpoch === 0) return;

  const workers = opts.pool ? opts.pool.size : (opts.workers ?? defaultWorkerCount());
  const ownPool = !opts.pool && workers > 0;
  const pool = opts.pool ?? (workers > 0 ? new WorkerPool({ size: workers }) : undefined);
  let skipped = 0;

  const run = (items: ChunkItem[]): Promise<ChunkResponse> => {
    if (!pool) return processChunk({ transform, items });
    const moved = items.map((it) => ({ image: ownCopy(it.image), seed: it.seed }));
    return pool.request<ChunkResponse>(
      { transform, items: moved },
      moved.map((it) => bufferOf(it.image)),
    );
  };

  let orderEpoch = -1;
  let order: Int32Array = new Int32Array(0);
  const indicesOf = (epoch: number, step: number): { indices: number[]; positions: number[] } => {
    if (epoch !== orderEpoch) {
      order = epochOrder(n, epoch, shuffle, seed);
      orderEpoch = epoch;
    }
    const start = step * bs;
    const end = Math.min(n, start + bs);
    const positions: number[] = [];
    for (let p = start; p < end; p++) positions.push(p);
    return { indices: positions.map((p) => order[p]), positions };
  };

  const prepare = async (epoch: number, step: number): Promise<Prepared> => {
    const { indices, positions } = indicesOf(epoch, step);
    // Items that could not be read (missing, unreadable, a FIFO…): with skipBad they are
    // dropped like undecodable ones; without it the first one is an error naming it.
    const readErrors = new Map<number, string>();
    const examples = await Promise.all(indices.map(async (i, k) => {
      try {
        const ex = await dataset.get(i);
        checkLabel(dataset, i, ex);
        return ex;
      } catch (e) {
        if (e instanceof RangeError) throw e;
        const msg = e instanceof Error ? e.message : String(e);
        if (opts.skipBad) {
          readErrors.set(k, msg);
          return { image: new Uint8Array(0), label: 0 } as Example;
        }
        throw new Error(
          `${dataset.name}: cannot load ${describe(dataset, i)}: ${msg} ` +
            `(fix or delete the file, or pass skipBad to skip bad images)`,
          { cause: e },
        );
      }
    }));
    const live = indices.map((_, k) => k).filter((k) => !readErrors.has(k));
    const items: ChunkItem[] = live.map((k) => ({
      image: examples[k].image,
      seed: hashSeed(seed, epoch, positions[k], 1),
    }));
    // Split into one chunk per worker (at least 4 images per chunk).
    const nChunks = pool ? Math.max(1, Math.min(pool.size, Math.ceil(items.length / 4))) : 1;
    const per = Math.max(1, Math.ceil(items.length / nChunks));
    const chunks: Promise<ChunkResponse>[] = [];
    for (let c = 0; c < items.length; c += per) chunks.push(run(items.slice(c, c + per)));
    const processed: ChunkResult[] = (await Promise.all(chunks)).flatMap((r) => r.results);
    const results: ChunkResult[] = indices.map((_, k) => ({
      ok: false,
      error: `cannot read: ${readErrors.get(k)}`,
    }));
    live.forEach((k, j) => (results[k] = processed[j]));

    const keep: number[] = [];
    for (let k = 0; k < results.length; k++) {
      const r = results[k];
      if (r.ok) {
        keep.push(k);
        continue;
      }
      const where = describe(dataset, indices[k], examples[k]);
      if (!opts.skipBad) {
        throw new Error(
          `${dataset.name}: bad image ${where}: ${r.error} ` +
            `(fix or delete the file, or pass skipBad to skip bad images)`,
        );
      }
      skipped++;
      if (stats) stats.skipped++;
      const info = { index: indices[k], path: where, error: r.error, skipped };
      if (opts.onSkip) opts.onSkip(info);
      else console.warn(`warning: skipping bad image ${where}: ${r.error} (${skipped} skipped)`);
    }
    let height = 0, width = 0;
    const first = keep.length ? results[keep[0]] : undefined;
    if (first && first.ok) [height, width] = [first.height, first.width];
    const px = height * width * 3;
    const data = new Float32Array(keep.length * px);
    const labels = new Int32Array(keep.length);
    keep.forEach((k, j) => {
      const r = results[k] as Extract<ChunkResult, { ok: true }>;
      if (r.height !== height || r.width !== width) {
        throw new Error(
          `${dataset.name}: ${describe(dataset, indices[k], examples[k])} gives a ` +
            `${r.width}×${r.height} image but the batch is ${width}×${height}; ` +
            `use an eval or train transform to bring images to one size`,
        );
      }
      data.set(r.data, j * px);
      labels[j] = examples[k].label;
    });
    return {
      data,
      labels,
      indices: keep.map((k) => indices[k]),
      height,
      width,
      epoch,
      step,
    };
  };

  // The sequence of (epoch, step) to produce.
  if (step >= perEpoch) {
    epoch += Math.floor(step / perEpoch);
    step %= perEpoch;
  }
  const firstEpoch = epoch;
  const endless = opts.endless ?? false;
  const nextJob = (): Promise<Prepared> | undefined => {
    if (!endless && epoch !== firstEpoch) return undefined;
    const p = prepare(epoch, step);
    p.catch(() => {}); // rejections are seen when the batch is awaited
    if (++step === perEpoch) {
      step = 0;
      epoch++;
    }
    return p;
  };

  const queue: Promise<Prepared>[] = [];
  let emptyRun = 0;
  try {
    for (let k = 0; k < prefetch; k++) {
      const job = nextJob();
      if (job) queue.push(job);
    }
    while (queue.length > 0) {
      const b = await queue.shift()!;
      const job = nextJob();
      if (job) queue.push(job);
      if (b.indices.length === 0) {
        // Every image of the batch was skipped; a whole epoch of that would loop forever.
        if (++emptyRun >= perEpoch) {
          throw new Error(`${dataset.name}: every image of an epoch was bad (${skipped} skipped)`);
        }
        continue;
      }
      emptyRun = 0;
      if (stats) {
        stats.batches++;
        stats.images += b.indices.length;
      }
      yield {
        images: tf.tensor4d(b.data, [b.indices.length, b.height, b.width, 3], "float32"),
        labels: tf.tensor1d(b.labels, "int32"),
        indices: b.indices,
        epoch: b.epoch,
        step: b.step,
      };
    }
  } finally {
    if (ownPool) await pool!.close();
    await Promise.allSettled(queue);
  }
}
