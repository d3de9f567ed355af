/**
 * Low-rank adapters (LoRA) on the dense layers of a {@link ClipModel}, in standard and
 * shared-basis mode.
 *
 * An adapter on a linear layer with weight `W: [out, in]` adds `(alpha / r) · B · A` to `W`, with
 * `A: [r, in] ~ U(−1/√in, 1/√in)` and `B: [out, r] = 0`, so a fresh adapter leaves the model
 * unchanged. While the model is training, dropout is applied to the adapter's input. Adapters are
 * installed as `denseHooks` of the model: the base weights are never modified, and
 * {@link mergedStateDict} folds the adapters into a copy of them for saving.
 *
 * Targets match module paths (as `deno task list-layers --linear-only` prints them) that equal the
 * target or end with `.` + target. The target `attn` means whole attention blocks: separate
 * adapters on q, k and v (row slices of the packed `in_proj_weight`) and on `out_proj`.
 *
 * @module
 */
import { mulberry32 } from "../datasets/rng.ts";
import { tf } from "../clip/backends/tf.ts";
import { readableOnHost } from "../clip/backends/webgpu.ts";
import type { ClipModel } from "../clip/types.ts";
import type { StateDict } from "../clip/formats/state_dict.ts";

/** Options of {@link injectLora}. */
export interface LoraOptions {
  /** Rank of each adapter (default 8). */
  r?: number;
  /** Scale numerator: adapters add `(alpha / r) · B · A` (default 16). */
  alpha?: number;
  /** Dropout probability on the adapter input while training (default 0.1). */
  dropout?: number;
  /** Module-path targets (default `["attn.out_proj", "mlp.c_fc", "mlp.c_proj"]`). */
  targets?: string[];
  /** Share one A/B pair between adapters with the same key (`--lora-shared`). */
  shared?: boolean;
  /** In shared mode, let the projection name (q, k, v, o) join the key (`--lora-shared-split-qkvo`). */
  splitQkvo?: boolean;
  /** Seed of the `A` initialisation (default 0). */
  seed?: number;
}

/** The default LoRA targets. */
export const DEFAULT_LORA_TARGETS: readonly string[] = ["attn.out_proj", "mlp.c_fc", "mlp.c_proj"];

/** One adapter: `delta W = scale · B · A` on the rows `[rowStart, rowStart + out)` of `weightKey`. */
export interface LoraAdapter {
  /** Module path of the adapted layer (e.g. `transformer.resblocks.0.attn.out_proj`). */
  path: string;
  /** Projection name: `q`, `k`, `v` (packed in-projection slices), `o` (out_proj) or `linear`. */
  proj: "q" | "k" | "v" | "o" | "linear";
  /** State-dict key of the adapted weight. */
  weightKey: string;
  /** First row of the weight the adapter changes (non-zero for k and v slices). */
  rowStart: number;
  /** Input width. */
  inFeatures: number;
  /** Output width of this adapter. */
  outFeatures: number;
  /** Sharing key (the adapter's own path in standard mode). */
  key: string;
  /** `[r, in]` down-projection. */
  A: tf.Variable;
  /** `[out, r]` up-projection, zero at injection. */
  B: tf.Variable;
}

/** What {@link injectLora} returns: the adapters and their (deduplicated) variables. */
export interface LoraState {
  /** Rank. */
  r: number;
  /** Alpha. */
  alpha: number;
  /** `alpha / r`. */
  scale: number;
  /** Dropout probability. */
  dropout: number;
  /** Whether adapters share variables by key. */
  shared: boolean;
  /** Whether the projection name joins the sharing key. */
  splitQkvo: boolean;
  /** All adapters, in model order. */
  adapters: LoraAdapter[];
  /**
   * The trainable variables, each once, by a stable name (`<key>.lora_A` / `<key>.lora_B`).
   * In shared mode several adapters use the same variable objects.
   */
  variables: Map<string, tf.Variable>;
}

function matches(path: string, target: string): boolean {
  return path === target || path.endsWith("." + target);
}

/** Module paths of the attention blocks (those holding a packed `in_proj_weight`). */
export function attentionPaths(model: ClipModel): string[] {
  const out: string[] = [];
  for (const key of model.params.keys()) {
    if (key.endsWith(".in_proj_weight")) out.push(key.slice(0, -".in_proj_weight".length));
  }
  return out;
}

function headsFor(model: ClipModel, path: string): number {
  const c = model.config;
  return path.startsWith("visual.") ? Math.floor(c.visionWidth / 64) : c.transformerHeads;
}

/** Seeded uniform samples (mulberry32) so injections are reproducible. */
function uniform(seed: number, n: number, lo: number, hi: number): Float32Array {
  const next = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * next();
  return out;
}

let loraCounter = 0;

/**
 * Install LoRA adapters on `model` (as dense hooks). Throws if a target matches nothing, listing
 * the available paths, or if a layer already has a hook.
 */
export function injectLora(model: ClipModel, options: LoraOptions = {}): LoraState {
  const r = options.r ?? 8;
  const alpha = options.alpha ?? 16;
  const dropout = options.dropout ?? 0.1;
  const targets = options.targets ?? [...DEFAULT_LORA_TARGETS];
  const shared = options.shared ?? false;
  const splitQkvo = options.splitQkvo ?? false;
  let seed = options.seed ?? 0;
  if (!(r > 0) || !Number.isInteger(r)) {
    throw new Error(`LoRA rank must be a positive integer, got ${r}`);
  }
  if (!(dropout >= 0 && dropout < 1)) {
    throw new Error(`LoRA dropout must be in [0, 1), got ${dropout}`);
  }
  const scale = alpha / r;
  const id = loraCounter++;

  const linear = model.linearPaths();
  const attn = attentionPaths(model);
  // Each requested layer: a packed attention block or a plain linear module.
  const chosen = new Map<string, "attn" | "linear">();
  for (const t of targets) {
    let hit = false;
    if (t === "attn" || t.endsWith(".attn")) {
      for (const p of attn) if (matches(p, t)) (chosen.set(p, "attn"), hit = true);
    }
    for (const p of linear) if (matches(p, t)) (chosen.set(p, "linear"), hit = true);
    if (!hit) {
      throw new Error(
        `LoRA target "${t}" matches no module. Available dense module paths:\n  ` +
          [...attn.map((p) => `${p} (attention block: q/k/v/o)`), ...linear].join("\n  "),
      );
    }
  }
  // `attn` on a block supersedes a separate `attn.out_proj` target on the same block.
  for (const [p, kind] of chosen) {
    if (kind === "attn") chosen.delete(p + ".out_proj");
  }

  const byKey = new Map<string, { A: tf.Variable; B: tf.Variable }>();
  const variables = new Map<string, tf.Variable>();
  const adapters: LoraAdapter[] = [];

  const make = (
    path: string,
    proj: LoraAdapter["proj"],
    weightKey: string,
    rowStart: number,
    inF: number,
    outF: number,
    key: string,
  ): LoraAdapter => {
    let pair = byKey.get(key);
    if (!pair) {
      const bound = 1 / Math.sqrt(inF);
      const A = tf.tidy(() =>
        tf.variable(
          tf.tensor2d(uniform(seed++, r * inF, -bound, bound), [r, inF]),
          true,
          `lora${id}/${key}.lora_A`,
        )
      );
      const B = tf.tidy(() => tf.variable(tf.zeros([outF, r]), true, `lora${id}/${key}.lora_B`));
      pair = { A, B };
      byKey.set(key, pair);
      variables.set(`${key}.lora_A`, A);
      variables.set(`${key}.lora_B`, B);
    }
    const a: LoraAdapter = {
      path,
      proj,
      weightKey,
      rowStart,
      inFeatures: inF,
      outFeatures: outF,
      key,
      A: pair.A,
      B: pair.B,
    };
    adapters.push(a);
    return a;
  };

  let dropoutSeed = (options.seed ?? 0) * 1_000_003 + 17;
  const hookOf = (ads: LoraAdapter[]) => (x: tf.Tensor): tf.Tensor => {
    const inF = ads[0].inFeatures;
    const lead = x.shape.slice(0, -1);
    let x2 = x.reshape([-1, inF]);
    // Seeded per call, so a run is reproducible (same seed, same order of forward passes).
    if (model.training && dropout > 0) x2 = tf.dropout(x2, dropout, undefined, dropoutSeed++);
    const outs = ads.map((a) => tf.matMul(tf.matMul(x2, a.A.transpose()), a.B.transpose()));
    const y = (outs.length === 1 ? outs[0] : tf.concat(outs, 1)).mul(scale);
    return y.reshape([...lead, -1]);
  };

  for (const [path, kind] of chosen) {
    if (model.denseHooks.has(path) || (kind === "attn" && model.denseHooks.has(path + ".attn"))) {
      throw new Error(`layer ${path} already has a dense hook (LoRA injected twice?)`);
    }
    if (kind === "attn") {
      const w = model.params.get(`${path}.in_proj_weight`)!;
      const width = (w.shape as number[])[1];
      const heads = headsFor(model, path);
      const base = `attn:${width}:${heads}`;
      const keyOf = (proj: string) =>
        shared ? (splitQkvo ? `${base}:${proj}` : base) : `${path}.${proj}`;
      const qkv = (["q", "k", "v"] as const).map((proj, i) =>
        make(path, proj, `${path}.in_proj_weight`, i * width, width, width, keyOf(proj))
      );
      const ow = model.params.get(`${path}.out_proj.weight`)!;
      const o = make(
        `${path}.out_proj`,
        "o",
        `${path}.out_proj.weight`,
        0,
        (ow.shape as number[])[1],
        (ow.shape as number[])[0],
        keyOf("o"),
      );
      model.denseHooks.set(path, hookOf(qkv));
      model.denseHooks.set(`${path}.out_proj`, hookOf([o]));
    } else {
      const w = model.params.get(`${path}.weight`);
      if (!w) throw new Error(`no weight ${path}.weight for LoRA target`);
      const [outF, inF] = w.shape as number[];
      const isAttnOut = path.endsWith(".attn.out_proj");
      let key = path;
      if (shared) {
        if (isAttnOut) {
          const block = path.slice(0, -".out_proj".length);
          const base = `attn:${inF}:${headsFor(model, block)}`;
          key = splitQkvo ? `${base}:o` : base;
        } else {
          key = `mlp:${inF}:${outF}`;
          if (splitQkvo) key += `:${path.split(".").pop()}`;
        }
      }
      const a = make(path, isAttnOut ? "o" : "linear", `${path}.weight`, 0, inF, outF, key);
      model.denseHooks.set(path, hookOf([a]));
    }
  }
  return { r, alpha, scale, dropout, shared, splitQkvo, adapters, variables };
}

/** Remove the adapters' hooks from the model and dispose their variables. */
export function removeLora(model: ClipModel, state: LoraState): void {
  for (const a of state.adapters) {
    model.denseHooks.delete(a.path);
  }
  for (const v of new Set(state.variables.values())) v.dispose();
  state.variables.clear();
}

/** Trainable and total parameter counts with LoRA (adapters counted once each when shared). */
export function loraParameterCounts(
  model: ClipModel,
  state: LoraState,
): { trainable: number; base: number; total: number } {
  let trainable = 0;
  for (const v of state.variables.values()) trainable += v.size;
  let base = 0;
  for (const [k, v] of model.params) if (!isBuffer(k)) base += v.size;
  return { trainable, base, total: base + trainable };
}

function isBuffer(key: string): boolean {
  return key.endsWith("running_mean") || key.endsWith("running_var") ||
    key.endsWith("num_batches_tracked");
}

/** The weight deltas `scale · B · A` summed per weight key (rows placed at each adapter's slice). */
export function loraDeltas(model: ClipModel, state: LoraState): Map<string, tf.Tensor2D> {
  const out = new Map<string, tf.Tensor2D>();
  for (const a of state.adapters) {
    const d = tf.tidy(() => {
      const w = model.params.get(a.weightKey)!;
      const delta = tf.matMul(a.B, a.A).mul(state.scale) as tf.Tensor2D;
      const rows = (w.shape as number[])[0];
      const padded = tf.pad(delta, [[a.rowStart, rows - a.rowStart - a.outFeatures], [0, 0]]);
      const prev = out.get(a.weightKey);
      return (prev ? prev.add(padded) : padded) as tf.Tensor2D;
    });
    out.get(a.weightKey)?.dispose();
    out.set(a.weightKey, d);
  }
  return out;
}

/**
 * {@link mergedStateDict} with asynchronous reads: works on every backend, webgpu included
 * (where synchronous reads are impossible).
 */
export async function mergedStateDictAsync(model: ClipModel, state: LoraState): Promise<StateDict> {
  await readableOnHost([...model.params.values(), ...state.variables.values()]);
  const sd = model.stateDict();
  const deltas = loraDeltas(model, state);
  for (const [key, d] of deltas) {
    const t = sd.get(key)!;
    const dd = await d.data();
    const data = Float32Array.from(t.data as Float32Array);
    for (let i = 0; i < data.length; i++) data[i] += dd[i];
    sd.set(key, { ...t, data });
    d.dispose();
  }
  return sd;
}

/**
 * The model's state dict with every adapter merged into its base weight (reference key names;
 * loadable by any CLIP code). The model itself is not modified.
 */
export function mergedStateDict(model: ClipModel, state: LoraState): StateDict {
  const sd = model.stateDict();
  const deltas = loraDeltas(model, state);
  for (const [key, d] of deltas) {
    const t = sd.get(key)!;
    const dd = d.dataSync();
    const data = Float32Array.from(t.data as Float32Array);
    for (let i = 0; i < data.length; i++) data[i] += dd[i];
    sd.set(key, { ...t, data });
    d.dispose();
  }
  return sd;
}

/** Fold the adapters into the model's weights in place and remove them (B is then reset). */
export function mergeLoraInPlace(model: ClipModel, state: LoraState): void {
  const deltas = loraDeltas(model, state);
  for (const [key, d] of deltas) {
    const w = model.params.get(key)!;
    tf.tidy(() => w.assign(w.add(d)));
    d.dispose();
  }
  removeLora(model, state);
}

/** The adapters alone as a state dict (`<key>.lora_A`, `<key>.lora_B`), for small adapter files. */
export function adapterStateDict(state: LoraState): StateDict {
  const sd: StateDict = new Map();
  for (const [name, v] of state.variables) {
    sd.set(name, { shape: [...v.shape], dtype: "float32", data: v.dataSync() as Float32Array });
  }
  return sd;
}

/** Assign adapter values saved by {@link adapterStateDict} (same options at injection). */
export function loadAdapterStateDict(state: LoraState, sd: StateDict): void {
  for (const [name, v] of state.variables) {
    const t = sd.get(name);
    if (!t) throw new Error(`adapter file lacks ${name}; was it saved with the same LoRA options?`);
    if (t.shape.join(",") !== v.shape.join(",")) {
      throw new Error(`adapter ${name}: shape [${t.shape}] in file, [${v.shape}] expected`);
    }
    tf.tidy(() => v.assign(tf.tensor(t.data, t.shape, "float32")));
  }
  const extra = [...sd.keys()].filter((k) => !state.variables.has(k));
  if (extra.length) {
    throw new Error(`adapter file has unexpected entries: ${extra.slice(0, 5).join(", ")}`);
  }
}
