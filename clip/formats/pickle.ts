/**
 * A safe Python pickle reader (protocols 0–5) for checkpoints and dataset files.
 *
 * It executes nothing: `GLOBAL`/`STACK_GLOBAL` resolve only names on an allowlist (the globals
 * `torch.save`, TorchScript archives, numpy and CIFAR pickles use); any other global is an error
 * naming it. Every length read is bounded by the bytes that remain; memo and stack are bounded;
 * each opcode consumes input, so no input can loop. Errors name the file and the byte offset.
 *
 * Python values map to JS as: `None` → `null`, `bool` → boolean, `int` → number (bigint beyond
 * 2^53), `float` → number, `str` → string, `bytes`/`bytearray` → `Uint8Array`, `list` and `tuple`
 * → arrays, `dict` → `Map` (bytes keys become latin1 strings, tuple keys JSON strings), `set` →
 * `Set`. Torch tensors become {@link TorchTensorRef}s whose storage is whatever
 * `persistentLoad` returned; TorchScript modules (`__torch__.*`) become {@link PyObject}s holding
 * their attribute dict.
 *
 * @module
 */
import type { DType } from "./state_dict.ts";

/** A hashable dict key after conversion. */
export type PyKey = string | number | bigint | boolean | null;

/** An object of an allowlisted class (e.g. a TorchScript module) with its `BUILD` state. */
export class PyObject {
  /** Fully qualified class name, e.g. `__torch__.clip.model.CLIP`. */
  readonly className: string;
  /** Constructor arguments (`NEWOBJ`/`REDUCE`). */
  readonly args: unknown[];
  /** State set by `BUILD` (a `Map` of attributes for modules), or undefined. */
  state: unknown;
  /** Create an object of class `className` built from `args` (state comes later by BUILD). */
  constructor(className: string, args: unknown[] = []) {
    this.className = className;
    this.args = args;
    this.state = undefined;
  }
}

/** A torch storage class such as `torch.HalfStorage`. */
export class TorchStorageType {
  /** Class name, e.g. `HalfStorage`. */
  readonly name: string;
  /** Element dtype. */
  readonly dtype: DType;
  /** A storage class `name` holding elements of `dtype`. */
  constructor(name: string, dtype: DType) {
    this.name = name;
    this.dtype = dtype;
  }
}

/** A tensor as pickled by torch: a view (offset, shape, strides) into a storage. */
export interface TorchTensorRef {
  /** Discriminator. */
  readonly kind: "tensor";
  /** What `persistentLoad` returned for the storage. */
  storage: unknown;
  /** Offset in elements. */
  storageOffset: number;
  /** Shape. */
  shape: number[];
  /** Strides in elements. */
  stride: number[];
  /** Whether it was an `nn.Parameter` with `requires_grad`. */
  requiresGrad: boolean;
}

/** A numpy array rebuilt from `numpy.core.multiarray._reconstruct` + `BUILD`. */
export interface NumpyArray {
  /** Discriminator. */
  readonly kind: "ndarray";
  /** Shape. */
  shape: number[];
  /** numpy type string with byte order, e.g. `<f4`, `|u1`. */
  dtype: string;
  /** Whether the data is in Fortran order. */
  fortran: boolean;
  /** Raw element bytes (or a list for object arrays). */
  data: Uint8Array | unknown[];
}

/** Type guard for {@link TorchTensorRef}. */
export function isTensorRef(x: unknown): x is TorchTensorRef {
  return typeof x === "object" && x !== null && (x as { kind?: string }).kind === "tensor";
}

/** Type guard for {@link NumpyArray}. */
export function isNumpyArray(x: unknown): x is NumpyArray {
  return typeof x === "object" && x !== null && (x as { kind?: string }).kind === "ndarray";
}

/** Options of {@link unpickle}. */
export interface UnpickleOptions {
  /** Name used in error messages (file, or `archive.pt:entry`). */
  fileName: string;
  /**
   * How Python 2 `str` (`STRING`, `BINSTRING`, `SHORT_BINSTRING`) decodes, as Python's
   * `pickle.load(encoding=…)`: `"ascii"` (default; non-ASCII is an error), `"latin1"`, or
   * `"bytes"` (keep as `Uint8Array`).
   */
  encoding?: "ascii" | "latin1" | "bytes";
  /** Resolves a persistent id (torch storages). Without it, a persistent id is an error. */
  persistentLoad?: (pid: unknown) => unknown;
  /** Extra allowlisted globals, keyed `module.name`, called with the `REDUCE`/`NEWOBJ` args. */
  extraGlobals?: Record<string, (args: unknown[]) => unknown>;
  /** Maximum memo entries (default 2^22). */
  maxMemo?: number;
  /** Maximum stack depth (default 2^22). */
  maxStack?: number;
  /**
   * Most containers (lists, tuples, dicts, sets, objects) one pickle may create (default 2^20).
   * Each costs far more memory than the byte that creates it; this bounds memory per input.
   */
  maxObjects?: number;
}

/** Result of {@link unpickleAt}: the value and the offset just past its `STOP`. */
export interface UnpickleResult {
  /** The unpickled value. */
  value: unknown;
  /** Byte offset after the `STOP` opcode. */
  end: number;
}

/** Unpickle one pickle from the start of `bytes`. See {@link UnpickleOptions}. */
export function unpickle(bytes: Uint8Array, opts: UnpickleOptions): unknown {
  return unpickleAt(bytes, 0, opts).value;
}

/** A global after allowlist resolution: something `REDUCE`/`NEWOBJ` can call. */
class PyGlobal {
  constructor(
    readonly qualname: string,
    readonly call: (args: unknown[]) => unknown,
  ) {}
}

const STORAGE_DTYPES: Record<string, DType> = {
  FloatStorage: "float32",
  HalfStorage: "float16",
  BFloat16Storage: "bfloat16",
  DoubleStorage: "float64",
  LongStorage: "int64",
  IntStorage: "int32",
  ShortStorage: "int16",
  CharStorage: "int8",
  ByteStorage: "uint8",
  BoolStorage: "bool",
};

function asNumber(x: unknown, what: string): number {
  if (typeof x === "number") {
    if (!Number.isSafeInteger(x)) throw new Error(`${what}: expected an int, got ${x}`);
    return x;
  }
  if (
    typeof x === "bigint" && x >= BigInt(Number.MIN_SAFE_INTEGER) &&
    x <= BigInt(Number.MAX_SAFE_INTEGER)
  ) {
    return Number(x);
  }
  if (typeof x === "boolean") return x ? 1 : 0;
  throw new Error(`${what}: expected an int, got ${typeof x}`);
}

function asIntList(x: unknown, what: string): number[] {
  if (!Array.isArray(x)) throw new Error(`${what}: expected a tuple of ints`);
  return x.map((v) => asNumber(v, what));
}

function rebuildTensor(args: unknown[], requiresGrad = false): TorchTensorRef {
  const [storage, offset, size, stride] = args;
  return {
    kind: "tensor",
    storage,
    storageOffset: asNumber(offset, "_rebuild_tensor_v2 storage_offset"),
    shape: asIntList(size, "_rebuild_tensor_v2 size"),
    stride: asIntList(stride, "_rebuild_tensor_v2 stride"),
    requiresGrad: requiresGrad || args[4] === true,
  };
}

function toKey(k: unknown): PyKey {
  if (
    k === null || typeof k === "string" || typeof k === "number" || typeof k === "bigint" ||
    typeof k === "boolean"
  ) return k;
  if (k instanceof Uint8Array) return latin1(k);
  return boundedJson(k);
}

/** Most characters of a JSON dict key made from a tuple (shared sub-tuples could expand it). */
const MAX_KEY_CHARS = 1 << 16;

/**
 * `JSON.stringify` of a tuple key, failing once the text would pass {@link MAX_KEY_CHARS}: a
 * pickle can reference one tuple many times (memo), so a small input can describe a key whose
 * text doubles at each level.
 */
function boundedJson(root: unknown): string {
  let len = 0;
  const parts: string[] = [];
  const add = (s: string): void => {
    len += s.length;
    if (len > MAX_KEY_CHARS) throw new Error(`dict key longer than ${MAX_KEY_CHARS} characters`);
    parts.push(s);
  };
  const walk = (v: unknown, depth: number): void => {
    if (depth > 64) throw new Error("dict key nested deeper than 64 levels");
    if (Array.isArray(v)) {
      add("[");
      v.forEach((x, i) => {
        if (i) add(",");
        walk(x, depth + 1);
      });
      add("]");
    } else if (typeof v === "bigint") add(JSON.stringify(v.toString()));
    else if (v instanceof Uint8Array) add(JSON.stringify(latin1(v)));
    else add(JSON.stringify(v) ?? "null");
  };
  walk(root, 0);
  return parts.join("");
}

function latin1(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 8192) {
    s += String.fromCharCode(...b.subarray(i, Math.min(b.length, i + 8192)));
  }
  return s;
}

function ndarrayBuild(a: NumpyArray, state: unknown): void {
  // state = (version, shape, dtype, is_fortran, rawdata)
  if (!Array.isArray(state) || state.length < 5) throw new Error("ndarray BUILD: bad state");
  a.shape = asIntList(state[1], "ndarray shape");
  const dt = state[2];
  a.dtype = dt instanceof NumpyDType ? dt.str : String(dt);
  a.fortran = state[3] === true;
  const raw = state[4];
  if (raw instanceof Uint8Array) a.data = raw;
  else if (Array.isArray(raw)) a.data = raw;
  else if (typeof raw === "string") a.data = Uint8Array.from(raw, (c) => c.charCodeAt(0) & 0xff);
  else throw new Error("ndarray BUILD: unsupported raw data");
}

/** A numpy dtype (`numpy.dtype('f4')` + BUILD with the byte order). */
class NumpyDType {
  byteorder = "=";
  constructor(readonly kind: string) {}
  get str(): string {
    const bo = this.byteorder === "=" ? "<" : this.byteorder;
    return `${bo}${this.kind}`;
  }
}

const NUMPY_KINDS: Record<string, string> = {
  f2: "f2",
  f4: "f4",
  f8: "f8",
  i1: "i1",
  i2: "i2",
  i4: "i4",
  i8: "i8",
  u1: "u1",
  u2: "u2",
  u4: "u4",
  u8: "u8",
  b1: "b1",
  float32: "f4",
  float64: "f8",
  int64: "i8",
  int32: "i4",
  uint8: "u1",
  bool: "b1",
};

function numpyScalar(dt: NumpyDType, raw: Uint8Array): number | bigint | boolean {
  const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const le = dt.byteorder !== ">";
  const need: Record<string, number> = {
    f2: 2,
    f4: 4,
    f8: 8,
    i1: 1,
    i2: 2,
    i4: 4,
    i8: 8,
    u1: 1,
    u2: 2,
    u4: 4,
    u8: 8,
    b1: 1,
  };
  if (raw.length < (need[dt.kind] ?? Infinity)) throw new Error(`numpy scalar: short data`);
  switch (dt.kind) {
    case "f4":
      return v.getFloat32(0, le);
    case "f8":
      return v.getFloat64(0, le);
    case "i1":
      return v.getInt8(0);
    case "i2":
      return v.getInt16(0, le);
    case "i4":
      return v.getInt32(0, le);
    case "i8":
      return v.getBigInt64(0, le);
    case "u1":
      return v.getUint8(0);
    case "u2":
      return v.getUint16(0, le);
    case "u4":
      return v.getUint32(0, le);
    case "u8":
      return v.getBigUint64(0, le);
    case "b1":
      return v.getUint8(0) !== 0;
  }
  throw new Error(`numpy scalar: unsupported dtype ${dt.kind}`);
}

function makeNdarray(): NumpyArray {
  return { kind: "ndarray", shape: [], dtype: "|u1", fortran: false, data: new Uint8Array(0) };
}

/** Resolve an allowlisted global, or throw naming it. */
function resolveGlobal(
  module: string,
  name: string,
  extra: Record<string, (args: unknown[]) => unknown> | undefined,
): unknown {
  const q = `${module}.${name}`;
  const ex = extra && Object.hasOwn(extra, q) ? extra[q] : undefined;
  if (ex) return new PyGlobal(q, ex);
  if (module === "torch" && Object.hasOwn(STORAGE_DTYPES, name)) {
    return new TorchStorageType(name, STORAGE_DTYPES[name]);
  }
  if (module.startsWith("__torch__.") || module === "__torch__") {
    // TorchScript classes (modules, …): a generic object filled by BUILD.
    return new PyGlobal(q, (args) => new PyObject(q, args));
  }
  switch (q) {
    case "collections.OrderedDict":
    case "builtins.dict":
    case "__builtin__.dict":
      return new PyGlobal(q, (args) => {
        const m = new Map<PyKey, unknown>();
        if (args.length && Array.isArray(args[0])) {
          for (const kv of args[0]) if (Array.isArray(kv)) m.set(toKey(kv[0]), kv[1]);
        }
        return m;
      });
    case "torch._utils._rebuild_tensor_v2":
    case "torch._utils._rebuild_tensor":
      return new PyGlobal(q, (args) => rebuildTensor(args));
    case "torch._utils._rebuild_parameter":
    case "torch._utils._rebuild_parameter_with_state":
      return new PyGlobal(q, (args) => {
        const t = args[0];
        if (!isTensorRef(t)) throw new Error(`${q}: first argument is not a tensor`);
        return { ...t, requiresGrad: args[1] === true };
      });
    case "torch.device":
      return new PyGlobal(q, (args) => ({ kind: "device", type: String(args[0]) }));
    case "torch.Size":
      return new PyGlobal(q, (args) => Array.isArray(args[0]) ? [...args[0]] : []);
    case "torch.jit._pickle.build_intlist":
    case "torch.jit._pickle.build_doublelist":
    case "torch.jit._pickle.build_boollist":
    case "torch.jit._pickle.build_tensorlist":
    case "torch.jit._pickle.build_list":
      return new PyGlobal(q, (args) => Array.isArray(args[0]) ? [...args[0]] : []);
    case "torch.jit._pickle.restore_type_tag":
      return new PyGlobal(q, (args) => args[0]);
    case "builtins.set":
    case "__builtin__.set":
    case "builtins.frozenset":
    case "__builtin__.frozenset":
      return new PyGlobal(q, (args) => new Set(Array.isArray(args[0]) ? args[0] : []));
    case "builtins.bytearray":
    case "__builtin__.bytearray":
      return new PyGlobal(q, (args) => {
        const a = args[0];
        if (a === undefined) return new Uint8Array(0);
        if (a instanceof Uint8Array) return a.slice();
        if (typeof a === "string") return Uint8Array.from(a, (c) => c.charCodeAt(0) & 0xff);
        if (Array.isArray(a)) return Uint8Array.from(a.map((x) => asNumber(x, q)));
        throw new Error(`${q}: unsupported argument`);
      });
    case "_codecs.encode":
      return new PyGlobal(q, (args) => {
        const [s, enc] = args;
        if (typeof s !== "string") throw new Error(`${q}: expected a str`);
        const e = String(enc ?? "utf-8").toLowerCase().replace("-", "");
        if (e === "latin1" || e === "iso88591") {
          return Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff);
        }
        if (e === "utf8") return new TextEncoder().encode(s);
        throw new Error(`${q}: unsupported encoding ${enc}`);
      });
    case "numpy.core.multiarray._reconstruct":
    case "numpy._core.multiarray._reconstruct":
      return new PyGlobal(q, () => makeNdarray());
    case "numpy.ndarray":
      return new PyGlobal(q, () => makeNdarray());
    case "numpy.dtype":
      return new PyGlobal(q, (args) => {
        const k = args[0] instanceof Uint8Array ? latin1(args[0]) : String(args[0]);
        const kind = Object.hasOwn(NUMPY_KINDS, k) ? NUMPY_KINDS[k] : undefined;
        if (!kind) throw new Error(`numpy.dtype: unsupported dtype ${k}`);
        return new NumpyDType(kind);
      });
    case "numpy.core.multiarray.scalar":
    case "numpy._core.multiarray.scalar":
      return new PyGlobal(q, (args) => {
        const [dt, raw] = args;
        if (!(dt instanceof NumpyDType)) throw new Error(`${q}: expected a dtype`);
        const bytes = raw instanceof Uint8Array
          ? raw
          : typeof raw === "string"
          ? Uint8Array.from(raw, (c) => c.charCodeAt(0) & 0xff)
          : null;
        if (!bytes) throw new Error(`${q}: expected bytes`);
        return numpyScalar(dt, bytes);
      });
  }
  if (q === "torch.storage._load_from_bytes") {
    throw new Error(
      `global ${q} refused: a nested legacy pickle inside the checkpoint; ` +
        `re-save the checkpoint with a current torch (torch.save of the state dict)`,
    );
  }
  throw new Error(
    `global ${q} is not allowed (the reader only accepts torch/numpy checkpoint globals)`,
  );
}

/**
 * Unpickle one pickle that starts at `start` (several pickles may follow each other, as in
 * legacy `torch.save` files). Returns the value and the offset after its `STOP`.
 */
export function unpickleAt(
  bytes: Uint8Array,
  start: number,
  opts: UnpickleOptions,
): UnpickleResult {
  const file = opts.fileName;
  const encoding = opts.encoding ?? "ascii";
  const maxMemo = opts.maxMemo ?? (1 << 22);
  const maxStack = opts.maxStack ?? (1 << 22);
  const maxObjects = opts.maxObjects ?? (1 << 20);
  let objects = 0;
  const n = bytes.length;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  let stack: unknown[] = [];
  const metastack: unknown[][] = [];
  const memo = new Map<number, unknown>();
  let pos = start;
  let opAt = start;

  const fail = (msg: string, at = opAt): never => {
    throw new Error(`${file}: pickle: ${msg} at offset ${at}`);
  };
  const need = (k: number): void => {
    if (k < 0 || pos + k > n) {
      fail(`truncated (needs ${k} more bytes, ${n - pos} left)`, pos);
    }
  };
  const u8 = (): number => {
    need(1);
    return bytes[pos++];
  };
  const u16 = (): number => {
    need(2);
    const v = dv.getUint16(pos, true);
    pos += 2;
    return v;
  };
  const u32 = (): number => {
    need(4);
    const v = dv.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const i32 = (): number => {
    need(4);
    const v = dv.getInt32(pos, true);
    pos += 4;
    return v;
  };
  const u64 = (): number => {
    need(8);
    const v = dv.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(n)) fail(`length ${v} exceeds the file`, pos - 8);
    return Number(v);
  };
  const take = (k: number): Uint8Array => {
    need(k);
    const b = bytes.subarray(pos, pos + k);
    pos += k;
    return b;
  };
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) fail("unterminated text line", pos);
    const s = latin1(bytes.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const push = (v: unknown): void => {
    if (stack.length >= maxStack) fail(`stack exceeds ${maxStack} items`);
    stack.push(v);
  };
  /** Push a newly created container, counting it against `maxObjects`. */
  const pushNew = (v: unknown): void => {
    if (++objects > maxObjects) {
      fail(`more than ${maxObjects} objects (a hostile or corrupt pickle?)`);
    }
    push(v);
  };
  const pop = (): unknown => {
    if (stack.length === 0) fail("stack underflow");
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) fail("stack underflow");
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const items = stack;
    const prev = metastack.pop();
    if (!prev) fail("MARK expected but not found");
    stack = prev!;
    return items;
  };
  const decodeUtf8 = (b: Uint8Array): string => {
    try {
      return utf8.decode(b);
    } catch {
      return fail("invalid UTF-8 in a string");
    }
  };
  const pyStr = (b: Uint8Array): unknown => {
    if (encoding === "bytes") return b;
    if (encoding === "ascii") {
      for (const c of b) {
        if (c > 127) fail("non-ASCII byte in a Python 2 str (use encoding latin1/bytes)");
      }
    }
    return latin1(b);
  };
  const decodeLong = (b: Uint8Array): number | bigint => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(v)
      : v;
  };
  const memoPut = (idx: number, v: unknown): void => {
    if (!memo.has(idx) && memo.size >= maxMemo) fail(`memo exceeds ${maxMemo} entries`);
    memo.set(idx, v);
  };
  const memoGet = (idx: number): unknown => {
    if (!memo.has(idx)) fail(`memo key ${idx} not found`);
    return memo.get(idx);
  };
  const setItems = (d: unknown, items: unknown[]): void => {
    if (items.length % 2) fail("odd number of items for SETITEMS");
    if (d instanceof Map) {
      for (let i = 0; i < items.length; i += 2) d.set(toKey(items[i]), items[i + 1]);
    } else if (d instanceof PyObject) {
      // Only reached for classes whose instances behave like dicts; keep the pairs as state.
      if (!(d.state instanceof Map)) d.state = new Map<PyKey, unknown>();
      for (let i = 0; i < items.length; i += 2) {
        (d.state as Map<PyKey, unknown>).set(toKey(items[i]), items[i + 1]);
      }
    } else fail(`SETITEM(S) on a non-dict (${typeName(d)})`);
  };
  const appendItems = (l: unknown, items: unknown[]): void => {
    if (Array.isArray(l)) {
      for (const it of items) l.push(it);
    } else if (l instanceof Set) {
      for (const it of items) l.add(it);
    } else fail(`APPEND(S) on a non-list (${typeName(l)})`);
  };
  const call = (f: unknown, args: unknown, what: string): unknown => {
    if (!Array.isArray(args)) fail(`${what}: arguments are not a tuple`);
    if (f instanceof PyGlobal) {
      try {
        return f.call(args as unknown[]);
      } catch (e) {
        return fail(`${f.qualname}: ${(e as Error).message}`);
      }
    }
    if (f instanceof TorchStorageType) fail(`${what} of a storage class ${f.name}`);
    return fail(`${what} of a non-callable (${typeName(f)})`);
  };
  const global = (module: string, name: string): unknown => {
    try {
      return resolveGlobal(module, name, opts.extraGlobals);
    } catch (e) {
      return fail((e as Error).message);
    }
  };

  try {
    while (true) {
      opAt = pos;
      if (pos >= n) fail("truncated: no STOP opcode", pos);
      const op = bytes[pos++];
      switch (op) {
        case 0x80: // PROTO
          if (u8() > 5) fail("unsupported pickle protocol");
          break;
        case 0x95: // FRAME
          u64();
          break;
        case 0x2e: // STOP
          if (metastack.length) fail("STOP inside a MARK");
          return { value: pop(), end: pos };
        case 0x28: // MARK
          if (metastack.length >= maxStack) fail("too many MARKs");
          metastack.push(stack);
          stack = [];
          break;
        case 0x30: // POP
          if (stack.length === 0 && metastack.length) popMark();
          else pop();
          break;
        case 0x31: // POP_MARK
          popMark();
          break;
        case 0x32: // DUP
          push(top());
          break;
        case 0x4e: // NONE
          push(null);
          break;
        case 0x88: // NEWTRUE
          push(true);
          break;
        case 0x89: // NEWFALSE
          push(false);
          break;
        case 0x4a: // BININT
          push(i32());
          break;
        case 0x4b: // BININT1
          push(u8());
          break;
        case 0x4d: // BININT2
          push(u16());
          break;
        case 0x8a: // LONG1
          push(decodeLong(take(u8())));
          break;
        case 0x8b: { // LONG4
          const k = i32();
          if (k < 0) fail("negative LONG4 length");
          push(decodeLong(take(k)));
          break;
        }
        case 0x49: { // INT (text)
          const s = line().trim();
          if (s === "01") push(true);
          else if (s === "00") push(false);
          else {
            if (!/^[-+]?\d+$/.test(s)) fail(`bad INT ${s}`);
            const b = BigInt(s);
            push(Number.isSafeInteger(Number(b)) ? Number(b) : b);
          }
          break;
        }
        case 0x4c: { // LONG (text)
          const s = line().trim().replace(/L$/, "");
          if (!/^[-+]?\d+$/.test(s)) fail(`bad LONG ${s}`);
          const b = BigInt(s);
          push(Number.isSafeInteger(Number(b)) ? Number(b) : b);
          break;
        }
        case 0x47: // BINFLOAT (big-endian)
          need(8);
          push(dv.getFloat64(pos, false));
          pos += 8;
          break;
        case 0x46: { // FLOAT (text)
          const s = line().trim();
          const v = Number(s);
          if (Number.isNaN(v) && !/nan/i.test(s)) fail(`bad FLOAT ${s}`);
          push(v);
          break;
        }
        case 0x58: // BINUNICODE
          push(decodeUtf8(take(u32())));
          break;
        case 0x8c: // SHORT_BINUNICODE
          push(decodeUtf8(take(u8())));
          break;
        case 0x8d: // BINUNICODE8
          push(decodeUtf8(take(u64())));
          break;
        case 0x56: // UNICODE (raw-unicode-escape text)
          push(
            line().replace(/\\u([0-9a-fA-F]{4})/g, (_, h) => String.fromCharCode(parseInt(h, 16))),
          );
          break;
        case 0x55: // SHORT_BINSTRING
          push(pyStr(take(u8())));
          break;
        case 0x54: { // BINSTRING
          const k = i32();
          if (k < 0) fail("negative BINSTRING length");
          push(pyStr(take(k)));
          break;
        }
        case 0x53: { // STRING (quoted repr)
          const s = line().trim();
          const q = s[0];
          if (s.length < 2 || (q !== "'" && q !== '"') || s[s.length - 1] !== q) fail("bad STRING");
          const body = s.slice(1, -1).replace(
            /\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|.)/g,
            (_, e: string) => {
              if (e[0] === "x") return String.fromCharCode(parseInt(e.slice(1), 16));
              if (/^[0-7]/.test(e)) return String.fromCharCode(parseInt(e, 8) & 0xff);
              return ({ n: "\n", t: "\t", r: "\r", "0": "\0" } as Record<string, string>)[e] ?? e;
            },
          );
          push(pyStr(Uint8Array.from(body, (c) => c.charCodeAt(0) & 0xff)));
          break;
        }
        case 0x43: // SHORT_BINBYTES
          push(take(u8()).slice());
          break;
        case 0x42: // BINBYTES
          push(take(u32()).slice());
          break;
        case 0x8e: // BINBYTES8
          push(take(u64()).slice());
          break;
        case 0x96: // BYTEARRAY8
          push(take(u64()).slice());
          break;
        case 0x97: // NEXT_BUFFER
          fail("out-of-band buffers (NEXT_BUFFER) are not supported");
          break;
        case 0x98: // READONLY_BUFFER
          break;
        case 0x5d: // EMPTY_LIST
          pushNew([]);
          break;
        case 0x7d: // EMPTY_DICT
          pushNew(new Map<PyKey, unknown>());
          break;
        case 0x29: // EMPTY_TUPLE
          pushNew([]);
          break;
        case 0x8f: // EMPTY_SET
          pushNew(new Set());
          break;
        case 0x6c: // LIST
          pushNew(popMark());
          break;
        case 0x74: // TUPLE
          pushNew(popMark());
          break;
        case 0x85: // TUPLE1
          pushNew([pop()]);
          break;
        case 0x86: { // TUPLE2
          const b = pop(), a = pop();
          pushNew([a, b]);
          break;
        }
        case 0x87: { // TUPLE3
          const c = pop(), b = pop(), a = pop();
          pushNew([a, b, c]);
          break;
        }
        case 0x64: { // DICT
          const items = popMark();
          const d = new Map<PyKey, unknown>();
          setItems(d, items);
          pushNew(d);
          break;
        }
        case 0x91: // FROZENSET
          pushNew(new Set(popMark()));
          break;
        case 0x61: { // APPEND
          const v = pop();
          appendItems(top(), [v]);
          break;
        }
        case 0x65: { // APPENDS
          const items = popMark();
          appendItems(top(), items);
          break;
        }
        case 0x90: { // ADDITEMS
          const items = popMark();
          const s = top();
          if (!(s instanceof Set)) fail("ADDITEMS on a non-set");
          for (const it of items) (s as Set<unknown>).add(it);
          break;
        }
        case 0x73: { // SETITEM
          const v = pop(), k = pop();
          setItems(top(), [k, v]);
          break;
        }
        case 0x75: { // SETITEMS
          const items = popMark();
          setItems(top(), items);
          break;
        }
        case 0x70: { // PUT (text)
          const s = line();
          if (!/^\d+$/.test(s)) fail("bad PUT index");
          memoPut(Number(s), top());
          break;
        }
        case 0x71: // BINPUT
          memoPut(u8(), top());
          break;
        case 0x72: // LONG_BINPUT
          memoPut(u32(), top());
          break;
        case 0x94: // MEMOIZE
          memoPut(memo.size, top());
          break;
        case 0x67: { // GET (text)
          const s = line();
          if (!/^\d+$/.test(s)) fail("bad GET index");
          push(memoGet(Number(s)));
          break;
        }
        case 0x68: // BINGET
          push(memoGet(u8()));
          break;
        case 0x6a: // LONG_BINGET
          push(memoGet(u32()));
          break;
        case 0x63: { // GLOBAL (text: module\nname\n)
          const module = line();
          const name = line();
          push(global(module, name));
          break;
        }
        case 0x93: { // STACK_GLOBAL
          const name = pop(), module = pop();
          if (typeof module !== "string" || typeof name !== "string") {
            fail("STACK_GLOBAL of non-strings");
          }
          push(global(module as string, name as string));
          break;
        }
        case 0x52: { // REDUCE
          const args = pop();
          const f = pop();
          pushNew(call(f, args, "REDUCE"));
          break;
        }
        case 0x81: { // NEWOBJ
          const args = pop();
          const cls = pop();
          pushNew(call(cls, args, "NEWOBJ"));
          break;
        }
        case 0x92: { // NEWOBJ_EX
          pop(); // kwargs
          const args = pop();
          const cls = pop();
          pushNew(call(cls, args, "NEWOBJ_EX"));
          break;
        }
        case 0x62: { // BUILD
          const state = pop();
          const obj = top();
          if (obj instanceof PyObject) obj.state = state;
          else if (isNumpyArray(obj)) {
            try {
              ndarrayBuild(obj, state);
            } catch (e) {
              fail((e as Error).message);
            }
          } else if (obj instanceof NumpyDType) {
            if (Array.isArray(state)) {
              const bo = state[1] instanceof Uint8Array ? latin1(state[1]) : state[1];
              if (typeof bo === "string") obj.byteorder = bo;
            }
          } else if (obj instanceof Map || isTensorRef(obj)) {
            // OrderedDict `_metadata` / tensor python attributes: nothing we need.
          } else fail(`BUILD on ${typeName(obj)} is not supported`);
          break;
        }
        case 0x51: { // BINPERSID
          const pid = pop();
          if (!opts.persistentLoad) fail("persistent id found but no persistent loader given");
          try {
            push(opts.persistentLoad!(pid));
          } catch (e) {
            fail(`persistent load: ${(e as Error).message}`);
          }
          break;
        }
        case 0x50: { // PERSID (text)
          const pid = line();
          if (!opts.persistentLoad) fail("persistent id found but no persistent loader given");
          try {
            push(opts.persistentLoad!(pid));
          } catch (e) {
            fail(`persistent load: ${(e as Error).message}`);
          }
          break;
        }
        case 0x69: // INST
        case 0x6f: // OBJ
          fail(`opcode ${String.fromCharCode(op)} (INST/OBJ) is not supported`);
          break;
        case 0x82: // EXT1
        case 0x83: // EXT2
        case 0x84: // EXT4
          fail("extension registry opcodes (EXT1/2/4) are not supported");
          break;
        default:
          fail(`unknown opcode 0x${op.toString(16).padStart(2, "0")}`);
      }
    }
  } catch (e) {
    // Anything unexpected (e.g. a stack overflow on absurdly nested keys) still names file+offset.
    if (e instanceof Error && e.message.startsWith(`${file}: pickle:`)) throw e;
    throw new Error(`${file}: pickle: ${(e as Error)?.message ?? e} at offset ${opAt}`);
  }
}

function typeName(x: unknown): string {
  if (x === null) return "None";
  if (Array.isArray(x)) return "list/tuple";
  if (x instanceof Map) return "dict";
  if (x instanceof PyObject) return x.className;
  if (x instanceof PyGlobal) return x.qualname;
  if (x instanceof Uint8Array) return "bytes";
  return typeof x;
}
