/**
 * CIFAR-10 / CIFAR-100 from their "python version" pickles (torchvision's layout:
 * `cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}` and
 * `cifar-100-python/{train,test,meta}`), read with the safe unpickler of `clip/formats/pickle.ts`
 * (`encoding: "latin1"`, as torchvision does). Rows of 3072 bytes (1024 R, 1024 G, 1024 B) come out
 * as interleaved RGB 32×32 images.
 *
 * @module
 */
import { readRegularFile } from "./_files.ts";
import { isNumpyArray, unpickle } from "../clip/formats/pickle.ts";
import type { Dataset, DecodedImage, Example, Split } from "./types.ts";
import { checkIndex } from "./types.ts";

/** One CIFAR pickle batch: `n` images of 3072 bytes (CHW planes) and their labels. */
export interface CifarBatch {
  /** Raw rows, `n * 3072` bytes. */
  data: Uint8Array;
  /** Labels, `n` of them. */
  labels: number[];
}

const ROW = 3072;

function field(obj: unknown, key: string, file: string): unknown {
  if (!(obj instanceof Map)) throw new Error(`${file}: expected a dict at the top level`);
  if (!obj.has(key)) {
    throw new Error(`${file}: missing key "${key}" (has: ${[...obj.keys()].join(", ")})`);
  }
  return obj.get(key);
}

function unpickleFile(bytes: Uint8Array, file: string): unknown {
  return unpickle(bytes, { fileName: file, encoding: "latin1" });
}

/**
 * Parse one CIFAR batch pickle. `labelKey` is `"labels"` (CIFAR-10) or `"fine_labels"`
 * (CIFAR-100).
 */
export function parseCifarBatch(bytes: Uint8Array, file: string, labelKey: string): CifarBatch {
  const obj = unpickleFile(bytes, file);
  const arr = field(obj, "data", file);
  if (!isNumpyArray(arr) || !(arr.data instanceof Uint8Array)) {
    throw new Error(`${file}: "data" is not a numpy uint8 array`);
  }
  if (arr.dtype !== "|u1" && arr.dtype !== "u1" && arr.dtype !== "<u1") {
    throw new Error(`${file}: "data" has dtype ${arr.dtype}, expected uint8`);
  }
  const [n, w] = arr.shape;
  if (arr.shape.length !== 2 || w !== ROW || arr.fortran) {
    throw new Error(`${file}: "data" has shape [${arr.shape}], expected [N, 3072] (C order)`);
  }
  if (arr.data.length !== n * ROW) {
    throw new Error(`${file}: "data" holds ${arr.data.length} bytes, shape needs ${n * ROW}`);
  }
  const raw = field(obj, labelKey, file);
  if (!Array.isArray(raw) || raw.length !== n) {
    throw new Error(`${file}: "${labelKey}" must be a list of ${n} labels`);
  }
  const labels = raw.map((x, i) => {
    if (typeof x !== "number" || !Number.isInteger(x)) {
      throw new Error(`${file}: label ${i} is not an integer`);
    }
    return x;
  });
  return { data: arr.data, labels };
}

/** Parse a CIFAR meta pickle and return the list under `key` (`label_names`, `fine_label_names`). */
export function parseCifarMeta(bytes: Uint8Array, file: string, key: string): string[] {
  const names = field(unpickleFile(bytes, file), key, file);
  if (!Array.isArray(names) || !names.every((s) => typeof s === "string")) {
    throw new Error(`${file}: "${key}" is not a list of str`);
  }
  return names as string[];
}

/** Which CIFAR. */
export type CifarVariant = "CIFAR10" | "CIFAR100";

/** Folder, batch files, meta file and keys of each variant (torchvision's). */
export const CIFAR_LAYOUT: Record<CifarVariant, {
  folder: string;
  train: string[];
  test: string[];
  meta: string;
  metaKey: string;
  labelKey: string;
}> = {
  CIFAR10: {
    folder: "cifar-10-batches-py",
    train: ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"],
    test: ["test_batch"],
    meta: "batches.meta",
    metaKey: "label_names",
    labelKey: "labels",
  },
  CIFAR100: {
    folder: "cifar-100-python",
    train: ["train"],
    test: ["test"],
    meta: "meta",
    metaKey: "fine_label_names",
    labelKey: "fine_labels",
  },
};

/** An in-memory CIFAR split. */
export class CifarDataset implements Dataset {
  /** Registry name. */
  readonly name: string;
  /** Split. */
  readonly split: Split;
  /** Class names (after any post-processing the caller applied). */
  readonly classnames: string[];
  /** Prompt templates. */
  readonly templates: string[];
  /** Number of images. */
  readonly length: number;
  readonly #data: Uint8Array;
  readonly #labels: Int32Array;

  /** Build from concatenated rows and labels; checks label range. */
  constructor(
    opts: { name: string; split: Split; classnames: string[]; templates: string[]; source: string },
    data: Uint8Array,
    labels: ArrayLike<number>,
  ) {
    this.name = opts.name;
    this.split = opts.split;
    this.classnames = opts.classnames;
    this.templates = opts.templates;
    this.length = labels.length;
    if (data.length !== labels.length * ROW) {
      throw new Error(`${opts.source}: ${data.length} bytes for ${labels.length} images`);
    }
    this.#data = data;
    this.#labels = Int32Array.from(labels);
    for (let i = 0; i < this.length; i++) {
      const l = this.#labels[i];
      if (l < 0 || l >= this.classnames.length) {
        throw new Error(
          `${opts.source}: label ${l} of item ${i} outside [0, ${this.classnames.length})`,
        );
      }
    }
  }

  /** Label of item `i`. */
  labelOf(i: number): number {
    checkIndex(this, i);
    return this.#labels[i];
  }

  /** Item `i` as a 32×32 interleaved RGB image. */
  imageOf(i: number): DecodedImage {
    checkIndex(this, i);
    const row = this.#data.subarray(i * ROW, (i + 1) * ROW);
    const out = new Uint8Array(ROW);
    for (let p = 0; p < 1024; p++) {
      out[3 * p] = row[p];
      out[3 * p + 1] = row[1024 + p];
      out[3 * p + 2] = row[2048 + p];
    }
    return { data: out, width: 32, height: 32 };
  }

  /** Item `i`. */
  get(i: number): Promise<Example> {
    try {
      return Promise.resolve({ image: this.imageOf(i), label: this.#labels[i] });
    } catch (e) {
      return Promise.reject(e);
    }
  }
}

/**
 * Read a CIFAR split from `dir` (the folder holding `cifar-10-batches-py/` or `cifar-100-python/`).
 * Class names are returned raw (`aquarium_fish`); `mapNames` post-processes them.
 */
export async function readCifar(
  dir: string,
  variant: CifarVariant,
  split: Split,
  opts: { name?: string; templates?: string[]; mapNames?: (s: string) => string } = {},
): Promise<CifarDataset> {
  const lay = CIFAR_LAYOUT[variant];
  const base = `${dir}/${lay.folder}`;
  const metaPath = `${base}/${lay.meta}`;
  const names = parseCifarMeta(await readRegularFile(metaPath), metaPath, lay.metaKey);
  const batches: CifarBatch[] = [];
  for (const f of split === "train" ? lay.train : lay.test) {
    const p = `${base}/${f}`;
    batches.push(parseCifarBatch(await readRegularFile(p), p, lay.labelKey));
  }
  const total = batches.reduce((s, b) => s + b.labels.length, 0);
  const data = new Uint8Array(total * ROW);
  const labels: number[] = [];
  let o = 0;
  for (const b of batches) {
    data.set(b.data, o);
    o += b.data.length;
    labels.push(...b.labels);
  }
  const map = opts.mapNames ?? ((s: string) => s);
  return new CifarDataset(
    {
      name: opts.name ?? variant,
      split,
      classnames: names.map(map),
      templates: opts.templates ?? [],
      source: base,
    },
    data,
    labels,
  );
}
