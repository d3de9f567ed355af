/**
 * The ImageNet family as the reference (wise-ft / ZSCL) reads it, with the 1000 OpenAI class
 * names and the 80 OpenAI templates:
 *
 * - ImageNet: `<root>/ImageNet/{train,val_in_folder|val}/<wnid>/…` (`<root>/imagenet/…` also
 *   accepted), `ImageFolder` order.
 * - ImageNetSM: the first `num` classes of ImageNet train; as in the reference its "test" split is
 *   the same train subset; template `a photo of a {}.`.
 * - ImageNetSUB: `num` ImageNet train images drawn at random (seed 42) — see the caveat on
 *   {@linkcode loadImageNetSUB}.
 * - ImageNetA / ImageNetR: `<root>/imagenet-a|imagenet-r/<wnid>/…`, 200 classes, names from the
 *   reference's class sublists.
 * - ImageNetSketch: `<root>/sketch/<wnid>/…`.
 * - ImageNetV2 (matched frequency): `<root>/ImageNetV2-matched-frequency/<0..999>/*.jpeg`, label =
 *   folder number.
 * - ObjectNet: `<root>/objectnet-1.0/images/<folder>/…`, the 113 classes that overlap ImageNet,
 *   label = index of the sorted folder name; the reference crops a 2-pixel border first
 *   (`borderCrop`).
 *
 * @module
 */
import { Rng } from "../rng.ts";
import { cropImage } from "../transforms.ts";
import { decodeImage } from "../../clip/images/image.ts";
import type { Example } from "../types.ts";
import {
  FileDataset,
  type FileItem,
  hasImageExtension,
  scanImageFolder,
  walkSorted,
} from "../image_folder.ts";
import {
  classnamesFor,
  exists,
  type FamilyOptions,
  imagenetSublist,
  onlyTest,
  requirePaths,
  templatesFor,
} from "./common.ts";

/** The ImageNet folder under `root`: `ImageNet` or, failing that, `imagenet`. */
export async function imagenetDir(root: string): Promise<string> {
  for (const name of ["ImageNet", "imagenet"]) {
    if (await exists(`${root}/${name}`)) return `${root}/${name}`;
  }
  return `${root}/ImageNet`;
}

async function imagenetSplitDir(root: string, split: "train" | "test"): Promise<string> {
  const base = await imagenetDir(root);
  if (split === "train") return `${base}/train`;
  return (await exists(`${base}/val_in_folder`)) ? `${base}/val_in_folder` : `${base}/val`;
}

async function imagenetFolder(
  name: string,
  dir: string,
  opts: FamilyOptions,
  nClasses = 1000,
  manual = true,
) {
  await requirePaths(name, opts.root, [dir], manual);
  const scan = await scanImageFolder(dir);
  if (scan.classes.length !== nClasses) {
    throw new Error(`${dir}: found ${scan.classes.length} class folders, ${name} has ${nClasses}`);
  }
  return scan;
}

/** ImageNet-1k (train or validation). */
export async function loadImageNet(opts: FamilyOptions): Promise<FileDataset> {
  const dir = await imagenetSplitDir(opts.root, opts.split);
  const scan = await imagenetFolder("ImageNet", dir, opts);
  return new FileDataset({
    name: "ImageNet",
    split: opts.split,
    classnames: classnamesFor("ImageNet"),
    templates: templatesFor("openai_imagenet"),
    items: scan.items,
  });
}

/**
 * ImageNetSM: the first `num` (default 64, the reference's `--num`) classes of ImageNet train,
 * every image. The reference evaluates it on the same train subset, so both splits return it.
 */
export async function loadImageNetSM(opts: FamilyOptions): Promise<FileDataset> {
  const num = Math.trunc(opts.num ?? 64);
  if (!(num >= 1 && num <= 1000)) {
    throw new RangeError(`ImageNetSM: num must be in [1, 1000], got ${opts.num}`);
  }
  const scan = await imagenetFolder("ImageNetSM", await imagenetSplitDir(opts.root, "train"), opts);
  return new FileDataset({
    name: "ImageNetSM",
    split: opts.split,
    classnames: classnamesFor("ImageNet").slice(0, num),
    templates: templatesFor("simple"),
    items: scan.items.filter((it) => it.label < num),
  });
}

/**
 * ImageNetSUB: `num` images (default 64) of ImageNet train, all 1000 classes, drawn without
 * replacement with a seed-42 PRNG; both splits return the same subset; template
 * `a photo of a {}.`. Caveat: the reference's own file is not available to us; it draws the
 * subset with torch's `random_split(…, manual_seed(42))`, whose exact indices this does not
 * reproduce.
 */
export async function loadImageNetSUB(opts: FamilyOptions): Promise<FileDataset> {
  const num = Math.trunc(opts.num ?? 64);
  const scan = await imagenetFolder(
    "ImageNetSUB",
    await imagenetSplitDir(opts.root, "train"),
    opts,
  );
  if (!(num >= 1 && num <= scan.items.length)) {
    throw new RangeError(`ImageNetSUB: num must be in [1, ${scan.items.length}], got ${opts.num}`);
  }
  const rng = new Rng(42);
  const order = scan.items.map((_, i) => i);
  for (let i = 0; i < num; i++) {
    const j = i + rng.int(order.length - i);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return new FileDataset({
    name: "ImageNetSUB",
    split: opts.split,
    classnames: classnamesFor("ImageNet"),
    templates: templatesFor("simple"),
    items: order.slice(0, num).map((i) => scan.items[i]),
  });
}

async function loadSublisted(name: "ImageNetA" | "ImageNetR", folder: string, opts: FamilyOptions) {
  onlyTest(name, opts.split);
  const sub = imagenetSublist(name === "ImageNetA" ? "A" : "R");
  const scan = await imagenetFolder(name, `${opts.root}/${folder}`, opts, sub.length, false);
  const all = classnamesFor("ImageNet");
  return new FileDataset({
    name,
    split: "test",
    classnames: sub.map((i) => all[i]),
    templates: templatesFor("openai_imagenet"),
    items: scan.items,
  });
}

/** ImageNet-A (200 classes, test only). */
export function loadImageNetA(opts: FamilyOptions): Promise<FileDataset> {
  return loadSublisted("ImageNetA", "imagenet-a", opts);
}

/** ImageNet-R (200 classes, test only). */
export function loadImageNetR(opts: FamilyOptions): Promise<FileDataset> {
  return loadSublisted("ImageNetR", "imagenet-r", opts);
}

/** ImageNet-Sketch (1000 classes, test only). */
export async function loadImageNetSketch(opts: FamilyOptions): Promise<FileDataset> {
  onlyTest("ImageNetSketch", opts.split);
  const scan = await imagenetFolder("ImageNetSketch", `${opts.root}/sketch`, opts);
  return new FileDataset({
    name: "ImageNetSketch",
    split: "test",
    classnames: classnamesFor("ImageNet"),
    templates: templatesFor("openai_imagenet"),
    items: scan.items,
  });
}

/** ImageNetV2 matched-frequency (10,000 images, label = folder number, test only). */
export async function loadImageNetV2(opts: FamilyOptions): Promise<FileDataset> {
  onlyTest("ImageNetV2", opts.split);
  const dir = `${opts.root}/ImageNetV2-matched-frequency`;
  await requirePaths("ImageNetV2", opts.root, [dir], false);
  const files = await walkSorted(dir, (n) => n.endsWith(".jpeg"));
  const items: FileItem[] = files.map((path) => {
    const parts = path.split("/");
    const label = Number(parts[parts.length - 2]);
    if (!Number.isInteger(label) || label < 0 || label > 999) {
      throw new Error(`${path}: parent folder is not a class number 0..999`);
    }
    return { path, label };
  });
  return new FileDataset({
    name: "ImageNetV2",
    split: "test",
    classnames: classnamesFor("ImageNet"),
    templates: templatesFor("openai_imagenet"),
    items,
  });
}

/** A FileDataset whose images the reference crops by `borderCrop` pixels on every side first. */
export class ObjectNetDataset extends FileDataset {
  /** Pixels the reference crops from each border before preprocessing (2). */
  readonly borderCrop = 2;

  /** The example with its image decoded and `borderCrop` pixels cut from every side. */
  override async get(i: number): Promise<Example> {
    const ex = await super.get(i);
    if (!(ex.image instanceof Uint8Array)) return ex;
    const img = await decodeImage(ex.image, { name: ex.path });
    const b = this.borderCrop;
    if (img.width <= 2 * b || img.height <= 2 * b) {
      throw new Error(
        `${ex.path}: ${img.width}×${img.height} image is too small for ObjectNet's border crop`,
      );
    }
    const box = { top: b, left: b, height: img.height - 2 * b, width: img.width - 2 * b };
    return { ...ex, image: cropImage(img, box) };
  }
}

/** ObjectNet restricted to its 113 ImageNet-overlapping classes (test only). */
export async function loadObjectNet(opts: FamilyOptions): Promise<ObjectNetDataset> {
  onlyTest("ObjectNet", opts.split);
  const dir = `${opts.root}/objectnet-1.0/images`;
  await requirePaths("ObjectNet", opts.root, [dir], true);
  const folders = classnamesFor("ObjectNet_folders");
  const items: FileItem[] = [];
  for (const [label, f] of folders.entries()) {
    const d = `${dir}/${f}`;
    if (!(await exists(d))) {
      throw new Error(`ObjectNet: class folder ${d} is missing (incomplete extraction?)`);
    }
    for (const path of await walkSorted(d, (n) => hasImageExtension(n))) {
      items.push({ path, label });
    }
  }
  return new ObjectNetDataset({
    name: "ObjectNet",
    split: "test",
    classnames: classnamesFor("ObjectNet"),
    templates: templatesFor("openai_imagenet"),
    items,
  });
}
