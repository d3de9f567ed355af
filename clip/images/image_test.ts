import { deepStrictEqual as assertEquals, ok as assert, rejects, throws } from "node:assert/strict";
import { sharedPath, skipWithoutShared } from "../_testing.ts";
import {
  decodeImage,
  decodePixels,
  loadSharp,
  resizeBicubic,
  resizeLikePil,
  resizeNearest,
  sniffImage,
  toRgb,
} from "./image.ts";
import { resizeCenterCrop } from "./preprocess.ts";

/** PIL's bicubic kernel (a = -0.5), written out for hand-derived expectations. */
function cubic(x: number): number {
  x = Math.abs(x);
  if (x < 1) return 1.5 * x ** 3 - 2.5 * x ** 2 + 1;
  if (x < 2) return -0.5 * x ** 3 + 2.5 * x ** 2 - 4 * x + 2;
  return 0;
}

Deno.test("resizeBicubic: 4→2 downscale uses the widened, normalised kernel (hand-derived)", () => {
  // Output pixel 0: center 1.0, scale 2 → taps at x = 0..3 with weights cubic((x + 0.5 - 1) / 2).
  const row = [10, 20, 200, 50];
  const w = [0, 1, 2, 3].map((x) => cubic((x + 0.5 - 1) / 2));
  assertEquals(w, [0.8671875, 0.8671875, 0.2265625, -0.0703125]);
  const sum = w.reduce((a, b) => a + b);
  const want0 = Math.round(row.reduce((a, v, i) => a + v * w[i], 0) / sum); // 35.87 → 36
  // Output pixel 1: center 3.0 → taps x = 0..3 (clipped at 4) with cubic((x + 0.5 - 3) / 2).
  const w1 = [0, 1, 2, 3].map((x) => cubic((x + 0.5 - 3) / 2));
  const want1 = Math.round(row.reduce((a, v, i) => a + v * w1[i], 0) / w1.reduce((a, b) => a + b));
  const out = resizeBicubic({ data: Uint8Array.from(row), width: 4, height: 1, channels: 1 }, 2, 1);
  assertEquals(Array.from(out.data), [want0, want1]);
  assertEquals([want0, want1], [36, 117]); // 35.87 and 220.625 / 1.890625 = 116.69
});

Deno.test("resizeBicubic: overshoot is clipped to [0, 255]; constant images stay constant", () => {
  const step = resizeBicubic(
    { data: Uint8Array.from([0, 0, 255, 255]), width: 4, height: 1, channels: 1 },
    8,
    1,
  );
  assert(step.data.every((v) => v >= 0 && v <= 255));
  assertEquals(step.data[0], 0);
  assertEquals(step.data[7], 255);
  const flat = new Uint8Array(7 * 5 * 3).fill(77);
  for (const [w, h] of [[3, 2], [11, 9], [7, 1]]) {
    const r = resizeBicubic({ data: flat, width: 7, height: 5 }, w, h);
    assertEquals(r.data.length, w * h * 3);
    assert(r.data.every((v) => v === 77), `${w}x${h}`);
  }
});

Deno.test("resizeBicubic: a box at scale 1 is an exact crop; identity is a copy", () => {
  const data = Uint8Array.from({ length: 6 * 5 * 3 }, (_, i) => (i * 37) % 256);
  const img = { data, width: 6, height: 5, channels: 3 };
  const crop = resizeBicubic(img, 3, 2, [2, 1, 5, 3]);
  const want: number[] = [];
  for (let y = 1; y < 3; y++) {
    for (let x = 2; x < 5; x++) for (let c = 0; c < 3; c++) want.push(data[(y * 6 + x) * 3 + c]);
  }
  assertEquals(Array.from(crop.data), want);
  const same = resizeBicubic(img, 6, 5);
  assertEquals(same.data, data);
  assert(same.data !== data);
  throws(() => resizeBicubic(img, 3, 2, [0, 0, 7, 5]), /box/);
  throws(() => resizeBicubic(img, 0, 2), /positive/);
});

Deno.test("resizeNearest: PIL's pixel-centre mapping", () => {
  const img = { data: Uint8Array.from([1, 2, 3, 4]), width: 4, height: 1, channels: 1 };
  assertEquals(Array.from(resizeNearest(img, 2, 1).data), [2, 4]); // centres 1.0, 3.0
  assertEquals(Array.from(resizeNearest(img, 8, 1).data), [1, 1, 2, 2, 3, 3, 4, 4]);
  assertEquals(Array.from(resizeNearest(img, 3, 1).data), [1, 3, 4]); // 0.67, 2.0, 3.33
});

Deno.test("resizeLikePil: RGBA is resampled premultiplied (transparent colour does not bleed)", () => {
  // Left pixel opaque red, right pixel fully transparent green.
  const data = Uint8Array.from([255, 0, 0, 255, 0, 255, 0, 0]);
  const out = resizeLikePil({ data, width: 2, height: 1, channels: 4, mode: "RGBA" }, 4, 1);
  for (let x = 0; x < 4; x++) {
    const [r, g, , a] = out.data.subarray(x * 4, x * 4 + 4);
    if (a > 0) assertEquals([r, g], [255, 0], `pixel ${x}`);
  }
  const plain = resizeBicubic({ data, width: 2, height: 1, channels: 4 }, 4, 1);
  assert(plain.data[1 * 4 + 1] > 0, "without premultiplication green bleeds in");
});

Deno.test("sniffImage: PNG colour types and JPEG components", async () => {
  const sharp = (await loadSharp())!;
  const px = Buffer.from(Uint8Array.from([10, 20, 30, 40, 50, 60, 70, 80]));
  const png = async (ch: 1 | 2 | 3 | 4, opts: Record<string, unknown> = {}) =>
    new Uint8Array(
      await sharp(px.subarray(0, 2 * ch), { raw: { width: 2, height: 1, channels: ch } })
        .toColourspace(ch <= 2 ? "b-w" : "srgb").png(opts).toBuffer(),
    );
  assertEquals(sniffImage(await png(1)).mode, "L");
  assertEquals(sniffImage(await png(2)).mode, "LA");
  assertEquals(sniffImage(await png(3)).mode, "RGB");
  assertEquals(sniffImage(await png(4)).mode, "RGBA");
  assertEquals(sniffImage(await png(3, { palette: true })).mode, "P");
  const jpg = new Uint8Array(
    await sharp(px.subarray(0, 6), { raw: { width: 2, height: 1, channels: 3 } }).jpeg().toBuffer(),
  );
  assertEquals(sniffImage(jpg), { format: "jpeg", mode: "RGB" });
  assertEquals(sniffImage(new Uint8Array([1, 2, 3])).format, "unknown");
});

Deno.test("decodePixels: palette PNG opens as P and is resized with NEAREST", async () => {
  const sharp = (await loadSharp())!;
  const w = 8, h = 4;
  const raw = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) raw.set(i % 2 ? [255, 0, 0] : [0, 0, 255], i * 3);
  const bytes = new Uint8Array(
    await sharp(Buffer.from(raw), { raw: { width: w, height: h, channels: 3 } }).png({
      palette: true,
    }).toBuffer(),
  );
  for (const decoder of ["sharp", "imagescript"] as const) {
    const img = await decodePixels(bytes, { decoder });
    assertEquals([img.mode, img.channels, img.width, img.height], ["P", 3, w, h]);
    assertEquals(img.data, raw);
    const small = resizeLikePil(img, 4, 2);
    // NEAREST keeps pure palette colours (bicubic would blend red and blue).
    for (let i = 0; i < small.data.length; i += 3) {
      assertEquals(Array.from(small.data.subarray(i, i + 3)), [255, 0, 0]);
    }
  }
});

Deno.test({
  name: "decodeImage: grey and RGBA fixtures become RGB (grey replicated, alpha dropped)",
  ignore: skipWithoutShared(),
  fn: async () => {
    const grey = await decodePixels(await Deno.readFile(sharedPath("fixtures/clip/img103.png")));
    assertEquals([grey.mode, grey.channels, grey.width, grey.height], ["L", 1, 224, 224]);
    const greyRgb = await decodeImage(await Deno.readFile(sharedPath("fixtures/clip/img103.png")));
    for (let i = 0; i < 50; i++) {
      const v = grey.data[i * 97];
      assertEquals(Array.from(greyRgb.data.subarray(i * 97 * 3, i * 97 * 3 + 3)), [v, v, v]);
    }
    const bytes = await Deno.readFile(sharedPath("fixtures/clip/img104.png"));
    const rgba = await decodePixels(bytes);
    assertEquals([rgba.mode, rgba.width, rgba.height], ["RGBA", 500, 180]);
    for (const decoder of ["sharp", "imagescript"] as const) {
      const rgb = await decodeImage(bytes, { decoder });
      assertEquals(rgb.data.length, 500 * 180 * 3);
      for (let i = 0; i < 500 * 180; i += 101) {
        assertEquals(
          Array.from(rgb.data.subarray(i * 3, i * 3 + 3)),
          Array.from(rgba.data.subarray(i * 4, i * 4 + 3)),
        );
      }
    }
  },
});

Deno.test({
  name: "decodeImage: corrupt and truncated input is an error naming the file",
  ignore: skipWithoutShared(),
  fn: async () => {
    const jpg = await Deno.readFile(sharedPath("fixtures/clip/img102.jpg"));
    for (const decoder of ["sharp", "imagescript"] as const) {
      await rejects(
        decodeImage(new Uint8Array([0, 1, 2, 3]), { name: "junk.bin", decoder }),
        /junk\.bin/,
      );
      await rejects(decodeImage(jpg.subarray(0, 600), { name: "cut.jpg", decoder }), /cut\.jpg/);
    }
    await rejects(decodeImage(jpg, { name: "big.jpg", maxPixels: 100 }), /big\.jpg/);
  },
});

Deno.test("resizeLikePil: byte-identical to Pillow for every mode, with center crop and float boxes", async () => {
  const doc = JSON.parse(
    await Deno.readTextFile(new URL("./testdata/pil_resize.json", import.meta.url)),
  );
  const b64 = (s: string) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  assert(doc.cases.length >= 12);
  for (const decoder of ["sharp", "imagescript"] as const) {
    for (const c of doc.cases) {
      const what = `${decoder} ${c.mode} ${c.width}x${c.height}`;
      const img = await decodePixels(b64(c.png), { decoder });
      assertEquals([img.mode, img.width, img.height], [c.mode, c.width, c.height], what);
      assertEquals(resizeCenterCrop(img, c.n_px).data, b64(c.center), `${what} center ${c.n_px}`);
      const boxed = toRgb(resizeLikePil(img, c.box_size[0], c.box_size[1], c.box)).data;
      assertEquals(boxed, b64(c.boxed), `${what} box ${c.box}`);
    }
  }
});
