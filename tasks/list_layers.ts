/**
 * `deno task list-layers [--model M] [--linear-only] [--params]`: the module paths of a CLIP model
 * (as the seed's `list_clip_layers.py`), optionally with every parameter's name, shape and count.
 * Names are the reference state-dict keys, which LoRA targets and OGD rules match.
 *
 * `--model` takes a released name (shapes only: nothing is downloaded), `synth-tiny`, or a
 * checkpoint path.
 *
 * @module
 */
import { runMain } from "../methods/flags.ts";
import { parseArgs } from "./cli.ts";
import { linearModulePaths, MODEL_CONFIGS, stateDictShapes } from "../clip/model.ts";
import { findModel } from "../clip/registry.ts";
import { loadClip } from "../clip/load.ts";
import type { ClipConfig } from "../clip/types.ts";

/** One parameter row: reference key, shape, element count. */
export interface ParamRow {
  /** State-dict key. */
  name: string;
  /** Shape. */
  shape: number[];
  /** Number of elements. */
  count: number;
  /** Buffer (BatchNorm statistics) rather than a parameter. */
  buffer: boolean;
}

/** Module paths of a model's config: every parent module of a parameter, in order. */
export function modulePaths(keys: string[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const k of keys) {
    const parts = k.split(".");
    for (let i = 1; i < parts.length; i++) {
      const p = parts.slice(0, i).join(".");
      if (!seen.has(p)) (seen.add(p), out.push(p));
    }
  }
  return out;
}

/** The dense-layer paths of a config (what LoRA targets match), without building weights. */
export function linearPathsOf(config: ClipConfig): string[] {
  return linearModulePaths(config);
}

/** Parameter rows of a config (shapes only). */
export function paramRowsOf(config: ClipConfig): ParamRow[] {
  return stateDictShapes(config).map((e) => ({
    name: e.key,
    shape: [...e.shape],
    count: e.shape.reduce((a, b) => a * b, 1),
    buffer: /running_(mean|var)$|num_batches_tracked$/.test(e.key),
  }));
}

async function configOf(model: string): Promise<ClipConfig> {
  const entry = findModel(model);
  if (entry) return MODEL_CONFIGS[entry.name];
  const { model: m } = await loadClip(model, { progress: true });
  const c = m.config;
  m.dispose();
  return c;
}

/** Entry point. */
export async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: "string", default: "ViT-B/16" },
      "linear-only": { type: "boolean", default: false },
      params: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log("deno task list-layers [--model NAME|PATH] [--linear-only] [--params]");
    return;
  }
  const config = await configOf(values.model!);
  const rows = paramRowsOf(config);
  const paths = values["linear-only"]
    ? linearPathsOf(config)
    : modulePaths(rows.map((r) => r.name));
  for (const p of paths) console.log(p);
  if (values.params) {
    console.log("");
    const w = Math.max(...rows.map((r) => r.name.length));
    let total = 0;
    for (const r of rows) {
      if (!r.buffer) total += r.count;
      const shown = values["linear-only"] ? paths.some((p) => r.name.startsWith(p + ".")) : true;
      if (shown) {
        console.log(
          `${r.name.padEnd(w)}  [${r.shape.join(", ")}]`.padEnd(w + 24) +
            `${r.count.toLocaleString("en-US")}${r.buffer ? " (buffer)" : ""}`,
        );
      }
    }
    console.log(`\ntotal parameters: ${total.toLocaleString("en-US")} (${values.model})`);
  }
}

if (import.meta.main) await runMain(() => main(Deno.args));
