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

/** Python 3 `round()` of a float to an integer: halves go to the even neighbour. */
export function pyRound(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * Output size of torchvision's `Resize(n)` (an int): the shortest side becomes `n`, the other
 * `int(n * long / short)`. Returns `[width, height]`.
 */
export function resizeShortestSide(width: number, height: number, n: number): [number, number] {
  if (width <= height) return [n, Math.trunc((n * height) / width)];
  return [Math.trunc((n * width) / height), n];
}

/** A crop rectangle in pixels: rows `top … top+height-1`, columns `left … left+width-1`. */
export interface CropBox {
  /** First row. */
  top: number;
  /** First column. */
  left: number;
  /** Number of rows. */
  height: number;
  /** Number of columns. */
  width: number;
}

/** torchvision `CenterCrop((cropH, cropW))` box (Python rounding); the crop must fit. */
export function centerCropRect(
  width: number,
  height: number,
  cropW: number,
  cropH: number = cropW,
): CropBox {
  if (cropW > width || cropH > height) {
    throw new Error(`centerCrop: ${cropW}×${cropH} crop larger than the ${width}×${height} image`);
  }
  return {
    top: pyRound((height - cropH) / 2),
    left: pyRound((width - cropW) / 2),
    height: cropH,
    width: cropW,
  };
}

/**
 * Copy the pixels of `box` out of `img` (PIL `Image.crop`, box inside the image); `channels`
 * defaults to 3. The whole image is returned as is.
 */
export function cropImage<
  T extends { data: Uint8Array; width: number; height: number; channels?: number },
>(img: T, box: CropBox): T {
  const { top, left, width, height } = box;
  if (top < 0 || left < 0 || top + height > img.height || left + width > img.width) {
    throw new RangeError(
      `crop box ${JSON.stringify(box)} outside a ${img.width}×${img.height} image`,
    );
  }
  if (top === 0 && left === 0 && width === img.width && height === img.height) return img;
  const ch = img.channels ?? 3;
  const out = new Uint8Array(width * height * ch);
  const rowBytes = width * ch;
  for (let y = 0; y < height; y++) {
    const src = ((top + y) * img.width + left) * ch;
    out.set(img.data.subarray(src, src + rowBytes), y * rowBytes);
  }
  return { ...img, data: out, width, height };
}

/** torchvision `CenterCrop((cropH, cropW))` of interleaved pixels (`channels` default 3). */
export function centerCrop<
  T extends { data: Uint8Array; width: number; height: number; channels?: number },
>(
  img: T,
  cropW: number,
  cropH: number = cropW,
): T {
  return cropImage(img, centerCropRect(img.width, img.height, cropW, cropH));
}

const lutCache = new Map<string, Float32Array>();

/** Lookup table byte → normalised float32 per channel (`(v/255 − mean) / std` in fp32). */
function normalizeLut(mean: readonly number[], std: readonly number[]): Float32Array {
  const key = `${mean.join(",")}|${std.join(",")}`;
  let lut = lutCache.get(key);
  if (!lut) {
    if (mean.length !== 3 || std.length !== 3 || std.some((s) => !(s > 0))) {
      throw new RangeError(`normalise: need 3 means and 3 positive stds, got ${mean} / ${std}`);
    }
    lut = new Float32Array(768);
    const f = Math.fround;
    for (let c = 0; c < 3; c++) {
      const m = f(mean[c]), s = f(std[c]);
      for (let v = 0; v < 256; v++) lut[c * 256 + v] = f(f(f(v / 255) - m) / s);
    }
    lutCache.set(key, lut);
  }
  return lut;
}

/**
 * `ToTensor()` + `Normalize(mean, std)` of RGB bytes, kept channels-last: `(x / 255 - mean) / std`
 * in float32 arithmetic as torch does. Writes into `out` at element `offset` (a new HWC
 * Float32Array by default) and returns it.
 */
export function normalize(
  rgb: Uint8Array,
  mean: readonly number[] = CLIP_MEAN,
  std: readonly number[] = CLIP_STD,
  out: Float32Array = new Float32Array(rgb.length),
  offset = 0,
): Float32Array {
  const lut = normalizeLut(mean, std);
  for (let i = 0; i < rgb.length; i += 3) {
    out[offset + i] = lut[rgb[i]];
    out[offset + i + 1] = lut[256 + rgb[i + 1]];
    out[offset + i + 2] = lut[512 + rgb[i + 2]];
  }
  return out;
}

/**
 * torchvision `Resize(nPx)` of the shortest side (PIL resampling) and `CenterCrop(nPx)`, in the
 * image's own PIL mode (no RGB conversion).
 */
export function resizeAndCenterCrop(img: DecodedPixels, nPx: number): DecodedPixels {
  const [w, h] = resizeShortestSide(img.width, img.height, nPx);
  // PIL returns a copy at the same size: the same pixels
  const resized = w === img.width && h === img.height ? img : resizeLikePil(img, w, h);
  return centerCrop(resized, nPx, nPx);
}

/** Resize the shortest side to `nPx` (PIL rules) and center-crop to `nPx × nPx`, then to RGB. */
export function resizeCenterCrop(img: DecodedPixels, nPx: number): Pixels {
  return { ...toRgb(resizeAndCenterCrop(img, nPx)), channels: 3 };
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
