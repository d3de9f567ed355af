/**
 * `loadClip`: a CLIP model by name (downloaded once into the cache), by checkpoint path in any
 * supported form, or the embedded SynthMTIL model (`"synth-tiny"`, bundled, no download).
 *
 * @module
 */
import { tf } from "./backends/tf.ts";
import type { ClipConfig, ClipModel } from "./types.ts";
import { buildClip, NON_PARAMETER_KEYS } from "./model.ts";
import type { StateDict } from "./formats/state_dict.ts";
import { readCheckpoint, saveCheckpoint } from "./formats/checkpoint.ts";
import { findModel, resolveModel } from "./registry.ts";
import { makePreprocess } from "./images/preprocess.ts";
import { WordTokenizer } from "./tokenizers/word_tokenizer.ts";

/** Name of the embedded tiny model trained on SynthMTIL captions. */
export const EMBEDDED_MODEL = "synth-tiny";

/** Path of the embedded model file (inside the package: `data/models/synth-tiny.safetensors`). */
export const EMBEDDED_MODEL_PATH: string =
  new URL("../data/models/synth-tiny.safetensors", import.meta.url).pathname;

/** Options of {@link loadClip}. */
export interface LoadClipOptions {
  /** Cache directory for downloads (default `MTIL_CACHE` or `~/.cache/mtil`). */
  cacheDir?: string;
  /** Show a download progress bar (default true). */
  progress?: boolean;
  /** Reject unexpected or missing keys (default true). */
  strict?: boolean;
}

/** What {@link loadClip} tells about the loaded model. */
export interface ClipInfo {
  /** The name or path asked for. */
  name: string;
  /** The file the weights came from. */
  path: string;
  /** Inferred hyperparameters. */
  config: ClipConfig;
  /** Checkpoint metadata (format, iteration, our own metadata, …). */
  meta: Record<string, unknown>;
  /** Parameter count (trainable parameters, buffers excluded). */
  parameters: number;
}

/** Image bytes (JPEG/PNG) → preprocessed `[n_px, n_px, 3]` float32 tensor (NHWC without N). */
export type Preprocess = (bytes: Uint8Array) => Promise<tf.Tensor3D>;

/** A loaded model with its preprocessing. */
export interface LoadedClip {
  /** The model. */
  model: ClipModel;
  /** Its image preprocessing (resize, center crop, normalise). */
  preprocess: Preprocess;
  /** Where it came from and its shape. */
  info: ClipInfo;
}

/**
 * Load a CLIP model: one of the nine OpenAI names (`"ViT-B/16"`, `"RN50"`, …; downloaded once
 * with progress, resume and sha256 check), `"synth-tiny"` (bundled), or a checkpoint path
 * (TorchScript `.pt`, `torch.save` `.pth`, safetensors, ours).
 */
export async function loadClip(
  nameOrPath: string,
  opts: LoadClipOptions = {},
): Promise<LoadedClip> {
  const path = nameOrPath === EMBEDDED_MODEL
    ? EMBEDDED_MODEL_PATH
    : await resolveModel(nameOrPath, { cacheDir: opts.cacheDir, progress: opts.progress });
  const { stateDict, meta } = await readCheckpoint(path).catch((e) => {
    if (nameOrPath === EMBEDDED_MODEL && e instanceof Deno.errors.NotFound) {
      throw new Error(
        `the embedded model ${path} is missing; rebuild it with \`deno task pretrain-synth\``,
      );
    }
    throw e;
  });
  let model: ClipModel;
  try {
    model = buildClip(stateDict, { strict: opts.strict ?? true });
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  }
  const words = tokenizerWords(meta);
  if (words) model.tokenizer = new WordTokenizer(words);
  let parameters = 0;
  for (const v of model.params.values()) if (v.trainable) parameters += v.size;
  return {
    model,
    preprocess: makePreprocess(model.config.imageResolution),
    info: { name: nameOrPath, path, config: model.config, meta, parameters },
  };
}

/** The word list of a word-level tokenizer stored in checkpoint metadata, if any. */
export function tokenizerWords(meta: Record<string, unknown>): string[] | undefined {
  const tok = meta.tokenizer as { type?: string; words?: unknown } | undefined;
  if (tok?.type === "word" && Array.isArray(tok.words)) return tok.words.map(String);
  return undefined;
}

/** Checkpoint metadata that lets {@link loadClip} rebuild the model's word tokenizer (if any). */
export function tokenizerMeta(model: ClipModel): Record<string, unknown> {
  const tok = model.tokenizer;
  return tok instanceof WordTokenizer ? { tokenizer: { type: "word", words: tok.toJSON() } } : {};
}

/**
 * Save a model in the project's checkpoint format, keeping what is needed to load it back
 * (its word tokenizer, when it has one). Atomic.
 */
export async function saveClip(
  path: string,
  model: ClipModel,
  meta: Record<string, unknown> = {},
  opts: { floatDtype?: "float32" | "float16" } = {},
): Promise<void> {
  await saveCheckpoint(path, model.stateDict(), { ...meta, ...tokenizerMeta(model) }, opts);
}

/** Whether `name` is a model name this library can fetch or has embedded. */
export function isKnownModelName(name: string): boolean {
  return name === EMBEDDED_MODEL || findModel(name) !== undefined;
}

/** How a checkpoint's keys compare with a model's: see {@link compareWeights}. */
export interface WeightsReport {
  /** Model keys the checkpoint lacks. */
  missing: string[];
  /** Checkpoint keys the model does not have. */
  unexpected: string[];
  /** Keys present in both with different shapes. */
  misshaped: { key: string; model: number[]; file: number[] }[];
  /** Keys that match in name and shape. */
  matched: number;
}

/** Compare a state dict's keys and shapes with `model`'s parameters and buffers. */
export function compareWeights(model: ClipModel, sd: StateDict): WeightsReport {
  const missing: string[] = [];
  const misshaped: WeightsReport["misshaped"] = [];
  let matched = 0;
  for (const [key, v] of model.params) {
    const t = sd.get(key);
    if (!t) missing.push(key);
    else if (t.shape.length !== v.shape.length || t.shape.some((d, i) => d !== v.shape[i])) {
      misshaped.push({ key, model: [...v.shape], file: [...t.shape] });
    } else matched++;
  }
  const unexpected = [...sd.keys()].filter((k) =>
    !model.params.has(k) && !NON_PARAMETER_KEYS.includes(k)
  );
  return { missing, unexpected, misshaped, matched };
}

function listSome(keys: string[], max = 8): string {
  return keys.slice(0, max).join(", ") + (keys.length > max ? `, … (${keys.length} in all)` : "");
}

/** A one-paragraph description of a {@link WeightsReport} for `file`. */
export function formatWeightsReport(file: string, r: WeightsReport, total?: number): string {
  const parts = [`${file}: ${r.matched}${total ? ` of ${total}` : ""} model keys match`];
  if (r.missing.length) parts.push(`missing ${r.missing.length} [${listSome(r.missing)}]`);
  if (r.unexpected.length) {
    parts.push(`unexpected ${r.unexpected.length} [${listSome(r.unexpected)}]`);
  }
  if (r.misshaped.length) {
    parts.push(
      `mis-shaped ${r.misshaped.length} [${
        listSome(r.misshaped.map((m) => `${m.key}: model [${m.model}], file [${m.file}]`), 4)
      }]`,
    );
  }
  return parts.join("; ");
}

/** Options of {@link checkWeights} and {@link loadWeights}. */
export interface LoadWeightsOptions {
  /**
   * Require the checkpoint's keys and shapes to equal the model's (default true). With
   * `strict: false` the matching keys are loaded, the rest reported through `warn`; a checkpoint
   * sharing no key with the model is an error either way.
   */
  strict?: boolean;
  /** Where a non-strict report goes (default `console.warn`). */
  warn?: (message: string) => void;
}

/**
 * Check that `sd` (read from `file`) fits `model`; returns the state dict to load (the matching
 * keys). Strict (default): any missing, unexpected or mis-shaped key is an error naming the file
 * and the keys. Non-strict: the report is passed to `opts.warn`, and mis-shaped and unexpected
 * keys are dropped.
 */
export function checkWeights(
  model: ClipModel,
  sd: StateDict,
  file: string,
  opts: LoadWeightsOptions = {},
): StateDict {
  const r = compareWeights(model, sd);
  const clean = !r.missing.length && !r.unexpected.length && !r.misshaped.length;
  if (clean) return sd;
  const report = formatWeightsReport(file, r, model.params.size);
  if (r.matched === 0) {
    throw new Error(
      `${report}. The checkpoint shares no weight with the model ` +
        `(was it saved from another --model?)`,
    );
  }
  if (opts.strict ?? true) {
    throw new Error(
      `${report}. The checkpoint does not fit the model; pass the --model it was trained from, ` +
        `or --non-strict to load only the matching keys`,
    );
  }
  (opts.warn ?? console.warn)(`warning: --non-strict: ${report}; loading the ${r.matched} keys`);
  const out: StateDict = new Map();
  const bad = new Set(r.misshaped.map((m) => m.key));
  for (const [k, t] of sd) if (model.params.has(k) && !bad.has(k)) out.set(k, t);
  return out;
}

/**
 * Read the checkpoint at `path` and load it into `model` (strict by default: see
 * {@link checkWeights}). Nothing is assigned unless the check passes. Returns the checkpoint's
 * metadata.
 *
 * @example
 * ```ts ignore
 * const { model } = await loadClip("ViT-B/16");
 * await loadWeights(model, "ckpt/DTD.safetensors"); // throws naming the file on a mismatch
 * ```
 */
export async function loadWeights(
  model: ClipModel,
  path: string,
  opts: LoadWeightsOptions = {},
): Promise<Record<string, unknown>> {
  const ck = await readCheckpoint(path);
  model.loadStateDict(checkWeights(model, ck.stateDict, path, opts), { strict: false });
  return ck.meta;
}
