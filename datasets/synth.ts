/**
 * SynthMTIL: a deterministic, procedurally generated benchmark that needs no download.
 *
 * Every image shows 1–4 objects of one shape, colour and size, grouped in one quadrant, on a
 * grey textured background; every image carries ALL attributes, drawn at random, so that a
 * model trained on one attribute can still be evaluated zero-shot on the others. From it:
 *
 * - {@linkcode synthCaptions}: an image–caption stream ("two small red triangles on a striped
 *   background in the top left") for contrastive pretraining of a tiny CLIP and as reference
 *   data for ZSCL;
 * - {@linkcode synthTask}: one classification {@linkcode Dataset} per attribute (shape, colour,
 *   texture, count, size, position), with class names and prompt templates;
 * - {@linkcode SYNTH_ORDER}: a task sequence over these attributes; {@linkcode synthDatasetByName}
 *   resolves registry names such as `"Synth-shape"`.
 *
 * This is the *pretraining domain*: the embedded model learns it from the captions. The demo's
 * downstream tasks, with held-out concepts in other visual domains, are in `synth_domains.ts`.
 *
 * Item `i` of a split is rendered from its own random stream `hashSeed(seed, split, i)`, so
 * random access is cheap and the same seed gives identical bytes everywhere; the train, test
 * and caption streams use different stream ids (disjoint seeds).
 *
 * @example
 * ```ts
 * import { synthTask } from "jsr:@mtil/mtil/datasets";
 * const ds = synthTask("colour", { seed: 0, split: "train", n: 100 });
 * const { image, label } = await ds.get(0);
 * console.log(ds.classnames[label], image instanceof Uint8Array ? image.length : image.width);
 * ```
 *
 * @module
 */
import { hashSeed, Rng } from "./rng.ts";
import {
  type BackgroundSpec,
  hsvToRgb,
  renderScene,
  type ShapeKind,
  type ShapeSpec,
  type TextureKind,
} from "./synth_render.ts";
import { checkIndex, type Dataset, type DecodedImage, type Example, type Split } from "./types.ts";

/** The attributes every SynthMTIL image carries. */
export type SynthAttribute = "shape" | "colour" | "texture" | "count" | "size" | "position";

/** Every attribute, in caption order of importance. */
export const SYNTH_ATTRIBUTE_NAMES: readonly SynthAttribute[] = [
  "shape",
  "colour",
  "texture",
  "count",
  "size",
  "position",
];

/** The values (= class names) of each attribute, in label order. */
export const SYNTH_VALUES: Readonly<Record<SynthAttribute, readonly string[]>> = {
  shape: ["circle", "square", "triangle", "cross", "star", "ring"],
  colour: ["red", "yellow", "green", "cyan", "blue", "purple"],
  texture: ["plain", "striped", "dotted", "checkered"],
  count: ["one", "two", "three", "four"],
  size: ["small", "large"],
  position: ["top left", "top right", "bottom left", "bottom right"],
};

/** Centre hue in degrees of each colour class (same order as `SYNTH_VALUES.colour`). */
export const SYNTH_HUES: readonly number[] = [0, 55, 120, 180, 230, 285];

/** Plural nouns of the shapes (same order as `SYNTH_VALUES.shape`). */
const SHAPE_PLURALS = ["circles", "squares", "triangles", "crosses", "stars", "rings"];

/**
 * Prompt templates per attribute; `{}` is the class name and the first template is the
 * training prompt. They are phrased like fragments of the captions that
 * {@linkcode synthCaptions} produces, so that a CLIP pretrained on those captions can
 * classify zero-shot.
 */
export const SYNTH_TEMPLATES: Readonly<Record<SynthAttribute, readonly string[]>> = {
  shape: ["a photo of a {}.", "a {}.", "a rendering of a {}.", "a picture of a {} shape."],
  colour: [
    "a photo of a {} object.",
    "a {} object.",
    "a rendering of something {}.",
    "a picture of a {} shape.",
  ],
  texture: [
    "a photo of an object on a {} background.",
    "an object on a {} background.",
    "a {} background.",
    "a rendering with a {} background.",
  ],
  count: [
    "a photo of {} objects.",
    "{} objects.",
    "a rendering of {} shapes.",
    "a picture with {} objects.",
  ],
  size: [
    "a photo of a {} object.",
    "a {} object.",
    "a rendering of {} shapes.",
    "a picture of a {} shape.",
  ],
  position: [
    "a photo of an object in the {}.",
    "an object in the {}.",
    "a rendering of shapes in the {}.",
    "a picture with objects in the {} corner.",
  ],
};

/** The default SynthMTIL task sequence (one classification task per attribute). */
export const SYNTH_ORDER: readonly SynthAttribute[] = ["shape", "colour", "texture", "count"];

/** Attribute values of one image, as class indices into {@linkcode SYNTH_VALUES}. */
export interface SynthAttributes {
  /** Index into `SYNTH_VALUES.shape`. */
  shape: number;
  /** Index into `SYNTH_VALUES.colour`. */
  colour: number;
  /** Index into `SYNTH_VALUES.texture`. */
  texture: number;
  /** Index into `SYNTH_VALUES.count` (the number of objects minus one). */
  count: number;
  /** Index into `SYNTH_VALUES.size`. */
  size: number;
  /** Index into `SYNTH_VALUES.position`. */
  position: number;
}

/** Smallest supported image side. */
export const SYNTH_MIN_SIZE = 16;
/** Largest supported image side. */
export const SYNTH_MAX_SIZE = 64;

/** Stream ids mixed into the per-item seeds: train, test and captions never share a seed. */
const STREAM: Record<Split | "captions", number> = { train: 1, test: 2, captions: 3 };

function checkSize(size: number): void {
  if (!Number.isInteger(size) || size < SYNTH_MIN_SIZE || size > SYNTH_MAX_SIZE) {
    throw new RangeError(
      `SynthMTIL: image size must be an integer in [${SYNTH_MIN_SIZE}, ${SYNTH_MAX_SIZE}], got ${size}`,
    );
  }
}

/** Draw every attribute uniformly, keeping those given in `fixed`. */
export function sampleAttributes(rng: Rng, fixed: Partial<SynthAttributes> = {}): SynthAttributes {
  const a = {} as SynthAttributes;
  for (const name of SYNTH_ATTRIBUTE_NAMES) {
    const k = SYNTH_VALUES[name].length;
    const v = rng.int(k); // always draw, so fixing one attribute leaves the others' stream intact
    a[name] = fixed[name] ?? v;
    if (!Number.isInteger(a[name]) || a[name] < 0 || a[name] >= k) {
      throw new RangeError(`SynthMTIL: ${name} must be in [0, ${k}), got ${a[name]}`);
    }
  }
  return a;
}

function backgroundFor(texture: number, rng: Rng, size: number): BackgroundSpec {
  return textureBackground(SYNTH_VALUES.texture[texture] as TextureKind, rng, size);
}

/**
 * A random background of the given pattern in two grey tones (colour them through
 * `colour1`/`colour2` afterwards for other visual domains); geometry scales with `size`.
 */
export function textureBackground(kind: TextureKind, rng: Rng, size: number): BackgroundSpec {
  const k = size / 32;
  const tone1 = rng.uniform(0.2, 0.8);
  const delta = rng.uniform(0.25, 0.4);
  let tone2 = tone1 + (rng.random() < 0.5 ? -delta : delta);
  if (tone2 < 0.05 || tone2 > 0.95) tone2 = tone1 + (tone2 < 0.05 ? delta : -delta);
  const orientations = [0, Math.PI / 2, Math.PI / 4, (3 * Math.PI) / 4];
  const angle = rng.choice(orientations);
  const period = kind === "striped"
    ? rng.uniform(4, 6) * k
    : kind === "dotted"
    ? rng.uniform(5, 7) * k
    : rng.uniform(3.5, 5.5) * k;
  const dotRadius = period * rng.uniform(0.22, 0.3);
  return {
    kind,
    tone1,
    tone2,
    period,
    angle,
    dotRadius,
    offsetX: rng.uniform(0, period),
    offsetY: rng.uniform(0, period),
  };
}

/**
 * Geometry of a scene: background plus shapes, fully determined by the attributes and `rng`.
 * Objects sit in a 2×2 grid of slots inside their quadrant (a single object anywhere in it);
 * a margin keeps neighbouring objects at least 1.5 px apart at 32 px.
 */
export function sceneFor(
  attrs: SynthAttributes,
  rng: Rng,
  size: number,
): { background: BackgroundSpec; shapes: ShapeSpec[] } {
  checkSize(size);
  const k = size / 32;
  const background = backgroundFor(attrs.texture, rng, size);
  const half = size / 2;
  const slot = size / 4;
  const margin = 0.75 * k;
  const radius = attrs.size === 1 ? slot / 2 - margin : 2.2 * k;
  const qx = (attrs.position & 1) * half;
  const qy = (attrs.position >> 1) * half;
  const n = attrs.count + 1;
  const kind = SYNTH_VALUES.shape[attrs.shape] as ShapeKind;
  const hue = SYNTH_HUES[attrs.colour] + rng.uniform(-6, 6);
  const rgb = hsvToRgb(hue, rng.uniform(0.75, 1), rng.uniform(0.78, 1));
  const rotates = kind !== "circle" && kind !== "ring";
  const shapes: ShapeSpec[] = [];
  const centres: [number, number][] = [];
  if (n === 1) {
    const lo = radius + margin, hi = half - radius - margin;
    centres.push([qx + rng.uniform(lo, hi), qy + rng.uniform(lo, hi)]);
  } else {
    const slots = rng.shuffle([0, 1, 2, 3]).slice(0, n).sort((a, b) => a - b);
    const jitter = Math.max(0, slot / 2 - radius - margin);
    for (const s of slots) {
      centres.push([
        qx + (s & 1) * slot + slot / 2 + rng.uniform(-jitter, jitter),
        qy + (s >> 1) * slot + slot / 2 + rng.uniform(-jitter, jitter),
      ]);
    }
  }
  for (const [cx, cy] of centres) {
    const angle = rotates ? rng.uniform(-Math.PI / 12, Math.PI / 12) : 0;
    shapes.push({ kind, cx, cy, radius, angle, rgb });
  }
  return { background, shapes };
}

/** Render the image of `attrs` with the random stream `rng` (RGB, `size × size`). */
export function renderAttributes(attrs: SynthAttributes, rng: Rng, size: number): DecodedImage {
  const { background, shapes } = sceneFor(attrs, rng, size);
  return { data: renderScene(size, background, shapes), width: size, height: size };
}

/**
 * The canonical caption of an image: "two small red triangles on a striped background in the
 * top left" (singular: "one large blue circle on a plain background in the bottom right").
 */
export function captionOf(a: SynthAttributes): string {
  const n = a.count + 1;
  const noun = n === 1 ? SYNTH_VALUES.shape[a.shape] : SHAPE_PLURALS[a.shape];
  return `${SYNTH_VALUES.count[a.count]} ${SYNTH_VALUES.size[a.size]} ${
    SYNTH_VALUES.colour[a.colour]
  } ${noun} on a ${SYNTH_VALUES.texture[a.texture]} background in the ${
    SYNTH_VALUES.position[a.position]
  }`;
}

/**
 * A varied caption: the canonical one half of the time, otherwise "a photo of …" with a random
 * subset of the attributes (at least one), phrased like the prompt templates so that zero-shot
 * prompts are in distribution for a CLIP pretrained on these captions.
 */
export function variedCaption(a: SynthAttributes, rng: Rng): string {
  if (rng.random() < 0.5) return captionOf(a);
  const prefix = rng.choice(["a photo of", "a rendering of", "a picture of"]);
  for (;;) {
    const keep = (p: number) => rng.random() < p;
    const kCount = keep(0.4), kSize = keep(0.4), kColour = keep(0.5), kShape = keep(0.5);
    const kTexture = keep(0.35), kPosition = keep(0.35);
    if (!(kCount || kSize || kColour || kShape || kTexture || kPosition)) continue;
    const n = a.count + 1;
    const plural = n > 1;
    const words: string[] = [];
    if (kCount) words.push(SYNTH_VALUES.count[a.count]);
    else if (!plural) {
      words.push(/^[aeiou]/.test(firstWord(a, kSize, kColour, kShape)) ? "an" : "a");
    }
    if (kSize) words.push(SYNTH_VALUES.size[a.size]);
    if (kColour) words.push(SYNTH_VALUES.colour[a.colour]);
    if (kShape) words.push(plural ? SHAPE_PLURALS[a.shape] : SYNTH_VALUES.shape[a.shape]);
    else words.push(plural ? "objects" : "object");
    if (kTexture) words.push(`on a ${SYNTH_VALUES.texture[a.texture]} background`);
    if (kPosition) words.push(`in the ${SYNTH_VALUES.position[a.position]}`);
    return `${prefix} ${words.join(" ")}.`;
  }
}

function firstWord(a: SynthAttributes, kSize: boolean, kColour: boolean, kShape: boolean): string {
  if (kSize) return SYNTH_VALUES.size[a.size];
  if (kColour) return SYNTH_VALUES.colour[a.colour];
  if (kShape) return SYNTH_VALUES.shape[a.shape];
  return "object";
}

/** Options shared by the SynthMTIL generators. */
export interface SynthOptions {
  /** Base seed (default 0). */
  seed?: number;
  /** Number of items (defaults: 10 000 train, 2 000 test, 50 000 captions). */
  n?: number;
  /** Image side in pixels, 16–64 (default 32). */
  size?: number;
}

/** One item of the caption stream. */
export interface SynthCaptionItem {
  /** The rendered image. */
  image: DecodedImage;
  /** Its caption (canonical or varied, see {@linkcode SynthCaptionOptions.style}). */
  caption: string;
  /** Its attributes. */
  attributes: SynthAttributes;
}

/** Options of {@linkcode synthCaptions}. */
export interface SynthCaptionOptions extends SynthOptions {
  /**
   * `"full"`: always the canonical caption; `"varied"` (default): half canonical, half
   * "a photo of …" with a random subset of attributes (see {@linkcode variedCaption}).
   */
  style?: "full" | "varied";
}

/**
 * The SynthMTIL image–caption stream. It is also a {@linkcode Dataset} (label = shape, so it
 * can go through the batch loader; look captions up by the batch's `indices`).
 */
export class SynthCaptions implements Dataset {
  /** Registry name. */
  readonly name = "Synth-captions";
  /** Always `"train"`: the caption stream has its own seeds, disjoint from the task splits. */
  readonly split: Split = "train";
  /** Shape names (the label of every item is its shape). */
  readonly classnames: string[] = [...SYNTH_VALUES.shape];
  /** Shape templates. */
  readonly templates: string[] = [...SYNTH_TEMPLATES.shape];
  /** Number of items. */
  readonly length: number;
  /** Image side in pixels. */
  readonly size: number;
  /** Base seed. */
  readonly seed: number;
  /** Caption style. */
  readonly style: "full" | "varied";

  /** See {@linkcode synthCaptions}. */
  constructor(opts: SynthCaptionOptions = {}) {
    this.seed = opts.seed ?? 0;
    this.length = opts.n ?? 50_000;
    this.size = opts.size ?? 32;
    this.style = opts.style ?? "varied";
    checkSize(this.size);
  }

  #rng(i: number): Rng {
    checkIndex(this, i);
    return new Rng(hashSeed(this.seed, STREAM.captions, i));
  }

  /** Attributes of item `i` (cheap: nothing is rendered). */
  attributes(i: number): SynthAttributes {
    return sampleAttributes(this.#rng(i));
  }

  /** Caption of item `i` (cheap: nothing is rendered). */
  caption(i: number): string {
    const rng = this.#rng(i);
    const a = sampleAttributes(rng);
    return this.style === "full"
      ? captionOf(a)
      : variedCaption(a, new Rng(hashSeed(rng.nextU32(), 7)));
  }

  /** Render item `i` with its caption, synchronously. */
  item(i: number): SynthCaptionItem {
    const rng = this.#rng(i);
    const attributes = sampleAttributes(rng);
    const captionSeed = rng.nextU32();
    const image = renderAttributes(attributes, rng, this.size);
    const caption = this.style === "full"
      ? captionOf(attributes)
      : variedCaption(attributes, new Rng(hashSeed(captionSeed, 7)));
    return { image, caption, attributes };
  }

  /** {@linkcode Dataset.get}: the image of item `i` with its shape label. */
  get(i: number): Promise<Example> {
    try {
      const { image, attributes } = this.item(i);
      return Promise.resolve({ image, label: attributes.shape, path: `synth://captions/${i}` });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Label (shape) of item `i` without rendering. */
  labelOf(i: number): number {
    return this.attributes(i).shape;
  }

  /** Iterate over all items in order. */
  *[Symbol.iterator](): IterableIterator<SynthCaptionItem> {
    for (let i = 0; i < this.length; i++) yield this.item(i);
  }
}

/** The SynthMTIL image–caption stream: `n` items, deterministic in `seed`. */
export function synthCaptions(opts: SynthCaptionOptions = {}): SynthCaptions {
  return new SynthCaptions(opts);
}

/** Options of {@linkcode synthTask}. */
export interface SynthTaskOptions extends SynthOptions {
  /** `"train"` (default) or `"test"`: disjoint seeds. */
  split?: Split;
}

/**
 * One SynthMTIL classification task over a single attribute. Labels are exactly balanced
 * (item `i` has class `i mod K`); every other attribute is drawn uniformly per item.
 */
export class SynthTask implements Dataset {
  /** Registry name, `"Synth-<attribute>"`. */
  readonly name: string;
  /** The split. */
  readonly split: Split;
  /** The attribute's values. */
  readonly classnames: string[];
  /** Prompt templates; the first is the training prompt. */
  readonly templates: string[];
  /** Number of items. */
  readonly length: number;
  /** Image side in pixels. */
  readonly size: number;
  /** Base seed. */
  readonly seed: number;
  /** The attribute this task classifies. */
  readonly attribute: SynthAttribute;

  /** See {@linkcode synthTask}. */
  constructor(attribute: SynthAttribute, opts: SynthTaskOptions = {}) {
    if (!SYNTH_ATTRIBUTE_NAMES.includes(attribute)) {
      throw new RangeError(
        `SynthMTIL: unknown attribute "${attribute}"; expected one of ${
          SYNTH_ATTRIBUTE_NAMES.join(", ")
        }`,
      );
    }
    this.attribute = attribute;
    this.split = opts.split ?? "train";
    if (this.split !== "train" && this.split !== "test") {
      throw new RangeError(`SynthMTIL: split must be "train" or "test", got "${this.split}"`);
    }
    this.seed = opts.seed ?? 0;
    this.length = opts.n ?? (this.split === "train" ? 10_000 : 2_000);
    this.size = opts.size ?? 32;
    checkSize(this.size);
    if (!Number.isInteger(this.length) || this.length < 0) {
      throw new RangeError(`SynthMTIL: n must be a non-negative integer, got ${this.length}`);
    }
    this.name = `Synth-${attribute}`;
    this.classnames = [...SYNTH_VALUES[attribute]];
    this.templates = [...SYNTH_TEMPLATES[attribute]];
  }

  #rng(i: number): Rng {
    checkIndex(this, i);
    return new Rng(hashSeed(this.seed, STREAM[this.split], i));
  }

  /** Attributes of item `i` (cheap: nothing is rendered). */
  attributes(i: number): SynthAttributes {
    return sampleAttributes(this.#rng(i), { [this.attribute]: i % this.classnames.length });
  }

  /** Label of item `i`. */
  labelOf(i: number): number {
    checkIndex(this, i);
    return i % this.classnames.length;
  }

  /** Render item `i` synchronously. */
  render(i: number): { image: DecodedImage; attributes: SynthAttributes } {
    const rng = this.#rng(i);
    const attributes = sampleAttributes(rng, { [this.attribute]: i % this.classnames.length });
    return { image: renderAttributes(attributes, rng, this.size), attributes };
  }

  /** {@linkcode Dataset.get}. */
  get(i: number): Promise<Example> {
    try {
      const { image, attributes } = this.render(i);
      return Promise.resolve({
        image,
        label: attributes[this.attribute],
        path: `synth://${this.attribute}/${this.split}/${i}`,
      });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** The canonical caption of item `i`. */
  caption(i: number): string {
    return captionOf(this.attributes(i));
  }
}

/** A SynthMTIL classification task over `attribute` (see {@linkcode SynthTask}). */
export function synthTask(attribute: SynthAttribute, opts: SynthTaskOptions = {}): SynthTask {
  return new SynthTask(attribute, opts);
}

/**
 * Resolve a registry name: `"Synth-shape"`, `"Synth-colour"` (also `"Synth-color"`),
 * `"Synth-texture"`, `"Synth-count"`, `"Synth-size"`, `"Synth-position"` give the task,
 * `"Synth-captions"` the caption stream (whose split is always its own); any other name gives
 * `undefined` (so a registry can try this first).
 */
export function synthDatasetByName(
  name: string,
  opts: SynthTaskOptions = {},
): SynthTask | SynthCaptions | undefined {
  const m = /^Synth-(\w+)$/.exec(name);
  if (!m) return undefined;
  if (m[1] === "captions") return synthCaptions({ seed: opts.seed, n: opts.n, size: opts.size });
  const attr = m[1] === "color" ? "colour" : m[1];
  if (!(SYNTH_ATTRIBUTE_NAMES as readonly string[]).includes(attr)) return undefined;
  return synthTask(attr as SynthAttribute, opts);
}
