/**
 * The datasets the reference splits 80/20 with `random_split(…, manual_seed(42))`: Caltech101,
 * EuroSAT and SUN397. The split is read from `data/splits/<Name>.json` (index lists into the item
 * order below, drawn with torch 1.13), so no torch RNG is needed.
 *
 * Item orders: Caltech101 — categories `sorted(os.listdir)` without `BACKGROUND_Google`, images
 * `image_0001.jpg … image_<n>.jpg` where n counts the folder's entries; EuroSAT — `ImageFolder`
 * over `eurosat/2750`; SUN397 — every `sun_*.jpg` under `SUN397/`, sorted by relative path (the
 * reference's `rglob` order depends on the file system; sorted is the reproducible choice).
 *
 * @module
 */
import {
  codePointCompare,
  FileDataset,
  type FileItem,
  listClassDirs,
  readLines,
  scanImageFolder,
  SubsetDataset,
  walkSorted,
} from "../image_folder.ts";
import type { Dataset } from "../types.ts";
import {
  classnamesFor,
  type FamilyOptions,
  requirePaths,
  templatesFor,
  underlineToSpace,
} from "./common.ts";

/** A fixed split as stored in `data/splits/*.json`. */
export interface SplitFile {
  /** Dataset name. */
  dataset: string;
  /** Number of items in the full dataset. */
  n: number;
  /** Train indices. */
  train: number[];
  /** Test indices. */
  test: number[];
}

/** Load the stored split of one of the three datasets. */
export async function loadSplit(name: "Caltech101" | "EuroSAT" | "SUN397"): Promise<SplitFile> {
  // Literal specifiers keep the JSON files in the module graph (and in published packages).
  const mod = name === "Caltech101"
    ? await import("../../data/splits/Caltech101.json", { with: { type: "json" } })
    : name === "EuroSAT"
    ? await import("../../data/splits/EuroSAT.json", { with: { type: "json" } })
    : await import("../../data/splits/SUN397.json", { with: { type: "json" } });
  return mod.default as SplitFile;
}

/** Restrict `full` to the stored split, checking that the item count matches the reference. */
export async function applySplit(
  name: "Caltech101" | "EuroSAT" | "SUN397",
  full: Dataset,
  opts: FamilyOptions,
): Promise<SubsetDataset> {
  const split = await loadSplit(name);
  if (full.length !== split.n) {
    throw new Error(
      `${name}: found ${full.length} images under ${opts.root}, the reference split expects ${split.n} ` +
        `(incomplete or modified dataset; re-run \`deno task download ${name}\` or check the folder)`,
    );
  }
  return new SubsetDataset(full, opts.split === "train" ? split.train : split.test, {
    split: opts.split,
  });
}

/** All Caltech101 items in the reference order (before the split). */
export async function caltech101Items(root: string): Promise<FileItem[]> {
  const dir = `${root}/caltech101/101_ObjectCategories`;
  const cats = (await listClassDirs(dir)).filter((c) => c !== "BACKGROUND_Google");
  const items: FileItem[] = [];
  for (const [label, c] of cats.entries()) {
    let n = 0;
    for await (const _ of Deno.readDir(`${dir}/${c}`)) n++;
    for (let i = 1; i <= n; i++) {
      items.push({ path: `${dir}/${c}/image_${String(i).padStart(4, "0")}.jpg`, label });
    }
  }
  return items;
}

/** Caltech101 with the hard-coded reference class names (101 classes). */
export async function loadCaltech101(opts: FamilyOptions): Promise<SubsetDataset> {
  await requirePaths(
    "Caltech101",
    opts.root,
    [`${opts.root}/caltech101/101_ObjectCategories`],
    false,
  );
  const full = new FileDataset({
    name: "Caltech101",
    split: opts.split,
    classnames: classnamesFor("Caltech101"),
    templates: templatesFor("Caltech101"),
    items: await caltech101Items(opts.root),
  });
  return applySplit("Caltech101", full, opts);
}

/** EuroSAT (`ImageFolder` over `eurosat/2750`) with the reference's descriptive class names. */
export async function loadEuroSAT(opts: FamilyOptions): Promise<SubsetDataset> {
  const dir = `${opts.root}/eurosat/2750`;
  await requirePaths("EuroSAT", opts.root, [dir], false);
  const scan = await scanImageFolder(dir);
  const names = classnamesFor("EuroSAT");
  if (scan.classes.length !== names.length) {
    throw new Error(
      `${dir}: found ${scan.classes.length} class folders, EuroSAT has ${names.length}`,
    );
  }
  const full = new FileDataset({
    name: "EuroSAT",
    split: opts.split,
    classnames: names,
    templates: templatesFor("EuroSAT"),
    items: scan.items,
  });
  return applySplit("EuroSAT", full, opts);
}

/** SUN397 (`ClassName.txt` names without the `/x/` prefix, `_`→space; sorted `sun_*.jpg`). */
export async function loadSUN397(opts: FamilyOptions): Promise<SubsetDataset> {
  const dir = `${opts.root}/SUN397`;
  const classFile = `${dir}/ClassName.txt`;
  await requirePaths("SUN397", opts.root, [classFile], false);
  const classes = (await readLines(classFile)).map((c) => c.slice(3).trim());
  const idx = new Map(classes.map((c, i) => [c, i]));
  const files = await walkSorted(dir, (n) => n.startsWith("sun_") && n.endsWith(".jpg"));
  const rels = files.map((p) => p.slice(dir.length + 1)).sort(codePointCompare);
  const items: FileItem[] = rels.map((rel) => {
    const parts = rel.split("/");
    const cls = parts.slice(1, -1).join("/");
    const label = idx.get(cls);
    if (label === undefined) {
      throw new Error(`${dir}/${rel}: folder "${cls}" is not in ${classFile}`);
    }
    return { path: `${dir}/${rel}`, label };
  });
  const full = new FileDataset({
    name: "SUN397",
    split: opts.split,
    classnames: classes.map(underlineToSpace),
    templates: templatesFor("SUN397"),
    items,
  });
  return applySplit("SUN397", full, opts);
}
