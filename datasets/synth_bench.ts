/**
 * SynthMTIL rendering speed (images per second on one core) and the loader's throughput on
 * SynthMTIL batches (rendering + normalisation + tensors, main thread).
 *
 *   deno bench -A datasets/synth_bench.ts
 *   deno run -A datasets/synth_bench.ts     (a table of images/s)
 *
 * @module
 */
import { batches } from "./loader.ts";
import { synthCaptions, synthTask } from "./synth.ts";

function renderRate(size: number, n: number): number {
  const ds = synthCaptions({ seed: 1, n, size });
  const t0 = performance.now();
  for (let i = 0; i < n; i++) ds.item(i);
  return (n / (performance.now() - t0)) * 1000;
}

async function loaderRate(size: number, n: number): Promise<number> {
  const ds = synthTask("shape", { seed: 1, n, size });
  const t0 = performance.now();
  for await (const b of batches(ds, { batchSize: 128, shuffle: true, workers: 0 })) {
    b.images.dispose();
    b.labels.dispose();
  }
  return (n / (performance.now() - t0)) * 1000;
}

if (import.meta.main) {
  console.log("| size | render img/s (1 core) | loader img/s (main thread) |");
  console.log("|---|---|---|");
  for (const size of [32, 48, 64]) {
    renderRate(size, 500); // warm-up
    const r = renderRate(size, 5000);
    const l = await loaderRate(size, 2048);
    console.log(`| ${size} | ${r.toFixed(0)} | ${l.toFixed(0)} |`);
  }
} else {
  for (const size of [32, 64]) {
    Deno.bench({
      name: `render 1000 SynthMTIL images at ${size} px`,
      group: "synth",
      fn: () => {
        renderRate(size, 1000);
      },
    });
  }
  Deno.bench({
    name: "loader: 1024 SynthMTIL images at 32 px in batches of 128",
    group: "synth",
    n: 5,
    fn: async () => {
      await loaderRate(32, 1024);
    },
  });
}
