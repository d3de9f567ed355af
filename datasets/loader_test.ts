import {
  deepStrictEqual as assertEquals,
  notDeepStrictEqual as assertNotEquals,
  ok as assert,
  rejects as assertRejects,
} from "node:assert/strict";
import sharp from "sharp";
import { tf } from "../clip/backends/tf.ts";
import { type Batch, batches, batchesPerEpoch, epochOrder, type LoaderStats } from "./loader.ts";
import { WorkerPool } from "./pool.ts";
import { applyTransform, normalizeImage, trainTransform } from "./transforms.ts";
import { synthTask } from "./synth.ts";
import type { Dataset, DecodedImage, Example } from "./types.ts";

/** Item i: a w×h image whose bytes all equal i mod 256, label i mod k. */
function memoryDataset(n: number, k = 3, w = 4, h = 4, label?: (i: number) => number): Dataset {
  return {
    name: "Mem",
    split: "train",
    classnames: Array.from({ length: k }, (_, c) => `c${c}`),
    templates: ["a photo of a {}."],
    length: n,
    get(i: number): Promise<Example> {
      const data = new Uint8Array(w * h * 3).fill(i & 255);
      return Promise.resolve({ image: { data, width: w, height: h }, label: label?.(i) ?? i % k });
    },
  };
}

async function collect(
  it: AsyncIterable<Batch>,
  limit = Infinity,
): Promise<{ indices: number[][]; labels: number[][]; data: Float32Array[]; epochs: number[] }> {
  const out = {
    indices: [] as number[][],
    labels: [] as number[][],
    data: [] as Float32Array[],
    epochs: [] as number[],
  };
  for await (const b of it) {
    out.indices.push(b.indices);
    out.labels.push([...(await b.labels.data())]);
    out.data.push((await b.images.data()) as Float32Array);
    out.epochs.push(b.epoch);
    b.images.dispose();
    b.labels.dispose();
    if (out.indices.length >= limit) break;
  }
  return out;
}

Deno.test("loader: sequential order, batch shapes, contents and labels", async () => {
  const ds = memoryDataset(10);
  const seen: number[][] = [];
  for await (const b of batches(ds, { batchSize: 4, workers: 0 })) {
    seen.push(b.indices);
    assertEquals(b.images.shape, [b.indices.length, 4, 4, 3]);
    assertEquals(b.images.dtype, "float32");
    assertEquals(b.labels.dtype, "int32");
    assertEquals([...(await b.labels.data())], b.indices.map((i) => i % 3));
    const px = await b.images.data();
    b.indices.forEach((i, j) => {
      const want = normalizeImage({ data: new Uint8Array(48).fill(i), width: 4, height: 4 });
      assertEquals(px.subarray(j * 48, (j + 1) * 48), want);
    });
    b.images.dispose();
    b.labels.dispose();
  }
  assertEquals(seen, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]);
  const dropped = await collect(batches(ds, { batchSize: 4, workers: 0, dropLast: true }));
  assertEquals(dropped.indices, [[0, 1, 2, 3], [4, 5, 6, 7]]);
  assertEquals([batchesPerEpoch(10, 4), batchesPerEpoch(10, 4, true)], [3, 2]);
});

Deno.test("loader: the same seed gives the same order; epochs reshuffle", async () => {
  const ds = memoryDataset(23);
  const opts = { batchSize: 5, shuffle: true, seed: 7, workers: 0, endless: true };
  const a = await collect(batches(ds, opts), 15);
  const b = await collect(batches(ds, opts), 15);
  const c = await collect(batches(ds, { ...opts, seed: 8 }), 15);
  assertEquals(a.indices, b.indices);
  assertNotEquals(a.indices, c.indices);
  // Each epoch (5 batches of 5, 5, 5, 5, 3) is a permutation, and the epochs differ.
  const epochs = [0, 1, 2].map((e) => a.indices.slice(5 * e, 5 * e + 5).flat());
  for (const e of epochs) assertEquals([...e].sort((x, y) => x - y), [...Array(23).keys()]);
  assertNotEquals(epochs[0], epochs[1]);
  assertEquals(a.epochs, [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
  assertEquals(epochs[1], [...epochOrder(23, 1, true, 7)]);
});

Deno.test("loader: resuming at (epoch, step) continues the same stream", async () => {
  const ds = memoryDataset(17);
  const opts = {
    batchSize: 4,
    shuffle: true,
    seed: 3,
    workers: 0,
    endless: true,
    transform: trainTransform(3),
  };
  const full = await collect(batches(ds, opts), 12);
  // Batch 7 is epoch 1 (5 batches per epoch), step 2.
  const resumed = await collect(batches(ds, { ...opts, startEpoch: 1, startStep: 2 }), 5);
  assertEquals(resumed.indices, full.indices.slice(7));
  assertEquals(resumed.data, full.data.slice(7));
  // A step past the end of an epoch rolls over.
  const rolled = await collect(batches(ds, { ...opts, startEpoch: 0, startStep: 7 }), 1);
  assertEquals(rolled.indices, [full.indices[7]]);
});

Deno.test("loader: workers give exactly the main thread's pixels (train crops included)", async () => {
  const ds: Dataset = {
    ...memoryDataset(12),
    get(i: number) {
      const data = new Uint8Array(16 * 12 * 3).map((_, k) => (k * (i + 3)) & 255);
      return Promise.resolve({ image: { data, width: 16, height: 12 }, label: i % 3 });
    },
  };
  const opts = { batchSize: 5, shuffle: true, seed: 1, transform: trainTransform(8) };
  const inline = await collect(batches(ds, { ...opts, workers: 0 }));
  const pooled = await collect(batches(ds, { ...opts, workers: 2 }));
  assertEquals(pooled.indices, inline.indices);
  assertEquals(pooled.data, inline.data);
  // The crop of an item is what applyTransform gives with its per-position seed.
  const first = await ds.get(inline.indices[0][0]);
  const seedOf = (await import("./rng.ts")).hashSeed(1, 0, 0, 1);
  const one = applyTransform(trainTransform(8), first.image as DecodedImage, seedOf);
  assertEquals(inline.data[0].subarray(0, 8 * 8 * 3), one.data);
});

Deno.test("loader: no tensor leak over a full epoch", async () => {
  await tf.ready();
  const ds = synthTask("shape", { n: 64, seed: 2 });
  const before = tf.memory().numTensors;
  let maxDuring = 0;
  for await (const b of batches(ds, { batchSize: 16, shuffle: true, workers: 0 })) {
    maxDuring = Math.max(maxDuring, tf.memory().numTensors - before);
    tf.tidy(() => b.images.mean()).dispose();
    b.images.dispose();
    b.labels.dispose();
  }
  assertEquals(tf.memory().numTensors, before);
  assertEquals(maxDuring, 2); // only the batch being consumed exists as tensors
});

Deno.test("loader: breaking out closes its pool; an external pool stays open", async () => {
  const ds = memoryDataset(40);
  const stats: LoaderStats = { skipped: 0, batches: 0, images: 0 };
  for await (const b of batches(ds, { batchSize: 4, workers: 2, endless: true, stats })) {
    b.images.dispose();
    b.labels.dispose();
    if (stats.batches === 3) break;
  }
  assertEquals([stats.batches, stats.images], [3, 12]);
  const pool = new WorkerPool({ size: 1 });
  try {
    const got = await collect(batches(ds, { batchSize: 8, pool }), 2);
    assertEquals(got.indices.length, 2);
    assert(!pool.closed);
    const again = await collect(batches(ds, { batchSize: 40, pool }));
    assertEquals(again.indices, [[...Array(40).keys()]]);
  } finally {
    await pool.close();
  }
});

Deno.test("loader: a corrupt image is an error naming the file, or skipped and counted", async () => {
  const px = new Uint8Array(24 * 24 * 3).map((_, k) => k & 255);
  const good = new Uint8Array(
    await sharp(px, { raw: { width: 24, height: 24, channels: 3 } }).jpeg().toBuffer(),
  );
  const bad = good.slice(0, 60);
  const ds: Dataset = {
    ...memoryDataset(6),
    get: (i: number) =>
      Promise.resolve({ image: i === 4 ? bad : good, label: i % 3, path: `/data/img${i}.jpg` }),
  };
  for (const workers of [0, 2]) {
    await assertRejects(
      async () => {
        for await (
          const b of batches(ds, { batchSize: 3, workers, transform: trainTransform(8) })
        ) {
          b.images.dispose();
          b.labels.dispose();
        }
      },
      (e: Error) => e.message.includes("/data/img4.jpg") && e.message.includes("skipBad"),
    );
    const stats: LoaderStats = { skipped: 0, batches: 0, images: 0 };
    const skippedPaths: string[] = [];
    const got = await collect(
      batches(ds, {
        batchSize: 3,
        workers,
        skipBad: true,
        stats,
        transform: trainTransform(8),
        onSkip: (info) => skippedPaths.push(`${info.path}#${info.skipped}`),
      }),
    );
    assertEquals(got.indices, [[0, 1, 2], [3, 5]]);
    assertEquals(got.data[1].length, 2 * 8 * 8 * 3);
    assertEquals(stats.skipped, 1);
    assertEquals(skippedPaths, ["/data/img4.jpg#1"]);
  }
  // Endless iteration over nothing but bad images stops instead of spinning.
  const allBad: Dataset = {
    ...ds,
    get: (i: number) => Promise.resolve({ image: bad, label: i % 3 }),
  };
  await assertRejects(
    () =>
      collect(
        batches(allBad, {
          batchSize: 2,
          workers: 0,
          skipBad: true,
          endless: true,
          onSkip: () => {},
        }),
      ),
    /every image of an epoch was bad \(\d+ skipped\)/,
  );
});

Deno.test("loader: labels out of range and mixed sizes are errors", async () => {
  const ds = memoryDataset(6, 3, 4, 4, (i) => (i === 5 ? 3 : 0));
  await assertRejects(
    () => collect(batches(ds, { batchSize: 6, workers: 0 })),
    (e: Error) =>
      e instanceof RangeError &&
      /label 3 of Mem \(train\) item 5 is outside \[0, 3\)/.test(e.message),
  );
  const mixed: Dataset = {
    ...memoryDataset(4),
    get: (i: number) => memoryDataset(4, 3, i === 2 ? 5 : 4, 4).get(i),
  };
  await assertRejects(() => collect(batches(mixed, { batchSize: 4, workers: 0 })), /5×4 image/);
  await assertRejects(() => collect(batches(ds, { batchSize: 0 })), RangeError);
});
