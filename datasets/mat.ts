/**
 * Reader for MATLAB level-5 `.mat` files (what `scipy.io.savemat` and MATLAB ≤ 7.2 write), enough
 * for the dataset metadata the MTIL datasets ship: numeric arrays (double, single, integer,
 * logical), char arrays, cell arrays and struct arrays, plain or in `miCOMPRESSED` (zlib) elements.
 * Sparse, object, function-handle and HDF5-based v7.3 files are rejected. Every length is checked
 * against the bytes present; decompression is bounded; errors name the file and byte offset.
 *
 * {@linkcode loadMat} returns the raw typed tree; {@linkcode matToJs} converts it like
 * `scipy.io.loadmat(…, squeeze_me=True)` into plain numbers, strings, arrays and objects.
 *
 * @module
 */
import { readRegularFile } from "./_files.ts";
import { Unzlib } from "fflate";

/** A numeric (or logical) array, data column-major as MATLAB stores it. */
export interface MatNumeric {
  /** Discriminator. */
  kind: "numeric";
  /** MATLAB class, e.g. `"double"`, `"uint8"`. */
  class: string;
  /** Dimensions (≥ 2 entries). */
  dims: number[];
  /** Real part, column-major, converted to float64. */
  data: Float64Array;
  /** Imaginary part for complex arrays. */
  imag?: Float64Array;
  /** True for MATLAB logical arrays. */
  logical?: boolean;
}

/** A char array; `rows` holds each row of a 2-D char matrix as a string. */
export interface MatChar {
  /** Discriminator. */
  kind: "char";
  /** Dimensions. */
  dims: number[];
  /** Row strings (`dims[0]` of them, each `dims[1]` characters). */
  rows: string[];
}

/** A cell array, cells column-major. */
export interface MatCell {
  /** Discriminator. */
  kind: "cell";
  /** Dimensions. */
  dims: number[];
  /** The cells. */
  cells: MatValue[];
}

/** A struct array, elements column-major. */
export interface MatStruct {
  /** Discriminator. */
  kind: "struct";
  /** Dimensions. */
  dims: number[];
  /** Field names in file order. */
  fields: string[];
  /** One record per element. */
  elements: Record<string, MatValue>[];
}

/** Any value a level-5 MAT file can hold that this reader supports. */
export type MatValue = MatNumeric | MatChar | MatCell | MatStruct;

/** Error for malformed or unsupported MAT input; names the file and byte offset. */
export class MatFormatError extends Error {
  /** Build `"<file>: <msg> (at byte <offset>)"`. */
  constructor(fileName: string, offset: number, message: string) {
    super(`${fileName}: ${message} (at byte ${offset})`);
    this.name = "MatFormatError";
  }
}

/** Options of {@linkcode parseMat} / {@linkcode loadMat}. */
export interface MatOptions {
  /** Largest total decompressed size of `miCOMPRESSED` elements, bytes (default 256 MiB). */
  maxInflatedBytes?: number;
  /** Deepest nesting of cells/structs accepted (default 32). */
  maxDepth?: number;
}

// Data types (mi*) and array classes (mx*).
const MI_INT8 = 1,
  MI_UINT8 = 2,
  MI_INT16 = 3,
  MI_UINT16 = 4,
  MI_INT32 = 5,
  MI_UINT32 = 6,
  MI_SINGLE = 7,
  MI_DOUBLE = 9,
  MI_INT64 = 12,
  MI_UINT64 = 13,
  MI_MATRIX = 14,
  MI_COMPRESSED = 15,
  MI_UTF8 = 16,
  MI_UTF16 = 17,
  MI_UTF32 = 18;

const MI_SIZE: Record<number, number> = {
  [MI_INT8]: 1,
  [MI_UINT8]: 1,
  [MI_INT16]: 2,
  [MI_UINT16]: 2,
  [MI_INT32]: 4,
  [MI_UINT32]: 4,
  [MI_SINGLE]: 4,
  [MI_DOUBLE]: 8,
  [MI_INT64]: 8,
  [MI_UINT64]: 8,
  [MI_UTF8]: 1,
  [MI_UTF16]: 2,
  [MI_UTF32]: 4,
};

const MX_CLASS: Record<number, string> = {
  1: "cell",
  2: "struct",
  3: "object",
  4: "char",
  5: "sparse",
  6: "double",
  7: "single",
  8: "int8",
  9: "uint8",
  10: "int16",
  11: "uint16",
  12: "int32",
  13: "uint32",
  14: "int64",
  15: "uint64",
  16: "function",
  17: "opaque",
};

/** A byte window of the file (or of an inflated element) with its absolute base offset. */
interface Cursor {
  bytes: Uint8Array;
  view: DataView;
  /** Offset of `bytes[0]` in the original file, for messages. */
  base: number;
  /** True when the window is inflated data (offsets then refer to the compressed element). */
  inflated: boolean;
}

interface Ctx {
  file: string;
  le: boolean;
  inflatedTotal: number;
  maxInflated: number;
  maxDepth: number;
}

interface Element {
  type: number;
  /** Start of the payload within the cursor. */
  start: number;
  nbytes: number;
  /** Offset of the next element within the cursor. */
  next: number;
}

/**
 * Most elements of an array whose elements take no bytes in the file (a struct array without
 * fields, a char array of empty rows): larger counts are refused rather than looped over.
 */
const MAX_EMPTY_ELEMENTS = 1 << 16;

/** `o[k] = v` as an own property, so that a field named `__proto__` is just a field. */
function setOwn<T>(o: Record<string, T>, k: string, v: T): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

function fail(ctx: Ctx, cur: Cursor, pos: number, msg: string): never {
  const where = cur.inflated ? cur.base : cur.base + pos;
  const suffix = cur.inflated ? ` [byte ${pos} of the inflated element]` : "";
  throw new MatFormatError(ctx.file, where, msg + suffix);
}

function readTag(ctx: Ctx, cur: Cursor, pos: number, end: number): Element {
  if (pos + 8 > end) fail(ctx, cur, pos, "truncated data element tag");
  const w0 = cur.view.getUint32(pos, ctx.le);
  const small = w0 >>> 16;
  if (small !== 0) {
    // Small data element: type and size in one word, data in the next 4 bytes.
    const type = w0 & 0xffff;
    if (small > 4) fail(ctx, cur, pos, `small data element claims ${small} bytes (max 4)`);
    return { type, start: pos + 4, nbytes: small, next: pos + 8 };
  }
  const type = w0;
  const nbytes = cur.view.getUint32(pos + 4, ctx.le);
  const start = pos + 8;
  if (start + nbytes > end) {
    fail(ctx, cur, pos, `data element of ${nbytes} bytes runs past the end (${end - start} left)`);
  }
  const padded = type === MI_COMPRESSED ? nbytes : (nbytes + 7) & ~7;
  return { type, start, nbytes, next: Math.min(start + padded, end) };
}

function readNumbers(ctx: Ctx, cur: Cursor, el: Element): Float64Array {
  const size = MI_SIZE[el.type];
  if (!size || el.type === MI_UTF8 || el.type === MI_UTF16 || el.type === MI_UTF32) {
    fail(ctx, cur, el.start - 8, `expected a numeric data element, got type ${el.type}`);
  }
  if (el.nbytes % size !== 0) {
    fail(
      ctx,
      cur,
      el.start - 8,
      `numeric element of ${el.nbytes} bytes is not a multiple of ${size}`,
    );
  }
  const n = el.nbytes / size;
  const out = new Float64Array(n);
  const v = cur.view;
  const le = ctx.le;
  let p = el.start;
  switch (el.type) {
    case MI_INT8:
      for (let i = 0; i < n; i++, p++) out[i] = v.getInt8(p);
      break;
    case MI_UINT8:
      for (let i = 0; i < n; i++, p++) out[i] = v.getUint8(p);
      break;
    case MI_INT16:
      for (let i = 0; i < n; i++, p += 2) out[i] = v.getInt16(p, le);
      break;
    case MI_UINT16:
      for (let i = 0; i < n; i++, p += 2) out[i] = v.getUint16(p, le);
      break;
    case MI_INT32:
      for (let i = 0; i < n; i++, p += 4) out[i] = v.getInt32(p, le);
      break;
    case MI_UINT32:
      for (let i = 0; i < n; i++, p += 4) out[i] = v.getUint32(p, le);
      break;
    case MI_SINGLE:
      for (let i = 0; i < n; i++, p += 4) out[i] = v.getFloat32(p, le);
      break;
    case MI_DOUBLE:
      for (let i = 0; i < n; i++, p += 8) out[i] = v.getFloat64(p, le);
      break;
    case MI_INT64:
      for (let i = 0; i < n; i++, p += 8) out[i] = Number(v.getBigInt64(p, le));
      break;
    case MI_UINT64:
      for (let i = 0; i < n; i++, p += 8) out[i] = Number(v.getBigUint64(p, le));
      break;
  }
  return out;
}

function readChars(ctx: Ctx, cur: Cursor, el: Element): string[] {
  const raw = cur.bytes.subarray(el.start, el.start + el.nbytes);
  switch (el.type) {
    case MI_UTF8:
    case MI_UINT8:
    case MI_INT8: {
      // MATLAB writes one byte per character for ASCII; decode as UTF-8 and split into code points.
      return Array.from(new TextDecoder("utf-8").decode(raw));
    }
    case MI_UTF16:
    case MI_UINT16: {
      const units = readNumbers(ctx, cur, { ...el, type: MI_UINT16 });
      return Array.from(units, (u) => String.fromCharCode(u));
    }
    case MI_UTF32:
    case MI_UINT32:
    case MI_INT32: {
      const cps = readNumbers(ctx, cur, { ...el, type: MI_UINT32 });
      return Array.from(cps, (c) => {
        if (c > 0x10ffff) fail(ctx, cur, el.start, `invalid code point ${c}`);
        return String.fromCodePoint(c);
      });
    }
    default:
      fail(ctx, cur, el.start - 8, `unsupported char data type ${el.type}`);
  }
}

function product(ctx: Ctx, cur: Cursor, pos: number, dims: number[]): number {
  let n = 1;
  for (const d of dims) {
    if (d < 0) fail(ctx, cur, pos, `negative dimension ${d}`);
    n *= d;
  }
  if (n > 2 ** 31) fail(ctx, cur, pos, `array of ${n} elements is too large`);
  return n;
}

function inflate(ctx: Ctx, cur: Cursor, el: Element): Cursor {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const budget = ctx.maxInflated - ctx.inflatedTotal;
  const z = new Unzlib((chunk) => {
    total += chunk.length;
    if (total > budget) {
      throw new MatFormatError(
        ctx.file,
        cur.base + el.start - 8,
        `compressed element inflates past the limit of ${ctx.maxInflated} bytes`,
      );
    }
    chunks.push(chunk);
  });
  try {
    z.push(cur.bytes.subarray(el.start, el.start + el.nbytes), true);
  } catch (e) {
    if (e instanceof MatFormatError) throw e;
    fail(ctx, cur, el.start - 8, `corrupt zlib stream: ${e instanceof Error ? e.message : e}`);
  }
  ctx.inflatedTotal += total;
  const out = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return {
    bytes: out,
    view: new DataView(out.buffer),
    base: cur.inflated ? cur.base : cur.base + el.start - 8,
    inflated: true,
  };
}

/** Parse the payload of a miMATRIX element. Returns the array name and value. */
function readMatrix(
  ctx: Ctx,
  cur: Cursor,
  el: Element,
  depth: number,
): { name: string; value: MatValue } {
  if (depth > ctx.maxDepth) fail(ctx, cur, el.start - 8, `nesting deeper than ${ctx.maxDepth}`);
  const end = el.start + el.nbytes;
  if (el.nbytes === 0) {
    // An empty matrix (e.g. an empty struct field written by scipy/MATLAB).
    return {
      name: "",
      value: { kind: "numeric", class: "double", dims: [0, 0], data: new Float64Array(0) },
    };
  }
  const flagsEl = readTag(ctx, cur, el.start, end);
  if (flagsEl.type !== MI_UINT32 || flagsEl.nbytes !== 8) {
    fail(ctx, cur, el.start, "array flags subelement must be 8 bytes of miUINT32");
  }
  const flagsWord = cur.view.getUint32(flagsEl.start, ctx.le);
  const mxClass = flagsWord & 0xff;
  const complex = (flagsWord & 0x0800) !== 0;
  const logical = (flagsWord & 0x0200) !== 0;
  const className = MX_CLASS[mxClass];
  if (!className) fail(ctx, cur, flagsEl.start, `unknown array class ${mxClass}`);

  const dimsEl = readTag(ctx, cur, flagsEl.next, end);
  if (dimsEl.type !== MI_INT32 || dimsEl.nbytes < 8) {
    fail(ctx, cur, flagsEl.next, "dimensions subelement must be ≥ 2 miINT32 values");
  }
  const dims = Array.from(readNumbers(ctx, cur, dimsEl));
  const n = product(ctx, cur, flagsEl.next, dims);

  const nameEl = readTag(ctx, cur, dimsEl.next, end);
  if (nameEl.type !== MI_INT8 && nameEl.type !== MI_UINT8) {
    fail(ctx, cur, dimsEl.next, `array name subelement has type ${nameEl.type}, expected miINT8`);
  }
  const name = new TextDecoder("latin1").decode(
    cur.bytes.subarray(nameEl.start, nameEl.start + nameEl.nbytes),
  );
  let pos = nameEl.next;

  switch (className) {
    case "double":
    case "single":
    case "int8":
    case "uint8":
    case "int16":
    case "uint16":
    case "int32":
    case "uint32":
    case "int64":
    case "uint64": {
      const re = readTag(ctx, cur, pos, end);
      const data = readNumbers(ctx, cur, re);
      if (data.length !== n) {
        fail(ctx, cur, pos, `real part has ${data.length} values, dimensions [${dims}] need ${n}`);
      }
      const value: MatNumeric = { kind: "numeric", class: className, dims, data };
      if (logical) value.logical = true;
      if (complex) {
        const im = readTag(ctx, cur, re.next, end);
        const imag = readNumbers(ctx, cur, im);
        if (imag.length !== n) fail(ctx, cur, re.next, "imaginary part has the wrong length");
        value.imag = imag;
      }
      return { name, value };
    }
    case "char": {
      const cel = readTag(ctx, cur, pos, end);
      const chars = n === 0 ? [] : readChars(ctx, cur, cel);
      if (chars.length !== n) {
        fail(
          ctx,
          cur,
          pos,
          `char data has ${chars.length} characters, dimensions [${dims}] need ${n}`,
        );
      }
      if (dims.length > 2) fail(ctx, cur, pos, "char arrays with more than 2 dimensions");
      const [r, c] = dims;
      if (c === 0 && r > MAX_EMPTY_ELEMENTS) {
        fail(ctx, cur, pos, `char array of ${r} empty rows (dimensions [${dims}]) is implausible`);
      }
      const rows: string[] = [];
      for (let i = 0; i < r; i++) {
        let s = "";
        for (let j = 0; j < c; j++) s += chars[j * r + i];
        rows.push(s);
      }
      return { name, value: { kind: "char", dims, rows } };
    }
    case "cell": {
      const cells: MatValue[] = [];
      for (let i = 0; i < n; i++) {
        const sub = readTag(ctx, cur, pos, end);
        if (sub.type !== MI_MATRIX) fail(ctx, cur, pos, `cell ${i} is not a miMATRIX element`);
        cells.push(readMatrix(ctx, cur, sub, depth + 1).value);
        pos = sub.next;
      }
      return { name, value: { kind: "cell", dims, cells } };
    }
    case "struct": {
      const lenEl = readTag(ctx, cur, pos, end);
      if (lenEl.type !== MI_INT32 || lenEl.nbytes !== 4) {
        fail(ctx, cur, pos, "struct field-name length must be one miINT32");
      }
      const fl = cur.view.getInt32(lenEl.start, ctx.le);
      if (fl <= 0 || fl > 4096) fail(ctx, cur, lenEl.start, `bad field-name length ${fl}`);
      const namesEl = readTag(ctx, cur, lenEl.next, end);
      if (namesEl.nbytes % fl !== 0) {
        fail(ctx, cur, lenEl.next, "field-name block is not a multiple of the name length");
      }
      const fields: string[] = [];
      for (let o = 0; o < namesEl.nbytes; o += fl) {
        const raw = cur.bytes.subarray(namesEl.start + o, namesEl.start + o + fl);
        const z = raw.indexOf(0);
        fields.push(new TextDecoder("latin1").decode(z < 0 ? raw : raw.subarray(0, z)));
      }
      pos = namesEl.next;
      if (fields.length === 0 && n > MAX_EMPTY_ELEMENTS) {
        // Elements with fields each consume bytes of the file; field-less ones cost nothing to
        // describe, so a tiny file could ask for hundreds of millions of them.
        fail(ctx, cur, pos, `struct array of ${n} elements without fields is implausible`);
      }
      const elements: Record<string, MatValue>[] = [];
      for (let i = 0; i < n; i++) {
        const rec: Record<string, MatValue> = {};
        for (const f of fields) {
          const sub = readTag(ctx, cur, pos, end);
          if (sub.type !== MI_MATRIX) {
            fail(ctx, cur, pos, `field ${f} of element ${i} is not a miMATRIX element`);
          }
          setOwn(rec, f, readMatrix(ctx, cur, sub, depth + 1).value);
          pos = sub.next;
        }
        elements.push(rec);
      }
      return { name, value: { kind: "struct", dims, fields, elements } };
    }
    default:
      fail(ctx, cur, flagsEl.start, `unsupported array class "${className}" of variable "${name}"`);
  }
}

/**
 * Parse a level-5 MAT file into a map of variable name → value. `fileName` is used in messages.
 */
export function parseMat(
  bytes: Uint8Array,
  fileName = "<mat>",
  opts: MatOptions = {},
): Map<string, MatValue> {
  if (bytes.length < 128) {
    throw new MatFormatError(fileName, 0, "file shorter than the 128-byte MAT header");
  }
  const text = new TextDecoder("latin1").decode(bytes.subarray(0, 116));
  if (bytes[0] === 0x89 && text.startsWith("\x89HDF") || text.includes("MATLAB 7.3")) {
    throw new MatFormatError(
      fileName,
      0,
      "HDF5-based v7.3 MAT file; re-save it with `save -v7` or read it with h5py",
    );
  }
  const endian = String.fromCharCode(bytes[126], bytes[127]);
  let le: boolean;
  if (endian === "IM") le = true;
  else if (endian === "MI") le = false;
  else {
    throw new MatFormatError(
      fileName,
      126,
      "not a level-5 MAT file (missing the IM/MI endian mark)",
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint16(124, le);
  if (version !== 0x0100) {
    throw new MatFormatError(fileName, 124, `unsupported MAT version 0x${version.toString(16)}`);
  }
  const ctx: Ctx = {
    file: fileName,
    le,
    inflatedTotal: 0,
    maxInflated: opts.maxInflatedBytes ?? 2 ** 28,
    maxDepth: opts.maxDepth ?? 32,
  };
  const top: Cursor = { bytes, view, base: 0, inflated: false };
  const out = new Map<string, MatValue>();
  let pos = 128;
  while (pos < bytes.length) {
    if (bytes.length - pos < 8 && bytes.subarray(pos).every((b) => b === 0)) break; // padding
    const el = readTag(ctx, top, pos, bytes.length);
    let cur = top;
    let mel = el;
    if (el.type === MI_COMPRESSED) {
      cur = inflate(ctx, top, el);
      mel = readTag(ctx, cur, 0, cur.bytes.length);
    }
    if (mel.type !== MI_MATRIX) {
      fail(ctx, cur, mel.start - 8, `top-level element of type ${mel.type}, expected miMATRIX`);
    }
    const { name, value } = readMatrix(ctx, cur, mel, 0);
    out.set(name, value);
    pos = el.next;
  }
  return out;
}

/** Read and parse a level-5 MAT file. */
export async function loadMat(path: string, opts: MatOptions = {}): Promise<Map<string, MatValue>> {
  return parseMat(await readRegularFile(path), path, opts);
}

/** A plain JS value as {@linkcode matToJs} returns it. */
export type MatJs = number | string | boolean | MatJs[] | { [field: string]: MatJs };

function squeezeDims(dims: number[]): number[] {
  return dims.filter((d) => d !== 1);
}

/** Arrange column-major `items` with `dims` (after squeezing) into nested row-major arrays. */
function shapeItems<T>(
  items: T[],
  dims: number[],
  wrap: (xs: T[]) => MatJs,
  one: (x: T) => MatJs,
): MatJs {
  const sq = squeezeDims(dims);
  // An empty array (some dimension 0): no nesting to build, however large the other dimensions.
  if (sq.includes(0)) return [];
  if (sq.length === 0) return items.length === 1 ? one(items[0]) : wrap(items);
  if (sq.length === 1) return items.map(one);
  // n-D: index [i0][i1]… with column-major storage.
  const strides: number[] = [];
  let s = 1;
  for (const d of sq) {
    strides.push(s);
    s *= d;
  }
  const build = (axis: number, offset: number): MatJs => {
    const out: MatJs[] = [];
    for (let i = 0; i < sq[axis]; i++) {
      const o = offset + i * strides[axis];
      out.push(axis === sq.length - 1 ? one(items[o]) : build(axis + 1, o));
    }
    return out;
  };
  return build(0, 0);
}

/**
 * Convert a parsed value into plain JS like `scipy.io.loadmat(squeeze_me=True)`: singleton
 * dimensions are squeezed (scalars become numbers, vectors arrays, n-D nested row-major arrays),
 * char rows become strings, cells arrays, structs objects (or arrays of objects). Logical scalars
 * become booleans. Complex values are rejected.
 */
export function matToJs(value: MatValue): MatJs {
  switch (value.kind) {
    case "numeric": {
      if (value.imag) throw new Error("matToJs: complex arrays are not supported");
      const items = Array.from(value.data);
      const logical = value.logical === true;
      const one = (x: number): MatJs => logical ? x !== 0 : x;
      return shapeItems(items, value.dims, (xs) => xs.map(one), one);
    }
    case "char":
      return value.rows.length === 1 ? value.rows[0] : value.rows;
    case "cell":
      return shapeItems(value.cells, value.dims, (xs) => xs.map(matToJs), matToJs);
    case "struct": {
      const toObj = (rec: Record<string, MatValue>) => {
        const o: { [k: string]: MatJs } = {};
        for (const f of value.fields) setOwn(o, f, matToJs(rec[f]));
        return o;
      };
      return shapeItems(value.elements, value.dims, (xs) => xs.map(toObj), toObj);
    }
  }
}

/** Get variable `name` of a parsed file, or throw an error naming the file and variable. */
export function matVar(vars: Map<string, MatValue>, name: string, fileName: string): MatValue {
  const v = vars.get(name);
  if (!v) {
    throw new Error(`${fileName}: no variable "${name}" (has: ${[...vars.keys()].join(", ")})`);
  }
  return v;
}

/** Variable `name` as a flat list of numbers (any numeric class, any shape, column-major). */
export function matNumbers(vars: Map<string, MatValue>, name: string, fileName: string): number[] {
  const v = matVar(vars, name, fileName);
  if (v.kind !== "numeric") {
    throw new Error(`${fileName}: variable "${name}" is ${v.kind}, not numeric`);
  }
  return Array.from(v.data);
}
