/**
 * Hugging Face `CLIPModel` state-dict names → OpenAI CLIP names (ViT towers).
 *
 * HF splits each attention's packed projection into `q_proj`/`k_proj`/`v_proj`; OpenAI packs
 * them as `attn.in_proj_weight` `[3W, W]` (rows q, k, v). HF stores the two projections as
 * `nn.Linear` weights `[E, W]`; OpenAI stores `text_projection`/`visual.proj` as `[W, E]`.
 *
 * @module
 */
import { numel, type RawTensor, type StateDict } from "./state_dict.ts";

/** Whether a state dict uses Hugging Face `CLIPModel` names. */
export function isHfClip(sd: StateDict): boolean {
  for (const k of sd.keys()) {
    if (k.startsWith("text_model.") || k.startsWith("vision_model.")) return true;
  }
  return false;
}

const LAYER_RENAMES: [string, string][] = [
  ["self_attn.out_proj.", "attn.out_proj."],
  ["layer_norm1.", "ln_1."],
  ["layer_norm2.", "ln_2."],
  ["mlp.fc1.", "mlp.c_fc."],
  ["mlp.fc2.", "mlp.c_proj."],
];

/** Rename one HF key (not q/k/v, not the projections); undefined when it maps to nothing. */
function renameKey(k: string): string | undefined {
  const fixed: Record<string, string> = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
    "vision_model.embeddings.class_embedding": "visual.class_embedding",
    "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
    "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
    "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight",
    "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
    "vision_model.post_layernorm.weight": "visual.ln_post.weight",
    "vision_model.post_layernorm.bias": "visual.ln_post.bias",
    "logit_scale": "logit_scale",
  };
  if (k in fixed) return fixed[k];
  const m = /^(text_model|vision_model)\.encoder\.layers\.(\d+)\.(.+)$/.exec(k);
  if (!m) return undefined;
  const base = m[1] === "text_model" ? "transformer" : "visual.transformer";
  for (const [from, to] of LAYER_RENAMES) {
    if (m[3].startsWith(from)) return `${base}.resblocks.${m[2]}.${to}${m[3].slice(from.length)}`;
  }
  return undefined;
}

function transpose2d(t: RawTensor, name: string): RawTensor {
  if (t.shape.length !== 2) throw new Error(`hf_names: ${name} is not 2-D`);
  const [r, c] = t.shape;
  const out = new Float32Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = t.data[i * c + j];
  return { shape: [c, r], dtype: t.dtype, data: out };
}

function concat0(parts: RawTensor[]): RawTensor {
  const rows = parts.reduce((s, p) => s + p.shape[0], 0);
  const out = new Float32Array(parts.reduce((s, p) => s + numel(p.shape), 0));
  let o = 0;
  for (const p of parts) {
    out.set(p.data, o);
    o += p.data.length;
  }
  return { shape: [rows, ...parts[0].shape.slice(1)], dtype: parts[0].dtype, data: out };
}

/**
 * Convert a Hugging Face `CLIPModel` state dict to OpenAI names: q/k/v merged into
 * `in_proj_weight`/`in_proj_bias`, `text_projection`/`visual.proj` transposed, `position_ids`
 * dropped. Throws naming any key it cannot place (e.g. a non-CLIP model).
 */
export function hfToOpenAI(sd: StateDict): StateDict {
  const out: StateDict = new Map();
  const qkv = new Map<string, Partial<Record<"q" | "k" | "v", RawTensor>>>();
  for (const [k, t] of sd) {
    if (k.endsWith("embeddings.position_ids")) continue;
    if (k === "text_projection.weight") {
      out.set("text_projection", transpose2d(t, k));
      continue;
    }
    if (k === "visual_projection.weight") {
      out.set("visual.proj", transpose2d(t, k));
      continue;
    }
    const m =
      /^(text_model|vision_model)\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$/
        .exec(k);
    if (m) {
      const base = m[1] === "text_model" ? "transformer" : "visual.transformer";
      const key = `${base}.resblocks.${m[2]}.attn.in_proj_${m[4]}`;
      const e = qkv.get(key) ?? {};
      e[m[3] as "q" | "k" | "v"] = t;
      qkv.set(key, e);
      if (!out.has(key)) out.set(key, t); // placeholder keeps the key order
      continue;
    }
    const r = renameKey(k);
    if (r === undefined) throw new Error(`hf_names: cannot map Hugging Face key ${k}`);
    out.set(r, t);
  }
  for (const [key, e] of qkv) {
    if (!e.q || !e.k || !e.v) throw new Error(`hf_names: ${key} lacks one of q/k/v projections`);
    out.set(key, concat0([e.q, e.k, e.v]));
  }
  return out;
}
