/**
 * The nine released OpenAI CLIP models and the BPE vocabulary: where to get them, their sha256
 * (the second-to-last URL segment, as the reference `clip.load` checks it), and resolution of a
 * model name or a path to a local checkpoint file.
 *
 * @module
 */
import { cachedDownload } from "./download/download.ts";

/** One downloadable file. */
export interface RemoteFile {
  /** Download URL. */
  url: string;
  /** sha256 of the file (hex). */
  sha256: string;
  /** File name in the cache directory. */
  fileName: string;
}

/** A released OpenAI CLIP model. */
export interface ModelEntry extends RemoteFile {
  /** The reference name, e.g. `ViT-B/16`. */
  name: string;
  /** Input resolution in pixels. */
  imageResolution: number;
}

const BASE = "https://openaipublic.azureedge.net/clip/models";

function entry(name: string, sha256: string, file: string, imageResolution: number): ModelEntry {
  return { name, sha256, fileName: file, url: `${BASE}/${sha256}/${file}`, imageResolution };
}

/** The OpenAI CLIP checkpoints (TorchScript archives), by reference name. */
export const OPENAI_MODELS: Readonly<Record<string, ModelEntry>> = Object.freeze({
  "RN50": entry(
    "RN50",
    "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762",
    "RN50.pt",
    224,
  ),
  "RN101": entry(
    "RN101",
    "8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599",
    "RN101.pt",
    224,
  ),
  "RN50x4": entry(
    "RN50x4",
    "7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd",
    "RN50x4.pt",
    288,
  ),
  "RN50x16": entry(
    "RN50x16",
    "52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa",
    "RN50x16.pt",
    384,
  ),
  "RN50x64": entry(
    "RN50x64",
    "be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c",
    "RN50x64.pt",
    448,
  ),
  "ViT-B/32": entry(
    "ViT-B/32",
    "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
    "ViT-B-32.pt",
    224,
  ),
  "ViT-B/16": entry(
    "ViT-B/16",
    "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
    "ViT-B-16.pt",
    224,
  ),
  "ViT-L/14": entry(
    "ViT-L/14",
    "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
    "ViT-L-14.pt",
    224,
  ),
  "ViT-L/14@336px": entry(
    "ViT-L/14@336px",
    "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02",
    "ViT-L-14-336px.pt",
    336,
  ),
});

/** The byte-level BPE merges of the CLIP tokenizer (from the public openai/CLIP repository). */
export const BPE_VOCAB: Readonly<RemoteFile> = Object.freeze({
  url: "https://raw.githubusercontent.com/openai/CLIP/main/clip/bpe_simple_vocab_16e6.txt.gz",
  sha256: "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a",
  fileName: "bpe_simple_vocab_16e6.txt.gz",
});

/** Names of the released models, in the reference order. */
export function availableModels(): string[] {
  return Object.keys(OPENAI_MODELS);
}

const norm = (s: string) => s.toLowerCase().replace(/[^a-z0-9]/g, "").replace(/px$/, "");

/**
 * The registry entry for a model name: exact reference names (`ViT-B/16`) and the usual
 * spellings (`ViT-B-16`, `vit-b-16`, `ViT-L-14-336`) are accepted. Undefined when unknown.
 */
export function findModel(name: string): ModelEntry | undefined {
  if (name in OPENAI_MODELS) return OPENAI_MODELS[name];
  const n = norm(name);
  return Object.values(OPENAI_MODELS).find((m) =>
    norm(m.name) === n || norm(m.fileName.replace(/\.pt$/, "")) === n
  );
}

/** Options of {@link resolveModel}. */
export interface ResolveModelOptions {
  /** Cache directory override (default `MTIL_CACHE` or `~/.cache/mtil`). */
  cacheDir?: string;
  /** Show a download progress bar (default true). */
  progress?: boolean;
}

/**
 * Local path of a model: an existing file path is returned as is; a registry name is found in
 * the cache or downloaded once (sha256-checked). Anything else is an error listing the names.
 */
export async function resolveModel(
  nameOrPath: string,
  opts: ResolveModelOptions = {},
): Promise<string> {
  try {
    if ((await Deno.stat(nameOrPath)).isFile) return nameOrPath;
  } catch {
    // not a local file
  }
  const m = findModel(nameOrPath);
  if (!m) {
    throw new Error(
      `model ${nameOrPath} not found: not a file, and not one of ${availableModels().join(", ")}`,
    );
  }
  return await cachedDownload({
    url: m.url,
    fileName: m.fileName,
    sha256: m.sha256,
    cacheDir: opts.cacheDir,
    progress: opts.progress,
  });
}

/** Local path of the BPE vocabulary (cache, else downloaded once with its sha256). */
export function resolveBpeVocab(opts: ResolveModelOptions = {}): Promise<string> {
  return cachedDownload({ ...BPE_VOCAB, cacheDir: opts.cacheDir, progress: opts.progress });
}
