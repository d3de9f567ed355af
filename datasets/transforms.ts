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
import {
  centerCropRect,
  CLIP_MEAN,
  CLIP_STD,
  type CropBox,
  cropImage,
  normalize,
  pyRound,
  resizeAndCenterCrop,
} from "../clip/images/preprocess.ts";
import { Rng } from "./rng.ts";
import { type DecodedImage, isDecoded } from "./types.ts";

/**
 * A decoded image in its file's PIL mode (`"L"`, `"RGB"`, `"RGBA"`, …) with its channel count,
 * as `clip/images/image.ts`'s `decodePixels` returns it.
 */
export type PilImage = ModeImage;

// The geometry and normalisation are CLIP's preprocessing (`clip/images/preprocess.ts`, which
// loads no TensorFlow.js, so this module runs in worker threads too).
export { centerCropRect, type CropBox, cropImage };

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

function resizeTo(img: ModeImage, width: number, height: number): ModeImage {
  if (img.width === width && img.height === height) return img; // PIL returns a copy: same pixels
  return resizeLikePil(img, width, height);
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
  const n = img.width * img.height * 3;
  if (img.data.length !== n) {
    throw new RangeError(
      `image data has ${img.data.length} bytes, expected ${n} for ${img.width}×${img.height} RGB`,
    );
  }
  return normalize(
    img.data,
    opts.mean ?? CLIP_MEAN,
    opts.std ?? CLIP_STD,
    out ?? new Float32Array(n),
    offset,
  );
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
    case "eval":
      return resizeAndCenterCrop(img, spec.size);
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
