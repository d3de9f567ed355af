/**
 * The CLIP model: hyperparameters inferred from a state dict exactly as the reference
 * `build_model`, parameters as tf.Variables keyed by the reference state-dict keys, both towers
 * (ViT or ModifiedResNet + the text transformer) and the scaled cosine logits.
 *
 * ```ts
 * import { buildClip, MODEL_CONFIGS, randomStateDict } from "jsr:@mtil/mtil/clip";
 * import { tf } from "jsr:@mtil/mtil/tf";
 *
 * const model = buildClip(randomStateDict(MODEL_CONFIGS["RN50"])); // or a checkpoint's state dict
 * const images = tf.zeros([2, 224, 224, 3]) as tf.Tensor4D; // NHWC, normalised
 * const feats = model.encodeImage(images); // [n, embedDim], not normalised
 * ```
 *
 * @module
 */
import { mulberry32 } from "../datasets/rng.ts";
import { tf } from "./backends/tf.ts";
import { numel, type RawTensor, type StateDict } from "./formats/state_dict.ts";
import type {
  AttentionHook,
  ClipConfig,
  ClipLogits,
  ClipModel,
  DenseHook,
  LoadStateDictOptions,
  TextTokenizer,
} from "./types.ts";
import type { LayerContext } from "./layers.ts";
import { visionTransformer } from "./vit.ts";
import { modifiedResNet } from "./resnet.ts";
import { textTransformer } from "./text.ts";

/** Keys of the released TorchScript state dicts that are not parameters (the reference drops them). */
export const NON_PARAMETER_KEYS: readonly string[] = [
  "input_resolution",
  "context_length",
  "vocab_size",
];

/** Anything with a shape: a {@link RawTensor}, a tf.Tensor or a bare `{ shape }`. */
export interface Shaped {
  /** Row-major shape. */
  readonly shape: readonly number[];
}

function shapeOf(sd: ReadonlyMap<string, Shaped>, key: string): readonly number[] {
  const t = sd.get(key);
  if (!t) throw new Error(`not a CLIP state dict: key "${key}" is missing`);
  return t.shape;
}

/**
 * Hyperparameters of a CLIP state dict, exactly as the reference `build_model`: ViT iff
 * `visual.proj` is present; widths from weight shapes; ViT layers = number of
 * `visual.*.attn.in_proj_weight`; ResNet blocks per stage = distinct `visual.layer{b}.<i>`;
 * `imageResolution` = patch × grid (ViT) or 32 × the attention-pool grid (ResNet);
 * text heads = width / 64. Only shapes are read, so a shapes-only map works.
 */
export function inferConfig(sd: ReadonlyMap<string, Shaped>): ClipConfig {
  const keys = [...sd.keys()];
  const vit = sd.has("visual.proj");
  let visionLayers: number | number[];
  let visionWidth: number;
  let visionPatchSize: number | undefined;
  let imageResolution: number;
  if (vit) {
    const conv = shapeOf(sd, "visual.conv1.weight");
    visionWidth = conv[0];
    visionLayers = keys.filter((k) =>
      k.startsWith("visual.") && k.endsWith(".attn.in_proj_weight")
    ).length;
    visionPatchSize = conv[conv.length - 1];
    const grid = Math.round(Math.sqrt(shapeOf(sd, "visual.positional_embedding")[0] - 1));
    imageResolution = visionPatchSize * grid;
  } else {
    visionLayers = [1, 2, 3, 4].map((b) =>
      new Set(keys.filter((k) => k.startsWith(`visual.layer${b}`)).map((k) => k.split(".")[2]))
        .size
    );
    visionWidth = shapeOf(sd, "visual.layer1.0.conv1.weight")[0];
    const tokens = shapeOf(sd, "visual.attnpool.positional_embedding")[0];
    const outputWidth = Math.round(Math.sqrt(tokens - 1));
    if (outputWidth ** 2 + 1 !== tokens) {
      throw new Error(
        `visual.attnpool.positional_embedding has ${tokens} rows, not a square grid + 1`,
      );
    }
    imageResolution = outputWidth * 32;
  }
  const transformerWidth = shapeOf(sd, "ln_final.weight")[0];
  const config: ClipConfig = {
    vision: vit ? "vit" : "resnet",
    embedDim: shapeOf(sd, "text_projection")[1],
    imageResolution,
    visionLayers,
    visionWidth,
    ...(visionPatchSize !== undefined ? { visionPatchSize } : {}),
    contextLength: shapeOf(sd, "positional_embedding")[0],
    vocabSize: shapeOf(sd, "token_embedding.weight")[0],
    transformerWidth,
    transformerHeads: Math.floor(transformerWidth / 64),
    transformerLayers: new Set(
      keys.filter((k) => k.startsWith("transformer.resblocks")).map((k) => k.split(".")[2]),
    ).size,
  };
  return config;
}

/** Attention heads of the image tower: `width / 64` (ViT), `width · 32 / 64` (ResNet). */
export function visionHeads(config: ClipConfig): number {
  return config.vision === "vit"
    ? Math.floor(config.visionWidth / 64)
    : Math.floor(config.visionWidth * 32 / 64);
}

/** The hyperparameters of the nine released OpenAI CLIP models, by their names. */
export const MODEL_CONFIGS: Readonly<Record<string, ClipConfig>> = (() => {
  const text = (w: number) => ({
    contextLength: 77,
    vocabSize: 49408,
    transformerWidth: w,
    transformerHeads: w / 64,
    transformerLayers: 12,
  });
  const rn = (embedDim: number, res: number, layers: number[], width: number, tw: number) => ({
    vision: "resnet" as const,
    embedDim,
    imageResolution: res,
    visionLayers: layers,
    visionWidth: width,
    ...text(tw),
  });
  const vit = (embedDim: number, res: number, layers: number, width: number, patch: number) => ({
    vision: "vit" as const,
    embedDim,
    imageResolution: res,
    visionLayers: layers,
    visionWidth: width,
    visionPatchSize: patch,
    ...text(embedDim),
  });
  return {
    "RN50": rn(1024, 224, [3, 4, 6, 3], 64, 512),
    "RN101": rn(512, 224, [3, 4, 23, 3], 64, 512),
    "RN50x4": rn(640, 288, [4, 6, 10, 6], 80, 640),
    "RN50x16": rn(768, 384, [6, 8, 18, 8], 96, 768),
    "RN50x64": rn(1024, 448, [3, 15, 36, 10], 128, 1024),
    "ViT-B/32": vit(512, 224, 12, 768, 32),
    "ViT-B/16": vit(512, 224, 12, 768, 16),
    "ViT-L/14": vit(768, 224, 24, 1024, 14),
    "ViT-L/14@336px": vit(768, 336, 24, 1024, 14),
  };
})();

/** What a state-dict entry is, besides its shape (drives initialisation and trainability). */
export type EntryKind =
  | "weight" // a dense/conv/projection matrix: random normal
  | "bias" // zeros
  | "norm_weight" // LayerNorm/BatchNorm scale: ones
  | "embedding" // token/positional/class embeddings: small random normal
  | "logit_scale" // ln(1/0.07)
  | "running_mean" // buffer, zeros
  | "running_var" // buffer, ones
  | "num_batches_tracked"; // buffer, int, zero

/** One state-dict entry of a config: key, shape and kind. */
export interface ShapeEntry {
  /** Reference state-dict key. */
  key: string;
  /** Reference shape (PyTorch layout: linear `[out, in]`, conv OIHW). */
  shape: number[];
  /** What the entry is. */
  kind: EntryKind;
}

/** Whether an entry kind is a buffer (non-trainable in PyTorch) rather than a parameter. */
export function isBuffer(kind: EntryKind): boolean {
  return kind === "running_mean" || kind === "running_var" || kind === "num_batches_tracked";
}

/**
 * Every state-dict key of a config with its shape, in the reference `state_dict()` order
 * (a module's own parameters, then its children in registration order). Allocates nothing.
 */
export function stateDictShapes(config: ClipConfig): ShapeEntry[] {
  const out: ShapeEntry[] = [];
  const add = (key: string, shape: number[], kind: EntryKind) => out.push({ key, shape, kind });
  const ln = (p: string, w: number) => {
    add(`${p}.weight`, [w], "norm_weight");
    add(`${p}.bias`, [w], "bias");
  };
  const linear = (p: string, o: number, i: number) => {
    add(`${p}.weight`, [o, i], "weight");
    add(`${p}.bias`, [o], "bias");
  };
  const blocks = (prefix: string, w: number, layers: number) => {
    for (let i = 0; i < layers; i++) {
      const p = `${prefix}.${i}`;
      add(`${p}.attn.in_proj_weight`, [3 * w, w], "weight");
      add(`${p}.attn.in_proj_bias`, [3 * w], "bias");
      linear(`${p}.attn.out_proj`, w, w);
      ln(`${p}.ln_1`, w);
      linear(`${p}.mlp.c_fc`, 4 * w, w);
      linear(`${p}.mlp.c_proj`, w, 4 * w);
      ln(`${p}.ln_2`, w);
    }
  };
  const bn = (p: string, c: number) => {
    ln(p, c);
    add(`${p}.running_mean`, [c], "running_mean");
    add(`${p}.running_var`, [c], "running_var");
    add(`${p}.num_batches_tracked`, [], "num_batches_tracked");
  };
  const tw = config.transformerWidth;
  const e = config.embedDim;
  add("positional_embedding", [config.contextLength, tw], "embedding");
  add("text_projection", [tw, e], "weight");
  add("logit_scale", [], "logit_scale");
  const w = config.visionWidth;
  if (config.vision === "vit") {
    const patch = config.visionPatchSize;
    if (!patch || typeof config.visionLayers !== "number") {
      throw new Error("a ViT config needs visionPatchSize and a numeric visionLayers");
    }
    const grid = config.imageResolution / patch;
    add("visual.class_embedding", [w], "embedding");
    add("visual.positional_embedding", [grid * grid + 1, w], "embedding");
    add("visual.proj", [w, e], "weight");
    add("visual.conv1.weight", [w, 3, patch, patch], "weight");
    ln("visual.ln_pre", w);
    blocks("visual.transformer.resblocks", w, config.visionLayers);
    ln("visual.ln_post", w);
  } else {
    if (!Array.isArray(config.visionLayers) || config.visionLayers.length !== 4) {
      throw new Error("a ResNet config needs visionLayers with 4 stage depths");
    }
    add("visual.conv1.weight", [w / 2, 3, 3, 3], "weight");
    bn("visual.bn1", w / 2);
    add("visual.conv2.weight", [w / 2, w / 2, 3, 3], "weight");
    bn("visual.bn2", w / 2);
    add("visual.conv3.weight", [w, w / 2, 3, 3], "weight");
    bn("visual.bn3", w);
    let inplanes = w;
    config.visionLayers.forEach((n, s) => {
      const planes = w * 2 ** s;
      for (let b = 0; b < n; b++) {
        const p = `visual.layer${s + 1}.${b}`;
        const stride = s > 0 && b === 0 ? 2 : 1;
        add(`${p}.conv1.weight`, [planes, inplanes, 1, 1], "weight");
        bn(`${p}.bn1`, planes);
        add(`${p}.conv2.weight`, [planes, planes, 3, 3], "weight");
        bn(`${p}.bn2`, planes);
        add(`${p}.conv3.weight`, [planes * 4, planes, 1, 1], "weight");
        bn(`${p}.bn3`, planes * 4);
        if (stride > 1 || inplanes !== planes * 4) {
          add(`${p}.downsample.0.weight`, [planes * 4, inplanes, 1, 1], "weight");
          bn(`${p}.downsample.1`, planes * 4);
        }
        inplanes = planes * 4;
      }
    });
    const embed = w * 32;
    const grid = config.imageResolution / 32;
    add("visual.attnpool.positional_embedding", [grid * grid + 1, embed], "embedding");
    linear("visual.attnpool.k_proj", embed, embed);
    linear("visual.attnpool.q_proj", embed, embed);
    linear("visual.attnpool.v_proj", embed, embed);
    linear("visual.attnpool.c_proj", e, embed);
  }
  blocks("transformer.resblocks", tw, config.transformerLayers);
  add("token_embedding.weight", [config.vocabSize, tw], "embedding");
  ln("ln_final", tw);
  return out;
}

/** Seeded normal random numbers: mulberry32 uniforms and Marsaglia's polar method. */
class NormalRng {
  #a: number;
  constructor(seed: number) {
    this.#a = seed >>> 0;
  }
  /** Fill `out` with N(0, std²) samples. */
  fill(out: Float32Array, std: number): void {
    const next = mulberry32(this.#a);
    const n = out.length;
    let i = 0;
    let draws = 0;
    while (i < n) {
      // two uniforms in [-1, 1)
      const u = 2 * next() - 1;
      const v = 2 * next() - 1;
      draws += 2;
      const s = u * u + v * v;
      if (s >= 1 || s === 0) continue;
      const f = std * Math.sqrt(-2 * Math.log(s) / s);
      out[i++] = u * f;
      if (i < n) out[i++] = v * f;
    }
    // continue the stream where this fill stopped
    this.#a = (this.#a + Math.imul(draws, 0x6d2b79f5)) >>> 0;
  }
}

function initEntry(entry: ShapeEntry, rng: NormalRng): RawTensor {
  const n = numel(entry.shape);
  if (entry.kind === "num_batches_tracked") {
    return { shape: [...entry.shape], dtype: "int64", data: new Int32Array(n) };
  }
  const data = new Float32Array(n);
  const fill = (std: number) => rng.fill(data, std);
  switch (entry.kind) {
    case "weight": {
      // PyTorch layout: fan-in is every axis but the first; for `proj`/`text_projection`
      // ([in, out]) the first axis is the fan-in.
      const isProj = entry.key.endsWith("proj") && !entry.key.endsWith("_proj");
      const fanIn = isProj ? entry.shape[0] : n / entry.shape[0];
      fill(fanIn ** -0.5);
      break;
    }
    case "embedding":
      fill(entry.key.startsWith("token") ? 0.02 : 0.01);
      break;
    case "norm_weight":
    case "running_var":
      data.fill(1);
      break;
    case "logit_scale":
      data[0] = Math.log(1 / 0.07);
      break;
    default:
      break; // bias, running_mean: zeros
  }
  return { shape: [...entry.shape], dtype: "float32", data };
}

/**
 * Random weights with the exact reference key set and shapes of `config` (deterministic in
 * `seed`): for benchmarks and tests. Linear/conv weights ~ N(0, 1/fan_in), embeddings N(0, 0.02²)
 * / N(0, 0.01²), norms at identity, `logit_scale` = ln(1/0.07).
 */
export function randomStateDict(config: ClipConfig, seed = 0): StateDict {
  const rng = new NormalRng(seed);
  const sd: StateDict = new Map();
  for (const entry of stateDictShapes(config)) sd.set(entry.key, initEntry(entry, rng));
  return sd;
}

/** Options of {@link buildClip}. */
export interface BuildClipOptions {
  /**
   * Reject missing or unexpected keys (default true). When false, missing entries are
   * initialised as {@link randomStateDict} does and unexpected keys are ignored.
   */
  strict?: boolean;
  /** Config to use instead of inferring it from the state dict (it must agree with the shapes). */
  config?: ClipConfig;
}

let modelCounter = 0;

function checkShape(key: string, expected: readonly number[], got: readonly number[]): void {
  if (expected.length !== got.length || expected.some((d, i) => d !== got[i])) {
    throw new Error(
      `shape mismatch for "${key}": the model has [${expected}], the state dict [${got}]`,
    );
  }
}

function toTensor(raw: RawTensor, dtype: "float32" | "int32"): tf.Tensor {
  let data: Float32Array | Int32Array = raw.data;
  if (dtype === "int32" && !(data instanceof Int32Array)) data = Int32Array.from(data);
  if (dtype === "float32" && !(data instanceof Float32Array)) data = Float32Array.from(data);
  return tf.tensor(data, raw.shape, dtype);
}

function listKeys(keys: string[], max = 10): string {
  return keys.slice(0, max).join(", ") + (keys.length > max ? ` … (${keys.length} in all)` : "");
}

/**
 * The CLIP model (implements {@link ClipModel}). Variables are named `m<id>/<key>` (tfjs
 * variable names are global), while `params` is keyed by the plain reference key. Convolution
 * weights keep the PyTorch OIHW layout (transposed inside the forward pass).
 */
export class Clip implements ClipModel, LayerContext {
  /** Inferred hyperparameters. */
  readonly config: ClipConfig;
  /** Parameters and buffers by reference key (buffers are non-trainable). */
  readonly params: Map<string, tf.Variable> = new Map();
  /** Dense hooks by module path (see `clip/layers.ts`: hooks see `[rows, in]` inputs). */
  readonly denseHooks: Map<string, DenseHook> = new Map();
  /** Attention hooks by attention module path (see `AttentionHook`; DIKI's prefixes). */
  readonly attentionHooks: Map<string, AttentionHook> = new Map();
  /** Training mode (BatchNorm batch statistics). */
  training = false;
  /** The model's own tokenizer when it is not CLIP's BPE (e.g. the embedded SynthMTIL model). */
  tokenizer?: TextTokenizer;
  /** Process-unique id used in variable names. */
  readonly id: number;
  readonly #entries: ShapeEntry[];

  /** Allocate the variables of `config`, each filled from `values(entry)` (shapes checked). */
  constructor(config: ClipConfig, values: (entry: ShapeEntry) => RawTensor) {
    this.config = config;
    this.id = modelCounter++;
    this.#entries = stateDictShapes(config);
    const heads = visionHeads(config);
    if (heads < 1 || config.transformerHeads < 1) {
      throw new Error(
        `CLIP widths below 64 give 0 attention heads (vision width ${config.visionWidth}, ` +
          `text width ${config.transformerWidth}), as in the reference`,
      );
    }
    try {
      for (const entry of this.#entries) {
        const raw = values(entry);
        checkShape(entry.key, entry.shape, raw.shape);
        const dtype = entry.kind === "num_batches_tracked" ? "int32" : "float32";
        const v = tf.tidy(() =>
          tf.variable(toTensor(raw, dtype), !isBuffer(entry.kind), `m${this.id}/${entry.key}`)
        );
        this.params.set(entry.key, v);
      }
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  /** Images NHWC float32 `[n, R, R, 3]` → un-normalised image features `[n, embedDim]`. */
  encodeImage(images: tf.Tensor4D): tf.Tensor2D {
    const c = this.config;
    if (c.vision === "vit") {
      return visionTransformer(this, {
        imageResolution: c.imageResolution,
        patchSize: c.visionPatchSize!,
        width: c.visionWidth,
        layers: c.visionLayers as number,
        heads: visionHeads(c),
      }, images);
    }
    return modifiedResNet(this, {
      imageResolution: c.imageResolution,
      layers: c.visionLayers as number[],
      width: c.visionWidth,
      heads: visionHeads(c),
    }, images);
  }

  /** Token ids `[n, contextLength]` → un-normalised text features `[n, embedDim]`. */
  encodeText(tokens: tf.Tensor2D): tf.Tensor2D {
    const c = this.config;
    return textTransformer(this, {
      contextLength: c.contextLength,
      width: c.transformerWidth,
      layers: c.transformerLayers,
      heads: c.transformerHeads,
    }, tokens);
  }

  /** `exp(logit_scale) · norm(encodeImage) · norm(encodeText)ᵀ` and its transpose. */
  forward(images: tf.Tensor4D, tokens: tf.Tensor2D): ClipLogits {
    const img = this.encodeImage(images);
    const txt = this.encodeText(tokens);
    const out = tf.tidy(() => {
      const logitsPerImage = tf.mul(
        tf.exp(this.params.get("logit_scale")!),
        tf.matMul(l2Normalize(img), tf.transpose(l2Normalize(txt))),
      ) as tf.Tensor2D;
      return { logitsPerImage, logitsPerText: tf.transpose(logitsPerImage) as tf.Tensor2D };
    });
    img.dispose();
    txt.dispose();
    return out;
  }

  /**
   * A copy of every parameter and buffer in reference key order: float32 tensors, and
   * `num_batches_tracked` as `Int32Array` data with dtype `"int64"` (its reference dtype).
   */
  stateDict(): StateDict {
    const sd: StateDict = new Map();
    for (const [key, v] of this.params) {
      const data = v.dataSync().slice() as Float32Array | Int32Array;
      sd.set(key, { shape: [...v.shape], dtype: v.dtype === "int32" ? "int64" : "float32", data });
    }
    return sd;
  }

  /**
   * Assign values from `dict`. Shapes must match; with `strict` (default) the key sets must be
   * equal too (the reference's non-parameter keys `input_resolution`, `context_length`,
   * `vocab_size` are ignored). Everything is checked before anything is assigned.
   */
  loadStateDict(dict: StateDict, options: LoadStateDictOptions = {}): void {
    const strict = options.strict ?? true;
    if (strict) {
      const missing = [...this.params.keys()].filter((k) => !dict.has(k));
      const unexpected = [...dict.keys()].filter((k) =>
        !this.params.has(k) && !NON_PARAMETER_KEYS.includes(k)
      );
      if (missing.length || unexpected.length) {
        throw new Error(
          `state dict does not match the model: missing [${listKeys(missing)}], ` +
            `unexpected [${listKeys(unexpected)}] (pass { strict: false } to load a subset)`,
        );
      }
    }
    const todo: [tf.Variable, RawTensor][] = [];
    for (const [key, v] of this.params) {
      const raw = dict.get(key);
      if (!raw) continue;
      checkShape(key, v.shape, raw.shape);
      todo.push([v, raw]);
    }
    for (const [v, raw] of todo) {
      tf.tidy(() => v.assign(toTensor(raw, v.dtype as "float32" | "int32")));
    }
  }

  /** Module paths of the dense layers: see {@link linearModulePaths}. */
  linearPaths(): string[] {
    return linearModulePaths(this.config);
  }

  /** Module paths of the attention blocks: see {@link attentionModulePaths}. */
  attentionPaths(): string[] {
    return attentionModulePaths(this.config);
  }

  /** Number of elements of the trainable variables and of all parameters (buffers excluded). */
  parameterCount(): { trainable: number; total: number } {
    let trainable = 0, total = 0;
    for (const entry of this.#entries) {
      if (isBuffer(entry.kind)) continue;
      const n = numel(entry.shape);
      total += n;
      if (this.params.get(entry.key)?.trainable) trainable += n;
    }
    return { trainable, total };
  }

  /** Free every variable. */
  dispose(): void {
    for (const v of this.params.values()) v.dispose();
    this.params.clear();
  }
}

/**
 * Module paths of the dense layers of a config, in PyTorch `named_modules` order: per residual
 * block `…attn.out_proj`, `…mlp.c_fc`, `…mlp.c_proj`, and for ResNets
 * `visual.attnpool.{k,q,v,c}_proj` (the `nn.Linear` modules). The packed q/k/v in-projection of
 * `<block>.attn` is not a module of its own in PyTorch; its dense hook is registered under the
 * attention module path `<block>.attn` itself (see {@link attentionModulePaths}).
 */
export function linearModulePaths(config: ClipConfig): string[] {
  const out: string[] = [];
  const blocks = (prefix: string, n: number) => {
    for (let i = 0; i < n; i++) {
      out.push(
        `${prefix}.${i}.attn.out_proj`,
        `${prefix}.${i}.mlp.c_fc`,
        `${prefix}.${i}.mlp.c_proj`,
      );
    }
  };
  if (config.vision === "vit") {
    blocks("visual.transformer.resblocks", config.visionLayers as number);
  } else for (const p of ["k", "q", "v", "c"]) out.push(`visual.attnpool.${p}_proj`);
  blocks("transformer.resblocks", config.transformerLayers);
  return out;
}

/** Module paths of the attention blocks (`<block>.attn`), whose hooks see the packed q/k/v. */
export function attentionModulePaths(config: ClipConfig): string[] {
  const out: string[] = [];
  if (config.vision === "vit") {
    for (let i = 0; i < (config.visionLayers as number); i++) {
      out.push(`visual.transformer.resblocks.${i}.attn`);
    }
  }
  for (let i = 0; i < config.transformerLayers; i++) out.push(`transformer.resblocks.${i}.attn`);
  return out;
}

/** `x / ‖x‖₂` along the last axis. */
export function l2Normalize(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.div(x, tf.norm(x, "euclidean", -1, true)));
}

/**
 * Build a CLIP model from a state dict (any size: inferred as the reference `build_model`). The
 * values are copied into new variables; `sd` can be dropped afterwards.
 */
export function buildClip(sd: StateDict, options: BuildClipOptions = {}): Clip {
  const strict = options.strict ?? true;
  const config = options.config ?? inferConfig(sd);
  const entries = stateDictShapes(config);
  if (strict) {
    const known = new Set(entries.map((e) => e.key));
    const missing = entries.map((e) => e.key).filter((k) => !sd.has(k));
    const unexpected = [...sd.keys()].filter((k) =>
      !known.has(k) && !NON_PARAMETER_KEYS.includes(k)
    );
    if (missing.length || unexpected.length) {
      throw new Error(
        `state dict is not a CLIP model of the inferred config: missing [${listKeys(missing)}], ` +
          `unexpected [${listKeys(unexpected)}] (pass { strict: false } to fill or ignore them)`,
      );
    }
  }
  const rng = new NormalRng(0);
  return new Clip(config, (entry) => sd.get(entry.key) ?? initEntry(entry, rng));
}
