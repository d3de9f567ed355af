/**
 * The fine-grained MTIL datasets in torchvision's on-disk layouts, with the reference's splits and
 * class-name post-processing:
 *
 * - DTD: `<root>/dtd/dtd/{images,labels}`, partition 1, splits `train1.txt` / `test1.txt`.
 * - Flowers: `<root>/flowers-102/{jpg,imagelabels.mat,setid.mat}`, `trnid` / `tstid`.
 * - Food: `<root>/food-101/{images,meta/{train,test}.json}`.
 * - OxfordPet: `<root>/oxford-iiit-pet/{images,annotations/{trainval,test}.txt}`.
 * - Aircraft: `<root>/fgvc-aircraft-2013b/data/{images,variants.txt,images_variant_{train,test}.txt}`.
 * - StanfordCars: `<root>/stanford_cars/{cars_train,cars_test,devkit/…,cars_test_annos_withlabels.mat}`.
 *
 * @module
 */
import { codePointCompare, FileDataset, type FileItem, readLines } from "../image_folder.ts";
import { loadMat, matNumbers, matToJs, matVar } from "../mat.ts";
import {
  classnamesFor,
  type FamilyOptions,
  pyTitle,
  requirePaths,
  templatesFor,
  underlineToSpace,
} from "./common.ts";

/** DTD (`dtd/dtd`, partition 1; the reference trains on `train`, not `trainval`). */
export async function loadDTD(opts: FamilyOptions): Promise<FileDataset> {
  const base = `${opts.root}/dtd/dtd`;
  const list = `${base}/labels/${opts.split}1.txt`;
  await requirePaths("DTD", opts.root, [`${base}/images`, list], false);
  const entries = (await readLines(list)).map((line, i) => {
    const parts = line.split("/");
    if (parts.length !== 2) {
      throw new Error(`${list}: line ${i + 1} is not "<class>/<file>": ${line}`);
    }
    return { cls: parts[0], file: parts[1] };
  });
  const classes = [...new Set(entries.map((e) => e.cls))].sort(codePointCompare);
  const idx = new Map(classes.map((c, i) => [c, i]));
  const items: FileItem[] = entries.map((e) => ({
    path: `${base}/images/${e.cls}/${e.file}`,
    label: idx.get(e.cls)!,
  }));
  return new FileDataset({
    name: "DTD",
    split: opts.split,
    classnames: classes.map(underlineToSpace),
    templates: templatesFor("DTD"),
    items,
  });
}

/** Flowers-102 (`trnid` for train, `tstid` for test; hard-coded reference class names). */
export async function loadFlowers(opts: FamilyOptions): Promise<FileDataset> {
  const base = `${opts.root}/flowers-102`;
  const setidPath = `${base}/setid.mat`;
  const labelsPath = `${base}/imagelabels.mat`;
  await requirePaths("Flowers", opts.root, [`${base}/jpg`, setidPath, labelsPath], false);
  const setid = await loadMat(setidPath);
  const ids = matNumbers(setid, opts.split === "train" ? "trnid" : "tstid", setidPath);
  const labels = matNumbers(await loadMat(labelsPath), "labels", labelsPath);
  const items: FileItem[] = ids.map((id) => {
    if (!Number.isInteger(id) || id < 1 || id > labels.length) {
      throw new Error(`${setidPath}: image id ${id} outside [1, ${labels.length}]`);
    }
    return {
      path: `${base}/jpg/image_${String(id).padStart(5, "0")}.jpg`,
      label: labels[id - 1] - 1,
    };
  });
  return new FileDataset({
    name: "Flowers",
    split: opts.split,
    classnames: classnamesFor("Flowers").map(underlineToSpace),
    templates: templatesFor("Flowers"),
    items,
  });
}

/** Food-101 (`meta/{split}.json`; classes sorted, items in the JSON's order). */
export async function loadFood(opts: FamilyOptions): Promise<FileDataset> {
  const base = `${opts.root}/food-101`;
  const meta = `${base}/meta/${opts.split}.json`;
  await requirePaths("Food", opts.root, [`${base}/images`, meta], false);
  let json: unknown;
  try {
    json = JSON.parse(await Deno.readTextFile(meta));
  } catch (e) {
    throw new Error(`${meta}: ${(e as Error).message}`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new Error(`${meta}: expected an object of class -> image list`);
  }
  const metadata = json as Record<string, unknown>;
  const classes = Object.keys(metadata).sort(codePointCompare);
  const idx = new Map(classes.map((c, i) => [c, i]));
  const items: FileItem[] = [];
  for (const [cls, rels] of Object.entries(metadata)) {
    if (!Array.isArray(rels) || !rels.every((r) => typeof r === "string")) {
      throw new Error(`${meta}: class "${cls}" must map to a list of strings`);
    }
    for (const rel of rels as string[]) {
      items.push({ path: `${base}/images/${rel}.jpg`, label: idx.get(cls)! });
    }
  }
  return new FileDataset({
    name: "Food",
    split: opts.split,
    classnames: classes.map(underlineToSpace),
    templates: templatesFor("Food"),
    items,
  });
}

/**
 * Oxford-IIIT Pet (`trainval` for train, `test`); class names as torchvision builds them
 * (`american_pit_bull_terrier` → `American Pit Bull Terrier`), ordered by label.
 */
export async function loadOxfordPet(opts: FamilyOptions): Promise<FileDataset> {
  const base = `${opts.root}/oxford-iiit-pet`;
  const list = `${base}/annotations/${opts.split === "train" ? "trainval" : "test"}.txt`;
  await requirePaths("OxfordPet", opts.root, [`${base}/images`, list], false);
  const ids: string[] = [];
  const labels: number[] = [];
  for (const [i, line] of (await readLines(list)).entries()) {
    const [id, label] = line.split(/\s+/);
    const l = Number(label);
    if (!id || !Number.isInteger(l) || l < 1) {
      throw new Error(`${list}: line ${i + 1} is not "<image_id> <label> …": ${line}`);
    }
    ids.push(id);
    labels.push(l - 1);
  }
  const byLabel = new Map<number, string>();
  for (const [i, id] of ids.entries()) {
    const raw = id.slice(0, id.lastIndexOf("_") < 0 ? id.length : id.lastIndexOf("_"));
    const prev = byLabel.get(labels[i]);
    if (prev !== undefined && prev !== raw) {
      throw new Error(`${list}: label ${labels[i] + 1} used for both "${prev}" and "${raw}"`);
    }
    byLabel.set(labels[i], raw);
  }
  const sorted = [...byLabel.keys()].sort((a, b) => a - b);
  if (sorted.some((l, i) => l !== i)) {
    throw new Error(`${list}: labels are not contiguous from 1 (found ${sorted.length} classes)`);
  }
  const classnames = sorted.map((l) => byLabel.get(l)!.split("_").map(pyTitle).join(" "));
  return new FileDataset({
    name: "OxfordPet",
    split: opts.split,
    classnames: classnames.map(underlineToSpace),
    templates: templatesFor("OxfordPet"),
    items: ids.map((id, i) => ({ path: `${base}/images/${id}.jpg`, label: labels[i] })),
  });
}

/** FGVC-Aircraft at the `variant` level (100 classes), splits `train` / `test` as the reference. */
export async function loadAircraft(opts: FamilyOptions): Promise<FileDataset> {
  const base = `${opts.root}/fgvc-aircraft-2013b/data`;
  const variants = `${base}/variants.txt`;
  const list = `${base}/images_variant_${opts.split}.txt`;
  await requirePaths("Aircraft", opts.root, [`${base}/images`, variants, list], false);
  const classes = await readLines(variants);
  const idx = new Map(classes.map((c, i) => [c, i]));
  const items: FileItem[] = (await readLines(list)).map((line, i) => {
    const sp = line.indexOf(" ");
    const image = line.slice(0, sp);
    const variant = line.slice(sp + 1);
    const label = idx.get(variant);
    if (sp <= 0 || label === undefined) {
      throw new Error(`${list}: line ${i + 1} names no known variant: ${line}`);
    }
    return { path: `${base}/images/${image}.jpg`, label };
  });
  return new FileDataset({
    name: "Aircraft",
    split: opts.split,
    classnames: classes.map(underlineToSpace),
    templates: templatesFor("Aircraft"),
    items,
  });
}

/** Stanford Cars from the devkit `.mat` files (manual download). */
export async function loadStanfordCars(opts: FamilyOptions): Promise<FileDataset> {
  const base = `${opts.root}/stanford_cars`;
  const meta = `${base}/devkit/cars_meta.mat`;
  const annos = opts.split === "train"
    ? `${base}/devkit/cars_train_annos.mat`
    : `${base}/cars_test_annos_withlabels.mat`;
  const images = `${base}/${opts.split === "train" ? "cars_train" : "cars_test"}`;
  await requirePaths("StanfordCars", opts.root, [meta, annos, images], true);
  const names = matToJs(matVar(await loadMat(meta), "class_names", meta));
  if (!Array.isArray(names) || !names.every((n) => typeof n === "string")) {
    throw new Error(`${meta}: "class_names" is not a list of strings`);
  }
  const list = matToJs(matVar(await loadMat(annos), "annotations", annos));
  const rows = Array.isArray(list) ? list : [list];
  const items: FileItem[] = rows.map((a, i) => {
    if (typeof a !== "object" || a === null || Array.isArray(a)) {
      throw new Error(`${annos}: annotation ${i} is not a struct`);
    }
    const rec = a as Record<string, unknown>;
    if (typeof rec.fname !== "string" || typeof rec.class !== "number") {
      throw new Error(`${annos}: annotation ${i} lacks "fname"/"class"`);
    }
    return { path: `${images}/${rec.fname}`, label: rec.class - 1 };
  });
  return new FileDataset({
    name: "StanfordCars",
    split: opts.split,
    classnames: (names as string[]).map(underlineToSpace),
    templates: templatesFor("StanfordCars"),
    items,
  });
}
