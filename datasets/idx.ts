/**
 * Reader for the IDX format of MNIST-family datasets (`train-images-idx3-ubyte[.gz]` …): a 4-byte
 * magic `00 00 <dtype> <ndim>`, `ndim` big-endian uint32 dimensions, then the big-endian data.
 * Gzipped files (magic `1f 8b`) are inflated first, with the output size bounded.
 *
 * @module
 */
import { readRegularFile } from "./_files.ts";
import { gunzipSync } from "fflate";
import type { Dataset, DecodedImage, Example, Split } from "./types.ts";
import { checkIndex } from "./types.ts";

/** Element types of IDX files, keyed by their type code. */
export const IDX_DTYPES = {
  0x08: "uint8",
  0x09: "int8",
  0x0b: "int16",
  0x0c: "int32",
  0x0d: "float32",
  0x0e: "float64",
} as const;

/** Name of an IDX element type. */
export type IdxDtype = (typeof IDX_DTYPES)[keyof typeof IDX_DTYPES];

/** A parsed IDX array (data in native byte order, row-major). */
export interface IdxArray {
  /** Element type. */
  dtype: IdxDtype;
  /** Dimensions, outermost first. */
  shape: number[];
  /** Elements, `shape` product long. */
  data: Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;
}

/** Options of {@linkcode parseIdx} / {@linkcode readIdx}. */
export interface IdxOptions {
  /** Largest decompressed size accepted, bytes (default 2 GiB). */
  maxBytes?: number;
}

const BYTES: Record<IdxDtype, number> = {
  uint8: 1,
  int8: 1,
  int16: 2,
  int32: 4,
  float32: 4,
  float64: 8,
};

/** Error raised for malformed IDX / gzip input; names the file and byte offset. */
export class IdxFormatError extends Error {
  /** Build the message `"<file>: <msg> (at byte <offset>)"`. */
  constructor(fileName: string, offset: number, message: string) {
    super(`${fileName}: ${message} (at byte ${offset})`);
    this.name = "IdxFormatError";
  }
}

/**
 * Inflate gzip bytes, refusing output larger than `maxBytes`. Uses the gzip trailer's ISIZE to
 * size the buffer (exact for files under 4 GiB).
 */
export function gunzipBounded(bytes: Uint8Array, fileName: string, maxBytes: number): Uint8Array {
  if (bytes.length < 18) throw new IdxFormatError(fileName, 0, "truncated gzip stream");
  const isize = new DataView(bytes.buffer, bytes.byteOffset + bytes.length - 4, 4).getUint32(
    0,
    true,
  );
  // Deflate expands at most ~1032:1: a larger claim is a corrupt or hostile trailer.
  if (isize > bytes.length * 1100 + 1024) {
    throw new IdxFormatError(
      fileName,
      bytes.length - 4,
      `gzip trailer claims ${isize} bytes from ${bytes.length} compressed (corrupt?)`,
    );
  }
  if (isize > maxBytes) {
    throw new IdxFormatError(
      fileName,
      bytes.length - 4,
      `gzip payload of ${isize} bytes exceeds the limit of ${maxBytes}`,
    );
  }
  try {
    const out = gunzipSync(bytes, { out: new Uint8Array(isize) });
    if (out.length !== isize) {
      throw new Error(`inflated ${out.length} bytes, trailer says ${isize}`);
    }
    return out;
  } catch (e) {
    throw new IdxFormatError(
      fileName,
      0,
      `corrupt gzip stream: ${e instanceof Error ? e.message : e}`,
    );
  }
}

/** Parse IDX bytes (plain or gzipped). `fileName` is used in error messages. */
export function parseIdx(bytes: Uint8Array, fileName = "<idx>", opts: IdxOptions = {}): IdxArray {
  const maxBytes = opts.maxBytes ?? 2 ** 31;
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    bytes = gunzipBounded(bytes, fileName, maxBytes);
  }
  if (bytes.length < 4) throw new IdxFormatError(fileName, 0, "file shorter than the IDX magic");
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    throw new IdxFormatError(fileName, 0, "bad IDX magic (first two bytes must be zero)");
  }
  const dtype = IDX_DTYPES[bytes[2] as keyof typeof IDX_DTYPES];
  if (!dtype) {
    throw new IdxFormatError(fileName, 2, `unknown IDX type code 0x${bytes[2].toString(16)}`);
  }
  const ndim = bytes[3];
  if (ndim === 0 || ndim > 8) throw new IdxFormatError(fileName, 3, `bad IDX rank ${ndim}`);
  const headerEnd = 4 + 4 * ndim;
  if (bytes.length < headerEnd) {
    throw new IdxFormatError(fileName, bytes.length, "truncated IDX header");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const shape: number[] = [];
  let count = 1;
  for (let d = 0; d < ndim; d++) {
    const n = view.getUint32(4 + 4 * d, false);
    shape.push(n);
    count *= n;
  }
  const size = BYTES[dtype];
  if (count * size > maxBytes) {
    throw new IdxFormatError(fileName, 4, `IDX data of ${count * size} bytes exceeds the limit`);
  }
  const need = headerEnd + count * size;
  if (bytes.length < need) {
    throw new IdxFormatError(
      fileName,
      bytes.length,
      `truncated IDX data: shape [${shape}] needs ${need} bytes, file has ${bytes.length}`,
    );
  }
  if (bytes.length > need) {
    throw new IdxFormatError(fileName, need, `${bytes.length - need} trailing bytes after data`);
  }
  let data: IdxArray["data"];
  switch (dtype) {
    case "uint8":
      data = bytes.slice(headerEnd, need);
      break;
    case "int8":
      data = new Int8Array(bytes.slice(headerEnd, need).buffer);
      break;
    case "int16": {
      const a = new Int16Array(count);
      for (let i = 0; i < count; i++) a[i] = view.getInt16(headerEnd + 2 * i, false);
      data = a;
      break;
    }
    case "int32": {
      const a = new Int32Array(count);
      for (let i = 0; i < count; i++) a[i] = view.getInt32(headerEnd + 4 * i, false);
      data = a;
      break;
    }
    case "float32": {
      const a = new Float32Array(count);
      for (let i = 0; i < count; i++) a[i] = view.getFloat32(headerEnd + 4 * i, false);
      data = a;
      break;
    }
    case "float64": {
      const a = new Float64Array(count);
      for (let i = 0; i < count; i++) a[i] = view.getFloat64(headerEnd + 8 * i, false);
      data = a;
      break;
    }
  }
  return { dtype, shape, data };
}

/** Read and parse an IDX file (plain or `.gz`). */
export async function readIdx(path: string, opts: IdxOptions = {}): Promise<IdxArray> {
  return parseIdx(await readRegularFile(path), path, opts);
}

/** Options of {@linkcode IdxImageDataset}. */
export interface IdxImageDatasetOptions {
  /** Registry name. */
  name: string;
  /** Split. */
  split: Split;
  /** Class names in label order. */
  classnames: string[];
  /** Prompt templates (`{}` placeholder). */
  templates: string[];
  /** Source description for messages (e.g. the images file path). */
  source?: string;
}

/**
 * A dataset over an IDX image array `[N, H, W]` (uint8 grayscale, or `[N, H, W, 3]` RGB) and a
 * label array `[N]`. Images come out as RGB (gray replicated, as PIL's `convert("RGB")`).
 */
export class IdxImageDataset implements Dataset {
  /** Registry name. */
  readonly name: string;
  /** Split. */
  readonly split: Split;
  /** Class names in label order. */
  readonly classnames: string[];
  /** Prompt templates. */
  readonly templates: string[];
  /** Number of images. */
  readonly length: number;
  /** Image height. */
  readonly height: number;
  /** Image width. */
  readonly width: number;
  readonly #images: Uint8Array;
  readonly #labels: Int32Array;
  readonly #channels: number;
  readonly #source: string;

  /** Wrap parsed arrays; checks shapes, dtypes and label range. */
  constructor(images: IdxArray, labels: IdxArray, opts: IdxImageDatasetOptions) {
    this.#source = opts.source ?? opts.name;
    if (images.dtype !== "uint8" || (images.shape.length !== 3 && images.shape.length !== 4)) {
      throw new Error(
        `${this.#source}: expected uint8 images [N,H,W] or [N,H,W,3], got ${images.dtype} [${images.shape}]`,
      );
    }
    if (images.shape.length === 4 && images.shape[3] !== 3) {
      throw new Error(`${this.#source}: 4-D images must have 3 channels, got [${images.shape}]`);
    }
    if (labels.shape.length !== 1 || labels.shape[0] !== images.shape[0]) {
      throw new Error(
        `${this.#source}: ${labels.shape[0]} labels for ${images.shape[0]} images`,
      );
    }
    if (labels.dtype === "float32" || labels.dtype === "float64") {
      throw new Error(`${this.#source}: labels must be integers, got ${labels.dtype}`);
    }
    this.name = opts.name;
    this.split = opts.split;
    this.classnames = opts.classnames;
    this.templates = opts.templates;
    this.length = images.shape[0];
    this.height = images.shape[1];
    this.width = images.shape[2];
    this.#channels = images.shape.length === 4 ? 3 : 1;
    this.#images = images.data as Uint8Array;
    this.#labels = Int32Array.from(labels.data as ArrayLike<number>);
    const nc = this.classnames.length;
    for (let i = 0; i < this.#labels.length; i++) {
      const l = this.#labels[i];
      if (l < 0 || l >= nc) {
        throw new Error(`${this.#source}: label ${l} of item ${i} outside [0, ${nc})`);
      }
    }
  }

  /** Label of item `i`. */
  labelOf(i: number): number {
    checkIndex(this, i);
    return this.#labels[i];
  }

  /** Decoded RGB image of item `i`. */
  imageOf(i: number): DecodedImage {
    checkIndex(this, i);
    const hw = this.height * this.width;
    const src = this.#images.subarray(i * hw * this.#channels, (i + 1) * hw * this.#channels);
    let data: Uint8Array;
    if (this.#channels === 3) data = src.slice();
    else {
      data = new Uint8Array(hw * 3);
      for (let p = 0; p < hw; p++) {
        const v = src[p];
        data[3 * p] = v;
        data[3 * p + 1] = v;
        data[3 * p + 2] = v;
      }
    }
    return { data, width: this.width, height: this.height };
  }

  /** Item `i` as `{image, label}`. */
  get(i: number): Promise<Example> {
    try {
      return Promise.resolve({ image: this.imageOf(i), label: this.#labels[i] });
    } catch (e) {
      return Promise.reject(e);
    }
  }
}
