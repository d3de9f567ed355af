/**
 * `loadDataset(name, {root, split})`: every dataset of the MTIL benchmark, the ImageNet family,
 * Fashion-MNIST and the Conceptual Captions sentences, by the names the Python reference's CLI
 * uses (case-sensitive), from their real on-disk layouts under the data root (default `./data`).
 *
 * A missing dataset raises a {@linkcode DatasetNotFoundError} naming the expected path and how to
 * get it (`deno task download NAME`, or the manual steps in `datasets.md`).
 *
 * @module
 */
import { synthCaptions, synthDatasetByName } from "./synth.ts";
import { isSynthDomainTaskName, SYNTH_DOMAIN_TASKS, synthDomainTask } from "./synth_domains.ts";
import { loadCifarFamily } from "./families/cifar.ts";
import { loadConceptualCaptions, type SentenceDataset } from "./families/captions.ts";
import type { FamilyOptions } from "./families/common.ts";
import {
  loadImageNet,
  loadImageNetA,
  loadImageNetR,
  loadImageNetSketch,
  loadImageNetSM,
  loadImageNetSUB,
  loadImageNetV2,
  loadObjectNet,
} from "./families/imagenet.ts";
import { loadFashionMNIST, loadMNIST } from "./families/mnist.ts";
import { loadCaltech101, loadEuroSAT, loadSUN397 } from "./families/split80.ts";
import {
  loadAircraft,
  loadDTD,
  loadFlowers,
  loadFood,
  loadOxfordPet,
  loadStanfordCars,
} from "./families/vision.ts";
import type { Dataset, Split } from "./types.ts";

export { DatasetNotFoundError } from "./families/common.ts";
export { SentenceDataset } from "./families/captions.ts";

/** The image-classification dataset names, as the reference CLI spells them. */
export const IMAGE_DATASETS = [
  "Aircraft",
  "Caltech101",
  "CIFAR10",
  "CIFAR100",
  "DTD",
  "EuroSAT",
  "Flowers",
  "Food",
  "MNIST",
  "OxfordPet",
  "StanfordCars",
  "SUN397",
  "ImageNet",
  "ImageNetSM",
  "ImageNetSUB",
  "ImageNetA",
  "ImageNetR",
  "ImageNetSketch",
  "ImageNetV2",
  "ObjectNet",
  "FashionMNIST",
] as const;

/** An image-classification dataset name. */
export type ImageDatasetName = (typeof IMAGE_DATASETS)[number];

/** Every registry name: the image datasets plus `conceptual_captions`. */
export const DATASET_NAMES: readonly string[] = [...IMAGE_DATASETS, "conceptual_captions"];

/** Options of {@linkcode loadDataset}. */
export interface LoadDatasetOptions {
  /** Data root, the reference's `--data-location` (default `"./data"`). */
  root?: string;
  /** Split (default `"train"`, or `"test"` for the evaluation-only datasets, which have no other). */
  split?: Split;
  /** ImageNetSM: number of classes; ImageNetSUB: number of images (default 64, the reference's `--num`). */
  num?: number;
}

const LOADERS: Record<ImageDatasetName, (o: FamilyOptions) => Promise<Dataset>> = {
  Aircraft: loadAircraft,
  Caltech101: loadCaltech101,
  CIFAR10: (o) => loadCifarFamily("CIFAR10", o),
  CIFAR100: (o) => loadCifarFamily("CIFAR100", o),
  DTD: loadDTD,
  EuroSAT: loadEuroSAT,
  Flowers: loadFlowers,
  Food: loadFood,
  MNIST: loadMNIST,
  OxfordPet: loadOxfordPet,
  StanfordCars: loadStanfordCars,
  SUN397: loadSUN397,
  ImageNet: loadImageNet,
  ImageNetSM: loadImageNetSM,
  ImageNetSUB: loadImageNetSUB,
  ImageNetA: loadImageNetA,
  ImageNetR: loadImageNetR,
  ImageNetSketch: loadImageNetSketch,
  ImageNetV2: loadImageNetV2,
  ObjectNet: loadObjectNet,
  FashionMNIST: loadFashionMNIST,
};

/** The evaluation-only datasets (test split only). */
export const EVAL_ONLY_DATASETS: readonly ImageDatasetName[] = [
  "ImageNetA",
  "ImageNetR",
  "ImageNetSketch",
  "ImageNetV2",
  "ObjectNet",
];

/** Whether `name` is an image dataset of the registry. */
export function isImageDatasetName(name: string): name is ImageDatasetName {
  return Object.hasOwn(LOADERS, name);
}

/** Load the Conceptual Captions sentences (same as `loadDataset("conceptual_captions")`). */
export function loadSentences(opts: { root?: string } = {}): Promise<SentenceDataset> {
  return loadConceptualCaptions({ root: opts.root ?? "./data" });
}

/**
 * Load a dataset by its reference CLI name. `conceptual_captions` returns its sentences (a
 * {@linkcode SentenceDataset}); every other name returns an image {@linkcode Dataset}.
 */
export function loadDataset(
  name: "conceptual_captions",
  opts?: LoadDatasetOptions,
): Promise<SentenceDataset>;
/** Load an image dataset by its reference CLI name. */
export function loadDataset(name: string, opts?: LoadDatasetOptions): Promise<Dataset>;
export function loadDataset(
  name: string,
  opts: LoadDatasetOptions = {},
): Promise<Dataset | SentenceDataset> {
  const root = (opts.root ?? "./data").replace(/\/+$/, "") || "/";
  const split = opts.split ??
    ((EVAL_ONLY_DATASETS as readonly string[]).includes(name) ? "test" : "train");
  if (split !== "train" && split !== "test") {
    return Promise.reject(
      new Error(`split must be "train" or "test", got ${JSON.stringify(split)}`),
    );
  }
  if (name === "conceptual_captions") return loadSentences({ root });
  if (name === "Synth-captions") return Promise.resolve(synthCaptions());
  const synth = synthDatasetByName(name, { split });
  if (synth) return Promise.resolve(synth);
  if (isSynthDomainTaskName(name)) return Promise.resolve(synthDomainTask(name, { split }));
  if (!isImageDatasetName(name)) {
    const hint = DATASET_NAMES.find((n) => n.toLowerCase() === name.toLowerCase());
    return Promise.reject(
      new Error(
        `unknown dataset ${JSON.stringify(name)}` +
          (hint ? ` (names are case-sensitive: did you mean ${hint}?)` : "") +
          `; known: ${DATASET_NAMES.join(", ")}, and the offline SynthMTIL tasks ` +
          `Synth-shape, Synth-colour, Synth-texture, Synth-count, Synth-size, Synth-position, ` +
          `the downstream tasks ${Object.keys(SYNTH_DOMAIN_TASKS).join(", ")} ` +
          `(images with captions: Synth-captions)`,
      ),
    );
  }
  return LOADERS[name]({ root, split, num: opts.num });
}
