/**
 * The dataset contract shared by the readers, the registry (`loadDataset`) and the batch
 * loader: random access to `{image, label}` examples plus class names and prompt templates.
 *
 * @module
 */

/** A decoded image: 8-bit RGB, interleaved (`[r, g, b, r, g, b, …]`, row-major, no padding). */
export interface DecodedImage {
  /** Pixel bytes, length `width * height * 3`. */
  data: Uint8Array;
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
}

/** One dataset item. */
export interface Example {
  /**
   * Either an already decoded RGB image (IDX, CIFAR: small arrays in memory) or the encoded file
   * bytes (JPEG/PNG/…, image folders) for the loader to decode.
   */
  image: DecodedImage | Uint8Array;
  /** Class index into {@linkcode Dataset.classnames} (0-based). */
  label: number;
  /** Source file of the image when it came from one (for error messages). */
  path?: string;
}

/** Train or test split. */
export type Split = "train" | "test";

/**
 * A random-access classification dataset.
 *
 * Templates are strings with a `{}` placeholder for the class name (e.g. `"a photo of a {}."`),
 * formatted with {@linkcode formatTemplate}; the first template is the training prompt.
 */
export interface Dataset {
  /** Registry name, e.g. `"CIFAR10"`. */
  name: string;
  /** Which split this is. */
  split: Split;
  /** Class names in label order (after the reference's post-processing). */
  classnames: string[];
  /** Prompt templates with a `{}` placeholder; the first is the training prompt. */
  templates: string[];
  /** Number of examples. */
  length: number;
  /** Load example `i` (0 ≤ i < length); rejects with a RangeError outside. */
  get(i: number): Promise<Example>;
  /** Label of example `i` without loading the image (cheap; optional). */
  labelOf?(i: number): number;
}

/** A random-access source of sentences (e.g. Conceptual Captions), used as reference text. */
export interface TextDataset {
  /** Registry name, e.g. `"conceptual_captions"`. */
  name: string;
  /** Number of sentences. */
  length: number;
  /** Sentence `i` (0 ≤ i < length). */
  get(i: number): Promise<string>;
}

/** Replace every `{}` in `template` with `classname`: `formatTemplate("a photo of a {}.", "dog")`. */
export function formatTemplate(template: string, classname: string): string {
  return template.split("{}").join(classname);
}

/** Whether an example's image is already decoded (as opposed to encoded file bytes). */
export function isDecoded(image: DecodedImage | Uint8Array): image is DecodedImage {
  return !(image instanceof Uint8Array);
}

/** Throw a RangeError naming the dataset when `i` is not an integer index in `[0, length)`. */
export function checkIndex(ds: { name: string; length: number }, i: number): void {
  if (!Number.isInteger(i) || i < 0 || i >= ds.length) {
    throw new RangeError(`${ds.name}: index ${i} out of range [0, ${ds.length})`);
  }
}
