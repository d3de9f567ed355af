/**
 * File-backed datasets: a list of `(image path, label)` items read lazily as encoded bytes, the
 * torchvision `ImageFolder` scan (class = sorted sub-folder, files sorted by walked folder then
 * name, filtered by image extension), index subsets for fixed splits, and small text helpers for
 * split files.
 *
 * @module
 */
import { readRegularFile } from "./_files.ts";
import type { Dataset, Example, Split } from "./types.ts";
import { checkIndex } from "./types.ts";

/** torchvision's `IMG_EXTENSIONS` (compared lower-cased). */
export const IMG_EXTENSIONS: readonly string[] = [
  ".jpg",
  ".jpeg",
  ".png",
  ".ppm",
  ".bmp",
  ".pgm",
  ".tif",
  ".tiff",
  ".webp",
];

/** One file-backed item. */
export interface FileItem {
  /** Image file path. */
  path: string;
  /** Class index. */
  label: number;
}

/** Constructor options of {@linkcode FileDataset}. */
export interface FileDatasetOptions {
  /** Registry name. */
  name: string;
  /** Split. */
  split: Split;
  /** Class names in label order. */
  classnames: string[];
  /** Prompt templates (`{}` placeholder). */
  templates: string[];
  /** The items. */
  items: FileItem[];
}

/** A dataset of image files, read on demand; `get` returns the encoded bytes. */
export class FileDataset implements Dataset {
  /** Registry name. */
  readonly name: string;
  /** Split. */
  readonly split: Split;
  /** Class names. */
  readonly classnames: string[];
  /** Prompt templates. */
  readonly templates: string[];
  /** The items (path and label). */
  readonly items: readonly FileItem[];

  /** Wrap items; every label must index `classnames`. */
  constructor(opts: FileDatasetOptions) {
    this.name = opts.name;
    this.split = opts.split;
    this.classnames = opts.classnames;
    this.templates = opts.templates;
    this.items = opts.items;
    const n = opts.classnames.length;
    for (const it of opts.items) {
      if (!Number.isInteger(it.label) || it.label < 0 || it.label >= n) {
        throw new Error(`${opts.name}: label ${it.label} of ${it.path} outside [0, ${n})`);
      }
    }
  }

  /** Number of items. */
  get length(): number {
    return this.items.length;
  }

  /** Label of item `i`. */
  labelOf(i: number): number {
    checkIndex(this, i);
    return this.items[i].label;
  }

  /** Path of item `i`. */
  pathOf(i: number): string {
    checkIndex(this, i);
    return this.items[i].path;
  }

  /** Read item `i`'s file; a missing or unreadable file is an error naming it. */
  async get(i: number): Promise<Example> {
    checkIndex(this, i);
    const { path, label } = this.items[i];
    let image: Uint8Array;
    try {
      image = await readRegularFile(path);
    } catch (e) {
      throw new Error(`${this.name}: cannot read image ${path}: ${(e as Error).message}`);
    }
    return { image, label, path };
  }
}

/** A view of a dataset restricted to (and reordered by) `indices`. */
export class SubsetDataset implements Dataset {
  /** Registry name. */
  readonly name: string;
  /** Split. */
  readonly split: Split;
  /** Class names. */
  readonly classnames: string[];
  /** Prompt templates. */
  readonly templates: string[];
  /** Indices into the base dataset. */
  readonly indices: readonly number[];
  readonly #base: Dataset;

  /** Check every index against the base and wrap. */
  constructor(
    base: Dataset,
    indices: readonly number[],
    opts: { name?: string; split?: Split } = {},
  ) {
    for (const [k, i] of indices.entries()) {
      if (!Number.isInteger(i) || i < 0 || i >= base.length) {
        throw new RangeError(
          `${
            opts.name ?? base.name
          }: split index ${i} (entry ${k}) outside the ${base.length} items found; ` +
            `the dataset on disk does not match the reference split (incomplete download?)`,
        );
      }
    }
    this.#base = base;
    this.indices = indices;
    this.name = opts.name ?? base.name;
    this.split = opts.split ?? base.split;
    this.classnames = base.classnames;
    this.templates = base.templates;
  }

  /** Number of items. */
  get length(): number {
    return this.indices.length;
  }

  /** Item `i` of the subset. */
  get(i: number): Promise<Example> {
    try {
      checkIndex(this, i);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#base.get(this.indices[i]);
  }

  /** Label of item `i`, when the base supports cheap labels. */
  labelOf(i: number): number {
    checkIndex(this, i);
    if (!this.#base.labelOf) throw new Error(`${this.name}: base dataset has no labelOf`);
    return this.#base.labelOf(this.indices[i]);
  }
}

/** Whether a file name has one of `extensions` (lower-cased comparison). */
export function hasImageExtension(
  name: string,
  extensions: readonly string[] = IMG_EXTENSIONS,
): boolean {
  const n = name.toLowerCase();
  return extensions.some((e) => n.endsWith(e));
}

/** Python's default `str` ordering (by code point), usable as a sort comparator. */
export function codePointCompare(a: string, b: string): number {
  if (a === b) return 0;
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  while (true) {
    const x = ia.next();
    const y = ib.next();
    if (x.done) return y.done ? 0 : -1;
    if (y.done) return 1;
    const cx = x.value.codePointAt(0)!;
    const cy = y.value.codePointAt(0)!;
    if (cx !== cy) return cx < cy ? -1 : 1;
  }
}

/** Sorted names of the sub-directories of `dir` (following symlinks). */
export async function listClassDirs(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isDirectory) out.push(e.name);
    else if (e.isSymlink) {
      try {
        if ((await Deno.stat(`${dir}/${e.name}`)).isDirectory) out.push(e.name);
      } catch { /* dangling link */ }
    }
  }
  return out.sort(codePointCompare);
}

/**
 * Files under `dir` in torchvision's order: `sorted(os.walk(dir))` (folders by path), files
 * sorted within each folder. Returns full paths.
 */
export async function walkSorted(
  dir: string,
  filter: (name: string) => boolean = () => true,
): Promise<string[]> {
  const folders: { path: string; files: string[] }[] = [];
  const visit = async (d: string, depth: number) => {
    if (depth > 64) throw new Error(`${d}: folder nesting deeper than 64 (symlink loop?)`);
    const files: string[] = [];
    const subs: string[] = [];
    for await (const e of Deno.readDir(d)) {
      let isDir = e.isDirectory;
      let isFile = e.isFile;
      if (e.isSymlink) {
        try {
          const st = await Deno.stat(`${d}/${e.name}`);
          isDir = st.isDirectory;
          isFile = st.isFile;
        } catch { /* dangling */ }
      }
      if (isDir) subs.push(e.name);
      else if (isFile && filter(e.name)) files.push(e.name);
    }
    folders.push({ path: d, files: files.sort(codePointCompare) });
    for (const s of subs) await visit(`${d}/${s}`, depth + 1);
  };
  await visit(dir, 0);
  folders.sort((a, b) => codePointCompare(a.path, b.path));
  return folders.flatMap((f) => f.files.map((n) => `${f.path}/${n}`));
}

/** Result of {@linkcode scanImageFolder}. */
export interface ImageFolderScan {
  /** Class folder names, sorted. */
  classes: string[];
  /** Items in torchvision order (class by class). */
  items: FileItem[];
}

/**
 * Scan `root/<class>/**\/<image>` like `torchvision.datasets.ImageFolder`. A class folder with no
 * image is an error (as torchvision raises), unless `allowEmpty`.
 */
export async function scanImageFolder(
  root: string,
  opts: { extensions?: readonly string[]; allowEmpty?: boolean } = {},
): Promise<ImageFolderScan> {
  const classes = await listClassDirs(root);
  if (!classes.length) throw new Error(`${root}: no class folders found`);
  const items: FileItem[] = [];
  for (const [label, c] of classes.entries()) {
    const files = await walkSorted(`${root}/${c}`, (n) => hasImageExtension(n, opts.extensions));
    if (!files.length && !opts.allowEmpty) {
      throw new Error(
        `${root}/${c}: class folder holds no image files (${IMG_EXTENSIONS.join(", ")})`,
      );
    }
    for (const path of files) items.push({ path, label });
  }
  return { classes, items };
}

/** Read a text file as trimmed non-empty lines; errors name the file. */
export async function readLines(path: string): Promise<string[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new Error(`cannot read ${path}: ${(e as Error).message}`);
  }
  return text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l.length > 0);
}
