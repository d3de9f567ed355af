/**
 * Image decoding and resampling that reproduce what the reference (PIL + torchvision) does:
 * - decoding to the PIL mode the file has ("1", "L", "LA", "P", "RGB", "RGBA"), with `sharp`
 *   (libvips) and the pure-JS `imagescript` as fallback;
 * - PIL's `Image.resize` with BICUBIC: the separable, antialiased convolution of
 *   `libImaging/Resample.c` (a = -0.5, support scaled by the downscale factor, 22-bit fixed-point
 *   coefficients, rounding to uint8 between the horizontal and the vertical pass), including
 *   the mode rules of `Image.resize` (palette and 1-bit images resampled with NEAREST, RGBA and
 *   LA resampled premultiplied);
 * - `convert("RGB")` (alpha dropped, grey replicated).
 *
 * @module
 */

/** PIL image modes this module reproduces. */
export type ImageMode = "1" | "L" | "LA" | "P" | "RGB" | "RGBA";

/** Interleaved 8-bit pixels, `channels` per pixel (1 to 4), row-major. */
export interface Pixels {
  /** `width * height * channels` bytes. */
  data: Uint8Array;
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
  /** Channels per pixel (default 3 where optional). */
  channels: number;
}

/** An RGB image: `width * height * 3` bytes, row-major, interleaved. */
export interface RgbImage {
  /** RGB bytes. */
  data: Uint8Array;
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
}

/** A decoded image in the PIL mode of its file (palette images already expanded to RGB). */
export interface DecodedPixels extends Pixels {
  /** The mode PIL would open the file in. */
  mode: ImageMode;
}

/** Which decoder to use: `"auto"` (default) = sharp, or imagescript when sharp cannot load. */
export type DecoderName = "auto" | "sharp" | "imagescript";

/** Options of {@link decodePixels} / {@link decodeImage}. */
export interface DecodeOptions {
  /** Decoder choice (default `"auto"`). */
  decoder?: DecoderName;
  /** Name used in error messages (e.g. the file path). */
  name?: string;
  /**
   * Largest accepted width × height (default {@link MAX_DECODE_PIXELS}, PIL's decompression-bomb
   * limit of about 89 megapixels).
   */
  maxPixels?: number;
}

/** Default decode limit in pixels: PIL's `Image.MAX_IMAGE_PIXELS` (a 358 MB RGBA bitmap). */
export const MAX_DECODE_PIXELS = 89_478_485;

/**
 * Largest resize output (and intermediate) in pixels. The output size follows from the image's
 * aspect ratio, not its byte size: a 370-byte 100000×1 PNG resized to a shortest side of 224
 * would need 22,400,000×224 pixels.
 */
export const MAX_RESIZE_PIXELS = 2 ** 26;

const CHANNELS: Record<ImageMode, number> = { "1": 1, L: 1, LA: 2, P: 3, RGB: 3, RGBA: 4 };

/** What the file header says: container format and the PIL mode it opens in. */
export function sniffImage(bytes: Uint8Array): { format: string; mode?: ImageMode } {
  const b = bytes;
  if (
    b.length >= 26 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47 &&
    b[12] === 0x49 && b[13] === 0x48 && b[14] === 0x44 && b[15] === 0x52
  ) {
    const depth = b[24];
    const modes: Record<number, ImageMode> = {
      0: depth === 1 ? "1" : "L",
      2: "RGB",
      3: "P",
      4: "LA",
      6: "RGBA",
    };
    return { format: "png", mode: modes[b[25]] };
  }
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8) {
    // Walk the markers to the first SOFn and read its component count.
    let p = 2;
    while (p + 9 < b.length) {
      if (b[p] !== 0xff) break;
      const marker = b[p + 1];
      if (marker === 0xff) {
        p++;
        continue;
      }
      const len = (b[p + 2] << 8) | b[p + 3];
      const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 &&
        marker !== 0xcc;
      if (isSof) {
        const nc = b[p + 9];
        return { format: "jpeg", mode: nc === 1 ? "L" : "RGB" };
      }
      p += 2 + len;
    }
    return { format: "jpeg" };
  }
  if (b.length >= 6 && b[0] === 0x47 && b[1] === 0x49 && b[2] === 0x46) {
    return { format: "gif", mode: "P" };
  }
  return { format: "unknown" };
}

/** The default export of the `sharp` module (kept loosely typed so sharp stays optional). */
// deno-lint-ignore no-explicit-any
export type SharpFn = (input: Uint8Array, opts?: Record<string, unknown>) => any;
let sharpLoad: Promise<SharpFn | null> | undefined;

/** The `sharp` module, or null when it cannot load here (cached). */
export function loadSharp(): Promise<SharpFn | null> {
  sharpLoad ??= import("sharp").then(
    (m) => (m.default ?? m) as unknown as SharpFn,
    () => null,
  );
  return sharpLoad;
}

/**
 * Encode 8-bit interleaved RGB pixels as PNG, optionally upscaled by an integer factor with
 * nearest-neighbour sampling (for showing tiny images). Uses sharp, else imagescript.
 */
export async function encodePng(
  image: { data: Uint8Array; width: number; height: number },
  options: { scale?: number } = {},
): Promise<Uint8Array> {
  const scale = Math.max(1, Math.floor(options.scale ?? 1));
  const { width: w, height: h } = image;
  if (image.data.length !== w * h * 3) {
    throw new Error(`encodePng: ${image.data.length} bytes for ${w}×${h} RGB pixels`);
  }
  if (w * h * scale * scale > 64e6) throw new Error(`encodePng: ${w}×${h} ×${scale} is too large`);
  const sharp = await loadSharp();
  if (sharp) {
    const out = await sharp(image.data, { raw: { width: w, height: h, channels: 3 } })
      .resize(w * scale, h * scale, { kernel: "nearest" }).png().toBuffer();
    return new Uint8Array(out);
  }
  const { Image } = await import("imagescript");
  const img = new Image(w * scale, h * scale);
  for (let y = 0; y < h * scale; y++) {
    for (let x = 0; x < w * scale; x++) {
      const i = 3 * (Math.floor(y / scale) * w + Math.floor(x / scale));
      const d = image.data;
      img.setPixelAt(
        x + 1,
        y + 1,
        ((d[i] << 24) | (d[i + 1] << 16) | (d[i + 2] << 8) | 0xff) >>> 0,
      );
    }
  }
  return await img.encode();
}

/** Rearrange `src` (`srcCh` channels) into `mode`'s channel count (grey replicated, alpha dropped). */
function toModeChannels(src: Uint8Array, srcCh: number, n: number, mode: ImageMode): Uint8Array {
  const ch = CHANNELS[mode];
  if (srcCh === ch) return src;
  const out = new Uint8Array(n * ch);
  const srcAlpha = srcCh === 2 || srcCh === 4;
  for (let i = 0; i < n; i++) {
    const s = i * srcCh;
    const grey = srcCh <= 2;
    const r = src[s], g = grey ? r : src[s + 1], bl = grey ? r : src[s + 2];
    const a = srcAlpha ? src[s + srcCh - 1] : 255;
    const o = i * ch;
    if (ch === 1) out[o] = grey ? r : r; // a grey-mode file decoded with colour: bands are equal
    else if (ch === 2) {
      out[o] = r;
      out[o + 1] = a;
    } else {
      out[o] = r;
      out[o + 1] = g;
      out[o + 2] = bl;
      if (ch === 4) out[o + 3] = a;
    }
  }
  return out;
}

function modeFromChannels(ch: number): ImageMode {
  return ch === 1 ? "L" : ch === 2 ? "LA" : ch === 3 ? "RGB" : "RGBA";
}

async function decodeWithSharp(sharp: SharpFn, bytes: Uint8Array, maxPixels: number) {
  const { data, info } = await sharp(bytes, { ignoreIcc: true, limitInputPixels: maxPixels })
    .raw()
    .toBuffer({ resolveWithObject: true });
  const u8 = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return {
    data: u8,
    width: info.width as number,
    height: info.height as number,
    channels: info.channels as number,
  };
}

async function decodeWithImagescript(bytes: Uint8Array, maxPixels: number) {
  const mod = await import("imagescript");
  const sniff = sniffImage(bytes);
  // deno-lint-ignore no-explicit-any
  let img: any = sniff.format === "gif"
    ? await mod.GIF.decode(bytes, true)
    : await mod.decode(bytes);
  if (Array.isArray(img)) img = img[0];
  if (!img || !img.bitmap) throw new Error("imagescript returned no bitmap");
  const width = img.width as number, height = img.height as number;
  if (width * height > maxPixels) throw new Error(`${width}×${height} exceeds ${maxPixels} pixels`);
  const bm = img.bitmap as Uint8ClampedArray;
  return {
    data: new Uint8Array(bm.buffer, bm.byteOffset, bm.byteLength),
    width,
    height,
    channels: 4,
  };
}

/**
 * Decode JPEG/PNG/GIF/WebP bytes into the PIL mode of the file (palette expanded to RGB). No
 * colour management (embedded ICC profiles ignored, as PIL does) and no EXIF rotation.
 * Corrupt or truncated input throws an error naming `opts.name`.
 */
export async function decodePixels(
  bytes: Uint8Array,
  opts: DecodeOptions = {},
): Promise<DecodedPixels> {
  const name = opts.name ?? "image";
  const maxPixels = opts.maxPixels ?? MAX_DECODE_PIXELS;
  const which = opts.decoder ?? "auto";
  const sniff = sniffImage(bytes);
  let raw: { data: Uint8Array; width: number; height: number; channels: number };
  try {
    const sharp = which === "imagescript" ? null : await loadSharp();
    if (which === "sharp" && !sharp) throw new Error("the sharp module cannot load here");
    raw = sharp
      ? await decodeWithSharp(sharp, bytes, maxPixels)
      : await decodeWithImagescript(bytes, maxPixels);
  } catch (e) {
    throw new Error(
      `cannot decode ${name} (${bytes.length} bytes, ${sniff.format}): ${(e as Error).message}`,
    );
  }
  const n = raw.width * raw.height;
  if (raw.data.length !== n * raw.channels) {
    throw new Error(
      `cannot decode ${name}: ${raw.data.length} bytes for ${raw.width}×${raw.height}×${raw.channels}`,
    );
  }
  let mode = sniff.mode;
  if (!mode) mode = modeFromChannels(raw.channels);
  // imagescript always yields RGBA; without a header hint, drop an all-opaque alpha.
  if (!sniff.mode && raw.channels === 4 && which !== "sharp") {
    let opaque = true;
    for (let i = 3; i < raw.data.length && opaque; i += 4) opaque = raw.data[i] === 255;
    if (opaque) mode = "RGB";
  }
  return {
    data: toModeChannels(raw.data, raw.channels, n, mode),
    width: raw.width,
    height: raw.height,
    channels: CHANNELS[mode],
    mode,
  };
}

/** PIL's `convert("RGB")` of a decoded image: grey replicated, alpha dropped. */
export function toRgb(img: Pixels): RgbImage {
  const n = img.width * img.height;
  return {
    data: toModeChannels(img.data, img.channels, n, "RGB"),
    width: img.width,
    height: img.height,
  };
}

/**
 * Decode image bytes to RGB as PIL's `Image.open(...).convert("RGB")` does (alpha simply
 * dropped). Uses sharp, or imagescript when sharp cannot load (or `decoder: "imagescript"`).
 */
export async function decodeImage(bytes: Uint8Array, opts: DecodeOptions = {}): Promise<RgbImage> {
  return toRgb(await decodePixels(bytes, opts));
}

// ---------------------------------------------------------------------------------------------
// PIL resampling (libImaging/Resample.c), re-implemented.

const PRECISION_BITS = 32 - 8 - 2;
const HALF = 1 << (PRECISION_BITS - 1);
const ONE = 1 << PRECISION_BITS;

function bicubic(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

interface Coeffs {
  ksize: number;
  /** Per output index: first input index and number of taps. */
  bounds: Int32Array;
  /** Fixed-point coefficients, `ksize` per output index. */
  kk: Int32Array;
}

/** PIL's `precompute_coeffs` followed by `normalize_coeffs_8bpc`. */
function precomputeCoeffs(inSize: number, in0: number, in1: number, outSize: number): Coeffs {
  const support0 = 2.0;
  const f0 = Math.fround(in0), f1 = Math.fround(in1);
  const scale = Math.fround(f1 - f0) / outSize; // (double)(float difference) / outSize
  const filterscale = scale < 1 ? 1 : scale;
  const support = support0 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  const ss = 1.0 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = f0 + (xx + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = bicubic((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0 ? k[x] / ww : k[x];
      kk[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * ONE) : Math.trunc(0.5 + v * ONE);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

function clip8(ss: number): number {
  const v = ss >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

function horizontalPass(
  src: Uint8Array,
  srcW: number,
  ch: number,
  rowOffset: number,
  rows: number,
  outW: number,
  c: Coeffs,
): Uint8Array {
  const out = new Uint8Array(outW * rows * ch);
  const { ksize, bounds, kk } = c;
  for (let yy = 0; yy < rows; yy++) {
    const srow = (yy + rowOffset) * srcW * ch;
    let o = yy * outW * ch;
    for (let xx = 0; xx < outW; xx++) {
      const xmin = bounds[xx * 2], xmax = bounds[xx * 2 + 1], kb = xx * ksize;
      let p = srow + xmin * ch;
      if (ch === 3) {
        let s0 = HALF, s1 = HALF, s2 = HALF;
        for (let x = 0; x < xmax; x++, p += 3) {
          const k = kk[kb + x];
          s0 += src[p] * k;
          s1 += src[p + 1] * k;
          s2 += src[p + 2] * k;
        }
        out[o++] = clip8(s0);
        out[o++] = clip8(s1);
        out[o++] = clip8(s2);
      } else {
        for (let b = 0; b < ch; b++) {
          let ss = HALF;
          for (let x = 0, q = p + b; x < xmax; x++, q += ch) ss += src[q] * kk[kb + x];
          out[o++] = clip8(ss);
        }
      }
    }
  }
  return out;
}

function verticalPass(
  src: Uint8Array,
  w: number,
  ch: number,
  outH: number,
  c: Coeffs,
  shift: number,
): Uint8Array {
  const out = new Uint8Array(w * outH * ch);
  const { ksize, bounds, kk } = c;
  const stride = w * ch;
  const acc = new Float64Array(stride);
  for (let yy = 0; yy < outH; yy++) {
    const ymin = bounds[yy * 2] - shift, ymax = bounds[yy * 2 + 1], kb = yy * ksize;
    acc.fill(HALF);
    for (let y = 0; y < ymax; y++) {
      const k = kk[kb + y];
      const r = (ymin + y) * stride;
      for (let i = 0; i < stride; i++) acc[i] += src[r + i] * k;
    }
    const orow = yy * stride;
    for (let i = 0; i < stride; i++) out[orow + i] = clip8(acc[i]);
  }
  return out;
}

/** A crop box `[x0, y0, x1, y1]` in source pixel coordinates (PIL's `resize(box=…)`). */
export type Box = [number, number, number, number];

function checkResize(src: { width: number; height: number }, outW: number, outH: number, box: Box) {
  if (!Number.isInteger(outW) || !Number.isInteger(outH) || outW < 1 || outH < 1) {
    throw new Error(`resize: output size must be positive integers, got ${outW}×${outH}`);
  }
  const [x0, y0, x1, y1] = box;
  if (x0 < 0 || y0 < 0 || x1 > src.width || y1 > src.height || x1 < x0 || y1 < y0) {
    throw new Error(`resize: box [${box}] is not inside the ${src.width}×${src.height} image`);
  }
  // The separable passes hold an outW × (box rows) intermediate and the outW × outH output.
  const rows = Math.ceil(y1 - y0) + 1;
  if (outW * outH > MAX_RESIZE_PIXELS || outW * rows > MAX_RESIZE_PIXELS) {
    throw new Error(
      `resize: a ${src.width}×${src.height} image to ${outW}×${outH} needs more than ` +
        `${MAX_RESIZE_PIXELS} pixels (aspect ratio too extreme); crop or pad the image first`,
    );
  }
}

/**
 * PIL's `Image.resize((outW, outH), Image.BICUBIC, box)` on 8-bit pixels with any channel count
 * (each channel independently, as PIL's "L"/"RGB"/"RGBA" bands; no alpha premultiplication —
 * use {@link resizeLikePil} for PIL's mode rules). `channels` defaults to 3.
 */
export function resizeBicubic(
  src: { data: Uint8Array; width: number; height: number; channels?: number },
  outW: number,
  outH: number,
  box?: Box,
): Pixels {
  const ch = src.channels ?? 3;
  const b: Box = box ?? [0, 0, src.width, src.height];
  checkResize(src, outW, outH, b);
  if (src.data.length !== src.width * src.height * ch) {
    throw new Error(`resizeBicubic: ${src.data.length} bytes for ${src.width}×${src.height}×${ch}`);
  }
  if (
    outW === src.width && outH === src.height && b[0] === 0 && b[1] === 0 && b[2] === src.width &&
    b[3] === src.height
  ) {
    return { data: src.data.slice(), width: outW, height: outH, channels: ch };
  }
  const needH = outW !== src.width || b[0] !== 0 || b[2] !== outW;
  const needV = outH !== src.height || b[1] !== 0 || b[3] !== outH;
  const cv = precomputeCoeffs(src.height, b[1], b[3], outH);
  const yFirst = cv.bounds[0];
  const yLast = cv.bounds[outH * 2 - 2] + cv.bounds[outH * 2 - 1];
  let data = src.data;
  let w = src.width;
  let shift = 0;
  if (needH) {
    const chz = precomputeCoeffs(src.width, b[0], b[2], outW);
    data = horizontalPass(src.data, src.width, ch, yFirst, yLast - yFirst, outW, chz);
    w = outW;
    shift = yFirst;
  }
  if (needV) data = verticalPass(data, w, ch, outH, cv, shift);
  else if (!needH) data = data.slice();
  return { data, width: outW, height: needV ? outH : data.length / (w * ch), channels: ch };
}

/** PIL's NEAREST resize (`ImagingScaleAffine`), used by PIL for palette and 1-bit images. */
export function resizeNearest(
  src: { data: Uint8Array; width: number; height: number; channels?: number },
  outW: number,
  outH: number,
  box?: Box,
): Pixels {
  const ch = src.channels ?? 3;
  const b: Box = box ?? [0, 0, src.width, src.height];
  checkResize(src, outW, outH, b);
  const f = b.map(Math.fround);
  const ax = (f[2] - f[0]) / outW, ay = (f[3] - f[1]) / outH;
  const xin = new Int32Array(outW);
  let xo = f[0] + ax * 0.5;
  for (let x = 0; x < outW; x++, xo += ax) xin[x] = xo < 0 ? -1 : Math.trunc(xo);
  const out = new Uint8Array(outW * outH * ch);
  let yo = f[1] + ay * 0.5;
  for (let y = 0; y < outH; y++, yo += ay) {
    const yi = yo < 0 ? -1 : Math.trunc(yo);
    if (yi < 0 || yi >= src.height) continue;
    for (let x = 0; x < outW; x++) {
      const xi = xin[x];
      if (xi < 0 || xi >= src.width) continue;
      const s = (yi * src.width + xi) * ch, o = (y * outW + x) * ch;
      for (let c = 0; c < ch; c++) out[o + c] = src.data[s + c];
    }
  }
  return { data: out, width: outW, height: outH, channels: ch };
}

/** PIL's RGBA → RGBa (LA → La): colour multiplied by alpha, `MULDIV255` rounding. */
function premultiply(img: Pixels): Pixels {
  const ch = img.channels, out = img.data.slice();
  for (let i = 0; i < out.length; i += ch) {
    const a = out[i + ch - 1];
    for (let c = 0; c < ch - 1; c++) {
      const t = out[i + c] * a + 128;
      out[i + c] = ((t >> 8) + t) >> 8;
    }
  }
  return { ...img, data: out };
}

/** PIL's RGBa → RGBA: colour divided by alpha (integer division, clipped), unless alpha is 0 or 255. */
function unpremultiply(img: Pixels): Pixels {
  const ch = img.channels, out = img.data;
  for (let i = 0; i < out.length; i += ch) {
    const a = out[i + ch - 1];
    if (a === 0 || a === 255) continue;
    for (let c = 0; c < ch - 1; c++) out[i + c] = Math.min(255, Math.trunc((255 * out[i + c]) / a));
  }
  return img;
}

/**
 * `Image.resize((outW, outH), BICUBIC, box)` with PIL's mode rules: "P" and "1" images are
 * resampled with NEAREST, "RGBA"/"LA" premultiplied by alpha, others band by band.
 */
export function resizeLikePil(
  img: DecodedPixels,
  outW: number,
  outH: number,
  box?: Box,
): DecodedPixels {
  let out: Pixels;
  if (img.mode === "P" || img.mode === "1") out = resizeNearest(img, outW, outH, box);
  else if (img.mode === "RGBA" || img.mode === "LA") {
    out = unpremultiply(resizeBicubic(premultiply(img), outW, outH, box));
  } else out = resizeBicubic(img, outW, outH, box);
  return { ...out, mode: img.mode };
}
