/**
 * SynthMTIL downstream tasks: classification tasks that sit outside the pretraining data of the
 * embedded model, the way MTIL's datasets (Aircraft, EuroSAT, MNIST…) sit far from CLIP's.
 *
 * The caption stream ({@linkcode synthCaptions}) that pretrains the embedded tiny CLIP shows
 * only the *base* concept space: six shapes, six colours and four background patterns on
 * neutral-grey backgrounds. Each task here has
 *
 * - its own **visual domain** (dark "night" scenes, ink on "paper", colour-"tinted"
 *   backgrounds, sensor "noise", out-of-focus "blur"), so the image-feature distribution differs per task (what
 *   DIKI-style task detection relies on), and
 * - **held-out concepts**: class names the pretraining captions never use (orange, heart,
 *   speckled…), whose words the model's vocabulary holds with untrained embeddings, or an
 *   attribute the pretraining never taught (position).
 *
 * | task | label | classes (held out in *italics*) | domain |
 * |---|---|---|---|
 * | `Synth-glyphs` | shape | circle, square, triangle, star, *heart, moon, arrow, diamond* | paper |
 * | `Synth-hues` | colour | red, *orange*, yellow, *lime*, green, cyan, blue, purple, *pink* | night |
 * | `Synth-fabrics` | background pattern | plain, striped, dotted, checkered, *speckled, gradient* | tinted |
 * | `Synth-sizes` | object size | *tiny*, small, *medium*, large | noise |
 * | `Synth-layout` | position | top left, top right, bottom left, bottom right | blur |
 *
 * So zero-shot accuracy is partial (the seen classes, recognised across the domain shift) and
 * fine-tuning has something to learn (the held-out classes and the domain).
 *
 * @example
 * ```ts
 * import { synthDomainTask } from "jsr:@mtil/mtil/datasets";
 * const ds = synthDomainTask("Synth-hues", { split: "test", n: 90 });
 * const { image, label } = await ds.get(0);
 * console.log(ds.classnames[label], image instanceof Uint8Array ? image.length : image.width);
 * ```
 *
 * @module
 */
import { hashSeed, Rng } from "./rng.ts";
import {
  sampleAttributes,
  sceneFor,
  SYNTH_MAX_SIZE,
  SYNTH_MIN_SIZE,
  SYNTH_TEMPLATES,
  type SynthAttribute,
  textureBackground,
} from "./synth.ts";
import {
  addNoise,
  type BackgroundSpec,
  hsvToRgb,
  renderScene,
  type ShapeKind,
  type ShapeSpec,
  type TextureKind,
} from "./synth_render.ts";
import { checkIndex, type Dataset, type DecodedImage, type Example, type Split } from "./types.ts";

/** The visual domains of the downstream tasks (the pretraining domain is grey backgrounds). */
export type SynthDomain = "paper" | "night" | "tinted" | "noise" | "blur";

/** Registry names of the downstream tasks. */
export type SynthDomainTaskName =
  | "Synth-glyphs"
  | "Synth-hues"
  | "Synth-fabrics"
  | "Synth-sizes"
  | "Synth-layout";

/** Definition of one downstream task. */
export interface SynthDomainTaskSpec {
  /** Registry name. */
  name: SynthDomainTaskName;
  /** The attribute that is the label. */
  attribute: SynthAttribute;
  /** Class names in label order. */
  classes: readonly string[];
  /** The classes whose names never occur in the pretraining captions. */
  heldOut: readonly string[];
  /** The visual domain. */
  domain: SynthDomain;
  /** Prompt templates (those of the attribute); the first is the training prompt. */
  templates: readonly string[];
}

/** Hue in degrees of every colour name the tasks use. */
export const SYNTH_HUE_OF: Readonly<Record<string, number>> = {
  red: 0,
  orange: 30,
  yellow: 55,
  lime: 90,
  green: 120,
  cyan: 180,
  blue: 230,
  purple: 285,
  pink: 330,
};

/** The downstream tasks, by registry name. */
export const SYNTH_DOMAIN_TASKS: Readonly<Record<SynthDomainTaskName, SynthDomainTaskSpec>> = {
  "Synth-glyphs": {
    name: "Synth-glyphs",
    attribute: "shape",
    classes: ["circle", "square", "triangle", "star", "heart", "moon", "arrow", "diamond"],
    heldOut: ["heart", "moon", "arrow", "diamond"],
    domain: "paper",
    templates: SYNTH_TEMPLATES.shape,
  },
  "Synth-hues": {
    name: "Synth-hues",
    attribute: "colour",
    classes: ["red", "orange", "yellow", "lime", "green", "cyan", "blue", "purple", "pink"],
    heldOut: ["orange", "lime", "pink"],
    domain: "night",
    templates: SYNTH_TEMPLATES.colour,
  },
  "Synth-fabrics": {
    name: "Synth-fabrics",
    attribute: "texture",
    classes: ["plain", "striped", "dotted", "checkered", "speckled", "gradient"],
    heldOut: ["speckled", "gradient"],
    domain: "tinted",
    templates: SYNTH_TEMPLATES.texture,
  },
  "Synth-sizes": {
    name: "Synth-sizes",
    attribute: "size",
    classes: ["tiny", "small", "medium", "large"],
    heldOut: ["tiny", "medium"],
    domain: "noise",
    templates: SYNTH_TEMPLATES.size,
  },
  "Synth-layout": {
    name: "Synth-layout",
    attribute: "position",
    classes: ["top left", "top right", "bottom left", "bottom right"],
    heldOut: [],
    domain: "blur",
    templates: SYNTH_TEMPLATES.position,
  },
};

/** Registry names of every downstream task. */
export const SYNTH_DOMAIN_TASK_NAMES: readonly SynthDomainTaskName[] = [
  "Synth-fabrics",
  "Synth-sizes",
  "Synth-hues",
  "Synth-glyphs",
  "Synth-layout",
];

/**
 * The task sequence of `deno task demo`: the downstream tasks the embedded model learns well in
 * a few dozen steps (Synth-glyphs and Synth-layout need far more: shapes and positions are hard
 * for a 2-layer ViT with 8-pixel patches at 32 pixels).
 */
export const SYNTH_DEMO_ORDER: readonly SynthDomainTaskName[] = [
  "Synth-fabrics",
  "Synth-sizes",
  "Synth-hues",
];

/** Plural nouns of the held-out shapes (for the vocabulary). */
const HELD_OUT_PLURALS = ["hearts", "moons", "arrows", "diamonds"];

/**
 * Words the embedded model's vocabulary holds beyond those of the pretraining captions: the
 * held-out class names (untrained embeddings until a task teaches them) and spares for new
 * tasks, so that tasks defined later can still be told apart by their prompts.
 */
export const SYNTH_EXTRA_WORDS: readonly string[] = [
  ...Object.values(SYNTH_DOMAIN_TASKS).flatMap((t) => t.heldOut),
  ...HELD_OUT_PLURALS,
  ...("magenta teal navy brown white black grey gray hexagon hexagons pentagon pentagons " +
    "oval ovals crescent crescents wavy zigzag grid night paper noisy tinted dark light " +
    "bright centre center middle tiny medium huge five six drawing sketch painting image")
    .split(" "),
];

/** Stream ids of the task splits (disjoint from the base tasks' and the captions'). */
const STREAM: Record<Split, number> = { train: 11, test: 12 };
const TASK_ID: Record<SynthDomainTaskName, number> = {
  "Synth-glyphs": 1,
  "Synth-hues": 2,
  "Synth-fabrics": 3,
  "Synth-layout": 4,
  "Synth-sizes": 5,
};

/** Standard normal draws (Box–Muller, both values used). */
function normals(rng: Rng): () => number {
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const s = spare;
      spare = undefined;
      return s;
    }
    const u = 1 - rng.random(), v = rng.random();
    const r = Math.sqrt(-2 * Math.log(u));
    spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  };
}

/** Object radius (pixels at 32 px) of each `Synth-sizes` class: tiny, small, medium, large. */
const SIZE_RADII = [1.4, 2.4, 4.4, 7.0];

/** Box blur of radius `r` (a `(2r+1)²` mean, edges clamped) of an RGB image. */
function boxBlur(src: Uint8Array, size: number, r: number): Uint8Array {
  const out = new Uint8Array(src.length);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      for (let c = 0; c < 3; c++) {
        let sum = 0;
        for (let dy = -r; dy <= r; dy++) {
          const yy = Math.min(size - 1, Math.max(0, y + dy));
          for (let dx = -r; dx <= r; dx++) {
            const xx = Math.min(size - 1, Math.max(0, x + dx));
            sum += src[(yy * size + xx) * 3 + c];
          }
        }
        out[(y * size + x) * 3 + c] = Math.round(sum / ((2 * r + 1) * (2 * r + 1)));
      }
    }
  }
  return out;
}

function grey(v: number): [number, number, number] {
  return [v, v, v];
}

function hsv01(h: number, s: number, v: number): [number, number, number] {
  return hsvToRgb(h, s, v).map((c) => c / 255) as [number, number, number];
}

/** Render one image of `spec` with class `label` from the random stream `rng`. */
export function renderDomainImage(
  spec: SynthDomainTaskSpec,
  label: number,
  rng: Rng,
  size: number,
): DecodedImage {
  const k = size / 32;
  let background: BackgroundSpec;
  let shapes: ShapeSpec[];
  let noise = 0, blur = 0;
  switch (spec.domain) {
    case "paper": {
      // One large glyph in dark ink on warm off-white paper with a faint grain.
      const a = sampleAttributes(rng);
      const paper = rng.uniform(0.82, 0.97);
      background = textureBackground("plain", rng, size);
      background.colour1 = [paper, paper * 0.96, paper * 0.86];
      const radius = rng.uniform(7, 10) * k;
      const lo = radius + 1.5 * k, hi = size - radius - 1.5 * k;
      const hue = [0, 55, 120, 180, 230, 285][a.colour] + rng.uniform(-6, 6);
      shapes = [{
        kind: spec.classes[label] as ShapeKind,
        cx: rng.uniform(lo, hi),
        cy: rng.uniform(lo, hi),
        radius,
        angle: rng.uniform(-Math.PI / 12, Math.PI / 12),
        rgb: hsvToRgb(hue, rng.uniform(0.65, 0.95), rng.uniform(0.55, 0.85)),
      }];
      noise = 0.03;
      break;
    }
    case "night": {
      // Dim objects of the labelled hue on a near-black patterned background.
      const a = sampleAttributes(rng);
      ({ background, shapes } = sceneFor(a, rng, size));
      const t1 = rng.uniform(0.02, 0.12), t2 = t1 + rng.uniform(0.04, 0.1);
      background.colour1 = grey(t1);
      background.colour2 = grey(t2);
      const hue = SYNTH_HUE_OF[spec.classes[label]] + rng.uniform(-6, 6);
      const rgb = hsvToRgb(hue, rng.uniform(0.75, 1), rng.uniform(0.55, 0.85));
      for (const s of shapes) s.rgb = rgb;
      break;
    }
    case "tinted": {
      // The labelled pattern in two tones of a random hue, objects as in the base domain.
      const a = sampleAttributes(rng);
      const scene = sceneFor(a, rng, size);
      shapes = scene.shapes;
      background = textureBackground(spec.classes[label] as TextureKind, rng, size);
      const hue = rng.uniform(0, 360), sat = rng.uniform(0.2, 0.45);
      background.colour1 = hsv01(hue, sat, background.tone1);
      background.colour2 = hsv01(hue, sat, background.tone2);
      if (background.kind === "speckled") background.speckleSeed = rng.nextU32();
      if (background.kind === "gradient") {
        background.offsetX = size / 2;
        background.offsetY = size / 2;
        background.angle = rng.uniform(0, 2 * Math.PI);
        const lo = Math.min(background.tone1, background.tone2);
        background.colour1 = hsv01(hue, sat, lo);
        background.colour2 = hsv01(hue, sat, lo + rng.uniform(0.4, 0.6));
      }
      break;
    }
    case "noise": {
      // Base-domain scenes of one or two objects of the labelled size under grey sensor noise.
      const a = sampleAttributes(rng, { size: label >= 2 ? 1 : 0 });
      a.count &= 1;
      ({ background, shapes } = sceneFor(a, rng, size));
      const radius = SIZE_RADII[label] * k;
      for (const s of shapes) s.radius = radius;
      noise = 0.1;
      break;
    }
    case "blur": {
      // Large objects in the labelled quadrant, the whole image box-blurred (out of focus).
      const a = sampleAttributes(rng, { position: label, size: 1 });
      ({ background, shapes } = sceneFor(a, rng, size));
      blur = 1;
      break;
    }
  }
  let data = renderScene(size, background, shapes);
  if (blur > 0) data = boxBlur(data, size, Math.round(blur * k));
  if (noise > 0) addNoise(data, noise, normals(rng));
  return { data, width: size, height: size };
}

/** Options of {@linkcode synthDomainTask}. */
export interface SynthDomainTaskOptions {
  /** `"train"` (default) or `"test"`: disjoint seeds. */
  split?: Split;
  /** Base seed (default 0). */
  seed?: number;
  /** Number of items (defaults: 10 000 train, 2 000 test). */
  n?: number;
  /** Image side in pixels, 16–64 (default 32). */
  size?: number;
}

/**
 * One downstream task as a {@linkcode Dataset}: labels exactly balanced (item `i` has class
 * `i mod K`), item `i` rendered from its own random stream, so access is random and cheap.
 */
export class SynthDomainTask implements Dataset {
  /** Registry name. */
  readonly name: SynthDomainTaskName;
  /** The split. */
  readonly split: Split;
  /** Class names. */
  readonly classnames: string[];
  /** Prompt templates; the first is the training prompt. */
  readonly templates: string[];
  /** Number of items. */
  readonly length: number;
  /** Image side in pixels. */
  readonly size: number;
  /** Base seed. */
  readonly seed: number;
  /** The task's definition. */
  readonly spec: SynthDomainTaskSpec;

  /** See {@linkcode synthDomainTask}. */
  constructor(name: SynthDomainTaskName, opts: SynthDomainTaskOptions = {}) {
    if (!Object.hasOwn(SYNTH_DOMAIN_TASKS, name)) {
      throw new RangeError(
        `SynthMTIL: unknown task "${name}"; expected one of ${
          Object.keys(SYNTH_DOMAIN_TASKS).join(", ")
        }`,
      );
    }
    this.spec = SYNTH_DOMAIN_TASKS[name];
    this.name = name;
    this.split = opts.split ?? "train";
    if (this.split !== "train" && this.split !== "test") {
      throw new RangeError(`SynthMTIL: split must be "train" or "test", got "${this.split}"`);
    }
    this.seed = opts.seed ?? 0;
    this.length = opts.n ?? (this.split === "train" ? 10_000 : 2_000);
    this.size = opts.size ?? 32;
    if (!Number.isInteger(this.size) || this.size < SYNTH_MIN_SIZE || this.size > SYNTH_MAX_SIZE) {
      throw new RangeError(
        `SynthMTIL: image size must be an integer in [${SYNTH_MIN_SIZE}, ${SYNTH_MAX_SIZE}], got ${this.size}`,
      );
    }
    if (!Number.isInteger(this.length) || this.length < 0) {
      throw new RangeError(`SynthMTIL: n must be a non-negative integer, got ${this.length}`);
    }
    this.classnames = [...this.spec.classes];
    this.templates = [...this.spec.templates];
  }

  /** Label of item `i`. */
  labelOf(i: number): number {
    checkIndex(this, i);
    return i % this.classnames.length;
  }

  /** Render item `i` synchronously. */
  render(i: number): DecodedImage {
    const label = this.labelOf(i);
    const rng = new Rng(hashSeed(this.seed, STREAM[this.split], TASK_ID[this.name], i));
    return renderDomainImage(this.spec, label, rng, this.size);
  }

  /** {@linkcode Dataset.get}. */
  get(i: number): Promise<Example> {
    try {
      const image = this.render(i);
      return Promise.resolve({
        image,
        label: this.labelOf(i),
        path: `synth://${this.name}/${this.split}/${i}`,
      });
    } catch (e) {
      return Promise.reject(e);
    }
  }
}

/** Whether `name` is a downstream task's registry name. */
export function isSynthDomainTaskName(name: string): name is SynthDomainTaskName {
  return Object.hasOwn(SYNTH_DOMAIN_TASKS, name);
}

/** A downstream task by registry name (see {@linkcode SynthDomainTask}). */
export function synthDomainTask(
  name: SynthDomainTaskName,
  opts: SynthDomainTaskOptions = {},
): SynthDomainTask {
  return new SynthDomainTask(name, opts);
}
