/**
 * Shared pieces of the dataset families: the class-name and template data files, the reference's
 * name post-processing, and "dataset not found" errors that say how to get the data.
 *
 * @module
 */
import classnamesJson from "../../data/classnames.json" with { type: "json" };
import templatesJson from "../../data/templates.json" with { type: "json" };
import type { Split } from "../types.ts";

/** Options every family loader receives. */
export interface FamilyOptions {
  /** Data root (the reference's `--data-location`, default `./data`). */
  root: string;
  /** Split. */
  split: Split;
  /** Size parameter of ImageNetSM (classes) and ImageNetSUB (images). */
  num?: number;
}

type TemplateKey = Exclude<keyof typeof templatesJson, "about">;

/** Templates of a dataset from `data/templates.json` (a fresh copy). */
export function templatesFor(key: TemplateKey): string[] {
  return [...templatesJson[key]];
}

type NameKey =
  | "Caltech101"
  | "EuroSAT"
  | "Flowers"
  | "MNIST"
  | "FashionMNIST"
  | "ImageNet"
  | "ObjectNet"
  | "ObjectNet_folders";

/** A class-name list from `data/classnames.json` (a fresh copy). */
export function classnamesFor(key: NameKey): string[] {
  return [...classnamesJson[key]];
}

/** The ImageNet-A / ImageNet-R 200-class sublists (indices into the 1000 ImageNet classes). */
export function imagenetSublist(which: "A" | "R"): number[] {
  return [...(which === "A" ? classnamesJson.ImageNetA_sublist : classnamesJson.ImageNetR_sublist)];
}

/** The reference's `process_labels`: `_` → space. */
export function underlineToSpace(s: string): string {
  return s.replaceAll("_", " ");
}

/** Python's `str.title()` for ASCII/Unicode letters: first cased letter of each run upper-cased. */
export function pyTitle(s: string): string {
  let out = "";
  let prevCased = false;
  for (const ch of s) {
    const lower = ch.toLowerCase();
    const upper = ch.toUpperCase();
    const cased = lower !== upper;
    out += cased ? (prevCased ? lower : upper) : ch;
    prevCased = cased;
  }
  return out;
}

/** How to obtain a dataset: the auto-download command or a pointer to the manual steps. */
export function howToGet(name: string, root: string, manual: boolean): string {
  const rootArg = root === "./data" || root === "data" ? "" : ` --root ${root}`;
  return manual
    ? `it cannot be downloaded automatically: run \`deno task download ${name}${rootArg}\` to print the manual steps (also in datasets.md, section "${name}")`
    : `get it with \`deno task download ${name}${rootArg}\``;
}

/** A dataset's files are not where the reference layout puts them. */
export class DatasetNotFoundError extends Error {
  /** Registry name. */
  readonly dataset: string;
  /** The path that was expected. */
  readonly expectedPath: string;
  /** Build the message naming the dataset, the path and how to get it. */
  constructor(dataset: string, expectedPath: string, how: string) {
    super(`${dataset} not found: expected ${expectedPath}; ${how}`);
    this.name = "DatasetNotFoundError";
    this.dataset = dataset;
    this.expectedPath = expectedPath;
  }
}

/** Whether a path exists (file or directory). */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** Throw a {@linkcode DatasetNotFoundError} unless every path exists. */
export async function requirePaths(
  name: string,
  root: string,
  paths: string[],
  manual: boolean,
): Promise<void> {
  for (const p of paths) {
    if (!(await exists(p))) throw new DatasetNotFoundError(name, p, howToGet(name, root, manual));
  }
}

/** Reject a split a dataset does not have. */
export function onlyTest(name: string, split: Split): void {
  if (split !== "test") {
    throw new Error(
      `${name} is an evaluation-only dataset: it has no "${split}" split (use split "test")`,
    );
  }
}
