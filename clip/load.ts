/**
 * `loadClip`: a CLIP model by name (downloaded once into the cache), by checkpoint path in any
 * supported form, or the embedded SynthMTIL model (`"synth-tiny"`, bundled, no download).
 *
 * @module
 */
import { tf } from "./backends/tf.ts";
import type { ClipConfig, ClipModel } from "./types.ts";
import { buildClip } from "./model.ts";
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
  const model: ClipModel = buildClip(stateDict, { strict: opts.strict ?? true });
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
