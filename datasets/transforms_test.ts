import {
  deepStrictEqual as assertEquals,
  ok as assert,
  rejects as assertRejects,
  throws as assertThrows,
} from "node:assert/strict";
import sharp from "sharp";
import {
  CLIP_MEAN,
  CLIP_STD,
  preprocessImage,
  preprocessPixels,
  pyRound,
  resizeShortestSide,
} from "../clip/images/preprocess.ts";
import { resizeLikePil } from "../clip/images/image.ts";
import { Rng } from "./rng.ts";
import {
  applyTransform,
  centerCropRect,
  cropImage,
  decodeAndTransform,
  evalTransform,
  normalizeImage,
  normalizeTransform,
  randomResizedCropParams,
  trainTransform,
} from "./transforms.ts";
import type { DecodedImage } from "./types.ts";

function gradient(width: number, height: number): DecodedImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      data[o] = (x * 7 + y * 3) & 255;
      data[o + 1] = (x * x + y) & 255;
      data[o + 2] = (y * 11) & 255;
    }
  }
  return { data, width, height };
}

async function jpeg(img: DecodedImage): Promise<Uint8Array> {
  const buf = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .jpeg({ quality: 90 }).toBuffer();
  return new Uint8Array(buf);
}

/** A stand-in generator returning scripted uniforms (as fractions) and integers. */
function scripted(us: number[], ints: number[], seen: number[]): Rng {
  return {
    uniform: (lo: number, hi: number) => lo + (hi - lo) * us.shift()!,
    int: (n: number) => {
      seen.push(n);
      return ints.shift()!;
    },
  } as unknown as Rng;
}

Deno.test("transforms: Python rounding", () => {
  assertEquals([0.5, 1.5, 2.5, 3.5, 2.4999, 2.5001, 7].map(pyRound), [0, 2, 2, 4, 2, 3, 7]);
});

Deno.test("transforms: RandomResizedCrop parameters follow torchvision's algorithm", () => {
  // Success on the first attempt: area 0.9 · 100², ratio exp(0) = 1 → 95 × 95, then
  // torch.randint(0, 100 - 95 + 1) for the top and the left.
  const seen: number[] = [];
  const box = randomResizedCropParams(
    100,
    100,
    [0.9, 1],
    [3 / 4, 4 / 3],
    scripted([0, 0.5], [2, 5], seen),
  );
  assertEquals(box, { top: 2, left: 5, height: 95, width: 95 });
  assertEquals(seen, [6, 6]);
  // A 200 × 100 image (ratio 2) can never hold ≥ 0.9 of its area at a ratio ≤ 4/3 (h would be
  // ≥ 116), so all ten attempts fail and the fallback crops the centre at ratio 4/3:
  // h = 100, w = round(133.33) = 133, left = (200 - 133) // 2 = 33.
  const rng = new Rng(3);
  const before = rng.clone();
  assertEquals(randomResizedCropParams(200, 100, [0.9, 1], [3 / 4, 4 / 3], rng), {
    top: 0,
    left: 33,
    height: 100,
    width: 133,
  });
  for (let k = 0; k < 20; k++) before.random(); // ten attempts × two uniforms consumed
  assertEquals(rng.getState(), before.getState());
  // Tall image: w = 10, h = round(10 / (3/4)) = 13, top = (1000 - 13) // 2.
  assertEquals(randomResizedCropParams(10, 1000, [0.9, 1], [3 / 4, 4 / 3], new Rng(1)), {
    top: 493,
    left: 0,
    height: 13,
    width: 10,
  });
  // Within range: ratio 1, whole-image fallback when in range.
  assertEquals(randomResizedCropParams(50, 50, [2, 3], [1, 1], new Rng(0)), {
    top: 0,
    left: 0,
    height: 50,
    width: 50,
  });
  // Statistics of many draws: inside the image, area ≈ 0.9–1.0, aspect within 3/4–4/3.
  const r = new Rng(9);
  for (let k = 0; k < 500; k++) {
    const b = randomResizedCropParams(320, 240, [0.9, 1], [3 / 4, 4 / 3], r);
    assert(b.top >= 0 && b.left >= 0 && b.top + b.height <= 240 && b.left + b.width <= 320);
    const frac = (b.width * b.height) / (320 * 240);
    assert(frac > 0.88 && frac <= 1.0, `area ${frac}`);
    const ar = b.width / b.height;
    assert(ar > 0.74 && ar < 1.35, `ratio ${ar}`);
  }
});

Deno.test("transforms: resize/crop geometry (torchvision Resize, CenterCrop)", () => {
  assertEquals(resizeShortestSide(640, 480, 224), [298, 224]);
  assertEquals(resizeShortestSide(37, 1000, 32), [32, 864]);
  assertEquals(centerCropRect(298, 224, 224), { top: 0, left: 37, height: 224, width: 224 });
  assertEquals(centerCropRect(225, 225, 224), { top: 0, left: 0, height: 224, width: 224 });
  assertEquals(centerCropRect(227, 224, 224).left, 2); // round(1.5) = 2
});

Deno.test("transforms: normalisation constants and values", () => {
  assertEquals(normalizeTransform(), { kind: "normalize" });
  const img = { data: new Uint8Array([0, 0, 0, 255, 255, 255]), width: 2, height: 1 };
  const out = normalizeImage(img);
  const f = Math.fround;
  for (let c = 0; c < 3; c++) {
    assertEquals(out[c], f(f(0 - f(CLIP_MEAN[c])) / f(CLIP_STD[c])));
    assertEquals(out[3 + c], f(f(1 - f(CLIP_MEAN[c])) / f(CLIP_STD[c])));
  }
  assert(Math.abs(out[0] - -1.7922625) < 1e-6 && Math.abs(out[3] - 1.9303361) < 1e-6);
  const custom = normalizeImage(img, { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
  assertEquals([...custom], [-1, -1, -1, 1, 1, 1]);
  assertThrows(() => normalizeImage(img, { mean: [0, 0], std: [1, 1, 1] }), RangeError);
});

Deno.test("transforms: eval transform equals CLIP preprocessing exactly", async () => {
  const img = gradient(97, 61);
  const bytes = await jpeg(img);
  const ours = await decodeAndTransform(evalTransform(32), bytes);
  const ref = await preprocessImage(bytes, 32);
  assertEquals([ours.width, ours.height], [32, 32]);
  assertEquals(ours.data, ref);
  const fromPixels = applyTransform(evalTransform(48), img);
  assertEquals(
    fromPixels.data,
    preprocessPixels({ ...img, channels: 3, mode: "RGB" }, 48),
  );
});

Deno.test("transforms: train transform = seeded crop + PIL bicubic resize", () => {
  const img = gradient(80, 60);
  const spec = trainTransform(24);
  const a = applyTransform(spec, img, 11);
  const b = applyTransform(spec, img, 11);
  const c = applyTransform(spec, img, 12);
  assertEquals(a.data, b.data);
  assert(a.data.some((v, i) => v !== c.data[i]), "different seeds, different crops");
  // Same as drawing the box with Rng(11), cropping and resizing by hand.
  const box = randomResizedCropParams(80, 60, [0.9, 1], [3 / 4, 4 / 3], new Rng(11));
  const manual = resizeLikePil({ ...cropImage(img, box), channels: 3, mode: "RGB" }, 24, 24);
  assertEquals(a.data, normalizeImage(manual));
  // scale = ratio = 1 on a square image: the crop is the whole image → a plain resize.
  const sq = gradient(40, 40);
  const whole = applyTransform(trainTransform(16, { scale: [1, 1], ratio: [1, 1] }), sq, 5);
  assertEquals(whole.data, applyTransform(evalTransform(16), sq).data);
  assertThrows(() => trainTransform(16, { scale: [1, 0.5] }), RangeError);
});

Deno.test("transforms: grey and RGBA files become RGB after the crop", async () => {
  const grey = new Uint8Array(20 * 10).map((_, i) => i);
  const png = new Uint8Array(
    await sharp(grey, { raw: { width: 20, height: 10, channels: 1 } }).png().toBuffer(),
  );
  const out = await decodeAndTransform(evalTransform(8), png);
  for (let p = 0; p < 64; p++) {
    // Equal bytes in every channel: recover the byte through channel 0 and check 1 and 2.
    const v = Math.round((out.data[3 * p] * CLIP_STD[0] + CLIP_MEAN[0]) * 255);
    const again = normalizeImage({ data: new Uint8Array([v, v, v]), width: 1, height: 1 });
    assertEquals([...out.data.subarray(3 * p, 3 * p + 3)], [...again]);
  }
  const rgba = new Uint8Array(16 * 16 * 4).map((_, i) => (i % 4 === 3 ? 255 : i & 255));
  const png4 = new Uint8Array(
    await sharp(rgba, { raw: { width: 16, height: 16, channels: 4 } }).png().toBuffer(),
  );
  const o4 = await decodeAndTransform(trainTransform(8), png4, 3);
  assertEquals(o4.data.length, 8 * 8 * 3);
});

Deno.test("transforms: corrupt bytes and bad shapes are errors", async () => {
  const bytes = await jpeg(gradient(30, 30));
  await assertRejects(() => decodeAndTransform(evalTransform(8), bytes.subarray(0, 40)));
  await assertRejects(() => decodeAndTransform(evalTransform(8), new Uint8Array([1, 2, 3])));
  assertThrows(
    () => applyTransform(evalTransform(8), { data: new Uint8Array(5), width: 2, height: 2 }),
    RangeError,
  );
  assertThrows(() => evalTransform(0), RangeError);
});
