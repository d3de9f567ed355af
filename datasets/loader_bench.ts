/**
 * Throughput of the batch loader: preprocessed images per second at 224 px from JPEG bytes
 * (decode + resize + crop + normalise + batch tensor), for 0 (main thread), 1, 2, … workers.
 *
 *   deno bench -A datasets/loader_bench.ts          (Deno.bench, time per epoch)
 *   deno run -A datasets/loader_bench.ts [--images 96] [--width 500] [--height 375]
 *                                        (a table of images/s per worker count)
 *
 * Each worker count gets one pool for all its epochs (worker start-up is not timed). The JPEGs
 * are generated with sharp (smooth gradients plus noise, quality 90), held in memory so
 * that disk speed does not enter the number.
 *
 * @module
 */
import sharp from "sharp";
import { parseArgs } from "../tasks/cli.ts";
import { batches } from "./loader.ts";
import { WorkerPool } from "./pool.ts";
import { Rng } from "./rng.ts";
import { evalTransform, trainTransform, type TransformSpec } from "./transforms.ts";
import type { Dataset, Example } from "./types.ts";

/** `n` synthetic photo-like JPEGs of `width × height`. */
async function makeJpegs(n: number, width: number, height: number): Promise<Uint8Array[]> {
  const rng = new Rng(1);
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const px = new Uint8Array(width * height * 3);
    const fx = rng.uniform(0.005, 0.05), fy = rng.uniform(0.005, 0.05);
    for (let y = 0, o = 0; y < height; y++) {
      for (let x = 0; x < width; x++, o += 3) {
        const noise = rng.nextU32() & 31;
        px[o] = (128 + 100 * Math.sin(x * fx + i)) + noise & 255;
        px[o + 1] = (128 + 100 * Math.cos(y * fy)) + noise & 255;
        px[o + 2] = ((x + y + i * 7) & 255) ^ noise;
      }
    }
    const buf = await sharp(px, { raw: { width, height, channels: 3 } }).jpeg({ quality: 90 })
      .toBuffer();
    out.push(new Uint8Array(buf));
  }
  return out;
}

function jpegDataset(jpegs: Uint8Array[]): Dataset {
  return {
    name: "bench-jpegs",
    split: "train",
    classnames: ["a", "b"],
    templates: ["{}"],
    length: jpegs.length,
    get: (i: number): Promise<Example> =>
      Promise.resolve({ image: jpegs[i], label: i % 2, path: `mem://${i}.jpg` }),
  };
}

/** One epoch through the loader; returns images per second. */
async function epoch(
  ds: Dataset,
  pool: WorkerPool | undefined,
  transform: TransformSpec,
): Promise<number> {
  const t0 = performance.now();
  let n = 0;
  const opts = { batchSize: 16, transform, shuffle: true, workers: 0, pool };
  for await (const b of batches(ds, opts)) {
    n += b.indices.length;
    b.images.dispose();
    b.labels.dispose();
  }
  return (n / (performance.now() - t0)) * 1000;
}

const cores = navigator.hardwareConcurrency;
const workerCounts = [...new Set([0, 1, 2, cores])].filter((w) => w <= Math.max(2, cores));

if (import.meta.main) {
  const args = parseArgs({
    args: Deno.args,
    options: {
      images: { type: "string", default: "96" },
      width: { type: "string", default: "500" },
      height: { type: "string", default: "375" },
    },
  }).values;
  const n = Number(args.images), w = Number(args.width), h = Number(args.height);
  const ds = jpegDataset(await makeJpegs(n, w, h));
  console.log(`${n} JPEGs of ${w}×${h} → 224 px, batch 16, ${cores} logical cores`);
  console.log("| workers | eval img/s | train img/s |");
  console.log("|---|---|---|");
  for (const workers of workerCounts) {
    const pool = workers > 0 ? new WorkerPool({ size: workers }) : undefined;
    await epoch(ds, pool, evalTransform(224)); // warm-up (worker start, JIT)
    const ev = await epoch(ds, pool, evalTransform(224));
    const tr = await epoch(ds, pool, trainTransform(224));
    await pool?.close();
    console.log(
      `| ${workers === 0 ? "0 (main thread)" : workers} | ${ev.toFixed(1)} | ${tr.toFixed(1)} |`,
    );
  }
} else {
  const ds = jpegDataset(await makeJpegs(32, 500, 375));
  for (const workers of workerCounts) {
    Deno.bench({
      name: `eval 224 px, 32 JPEGs 500×375, workers=${workers}`,
      group: "loader",
      baseline: workers === 0,
      n: 3,
      warmup: 0,
      fn: async (b) => {
        // A pool per iteration, warmed by one untimed epoch (start-up, JIT); only the second
        // epoch is timed.
        const pool = workers > 0 ? new WorkerPool({ size: workers }) : undefined;
        await epoch(ds, pool, evalTransform(224));
        b.start();
        await epoch(ds, pool, evalTransform(224));
        b.end();
        await pool?.close();
      },
    });
  }
}
