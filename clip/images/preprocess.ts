/**
 * CLIP's image preprocessing, as the reference `clip.load(...)[1]` composes it with torchvision:
 * `Resize(n_px, BICUBIC)` (shortest side → n_px, PIL resampling), `CenterCrop(n_px)`,
 * `convert("RGB")`, `ToTensor()`, `Normalize(CLIP_MEAN, CLIP_STD)` — but channels-last (HWC), as
 * the library's models take NHWC images.
 *
 * TensorFlow.js is loaded only by {@link makePreprocess}, so the rest of this module can run in
 * worker threads.
 *
 * @module
 */
import type { tf } from "../backends/tf.ts";
import {
  type Box,
  type DecodedPixels,
  decodePixels,
  type DecoderName,
  type Pixels,
  resizeLikePil,
  toRgb,
} from "./image.ts";

/** CLIP's per-channel RGB mean (of images scaled to [0, 1]). */
export const CLIP_MEAN: readonly [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
/** CLIP's per-channel RGB standard deviation. */
export const CLIP_STD: readonly [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

/** Python's `round` (half to even). */
function pyRound(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Output size of torchvision's `Resize(n)` (an int): the shortest side becomes `n`, the other
 * `int(n * long / short)`. Returns `[width, height]`.
 */
export function resizeShortestSide(width: number, height: number, n: number): [number, number] {
  if (width <= height) return [n, Math.trunc((n * height) / width)];
  return [Math.trunc((n * width) / height), n];
}

/** torchvision `CenterCrop` box `[x0, y0, x1, y1]` of a `cropW × cropH` crop (Python rounding). */
export function centerCropBox(width: number, height: number, cropW: number, cropH: number): Box {
  if (cropW > width || cropH > height) {
    throw new Error(`centerCrop: ${cropW}×${cropH} crop larger than the ${width}×${height} image`);
  }
  const top = pyRound((height - cropH) / 2);
  const left = pyRound((width - cropW) / 2);
  return [left, top, left + cropW, top + cropH];
}

/** torchvision `CenterCrop((cropH, cropW))` of interleaved pixels (`channels` default 3). */
export function centerCrop<
  T extends { data: Uint8Array; width: number; height: number; channels?: number },
>(
  img: T,
  cropW: number,
  cropH: number = cropW,
): T {
  const ch = img.channels ?? 3;
  const [x0, y0] = centerCropBox(img.width, img.height, cropW, cropH);
  const out = new Uint8Array(cropW * cropH * ch);
  for (let y = 0; y < cropH; y++) {
    const s = ((y + y0) * img.width + x0) * ch;
    out.set(img.data.subarray(s, s + cropW * ch), y * cropW * ch);
  }
  return { ...img, data: out, width: cropW, height: cropH };
}

/**
 * `ToTensor()` + `Normalize(mean, std)` of RGB bytes, kept channels-last: `(x / 255 - mean) / std`
 * in float32 arithmetic as torch does. Returns a new HWC Float32Array (or fills `out`).
 */
export function normalize(
  rgb: Uint8Array,
  mean: readonly number[] = CLIP_MEAN,
  std: readonly number[] = CLIP_STD,
  out: Float32Array = new Float32Array(rgb.length),
): Float32Array {
  const f = Math.fround;
  const m = mean.map(f), s = std.map(f);
  const lut = new Float32Array(256 * 3);
  for (let c = 0; c < 3; c++) {
    for (let v = 0; v < 256; v++) lut[c * 256 + v] = f(f(f(v / 255) - m[c]) / s[c]);
  }
  for (let i = 0; i < rgb.length; i += 3) {
    out[i] = lut[rgb[i]];
    out[i + 1] = lut[256 + rgb[i + 1]];
    out[i + 2] = lut[512 + rgb[i + 2]];
  }
  return out;
}

/** Resize the shortest side to `nPx` (PIL rules) and center-crop to `nPx × nPx`, then to RGB. */
export function resizeCenterCrop(img: DecodedPixels, nPx: number): Pixels {
  const [w, h] = resizeShortestSide(img.width, img.height, nPx);
  const resized = resizeLikePil(img, w, h);
  const cropped = centerCrop(resized, nPx, nPx);
  return { ...toRgb(cropped), channels: 3 };
}

/** Options of {@link preprocessImage} and {@link makePreprocess}. */
export interface PreprocessOptions {
  /** Decoder (default `"auto"`: sharp, else imagescript). */
  decoder?: DecoderName;
  /** Name for error messages (e.g. the file path). */
  name?: string;
}

/** CLIP's eval preprocessing of already decoded pixels → HWC float32 `[nPx, nPx, 3]`. */
export function preprocessPixels(img: DecodedPixels, nPx: number): Float32Array {
  return normalize(resizeCenterCrop(img, nPx).data);
}

/**
 * CLIP's eval preprocessing of encoded image bytes (JPEG/PNG/…) → HWC float32 `[nPx, nPx, 3]`,
 * normalised with CLIP's mean/std.
 */
export async function preprocessImage(
  bytes: Uint8Array,
  nPx: number,
  opts: PreprocessOptions = {},
): Promise<Float32Array> {
  return preprocessPixels(await decodePixels(bytes, opts), nPx);
}

/** A preprocessing function for a model resolution: bytes → `tf.Tensor3D` `[nPx, nPx, 3]`. */
export function makePreprocess(
  nPx: number,
  opts: PreprocessOptions = {},
): (bytes: Uint8Array) => Promise<tf.Tensor3D> {
  return async (bytes) => {
    const pixels = await preprocessImage(bytes, nPx, opts);
    const { tf } = await import("../backends/tf.ts");
    return tf.tensor3d(pixels, [nPx, nPx, 3], "float32");
  };
}
