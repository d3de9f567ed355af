import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { readF32, sharedPath, skipWithoutShared } from "../_testing.ts";
import {
  centerCrop,
  centerCropRect,
  CLIP_MEAN,
  CLIP_STD,
  makePreprocess,
  normalize,
  preprocessImage,
  resizeShortestSide,
} from "./preprocess.ts";
import type { DecoderName } from "./image.ts";
import { tf } from "../backends/tf.ts";

interface PreCase {
  image: string;
  n_px: number;
  expected: { file: string; shape: number[] };
}

/** Max and mean abs error of an HWC result against a CHW reference. */
function errors(hwc: Float32Array, chw: Float32Array, n: number): { max: number; mean: number } {
  assertEquals(hwc.length, chw.length);
  let max = 0, sum = 0;
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < n * n; i++) {
      const d = Math.abs(hwc[i * 3 + c] - chw[c * n * n + i]);
      if (d > max) max = d;
      sum += d;
    }
  }
  return { max, mean: sum / (3 * n * n) };
}

async function fixtureTable(decoder: DecoderName) {
  const meta = JSON.parse(Deno.readTextFileSync(sharedPath("fixtures/clip/preprocess.json")));
  assertEquals(meta.mean, [...CLIP_MEAN]);
  assertEquals(meta.std, [...CLIP_STD]);
  const rows: { image: string; nPx: number; max: number; mean: number }[] = [];
  for (const c of meta.cases as PreCase[]) {
    const bytes = await Deno.readFile(sharedPath(`fixtures/clip/${c.image}`));
    const hwc = await preprocessImage(bytes, c.n_px, { decoder, name: c.image });
    const exp = readF32(`fixtures/clip/${c.expected.file}`);
    rows.push({ image: c.image, nPx: c.n_px, ...errors(hwc, exp, c.n_px) });
  }
  console.log(`preprocessing vs PyTorch CLIP reference (decoder: ${decoder})`);
  console.log("| image | n_px | max abs err | mean abs err |\n|---|---|---|---|");
  for (const r of rows) {
    console.log(
      `| ${r.image} | ${r.nPx} | ${r.max.toExponential(2)} | ${r.mean.toExponential(2)} |`,
    );
  }
  return rows;
}

Deno.test({
  name: "preprocess: fixture images at 32 and 224 within targets (sharp: exact)",
  ignore: skipWithoutShared(),
  fn: async () => {
    const rows = await fixtureTable("sharp");
    assertEquals(rows.length, 8);
    for (const r of rows) {
      assert(r.mean <= 0.01 && r.max <= 0.1, `${r.image}@${r.nPx}: ${r.max} / ${r.mean}`);
      // PNG is lossless and libvips and PIL share libjpeg-turbo's decoder: we reproduce PIL exactly.
      assert(r.max <= 1e-6, `${r.image}@${r.nPx} not exact: max ${r.max}`);
    }
  },
});

Deno.test({
  name: "preprocess: imagescript fallback decoder within targets",
  ignore: skipWithoutShared(),
  fn: async () => {
    const rows = await fixtureTable("imagescript");
    for (const r of rows) {
      assert(r.mean <= 0.01 && r.max <= 0.1, `${r.image}@${r.nPx}: ${r.max} / ${r.mean}`);
      if (r.image.endsWith(".png")) assert(r.max <= 1e-6, `${r.image}@${r.nPx}: ${r.max}`);
    }
  },
});

Deno.test("resizeShortestSide: torchvision Resize(int) truncation", () => {
  assertEquals(resizeShortestSide(320, 240, 224), [298, 224]); // int(224*320/240) = 298
  assertEquals(resizeShortestSide(200, 300, 224), [224, 336]);
  assertEquals(resizeShortestSide(500, 180, 224), [622, 224]); // 622.22 → 622
  assertEquals(resizeShortestSide(224, 224, 32), [32, 32]);
});

Deno.test("centerCrop: torchvision rounding (Python round, half to even)", () => {
  const box = (w: number, h: number, cw: number, ch: number) => {
    const b = centerCropRect(w, h, cw, ch);
    return [b.left, b.top, b.left + b.width, b.top + b.height];
  };
  assertEquals(box(298, 224, 224, 224), [37, 0, 261, 224]); // (74)/2 = 37
  assertEquals(box(5, 5, 2, 2), [2, 2, 4, 4]); // round(1.5) = 2
  assertEquals(box(7, 4, 2, 1), [2, 2, 4, 3]); // round(2.5) = 2, round(1.5) = 2
  const img = { data: Uint8Array.from({ length: 4 * 3 * 3 }, (_, i) => i), width: 4, height: 3 };
  const c = centerCrop(img, 2, 1); // left round(1.0) = 1, top round(1.0) = 1
  assertEquals(Array.from(c.data), [15, 16, 17, 18, 19, 20]);
});

Deno.test("normalize: (x/255 - mean)/std in float32, HWC", () => {
  const out = normalize(Uint8Array.from([0, 128, 255]));
  const f = Math.fround;
  assertEquals(out[0], f(f(0 - f(CLIP_MEAN[0])) / f(CLIP_STD[0])));
  assertEquals(out[1], f(f(f(128 / 255) - f(CLIP_MEAN[1])) / f(CLIP_STD[1])));
  assert(Math.abs(out[2] - (1 - 0.40821073) / 0.27577711) < 1e-6);
});

Deno.test({
  name: "makePreprocess: [n, n, 3] float32 tensor equal to preprocessImage, no leak",
  ignore: skipWithoutShared(),
  fn: async () => {
    const bytes = await Deno.readFile(sharedPath("fixtures/clip/img102.jpg"));
    const pre = makePreprocess(32);
    const before = tf.memory().numTensors;
    const t = await pre(bytes);
    assertEquals(t.shape, [32, 32, 3]);
    assertEquals(t.dtype, "float32");
    assertEquals(await t.data(), await preprocessImage(bytes, 32));
    t.dispose();
    assertEquals(tf.memory().numTensors, before);
  },
});
