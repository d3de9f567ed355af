/**
 * safetensors reading and writing, plus exact float16/bfloat16 conversions.
 *
 * Format: an 8-byte little-endian header length `N`, `N` bytes of JSON (`{"name": {"dtype",
 * "shape", "data_offsets": [begin, end]}, "__metadata__": {string: string}}`, padded with spaces
 * to a multiple of 8), then the tensor bytes (offsets relative to the end of the header). Our own
 * checkpoints put their JSON metadata in `__metadata__.mtil` (a JSON string) beside
 * `format: "pt"`, so `safetensors.torch.load_file` reads them back.
 *
 * @module
 */
import { type DType, numel, type RawTensor, type StateDict } from "./state_dict.ts";
import { type ByteSource, memorySource } from "./zip.ts";

/** Largest JSON header accepted (the reference implementation's limit: 100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

const ST_DTYPES: Record<string, { dtype: DType; size: number }> = {
  F32: { dtype: "float32", size: 4 },
  F16: { dtype: "float16", size: 2 },
  BF16: { dtype: "bfloat16", size: 2 },
  F64: { dtype: "float64", size: 8 },
  I64: { dtype: "int64", size: 8 },
  I32: { dtype: "int32", size: 4 },
  I16: { dtype: "int16", size: 2 },
  I8: { dtype: "int8", size: 1 },
  U8: { dtype: "uint8", size: 1 },
  BOOL: { dtype: "bool", size: 1 },
};

/** Bytes per element of each storage dtype. */
export const DTYPE_SIZE: Record<DType, number> = {
  float32: 4,
  float16: 2,
  bfloat16: 2,
  float64: 8,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

let f16Table: Float32Array | null = null;

/** Whether this platform stores typed arrays little-endian (fast paths copy bytes directly). */
const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/** Exact float16 → float32 of one half given as its 16 bits. */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** float32 → float16 bits, rounding to nearest even (as `torch.Tensor.half()`). */
export function floatToHalf(x: number): number {
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  f[0] = x;
  const b = u[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let r = mant >>> shift;
    if (rest > half || (rest === half && (r & 1))) r++;
    return sign | r;
  }
  const rest = mant & 0x1fff;
  let r = (e << 10) | (mant >>> 13);
  if (rest > 0x1000 || (rest === 0x1000 && (r & 1))) r++;
  if ((r >> 10) >= 31) return sign | 0x7c00; // rounded up to infinity
  return sign | r;
}

/** Decode little-endian element bytes of `dtype` into float32 (floats) or int32 (ints, bool). */
export function decodeElements(
  bytes: Uint8Array,
  dtype: DType,
  count: number,
  where: string,
): Float32Array | Int32Array {
  const need = count * DTYPE_SIZE[dtype];
  if (bytes.length < need) {
    throw new Error(`${where}: ${bytes.length} bytes for ${count} ${dtype} elements (${need})`);
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, need);
  switch (dtype) {
    case "float32": {
      if (LITTLE_ENDIAN && bytes.byteOffset === 0 && bytes.buffer.byteLength === need) {
        return new Float32Array(bytes.buffer, 0, count); // a buffer of its own: no copy
      }
      const out = new Float32Array(count);
      if (LITTLE_ENDIAN && bytes.byteOffset % 4 === 0) {
        out.set(new Float32Array(bytes.buffer, bytes.byteOffset, count));
      } else for (let i = 0; i < count; i++) out[i] = v.getFloat32(4 * i, true);
      return out;
    }
    case "float16": {
      if (!f16Table) {
        f16Table = new Float32Array(65536);
        for (let h = 0; h < 65536; h++) f16Table[h] = halfToFloat(h);
      }
      const t = f16Table;
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = t[bytes[2 * i] | (bytes[2 * i + 1] << 8)];
      return out;
    }
    case "bfloat16": {
      const out = new Float32Array(count);
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) u[i] = ((bytes[2 * i] | (bytes[2 * i + 1] << 8)) << 16) >>> 0;
      return out;
    }
    case "float64": {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) {
        const x = v.getFloat64(8 * i, true);
        out[i] = x;
        if (!Number.isFinite(out[i]) && Number.isFinite(x)) {
          throw new Error(
            `${where}: float64 element ${i} (${x}) is beyond the float32 range; ` +
              `rescale or convert the tensor before loading`,
          );
        }
      }
      return out;
    }
    case "int64": {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) {
        const lo = v.getUint32(8 * i, true);
        const hi = v.getInt32(8 * i + 4, true);
        if (!((hi === 0 && lo <= 0x7fffffff) || (hi === -1 && lo >= 0x80000000))) {
          throw new Error(`${where}: int64 element ${i} does not fit in int32`);
        }
        out[i] = lo | 0;
      }
      return out;
    }
    case "int32": {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = v.getInt32(4 * i, true);
      return out;
    }
    case "int16": {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = v.getInt16(2 * i, true);
      return out;
    }
    case "int8": {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = v.getInt8(i);
      return out;
    }
    case "uint8":
    case "bool": {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = dtype === "bool" ? (bytes[i] ? 1 : 0) : bytes[i];
      return out;
    }
  }
}

/** What {@link readSafetensors} returns. */
export interface SafetensorsFile {
  /** Tensors in header order. */
  stateDict: StateDict;
  /** The `__metadata__` string map (empty when absent). */
  metadata: Record<string, string>;
}

/** Parse safetensors bytes. Errors name `fileName` and the byte offset. */
export function readSafetensors(bytes: Uint8Array, fileName: string): SafetensorsFile {
  return readSafetensorsSource(memorySource(bytes), fileName);
}

/** Parse a safetensors file from a {@link ByteSource}, reading each tensor by offset. */
export function readSafetensorsSource(src: ByteSource, fileName: string): SafetensorsFile {
  const fail = (msg: string, at: number): never => {
    throw new Error(`${fileName}: safetensors: ${msg} at offset ${at}`);
  };
  if (src.size < 8) fail(`file too small (${src.size} bytes)`, 0);
  const lenBytes = src.read(0, 8);
  const hlen = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true);
  if (hlen > BigInt(MAX_HEADER_BYTES)) fail(`header length ${hlen} exceeds the limit`, 0);
  if (hlen + 8n > BigInt(src.size)) {
    fail(`header length ${hlen} beyond end of file (truncated?)`, 0);
  }
  const n = Number(hlen);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(src.read(8, n)));
  } catch (e) {
    return fail(`bad JSON header (${(e as Error).message})`, 8);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    fail("header is not a JSON object", 8);
  }
  const dataStart = 8 + n;
  const dataLen = src.size - dataStart;
  const metadata: Record<string, string> = {};
  const sd: StateDict = new Map();
  // Like the reference implementation: the entries, sorted by offset, tile the data section
  // exactly (no overlap, no gap, no trailing bytes), so no byte is read twice or ignored.
  const spans: { name: string; b: number; e: number }[] = [];
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const offs = (info as { data_offsets?: unknown } | null)?.data_offsets;
    if (
      !Array.isArray(offs) || offs.length !== 2 ||
      !offs.every((d) => Number.isSafeInteger(d) && d >= 0) || offs[0] > offs[1]
    ) fail(`tensor ${name}: bad data_offsets`, 8);
    spans.push({ name, b: (offs as number[])[0], e: (offs as number[])[1] });
  }
  spans.sort((x, y) => x.b - y.b || x.e - y.e);
  let cursor = 0;
  for (const sp of spans) {
    if (sp.b < cursor) {
      fail(
        `tensor ${sp.name}: data [${sp.b}, ${sp.e}) overlaps the previous tensor`,
        dataStart + sp.b,
      );
    }
    if (sp.b > cursor) {
      fail(`tensor ${sp.name}: gap of ${sp.b - cursor} bytes before its data`, dataStart + cursor);
    }
    cursor = sp.e;
  }
  if (cursor > dataLen) {
    fail(`data ends at ${cursor} but the file has ${dataLen} data bytes (truncated?)`, src.size);
  }
  if (cursor < dataLen) {
    fail(`${dataLen - cursor} trailing bytes after the last tensor`, dataStart + cursor);
  }
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") {
      if (info && typeof info === "object") {
        for (const [k, v] of Object.entries(info as Record<string, unknown>)) {
          if (typeof v === "string") metadata[k] = v;
        }
      }
      continue;
    }
    const ent = info as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const code = String(ent?.dtype);
    const dt = Object.hasOwn(ST_DTYPES, code) ? ST_DTYPES[code] : undefined;
    if (!dt) return fail(`tensor ${name}: unsupported dtype ${ent?.dtype}`, 8);
    const shape = ent.shape;
    if (
      !Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)
    ) fail(`tensor ${name}: bad shape`, 8);
    const offs = ent.data_offsets;
    if (
      !Array.isArray(offs) || offs.length !== 2 ||
      !offs.every((d) => Number.isSafeInteger(d) && d >= 0) || offs[0] > offs[1]
    ) fail(`tensor ${name}: bad data_offsets`, 8);
    const [b, e] = offs as number[];
    const count = numel(shape as number[]);
    if (e - b !== count * dt.size) {
      fail(`tensor ${name}: ${e - b} bytes for shape [${shape}] ${dt.dtype}`, dataStart + b);
    }
    if (e > dataLen) {
      fail(`tensor ${name}: data [${b}, ${e}) beyond end of file (truncated?)`, dataStart + b);
    }
    const raw = src.read(dataStart + b, e - b);
    sd.set(name, {
      shape: [...shape as number[]],
      dtype: dt.dtype,
      data: decodeElements(raw, dt.dtype, count, `${fileName}: tensor ${name}`),
    });
  }
  return { stateDict: sd, metadata };
}

/** Options of {@link writeSafetensors}. */
export interface WriteSafetensorsOptions {
  /** Storage dtype of floating-point tensors (default `"float32"`). */
  floatDtype?: "float32" | "float16";
}

function stDtype(t: RawTensor, floatDtype: "float32" | "float16"): { code: string; size: number } {
  if (t.data instanceof Float32Array) {
    return floatDtype === "float16" ? { code: "F16", size: 2 } : { code: "F32", size: 4 };
  }
  switch (t.dtype) {
    case "int64":
      return { code: "I64", size: 8 };
    case "bool":
      return { code: "BOOL", size: 1 };
    case "uint8":
      return { code: "U8", size: 1 };
    default:
      return { code: "I32", size: 4 };
  }
}

/** A planned safetensors file: the padded header and the tensors with their storage codes. */
interface SafetensorsPlan {
  header: Uint8Array;
  dataBytes: number;
  tensors: { t: RawTensor; code: string; bytes: number }[];
}

function planSafetensors(
  sd: StateDict,
  meta: Record<string, unknown> | undefined,
  opts: WriteSafetensorsOptions,
): SafetensorsPlan {
  const floatDtype = opts.floatDtype ?? "float32";
  const header: Record<string, unknown> = {};
  const md: Record<string, string> = { format: "pt" };
  if (meta) md.mtil = JSON.stringify(meta);
  header.__metadata__ = md;
  let off = 0;
  const tensors: SafetensorsPlan["tensors"] = [];
  for (const [name, t] of sd) {
    const count = numel(t.shape);
    if (t.data.length !== count) {
      throw new Error(`writeSafetensors: ${name} has ${t.data.length} values for [${t.shape}]`);
    }
    const { code, size } = stDtype(t, floatDtype);
    const begin = off;
    off += count * size;
    header[name] = { dtype: code, shape: t.shape, data_offsets: [begin, off] };
    tensors.push({ t, code, bytes: count * size });
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8; // spaces pad the JSON to 8-byte alignment
  const head = new Uint8Array(8 + padded).fill(0x20, 8);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(json, 8);
  return { header: head, dataBytes: off, tensors };
}

/** Encode one tensor's values as little-endian `code` bytes into `out` at `at`. */
function encodeTensor(t: RawTensor, code: string, out: Uint8Array, at: number): void {
  const d = t.data;
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  switch (code) {
    case "F32":
      if (LITTLE_ENDIAN && (out.byteOffset + at) % 4 === 0) {
        new Float32Array(out.buffer, out.byteOffset + at, d.length).set(d);
      } else for (let i = 0; i < d.length; i++) dv.setFloat32(at + 4 * i, d[i], true);
      break;
    case "F16":
      for (let i = 0; i < d.length; i++) dv.setUint16(at + 2 * i, floatToHalf(d[i]), true);
      break;
    case "I64":
      for (let i = 0; i < d.length; i++) {
        dv.setInt32(at + 8 * i, d[i], true);
        dv.setInt32(at + 8 * i + 4, d[i] < 0 ? -1 : 0, true);
      }
      break;
    case "I32":
      for (let i = 0; i < d.length; i++) dv.setInt32(at + 4 * i, d[i], true);
      break;
    case "U8":
    case "BOOL":
      for (let i = 0; i < d.length; i++) out[at + i] = d[i];
      break;
  }
}

/**
 * Serialise a state dict to safetensors bytes. `meta` (any JSON) goes into
 * `__metadata__.mtil` as a JSON string, beside `format: "pt"`.
 */
export function writeSafetensors(
  sd: StateDict,
  meta?: Record<string, unknown>,
  opts: WriteSafetensorsOptions = {},
): Uint8Array {
  const plan = planSafetensors(sd, meta, opts);
  const out = new Uint8Array(plan.header.length + plan.dataBytes);
  out.set(plan.header);
  let at = plan.header.length;
  for (const { t, code, bytes } of plan.tensors) {
    encodeTensor(t, code, out, at);
    at += bytes;
  }
  return out;
}

/**
 * Write a state dict as a safetensors file atomically (temp file, fsync, rename), encoding one
 * tensor at a time so memory stays at one tensor beyond the state dict itself.
 */
export async function writeSafetensorsFile(
  path: string,
  sd: StateDict,
  meta?: Record<string, unknown>,
  opts: WriteSafetensorsOptions = {},
): Promise<void> {
  const plan = planSafetensors(sd, meta, opts);
  await writeAtomic(path, async (write) => {
    await write(plan.header);
    for (const { t, code, bytes } of plan.tensors) {
      if (code === "F32" && LITTLE_ENDIAN) {
        await write(new Uint8Array(t.data.buffer, t.data.byteOffset, bytes)); // no copy
        continue;
      }
      const buf = new Uint8Array(bytes);
      encodeTensor(t, code, buf, 0);
      await write(buf);
    }
  });
}

/** Create `path` atomically from a producer of chunks (temp file beside it, fsync, rename). */
async function writeAtomic(
  path: string,
  produce: (write: (b: Uint8Array) => Promise<void>) => Promise<void>,
): Promise<void> {
  const tmp = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  try {
    const f = await Deno.open(tmp, { write: true, create: true, truncate: true });
    try {
      await produce(async (bytes) => {
        let written = 0;
        while (written < bytes.length) written += await f.write(bytes.subarray(written));
      });
      await f.syncData();
    } finally {
      f.close();
    }
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  await removeStaleTemps(path);
}

/**
 * Remove the temporary files that writers of `path` killed mid-write (`SIGKILL`, power loss) left
 * beside it: `<path>.tmp-<pid>-<id>` whose process no longer runs. Liveness is read from
 * `/proc`; where there is none (not Linux), nothing is removed. Called after every atomic write
 * and when a run removes its state file; errors are ignored.
 */
export async function removeStaleTemps(path: string): Promise<void> {
  const cut = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  const dir = cut >= 0 ? path.slice(0, cut) || "/" : ".";
  const prefix = `${path.slice(cut + 1)}.tmp-`;
  try {
    await Deno.stat("/proc/self");
  } catch {
    return;
  }
  try {
    for await (const e of Deno.readDir(dir)) {
      if (!e.isFile || !e.name.startsWith(prefix)) continue;
      const pid = Number(e.name.slice(prefix.length).split("-")[0]);
      if (!Number.isInteger(pid) || pid <= 0 || pid === Deno.pid) continue;
      const alive = await Deno.stat(`/proc/${pid}`).then(() => true, () => false);
      if (!alive) await Deno.remove(`${dir}/${e.name}`).catch(() => {});
    }
  } catch {
    // best effort: the directory may be unreadable or gone
  }
}

/**
 * Write bytes to `path` atomically: a temporary file beside it, fsync, then rename over `path`.
 * A crash leaves either the old file or the new one, never a torn file.
 */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  await writeAtomic(path, (write) => write(bytes));
}
