/**
 * Image transforms of the MTIL reference, as plain-data specs (so they can be sent to worker
 * threads) plus the functions that apply them to decoded RGB images:
 *
 * - {@linkcode evalTransform}: CLIP's `Resize(n, bicubic)` of the shortest side, `CenterCrop(n)`,
 *   `ToTensor`, `Normalize(CLIP_MEAN, CLIP_STD)`;
 * - {@linkcode trainTransform}: torchvision's `RandomResizedCrop(n, scale=(0.9, 1.0),
 *   ratio=(3/4, 4/3), bicubic)` with the same parameter-sampling algorithm (ten attempts, then
 *   the central-crop fallback), driven by a seeded {@linkcode Rng};
 * - {@linkcode normalizeTransform}: `ToTensor` + `Normalize` only (images already at size).
 *
 * Outputs are HWC `Float32Array`s (NHWC once batched), computed in float32 like torch.
 * Encoded files are decoded in their PIL mode and resampled with PIL's rules (`clip/images/image.ts`),
 * then converted to RGB, as the reference's `_convert_image_to_rgb` after the crop does.
 *
 * @module
 */
import {
  type DecodedPixels as ModeImage,
  decodePixels,
  resizeLikePil,
  toRgb,
} from "../clip/images/image.ts";
import { Rng } from "./rng.ts";
import { type DecodedImage, isDecoded } from "./types.ts";

/**
 * A decoded image in its file's PIL mode (`"L"`, `"RGB"`, `"RGBA"`, …) with its channel count,
 * as `clip/images/image.ts`'s `decodePixels` returns it.
 */
export type PilImage = ModeImage;

// CLIP's normalisation constants (the same values as `clip/images/preprocess.ts`, which this module
// does not import: that one loads TensorFlow.js, and this one runs inside worker threads).
const CLIP_MEAN: readonly number[] = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD: readonly number[] = [0.26862954, 0.26130258, 0.27577711];

/** Mean and standard deviation per RGB channel (on the 0–1 scale). */
export interface NormalizeOptions {
  /** Per-channel mean (default: CLIP's mean). */
  mean?: readonly number[];
  /** Per-channel std (default: CLIP's std). */
  std?: readonly number[];
}

/** Resize the shortest side to `size` (bicubic), center-crop `size × size`, normalise. */
export interface EvalTransformSpec extends NormalizeOptions {
  /** Discriminant. */
  kind: "eval";
  /** Output side in pixels. */
  size: number;
}

/** torchvision `RandomResizedCrop` (bicubic) to `size × size`, then normalise. */
export interface TrainTransformSpec extends NormalizeOptions {
  /** Discriminant. */
  kind: "train";
  /** Output side in pixels. */
  size: number;
  /** Range of the crop's area as a fraction of the image area (reference: `[0.9, 1.0]`). */
  scale: [number, number];
  /** Range of the crop's aspect ratio w/h (reference: `[3/4, 4/3]`). */
  ratio: [number, number];
}

/** Only `ToTensor` + `Normalize`: every image must already have the batch's size. */
export interface NormalizeTransformSpec extends NormalizeOptions {
  /** Discriminant. */
  kind: "normalize";
}

/** A serialisable transform description (see the module doc). */
export type TransformSpec = EvalTransformSpec | TrainTransformSpec | NormalizeTransformSpec;

/** The reference's eval transform at `size` pixels. */
export function evalTransform(size: number, opts: NormalizeOptions = {}): EvalTransformSpec {
  checkSide(size);
  return { kind: "eval", size, ...opts };
}

/** The reference's train transform (`RandomResizedCrop(size, scale, ratio)`, bicubic). */
export function trainTransform(
  size: number,
  opts: NormalizeOptions & { scale?: [number, number]; ratio?: [number, number] } = {},
): TrainTransformSpec {
  checkSide(size);
  const scale = opts.scale ?? [0.9, 1.0];
  const ratio = opts.ratio ?? [3 / 4, 4 / 3];
  if (!(scale[0] > 0 && scale[0] <= scale[1]) || !(ratio[0] > 0 && ratio[0] <= ratio[1])) {
    throw new RangeError(
      `trainTransform: need 0 < min ≤ max for scale and ratio, got ${scale} / ${ratio}`,
    );
  }
  return { kind: "train", size, scale, ratio, mean: opts.mean, std: opts.std };
}

/** `ToTensor` + `Normalize` only. */
export function normalizeTransform(opts: NormalizeOptions = {}): NormalizeTransformSpec {
  return { kind: "normalize", ...opts };
}

function checkSide(size: number): void {
  if (!Number.isInteger(size) || size <= 0 || size > 8192) {
    throw new RangeError(`transform size must be an integer in [1, 8192], got ${size}`);
  }
}

/** Python 3 `round()` of a float to an integer: halves go to the even neighbour. */
export function pyRound(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
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

/**
 * `torchvision.transforms.RandomResizedCrop.get_params` with `rng` in place of torch's
 * generator: up to ten attempts at a crop of random area and log-uniform aspect ratio that fits,
 * then the central crop clamped to the ratio range.
 */
export function randomResizedCropParams(
  width: number,
  height: number,
  scale: readonly [number, number],
  ratio: readonly [number, number],
  rng: Rng,
): CropBox {
  const area = height * width;
  const logLo = Math.log(ratio[0]), logHi = Math.log(ratio[1]);
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * rng.uniform(scale[0], scale[1]);
    const aspect = Math.exp(rng.uniform(logLo, logHi));
    const w = pyRound(Math.sqrt(targetArea * aspect));
    const h = pyRound(Math.sqrt(targetArea / aspect));
    if (0 < w && w <= width && 0 < h && h <= height) {
      const top = rng.int(height - h + 1);
      const left = rng.int(width - w + 1);
      return { top, left, height: h, width: w };
    }
  }
  // Fallback to central crop.
  const inRatio = width / height;
  let w: number, h: number;
  if (inRatio < Math.min(ratio[0], ratio[1])) {
    w = width;
    h = pyRound(w / Math.min(ratio[0], ratio[1]));
  } else if (inRatio > Math.max(ratio[0], ratio[1])) {
    h = height;
    w = pyRound(h * Math.max(ratio[0], ratio[1]));
  } else {
    w = width;
    h = height;
  }
  return {
    top: Math.floor((height - h) / 2),
    left: Math.floor((width - w) / 2),
    height: h,
    width: w,
  };
}

/**
 * Output size of torchvision `Resize(size)` (an int: the shortest side becomes `size`, the
 * longer one `int(size * long / short)`).
 */
export function resizeShortestSize(
  width: number,
  height: number,
  size: number,
): { width: number; height: number } {
  if (width <= height) return { width: size, height: Math.trunc((size * height) / width) };
  return { width: Math.trunc((size * width) / height), height: size };
}

/** torchvision `CenterCrop(size)` box for an image at least `size` on each side. */
export function centerCropRect(width: number, height: number, size: number): CropBox {
  return {
    top: pyRound((height - size) / 2),
    left: pyRound((width - size) / 2),
    height: size,
    width: size,
  };
}

/**
 * Copy the pixels of `box` out of `img` (PIL `Image.crop`, box inside the image); `channels`
 * defaults to 3.
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

function resizeTo(img: ModeImage, width: number, height: number): ModeImage {
  if (img.width === width && img.height === height) return img; // PIL returns a copy: same pixels
  return resizeLikePil(img, width, height);
}

const lutCache = new Map<string, Float32Array>();

/** Lookup table byte → normalised float32 for each channel (`(v/255 − mean) / std` in fp32). */
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
 * Normalise RGB bytes into `out` (HWC float32) at element offset `offset`; allocates when
 * `out` is not given.
 */
export function normalizeImage(
  img: DecodedImage,
  opts: NormalizeOptions = {},
  out?: Float32Array,
  offset = 0,
): Float32Array {
  const lut = normalizeLut(opts.mean ?? CLIP_MEAN, opts.std ?? CLIP_STD);
  const n = img.width * img.height * 3;
  if (img.data.length !== n) {
    throw new RangeError(
      `image data has ${img.data.length} bytes, expected ${n} for ${img.width}×${img.height} RGB`,
    );
  }
  out ??= new Float32Array(n);
  const d = img.data;
  for (let i = 0; i < n; i += 3) {
    out[offset + i] = lut[d[i]];
    out[offset + i + 1] = lut[256 + d[i + 1]];
    out[offset + i + 2] = lut[512 + d[i + 2]];
  }
  return out;
}

/**
 * Apply the geometric part of `spec` to `img` (no normalisation): eval → resize + center crop,
 * train → random resized crop drawn from `rng`, normalize → unchanged.
 */
export function transformGeometry(
  spec: TransformSpec,
  img: PilImage,
  rng?: Rng,
): PilImage {
  switch (spec.kind) {
    case "normalize":
      return img;
    case "eval": {
      const r = resizeShortestSize(img.width, img.height, spec.size);
      const resized = resizeTo(img, r.width, r.height);
      return cropImage(resized, centerCropRect(resized.width, resized.height, spec.size));
    }
    case "train": {
      if (!rng) throw new Error("train transform needs a random generator (seed)");
      const box = randomResizedCropParams(img.width, img.height, spec.scale, spec.ratio, rng);
      return resizeTo(cropImage(img, box), spec.size, spec.size);
    }
  }
}

/**
 * Apply `spec` to a decoded image (RGB, or any PIL mode from `decodePixels`): geometry, RGB
 * conversion, then normalisation into a fresh HWC float32 array. `seed` drives the random crop
 * of the train transform.
 */
export function applyTransform(
  spec: TransformSpec,
  img: DecodedImage | PilImage,
  seed = 0,
): { data: Float32Array; width: number; height: number } {
  const src: ModeImage = "mode" in img ? img : { ...img, channels: 3, mode: "RGB" };
  if (src.data.length !== src.width * src.height * src.channels) {
    throw new RangeError(
      `image has ${src.data.length} bytes, expected ${src.width}×${src.height}×${src.channels}`,
    );
  }
  const g = transformGeometry(spec, src, spec.kind === "train" ? new Rng(seed) : undefined);
  const rgb = g.mode === "RGB" ? g : toRgb(g);
  return { data: normalizeImage(rgb, spec), width: g.width, height: g.height };
}

/**
 * Decode (when given encoded bytes, in the file's PIL mode) and transform one image; see
 * {@linkcode applyTransform}.
 */
export async function decodeAndTransform(
  spec: TransformSpec,
  image: DecodedImage | Uint8Array,
  seed = 0,
): Promise<{ data: Float32Array; width: number; height: number }> {
  const img = isDecoded(image) ? image : await decodePixels(image);
  return applyTransform(spec, img, seed);
}
