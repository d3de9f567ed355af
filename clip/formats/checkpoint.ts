/**
 * Read every CLIP checkpoint form into a {@link StateDict}; write ours.
 *
 * Forms read (detected from the bytes, not the file name):
 * 1. TorchScript archives (OpenAI's released `*.pt`): zip with `<name>/data.pkl` (the pickled
 *    module tree) and `<name>/data/<key>` storages. The state dict is the tree's tensors (its
 *    parameters and buffers) with dotted keys.
 * 2. `torch.save` zip archives (`<name>/data.pkl` holding a dict): plain state dicts or
 *    `{"state_dict": …, "iteration": …}`, `module.` prefixes stripped.
 * 3. Legacy (pre-1.6, non-zip) `torch.save` pickles.
 * 4. safetensors, with OpenAI/open_clip names or Hugging Face `CLIPModel` names (mapped), and
 *    ours (metadata in `__metadata__.mtil`).
 *
 * Tensors are views into storages (offset + strides honoured); fp16/bf16/f64 widen to float32,
 * integers to int32. Like the reference `build_model`, the non-weight entries `input_resolution`,
 * `context_length` and `vocab_size` are removed (their values are reported in `meta`).
 *
 * @module
 */
import { type DType, numel, type RawTensor, type StateDict } from "./state_dict.ts";
import { type ByteSource, fileSource, isZip, memorySource, ZipReader } from "./zip.ts";
import {
  isTensorRef,
  type PyKey,
  PyObject,
  TorchStorageType,
  type TorchTensorRef,
  unpickleAt,
} from "./pickle.ts";
import {
  decodeElements,
  DTYPE_SIZE,
  readSafetensorsSource,
  writeSafetensorsFile,
} from "./safetensors.ts";
import { hfToOpenAI, isHfClip } from "./hf_names.ts";

export { readSafetensors, writeSafetensors } from "./safetensors.ts";

/** A loaded checkpoint. */
export interface Checkpoint {
  /** Tensors by OpenAI CLIP key. */
  stateDict: StateDict;
  /**
   * What else the file said: `format` (`"torchscript"`, `"torch-zip"`, `"torch-legacy"`,
   * `"safetensors"`), scalar entries beside the state dict (e.g. `iteration`), dropped
   * non-weight entries (`input_resolution`, …), `hfNames: true` when names were mapped, and for
   * our own files the saved metadata.
   */
  meta: Record<string, unknown>;
}

/** Keys the reference `build_model` deletes before loading. */
export const NON_WEIGHT_KEYS: readonly string[] = [
  "input_resolution",
  "context_length",
  "vocab_size",
];

/** A storage referenced by a pickle's persistent id. */
interface StorageRef {
  key: string;
  dtype: DType;
  numel: number;
  /** Legacy views: element offset into the root storage `key`. */
  viewOffset?: number;
}

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;

/** Most tensors a checkpoint may hold (CLIP ViT-L/14@336px has under 500). */
export const MAX_TENSORS = 100_000;

/**
 * Most elements a tensor view may have beyond those of its storage. A view with zero or
 * overlapping strides (an `expand`ed tensor) repeats storage elements; a hostile file could ask
 * for a 40000×40000 view of one element. Views up to this many elements are always allowed.
 */
export const MAX_VIEW_EXPANSION = 1 << 22;

/**
 * Read a checkpoint file of any supported form. Errors name the file and, for corrupt or
 * truncated data, the byte offset.
 */
export function readCheckpoint(path: string): Promise<Checkpoint> {
  return Promise.resolve().then(() => {
    let src: ByteSource;
    try {
      src = fileSource(path);
    } catch (e) {
      throw new Error(`${path}: cannot open checkpoint (${(e as Error).message})`);
    }
    try {
      return readCheckpointSource(src, path);
    } finally {
      src.close();
    }
  });
}

/** {@link readCheckpoint} on bytes in memory; `fileName` is used in errors. */
export function readCheckpointBytes(bytes: Uint8Array, fileName: string): Checkpoint {
  return readCheckpointSource(memorySource(bytes), fileName);
}

function readCheckpointSource(src: ByteSource, fileName: string): Checkpoint {
  if (src.size < 8) throw new Error(`${fileName}: file too small (${src.size} bytes) at offset 0`);
  const head = src.read(0, Math.min(16, src.size));
  if (isZip(head)) return readTorchZip(src, fileName);
  if (head[0] === 0x80 && head[1] >= 2 && head[1] <= 5) {
    return readTorchLegacy(src.read(0, src.size), fileName);
  }
  if (head[8] === 0x7b /* '{' */) {
    const st = readSafetensorsSource(src, fileName);
    return finishSafetensors(st.stateDict, st.metadata);
  }
  throw new Error(
    `${fileName}: unknown checkpoint format at offset 0 (expected a TorchScript/torch.save ` +
      `zip, a legacy torch.save pickle or safetensors)`,
  );
}

function finishSafetensors(sd: StateDict, md: Record<string, string>): Checkpoint {
  const meta: Record<string, unknown> = { format: "safetensors" };
  for (const [k, v] of Object.entries(md)) {
    if (k === "mtil") {
      try {
        Object.assign(meta, JSON.parse(v));
      } catch {
        meta.mtil = v;
      }
      meta.format = "safetensors";
    } else if (k !== "format") meta[k] = v;
  }
  return { stateDict: cleanStateDict(sd, meta), meta };
}

/** Map Hugging Face names, strip `module.` prefixes, move non-weight entries to `meta`. */
function cleanStateDict(sd: StateDict, meta: Record<string, unknown>): StateDict {
  if (isHfClip(sd)) {
    sd = hfToOpenAI(sd);
    meta.hfNames = true;
  }
  const out: StateDict = new Map();
  let stripped = false;
  for (const [k0, t] of sd) {
    let k = k0;
    while (k.startsWith("module.")) {
      k = k.slice(7);
      stripped = true;
    }
    if (NON_WEIGHT_KEYS.includes(k)) {
      meta[k] = t.data.length === 1 ? t.data[0] : Array.from(t.data);
      continue;
    }
    if (k === "attn_mask" || k.endsWith(".attn_mask")) {
      // A plain tensor attribute (the causal mask) of scripted modules, never a state-dict entry.
      ((meta.droppedKeys ??= []) as string[]).push(k);
      continue;
    }
    out.set(k, t);
  }
  if (stripped) meta.strippedModulePrefix = true;
  return out;
}

function storageFromPid(pid: unknown, legacy: boolean): StorageRef {
  if (!Array.isArray(pid) || pid[0] !== "storage") {
    throw new Error(`unsupported persistent id ${JSON.stringify(String(pid))}`);
  }
  const [, type, key, , size, view] = pid;
  if (!(type instanceof TorchStorageType)) throw new Error("persistent id without a storage type");
  if (typeof key !== "string") throw new Error("persistent id with a non-string key");
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
    throw new Error(`storage ${key}: bad element count`);
  }
  const ref: StorageRef = { key, dtype: type.dtype, numel: size };
  if (legacy && Array.isArray(view)) {
    // (view_key, offset, view_size): a view into root storage `key`.
    const [, off, vsize] = view;
    if (typeof off !== "number" || typeof vsize !== "number") throw new Error("bad storage view");
    return { key, dtype: type.dtype, numel: vsize, viewOffset: off };
  }
  return ref;
}

/** Collect `(key, tensor)` pairs from an unpickled checkpoint root. */
function collect(
  root: unknown,
  meta: Record<string, unknown>,
  fileName: string,
): Map<string, TorchTensorRef> {
  const tensors = new Map<string, TorchTensorRef>();
  const add = (key: string, t: TorchTensorRef): void => {
    tensors.set(key, t);
    if (tensors.size > MAX_TENSORS) {
      throw new Error(
        `${fileName}: more than ${MAX_TENSORS} tensors (a module tree that references the same ` +
          `submodules many times?); not a CLIP checkpoint`,
      );
    }
  };
  // The pickle memo lets one module object appear at several places of the tree (a DAG): each
  // module's own tensors are collected once and reused under every prefix it appears at, so the
  // walk costs one visit per object plus one per emitted key (bounded by MAX_TENSORS).
  const memo = new Map<PyObject, [string, TorchTensorRef][]>();
  const onStack = new Set<PyObject>();
  const moduleTensors = (obj: PyObject, depth: number): [string, TorchTensorRef][] => {
    const hit = memo.get(obj);
    if (hit) return hit;
    if (depth > 64) throw new Error(`${fileName}: module tree deeper than 64 levels`);
    if (onStack.has(obj)) throw new Error(`${fileName}: module tree contains a cycle`);
    const out: [string, TorchTensorRef][] = [];
    const st = obj.state;
    if (st instanceof Map) {
      onStack.add(obj);
      for (const [k, v] of st) {
        if (isTensorRef(v)) out.push([String(k), v]);
        else if (v instanceof PyObject) {
          for (const [sub, t] of moduleTensors(v, depth + 1)) {
            out.push([`${String(k)}.${sub}`, t]);
            if (out.length > MAX_TENSORS) {
              throw new Error(
                `${fileName}: more than ${MAX_TENSORS} tensors (a module tree that references ` +
                  `the same submodules many times?); not a CLIP checkpoint`,
              );
            }
          }
        }
      }
      onStack.delete(obj);
    }
    memo.set(obj, out);
    return out;
  };
  const walkModule = (obj: PyObject, prefix: string, depth: number): void => {
    for (const [k, t] of moduleTensors(obj, depth)) add(prefix + k, t);
  };
  const walkDict = (d: Map<PyKey, unknown>): void => {
    for (const [k, v] of d) {
      if (isTensorRef(v)) add(String(k), v);
    }
  };
  const scalarMeta = (d: Map<PyKey, unknown>, skip: string): void => {
    for (const [k, v] of d) {
      if (String(k) === skip) continue;
      if (typeof v === "number" || typeof v === "string" || typeof v === "boolean") {
        meta[String(k)] = v;
      } else if (typeof v === "bigint") meta[String(k)] = Number(v);
    }
  };
  if (root instanceof PyObject) {
    meta.format = "torchscript";
    meta.className = root.className;
    walkModule(root, "", 0);
  } else if (root instanceof Map) {
    let inner: unknown = undefined;
    let innerKey = "";
    for (const key of ["state_dict", "model_state_dict", "model", "module"]) {
      const v = root.get(key);
      if (v instanceof Map || v instanceof PyObject) {
        inner = v;
        innerKey = key;
        break;
      }
    }
    if (inner === undefined) walkDict(root);
    else {
      meta.stateDictKey = innerKey;
      scalarMeta(root, innerKey);
      if (inner instanceof PyObject) walkModule(inner, "", 0);
      else walkDict(inner as Map<PyKey, unknown>);
    }
  } else {
    throw new Error(`${fileName}: checkpoint holds neither a module nor a dict`);
  }
  if (tensors.size === 0) throw new Error(`${fileName}: checkpoint holds no tensors`);
  return tensors;
}

/** Materialise a tensor view as a contiguous row-major {@link RawTensor}. */
function materialize(
  t: TorchTensorRef,
  data: Float32Array | Int32Array,
  dtype: DType,
  where: string,
): RawTensor {
  const { shape, stride, storageOffset: off } = t;
  if (shape.length !== stride.length) throw new Error(`${where}: shape/stride rank mismatch`);
  const count = numel(shape);
  if (shape.some((d) => d < 0) || stride.some((s) => s < 0) || off < 0) {
    throw new Error(`${where}: negative size, stride or offset`);
  }
  if (
    !shape.every(Number.isSafeInteger) || !stride.every(Number.isSafeInteger) ||
    !Number.isSafeInteger(off)
  ) {
    throw new Error(`${where}: non-integer size, stride or offset`);
  }
  if (count > data.length && count > MAX_VIEW_EXPANSION) {
    throw new Error(
      `${where}: a view of ${count} elements [${shape}] (strides [${stride}]) over a ` +
        `${data.length}-element storage; the file is corrupt or hostile`,
    );
  }
  if (count === 0) {
    return {
      shape: [...shape],
      dtype,
      data: data instanceof Float32Array ? new Float32Array(0) : new Int32Array(0),
    };
  }
  let last = off;
  for (let i = 0; i < shape.length; i++) last += (shape[i] - 1) * stride[i];
  if (last >= data.length) {
    throw new Error(`${where}: view reaches element ${last} of a ${data.length}-element storage`);
  }
  let contiguous = true;
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== s) contiguous = false;
    s *= shape[i];
  }
  if (contiguous) {
    const view = off === 0 && count === data.length ? data : data.slice(off, off + count);
    return { shape: [...shape], dtype, data: view };
  }
  const out = data instanceof Float32Array ? new Float32Array(count) : new Int32Array(count);
  const idx = new Array(shape.length).fill(0);
  let src = off;
  for (let o = 0; o < count; o++) {
    out[o] = data[src];
    for (let d = shape.length - 1; d >= 0; d--) {
      idx[d]++;
      src += stride[d];
      if (idx[d] < shape[d]) break;
      src -= stride[d] * shape[d];
      idx[d] = 0;
    }
  }
  return { shape: [...shape], dtype, data: out };
}

function buildStateDict(
  tensors: Map<string, TorchTensorRef>,
  storageData: (ref: StorageRef) => Float32Array | Int32Array,
  fileName: string,
): StateDict {
  const sd: StateDict = new Map();
  // Tensors may share storages (tied weights, views); all of them together may not claim far
  // more elements than the storages hold, or a small file could ask for gigabytes of copies.
  const seen = new Set<Float32Array | Int32Array>();
  let stored = 0, made = 0;
  for (const [name, t] of tensors) {
    const ref = t.storage as StorageRef;
    if (typeof ref !== "object" || ref === null || typeof ref.key !== "string") {
      throw new Error(`${fileName}: tensor ${name} is not backed by a storage record`);
    }
    const data = storageData(ref);
    if (!seen.has(data)) {
      seen.add(data);
      stored += data.length;
    }
    made += numel(t.shape);
    if (made > 4 * stored + MAX_VIEW_EXPANSION) {
      throw new Error(
        `${fileName}: tensors claim ${made} elements from storages of ${stored} (views that ` +
          `repeat the same data); the file is corrupt or hostile`,
      );
    }
    const view = ref.viewOffset ? { ...t, storageOffset: t.storageOffset + ref.viewOffset } : t;
    sd.set(name, materialize(view, data, ref.dtype, `${fileName}: tensor ${name}`));
  }
  return sd;
}

function readTorchZip(src: ByteSource, fileName: string): Checkpoint {
  const zip = new ZipReader(src, fileName);
  const pkl = zip.entries.find((e) => /^[^/]+\/data\.pkl$/.test(e.name)) ??
    zip.entries.find((e) => e.name.endsWith("data.pkl"));
  if (!pkl) throw new Error(`${fileName}: zip archive without data.pkl (not a torch checkpoint)`);
  const prefix = pkl.name.slice(0, -"data.pkl".length);
  const pklName = `${fileName}:${pkl.name}`;
  const root = unpickleAt(zip.read(pkl.name), 0, {
    fileName: pklName,
    persistentLoad: (pid) => storageFromPid(pid, false),
  }).value;
  const meta: Record<string, unknown> = { format: "torch-zip" };
  const tensors = collect(root, meta, fileName);
  const cache = new Map<string, Float32Array | Int32Array>();
  const storageData = (ref: StorageRef) => {
    let d = cache.get(ref.key);
    if (!d) {
      const entry = `${prefix}data/${ref.key}`;
      if (!zip.has(entry)) throw new Error(`${fileName}: storage record ${entry} missing`);
      const bytes = zip.read(entry);
      const need = ref.numel * DTYPE_SIZE[ref.dtype];
      if (bytes.length < need) {
        throw new Error(
          `${fileName}: storage ${entry} has ${bytes.length} bytes, needs ${need} at offset ` +
            `${zip.entry(entry)!.localHeaderOffset}`,
        );
      }
      d = decodeElements(bytes, ref.dtype, ref.numel, `${fileName}: storage ${entry}`);
      cache.set(ref.key, d);
    }
    return d;
  };
  const sd = buildStateDict(tensors, storageData, fileName);
  return { stateDict: cleanStateDict(sd, meta), meta };
}

function readTorchLegacy(bytes: Uint8Array, fileName: string): Checkpoint {
  const opts = { fileName };
  const magic = unpickleAt(bytes, 0, opts);
  if (magic.value !== LEGACY_MAGIC) {
    throw new Error(
      `${fileName}: a pickle but not a torch.save file (no torch magic number) at offset 0`,
    );
  }
  const proto = unpickleAt(bytes, magic.end, opts);
  if (proto.value !== 1001) {
    throw new Error(
      `${fileName}: unsupported torch.save protocol ${proto.value} at offset ${magic.end}`,
    );
  }
  const sys = unpickleAt(bytes, proto.end, opts);
  if (sys.value instanceof Map && sys.value.get("little_endian") === false) {
    throw new Error(`${fileName}: big-endian checkpoints are not supported at offset ${proto.end}`);
  }
  const roots = new Map<string, StorageRef>();
  const main = unpickleAt(bytes, sys.end, {
    fileName,
    persistentLoad: (pid) => {
      const ref = storageFromPid(pid, true);
      const root = Array.isArray(pid) ? (pid as unknown[])[4] : 0;
      if (!roots.has(ref.key)) {
        roots.set(ref.key, { key: ref.key, dtype: ref.dtype, numel: Number(root) });
      }
      return ref;
    },
  });
  const keys = unpickleAt(bytes, main.end, opts);
  if (!Array.isArray(keys.value)) {
    throw new Error(`${fileName}: storage key list missing at offset ${main.end}`);
  }
  const data = new Map<string, Float32Array | Int32Array>();
  let pos = keys.end;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (const k of keys.value) {
    const key = String(k);
    const ref = roots.get(key);
    if (!ref) throw new Error(`${fileName}: storage ${key} not referenced at offset ${pos}`);
    if (pos + 8 > bytes.length) throw new Error(`${fileName}: truncated at offset ${pos}`);
    const count = dv.getBigInt64(pos, true);
    if (count !== BigInt(ref.numel)) {
      throw new Error(`${fileName}: storage ${key} size ${count} != ${ref.numel} at offset ${pos}`);
    }
    pos += 8;
    const nbytes = ref.numel * DTYPE_SIZE[ref.dtype];
    if (pos + nbytes > bytes.length) {
      throw new Error(`${fileName}: storage ${key} truncated at offset ${pos}`);
    }
    data.set(
      key,
      decodeElements(
        bytes.subarray(pos, pos + nbytes),
        ref.dtype,
        ref.numel,
        `${fileName}: storage ${key}`,
      ),
    );
    pos += nbytes;
  }
  const meta: Record<string, unknown> = { format: "torch-legacy" };
  const tensors = collect(main.value, meta, fileName);
  const sd = buildStateDict(tensors, (ref) => {
    const d = data.get(ref.key);
    if (!d) throw new Error(`${fileName}: storage ${ref.key} has no data`);
    return d;
  }, fileName);
  return { stateDict: cleanStateDict(sd, meta), meta };
}

/** Options of {@link saveCheckpoint}. */
export interface SaveCheckpointOptions {
  /** Storage dtype of floating-point tensors (default `"float32"`). */
  floatDtype?: "float32" | "float16";
  /** Save tensors holding NaN or ±Infinity (default false: such a save is refused). */
  allowNonFinite?: boolean;
}

/**
 * Save a state dict in our format: safetensors with OpenAI key names and `meta` (model name,
 * dtype, iteration, method, config, …) as JSON in `__metadata__.mtil`. Written atomically (temp
 * file, fsync, rename). PyTorch reads it with `safetensors.torch.load_file`.
 */
export async function saveCheckpoint(
  path: string,
  sd: StateDict,
  meta: Record<string, unknown> = {},
  opts: SaveCheckpointOptions = {},
): Promise<void> {
  const floatDtype = opts.floatDtype ?? "float32";
  if (!opts.allowNonFinite) {
    for (const [k, t] of sd) {
      if (!(t.data instanceof Float32Array)) continue;
      const d = t.data;
      for (let i = 0; i < d.length; i++) {
        if (!Number.isFinite(d[i])) {
          throw new Error(
            `${path}: not saved: tensor ${k} holds ${d[i]} (element ${i}); weights that are not ` +
              `finite come from a diverged run (lower the learning rate)`,
          );
        }
      }
    }
  }
  await writeSafetensorsFile(path, sd, { ...meta, dtype: meta.dtype ?? floatDtype }, {
    floatDtype,
  });
}
