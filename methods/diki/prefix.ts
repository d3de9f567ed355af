/**
 * DIKI's prefix pools and the prefix attention they feed (ECCV 2024, "Mind the Interference").
 *
 * Each of the first `depth` residual blocks of a tower owns a pool `[tasks, 2, prefixLen, width]`:
 * row `t` holds task t's prefix keys (slot 0) and values (slot 1). With task t selected, the
 * block's attention becomes `out_proj(A + w·P)`: `A` the block's own attention (causal mask in
 * the text tower), `P = softmax(q·Pkᵀ/√hd)·Pv` a separate softmax over the prefix keys, without
 * mask, the prefix keys and values split into heads like k and v but not passed through
 * `in_proj`, and `w` a weight per sequence (1 when the task id is known). Values start at 0, so
 * an untrained pool leaves CLIP exactly as it was.
 *
 * The pools are installed as {@link AttentionHook}s of the model (`model.attentionHooks`); with
 * no selection installed the model is the frozen CLIP, bit for bit.
 *
 * Pool variables are named like the reference state dict:
 * `image_encoder.transformer.resblocks.<i>.attn.prefix_pool` and
 * `text_encoder.transformer.resblocks.<i>.attn.prefix_pool`.
 *
 * @module
 */
import { tf } from "../../clip/backends/tf.ts";
import type { AttentionHook, ClipConfig, ClipModel } from "../../clip/types.ts";
import { scaledDotProductAttention } from "../../clip/layers.ts";
import type { StateDict } from "../../clip/formats/state_dict.ts";

/** Sizes of the pools. */
export interface PrefixPoolConfig {
  /** Rows per pool: the number of tasks of the sequence (`pool_size` of the reference). */
  tasks: number;
  /** Image-tower blocks with a pool (the first `depthVision`; more than the layers = all). */
  depthVision: number;
  /** Text-tower blocks with a pool. */
  depthText: number;
  /** Prefix length of the image tower. */
  prefixLenVision: number;
  /** Prefix length of the text tower. */
  prefixLenText: number;
}

/** A pool weight: one number for every sequence, or one per sequence (`[n]`). */
export type PrefixWeight = number | tf.Tensor1D;

/** Which pool row the towers use, and with which weight. */
export interface PrefixSelection {
  /** Task (pool row). */
  task: number;
  /** Weight of the image tower's prefixes (default 1). */
  visionWeight?: PrefixWeight;
  /** Weight of the text tower's prefixes (default 1). */
  textWeight?: PrefixWeight;
}

/** Reference name of the pool of image-tower block `i`. */
export function visionPoolName(i: number): string {
  return `image_encoder.transformer.resblocks.${i}.attn.prefix_pool`;
}

/** Reference name of the pool of text-tower block `i`. */
export function textPoolName(i: number): string {
  return `text_encoder.transformer.resblocks.${i}.attn.prefix_pool`;
}

/** One block with a pool. */
export interface PoolSlot {
  /** Reference name of the pool (`…attn.prefix_pool`). */
  name: string;
  /** Attention module path in the CLIP model. */
  path: string;
  /** Which tower. */
  tower: "vision" | "text";
  /** Prefix length. */
  prefixLen: number;
  /** The tower's width. */
  width: number;
}

/**
 * The blocks that get a pool for a model config: vision blocks `0 … min(depthVision, layers)−1`
 * (ViT only), text blocks `0 … min(depthText, layers)−1`. Allocates nothing.
 */
export function poolSlots(model: ClipConfig, config: PrefixPoolConfig): PoolSlot[] {
  for (
    const k of ["tasks", "depthVision", "depthText", "prefixLenVision", "prefixLenText"] as const
  ) {
    const v = config[k];
    if (!Number.isInteger(v) || v < 0 || (k === "tasks" && v < 1)) {
      throw new Error(
        `DIKI: ${k} must be a${k === "tasks" ? " positive" : " non-negative"} integer, got ${v}`,
      );
    }
  }
  const slots: PoolSlot[] = [];
  if (config.depthVision > 0) {
    if (model.vision !== "vit") {
      throw new Error(
        "DIKI: image-tower prefixes need a ViT image tower (this model is a ResNet); " +
          "set the vision depth to 0 to prefix the text tower only",
      );
    }
    if (config.prefixLenVision < 1) throw new Error("DIKI: the vision prefix length must be >= 1");
    const n = Math.min(config.depthVision, model.visionLayers as number);
    for (let i = 0; i < n; i++) {
      slots.push({
        name: visionPoolName(i),
        path: `visual.transformer.resblocks.${i}.attn`,
        tower: "vision",
        prefixLen: config.prefixLenVision,
        width: model.visionWidth,
      });
    }
  }
  if (config.depthText > 0) {
    if (config.prefixLenText < 1) throw new Error("DIKI: the text prefix length must be >= 1");
    const n = Math.min(config.depthText, model.transformerLayers);
    for (let i = 0; i < n; i++) {
      slots.push({
        name: textPoolName(i),
        path: `transformer.resblocks.${i}.attn`,
        tower: "text",
        prefixLen: config.prefixLenText,
        width: model.transformerWidth,
      });
    }
  }
  return slots;
}

/** Number of trained values per task: `Σ over pooled blocks of 2·prefixLen·width`. */
export function trainableParamsPerTask(model: ClipConfig, config: PrefixPoolConfig): number {
  return poolSlots(model, config).reduce((a, s) => a + 2 * s.prefixLen * s.width, 0);
}

/** mulberry32 uniforms in [-1, 1) (seeded, for the key initialisation). */
function uniformFill(out: Float32Array, seed: number): void {
  let a = seed >>> 0;
  for (let i = 0; i < out.length; i++) {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((t ^ (t >>> 14)) >>> 0) / 2147483648 - 1;
  }
}

/**
 * `P = softmax(q·Pkᵀ/√hd)·Pv` (times `weight`) for queries `q` `[n·heads, l, hd]` and one pool row
 * `[2, L, heads·hd]` (keys, values): the prefix keys and values are split into heads like the
 * block's k and v and shared by the `n` sequences. Differentiable in `row`.
 */
export function prefixAttention(
  q: tf.Tensor3D,
  n: number,
  heads: number,
  row: tf.Tensor,
  weight: PrefixWeight = 1,
): tf.Tensor3D {
  return tf.tidy(() => {
    const [, , hd] = q.shape;
    const len = row.shape[1] as number;
    // [2, L, heads, hd] → [2, heads, L, hd]
    const kvh = heads === 1
      ? tf.reshape(row, [2, 1, len, hd])
      : tf.transpose(tf.reshape(row, [2, len, heads, hd]), [0, 2, 1, 3]);
    const expand = (i: number) =>
      tf.reshape(
        tf.tile(tf.slice(kvh, [i, 0, 0, 0], [1, heads, len, hd]), [n, 1, 1, 1]),
        [n * heads, len, hd],
      ) as tf.Tensor3D;
    const p = scaledDotProductAttention(q, expand(0), expand(1));
    if (typeof weight === "number") return weight === 1 ? p : tf.mul(p, weight) as tf.Tensor3D;
    if (weight.shape[0] !== n) {
      throw new Error(`DIKI: ${weight.shape[0]} prefix weights for ${n} sequences`);
    }
    const w = heads === 1
      ? tf.reshape(weight, [n, 1, 1])
      : tf.reshape(tf.tile(tf.reshape(weight, [n, 1]), [1, heads]), [n * heads, 1, 1]);
    return tf.mul(p, w) as tf.Tensor3D;
  });
}

/**
 * The prefix pools of one model: variables, initialisation, installation as attention hooks.
 *
 * @example
 * ```ts
 * import { PrefixPools } from "jsr:@mtil/mtil/methods";
 * import type { ClipModel } from "jsr:@mtil/mtil/clip";
 * import type { tf } from "jsr:@mtil/mtil/tf";
 * declare const model: ClipModel, images: tf.Tensor4D;
 * const pools = new PrefixPools(model.config, { tasks: 11, depthVision: 8, depthText: 8,
 *   prefixLenVision: 8, prefixLenText: 8 });
 * pools.withSelection(model, { task: 0 }, () => model.encodeImage(images)); // task 0's prefixes
 * ```
 */
export class PrefixPools {
  /** Sizes. */
  readonly config: PrefixPoolConfig;
  /** Pool variables by reference name (`…prefix_pool`), trainable. */
  readonly pools: Map<string, tf.Variable> = new Map();
  readonly #slots: PoolSlot[];

  /**
   * Allocate the pools for a model config: keys uniform(−1, 1) from `seed`, values 0 (the
   * reference draws the keys from torch's global RNG; load its pools to reproduce a run).
   */
  constructor(model: ClipConfig, config: PrefixPoolConfig, seed = 0) {
    this.config = { ...config };
    this.#slots = poolSlots(model, config);
    let s = seed;
    for (const slot of this.#slots) {
      const per = slot.prefixLen * slot.width;
      const data = new Float32Array(config.tasks * 2 * per);
      const keys = new Float32Array(per);
      for (let t = 0; t < config.tasks; t++) {
        uniformFill(keys, s = (s + 0x9e3779b9) | 0);
        data.set(keys, t * 2 * per);
      }
      this.pools.set(
        slot.name,
        tf.tidy(() =>
          tf.variable(
            tf.tensor4d(data, [config.tasks, 2, slot.prefixLen, slot.width]),
            true,
            `diki/${slot.name}/${Math.random().toString(36).slice(2)}`,
          )
        ),
      );
    }
  }

  /** Reference names of the pools in block order (vision, then text). */
  names(): string[] {
    return this.#slots.map((s) => s.name);
  }

  /**
   * Install the hooks of `selection` on `model` (replacing hooks at the same paths). Weights
   * given as tensors are used as they are (not copied, not disposed).
   */
  install(model: ClipModel, selection: PrefixSelection): void {
    const hooks = model.attentionHooks;
    if (!hooks) throw new Error("DIKI needs a model with attention hooks (clip/model.ts Clip)");
    const { task } = selection;
    if (!Number.isInteger(task) || task < 0 || task >= this.config.tasks) {
      throw new Error(`DIKI: task ${task} is outside the pools' ${this.config.tasks} rows`);
    }
    for (const slot of this.#slots) {
      const pool = this.pools.get(slot.name)!;
      const weight = (slot.tower === "vision" ? selection.visionWeight : selection.textWeight) ?? 1;
      const hook: AttentionHook = (q, n, heads) =>
        tf.tidy(() => {
          const row = tf.reshape(
            tf.slice(pool, [task, 0, 0, 0], [1, 2, slot.prefixLen, slot.width]),
            [2, slot.prefixLen, slot.width],
          );
          return prefixAttention(q, n, heads, row, weight);
        });
      hooks.set(slot.path, hook);
    }
  }

  /** Remove this pool set's hooks from `model` (the frozen CLIP again). */
  remove(model: ClipModel): void {
    for (const slot of this.#slots) model.attentionHooks?.delete(slot.path);
  }

  /**
   * Run `fn` with `selection` installed (or with no prefix at all for `null`), then restore the
   * hooks that were there before.
   */
  withSelection<T>(model: ClipModel, selection: PrefixSelection | null, fn: () => T): T {
    const hooks = model.attentionHooks;
    const saved = new Map(this.#slots.map((s) => [s.path, hooks?.get(s.path)]));
    try {
      if (selection) this.install(model, selection);
      else this.remove(model);
      return fn();
    } finally {
      for (const [path, h] of saved) {
        if (h) hooks!.set(path, h);
        else hooks?.delete(path);
      }
    }
  }

  /** A copy of the pools as a state dict (reference names). */
  stateDict(): StateDict {
    const sd: StateDict = new Map();
    for (const [k, v] of this.pools) {
      sd.set(k, {
        shape: v.shape.slice(),
        dtype: "float32",
        data: v.dataSync().slice() as Float32Array,
      });
    }
    return sd;
  }

  /** Assign every pool from `sd` (all present, shapes equal); checked before assigning. */
  loadStateDict(sd: StateDict, source = "state dict"): void {
    for (const [k, v] of this.pools) {
      const r = sd.get(k);
      if (!r) throw new Error(`${source}: DIKI pool "${k}" is missing`);
      if (r.shape.length !== v.shape.length || r.shape.some((d, i) => d !== v.shape[i])) {
        throw new Error(
          `${source}: DIKI pool "${k}" has shape [${r.shape}], expected [${v.shape}]`,
        );
      }
    }
    for (const [k, v] of this.pools) {
      const r = sd.get(k)!;
      tf.tidy(() => v.assign(tf.tensor(r.data, r.shape, "float32")));
    }
  }

  /** Free the pool variables. */
  dispose(): void {
    for (const v of this.pools.values()) v.dispose();
    this.pools.clear();
  }
}
