/**
 * Step-addressed batches over a dataset: `batch(step)` is the `step`-th batch of a seeded,
 * per-epoch reshuffled stream (endless), so a resumed run sees exactly the batches of an
 * uninterrupted one. Sequential steps reuse one prefetching loader; a jump (resume) restarts it
 * at `(epoch, index)`.
 *
 * @module
 */
import type { Dataset } from "../datasets/types.ts";
import { batches, batchesPerEpoch } from "../datasets/loader.ts";
import type { TransformSpec } from "../datasets/transforms.ts";
import type { TrainBatch } from "./train.ts";

/** Options of {@link StepBatches}. */
export interface StepBatchesOptions {
  /** Images per batch. */
  batchSize: number;
  /** Seed of the order and the random crops. */
  seed: number;
  /** The transform (train or eval). */
  transform: TransformSpec;
  /** Shuffle (default true). */
  shuffle?: boolean;
  /** Loader worker threads (default 0). */
  workers?: number;
}

/** A deterministic, step-addressed batch stream. Call {@link StepBatches.close} when done. */
export class StepBatches {
  /** Batches per epoch. */
  readonly perEpoch: number;
  #ds: Dataset;
  #o: StepBatchesOptions;
  #it?: AsyncGenerator<import("../datasets/loader.ts").Batch, void, undefined>;
  #next = -1;

  /** A stream over `dataset`. */
  constructor(dataset: Dataset, options: StepBatchesOptions) {
    this.#ds = dataset;
    this.#o = options;
    this.perEpoch = batchesPerEpoch(dataset.length, options.batchSize);
    if (this.perEpoch === 0) throw new Error(`${dataset.name}: empty dataset`);
  }

  /** The batch of 0-based step `step` (the caller disposes `images`). */
  async batch(step: number): Promise<TrainBatch> {
    if (!this.#it || step !== this.#next) {
      await this.close();
      this.#it = batches(this.#ds, {
        batchSize: this.#o.batchSize,
        shuffle: this.#o.shuffle ?? true,
        seed: this.#o.seed,
        transform: this.#o.transform,
        endless: true,
        workers: this.#o.workers ?? 0,
        startEpoch: Math.floor(step / this.perEpoch),
        startStep: step % this.perEpoch,
      });
    }
    const r = await this.#it.next();
    if (r.done) throw new Error(`${this.#ds.name}: the batch stream ended`);
    this.#next = step + 1;
    const labels = Array.from(r.value.labels.dataSync());
    r.value.labels.dispose();
    return { images: r.value.images, labels };
  }

  /** Release the loader. */
  async close(): Promise<void> {
    if (this.#it) await this.#it.return(undefined);
    this.#it = undefined;
    this.#next = -1;
  }
}
